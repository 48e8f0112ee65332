"""Search strategies, found by name: each is one small class that registers its operators on a
DEAP toolbox and runs its own loop over the shared `Search` core (gptnas/search/core.py).

Adding a strategy is one new module here and one line in `_strategies`.
"""

from __future__ import annotations

from deap import base

from gptnas.errors import GptnasError


class Strategy:
    """A search algorithm over the shared core: `register` fills the toolbox, `run` is the loop."""

    name = ""

    def __init__(self, search):
        self.search = search
        self.toolbox = base.Toolbox()
        self.register(self.toolbox)

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
