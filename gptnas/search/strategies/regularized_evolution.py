"""Regularized evolution (Real et al. 2019, "aging evolution"): sample S, mutate the best, add the
child, drop the oldest. One cycle is one query; a generation is `population` cycles. A child evaluated
before is mutated again, then sampled afresh (`--novelty_tries`), so every cycle queries a new network: with
queries counted once per unique network, a child evaluated before would cost nothing, and a population
that has evaluated its whole neighbourhood would spend its cycles without a query.

It keeps no checkpoint: a resumed run replays its cycles, and every architecture
already in the result store costs no evaluation, so it continues exactly.

With --multi_fidelity a child goes on to the next rung when it is within the best 1/eta of every result at
its rung so far (ASHA's rule: there is no batch to halve), and only children trained in full join the
population, which then fills up to `population` before its oldest members leave.
"""

from __future__ import annotations

from collections import deque

from gptnas.search.strategies import Strategy, register


@register
class RegularizedEvolution(Strategy):
    name = "regularized-evolution"
    reads = ("sample_size", "novelty_tries", "multi_fidelity")

    def register(self, toolbox) -> None:
        s, c = self.search, self.search.settings
        toolbox.register("select", lambda population: max(
            s.rng.sample(population, min(c.sample_size, len(population))), key=lambda p: p.fitness.values))
        toolbox.register("mutate", s.space.mutate, rng=s.rng)
        toolbox.register("propose_initial",
                         lambda: [s.make_feasible(s.space.sample(s.rng)) for _ in range(c.population)])
        toolbox.register("propose", self.propose)
        toolbox.register("evaluate", s.evaluate, asynchronous=True)

    def propose(self, population: list, cycle: int) -> list:
        """One cycle's child: the best of `sample_size` random members, mutated; made new (`Search.novel`)."""
        s = self.search
        child = s.make_feasible(self.toolbox.mutate(self.toolbox.select(population).arch))
        return [s.novel(child, cycle, self.toolbox.mutate)]

    def run(self) -> list:
        s, c, toolbox = self.search, self.search.settings, self.toolbox
        s.seed_generation(0)
        population = deque(s.full_fidelity(toolbox.evaluate(toolbox.propose_initial(), 0)), maxlen=c.population)
        s.record(0, list(population), s.store.evaluated_in(0))
        for cycle in range(1, c.population * c.generations + 1):
            population.extend(s.full_fidelity(toolbox.evaluate(toolbox.propose(list(population), cycle), cycle)))
            if cycle % c.population == 0:  # a generation is `population` cycles
                new = s.store.evaluated_through(cycle) - s.store.evaluated_through(cycle - c.population)
                s.record(cycle // c.population, list(population), new, through=cycle)
        return list(population)
