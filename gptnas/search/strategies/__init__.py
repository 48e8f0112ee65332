"""Search strategies, found by name: each is one small class that registers its operators on a
DEAP toolbox and runs its own loop over the shared `Search` core (gptnas/search/core.py).

Adding a strategy is one new module here and one line in `_strategies`.

What a strategy wants evaluated next comes from its proposal operators, `propose` (and
`propose_initial` where the first population is made differently), each returning a list of
architectures. With --screen the base class decorates them (gptnas/search/screen.py): they then
propose K times as many and return only the zero-cost proxy's best, for every strategy alike.
"""

from __future__ import annotations

from deap import base

from gptnas.errors import GptnasError

PROPOSALS = ("propose_initial", "propose")  # the operators whose architectures --screen ranks


class Strategy:
    """A search algorithm over the shared core: `register` fills the toolbox, `run` is the loop."""

    name = ""

    def __init__(self, search):
        self.search = search
        self.toolbox = base.Toolbox()
        self.register(self.toolbox)
        if search.screen is not None:
            for alias in PROPOSALS:
                if hasattr(self.toolbox, alias):
                    self.toolbox.decorate(alias, search.screen.pool)

    def register(self, toolbox: base.Toolbox) -> None:
        raise NotImplementedError

    def run(self) -> list:
        """Runs (or resumes) the search; returns the final population."""
        raise NotImplementedError


def _strategies() -> dict[str, type[Strategy]]:
    from gptnas.search.strategies.genetic import GeneticAlgorithm
    from gptnas.search.strategies.gpt_genetic import GptGeneticAlgorithm
    from gptnas.search.strategies.random_search import RandomSearch
    from gptnas.search.strategies.regularized_evolution import RegularizedEvolution

    return {s.name: s for s in (GptGeneticAlgorithm, GeneticAlgorithm, RegularizedEvolution, RandomSearch)}


def strategy_names() -> list[str]:
    return list(_strategies())


def get_strategy(name: str) -> type[Strategy]:
    strategies = _strategies()
    if name not in strategies:
        raise GptnasError(f"unknown strategy {name!r}; valid: {', '.join(strategies)}")
    return strategies[name]
