"""Regularized evolution (Real et al. 2019, "aging evolution"): sample S, mutate the best, add the
child, drop the oldest. One cycle is one query; a generation is `population` cycles.

It keeps no checkpoint: a resumed run replays its cycles, and every architecture
already in the result store costs no evaluation, so it continues exactly.
"""

from __future__ import annotations

from collections import deque

from gptnas.search.strategies import Strategy


class RegularizedEvolution(Strategy):
    name = "regularized-evolution"

    def register(self, toolbox) -> None:
        s, c = self.search, self.search.config
        toolbox.register("select", lambda population: max(
            s.rng.sample(population, min(c.sample_size, len(population))), key=lambda p: p.fitness.values))
        toolbox.register("mutate", s.space.mutate, rng=s.rng)
        toolbox.register("initial", lambda: [s.make_feasible(s.space.sample(s.rng)) for _ in range(c.population)])
        toolbox.register("evaluate", s.evaluate)

    def run(self) -> list:
        s, c, toolbox = self.search, self.search.config, self.toolbox
        s.seed_generation(0)
        population = deque(toolbox.evaluate(toolbox.initial(), 0))
        s.record(0, list(population), s.store.evaluated_in(0))
        for cycle in range(1, c.population * c.generations + 1):
            parent = toolbox.select(list(population))
            child = s.make_feasible(toolbox.mutate(parent.arch))
            population.append(toolbox.evaluate([child], cycle)[0])
            population.popleft()
            if cycle % c.population == 0:
                s.record(cycle // c.population, list(population), 0, through=cycle)
        return list(population)
