"""Random search: every generation, `population` fresh samples of the space; the best so far survive.

The baseline every NAS method must beat (Li and Talwalkar 2019). Like regularized
evolution it needs no checkpoint: a resumed run redraws the same samples and
finds them in the result store.
"""

from __future__ import annotations

from deap import tools

from gptnas.search.strategies import Strategy, register


@register
class RandomSearch(Strategy):
    name = "random"
    reads = ("multi_fidelity",)

    def register(self, toolbox) -> None:
        s, c = self.search, self.search.settings
        toolbox.register("propose", lambda: [s.make_feasible(s.space.sample(s.rng)) for _ in range(c.population)])
        toolbox.register("select", tools.selBest, k=c.population)
        toolbox.register("evaluate", s.evaluate)

    def run(self) -> list:
        s, toolbox = self.search, self.toolbox
        everyone = []
        for generation in range(s.settings.generations + 1):
            s.seed_generation(generation)
            everyone += s.full_fidelity(toolbox.evaluate(toolbox.propose(), generation))
            s.record(generation, toolbox.select(everyone), s.store.evaluated_in(generation))
        return s.population
