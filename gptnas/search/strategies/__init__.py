"""Search strategies, found by name: each is one small class that registers its operators on a
DEAP toolbox and runs its own loop over the shared `Search` core (gptnas/search/core.py).

Adding a strategy is one new module here, its class decorated with `@register`, and its import in
`gptnas/search/strategies/all.py`. What the core needs of a strategy is on `Strategy`: its loop, its state
for the checkpoint, a summary for the report and trackers, its own logbook columns and files; the core never
names a strategy. A strategy with settings of its own (gpt-ga's GPT) declares their dataclass as
`settings_type`; `reads` names the shared search settings only it (and its subclasses) uses, so a flag that
the chosen strategy would ignore is refused.

What a strategy wants evaluated next comes from its proposal operators, `propose` (and
`propose_initial` where the first population is made differently), each returning a list of
architectures. With --screen the base class decorates them (gptnas/search/screen.py): they then
propose K times as many and return only the zero-cost proxy's best, for every strategy alike.
"""

from __future__ import annotations

from deap import base

from gptnas.registry import Registry

PROPOSALS = ("propose_initial", "propose")  # the operators whose architectures --screen ranks
STRATEGIES: Registry = Registry("strategy")
register = STRATEGIES.register


class Strategy:
    """A search algorithm over the shared core: `register` fills the toolbox, `run` is the loop."""

    name = ""
    uses_gpt = False  # it loads a GPT (the benchmark harness picks which, and refuses one that saw the table)
    settings_type: type | None = None  # the dataclass of its own settings (a group of EvolveConfig), if any
    reads: tuple[str, ...] = ()  # SearchSettings fields that only this strategy (and its subclasses) uses
    multi_objective = True  # it takes --objectives with costs (NSGA-II, MOTPE ...)
    screens = True  # --screen ranks what it proposes (it registers `propose`)
    own_fidelities = False  # it chooses the fidelity of each evaluation itself (dehb), without --multi_fidelity

    def __init__(self, search, settings=None):
        self.search = search
        self.toolbox = base.Toolbox()
        self.register(self.toolbox)
        if search.screen is not None:
            for alias in PROPOSALS:
                if hasattr(self.toolbox, alias):
                    self.toolbox.decorate(alias, search.screen.pool)

    @classmethod
    def uses(cls, setting: str) -> bool:
        return setting in cls.reads

    def register(self, toolbox: base.Toolbox) -> None:
        raise NotImplementedError

    def run(self) -> list:
        """Runs (or resumes) the search; returns the final population."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What the checkpoint keeps of this strategy beyond the population (plain JSON)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores `state_dict()`; ValueError, KeyError or TypeError when it is malformed."""

    def check_resume(self) -> None:
        """GptnasError when the state a checkpoint restored cannot go on here (checked before the run starts)."""

    def summary(self) -> dict:
        """Figures of this run for the report, the trackers and the benchmark harness (JSON values)."""
        return {}

    def logbook_columns(self) -> dict[str, str]:
        """Columns this strategy adds to the logbook: name -> what it counts."""
        return {}

    def generation_record(self, generation: int) -> dict:
        """This strategy's logbook columns for `generation`."""
        return {}

    def files(self) -> dict:
        """Extra JSON files for the run directory: file name -> content."""
        return {}


def strategy_names() -> list[str]:
    return STRATEGIES.names()


def strategies() -> list[type[Strategy]]:
    return list(STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)
