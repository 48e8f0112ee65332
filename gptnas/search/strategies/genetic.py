"""The genetic algorithm of GPT-NAS without the GPT (`ga`): the ablation, and the loop `gpt-ga` extends.

Tournament selection with elites (NSGA-II on accuracy and parameters with
--objectives accuracy,params|flops|latency), crossover and mutation on copies of the parents (DEAP's
varAnd), then evaluation. Offspring that were already evaluated are mutated
again (the novelty rule), so each generation spends its queries on new networks.

With --multi_fidelity, only offspring promoted to the full schedule join the population: the next
population is the best of the previous one plus those (NSGA-II: the best of both by front and crowding),
so it is `population` strong once the first generations have filled it.
"""

from __future__ import annotations

from deap import tools

from gptnas.search import checkpoint
from gptnas.search.strategies import Strategy, register


@register
class GeneticAlgorithm(Strategy):
    name = "ga"
    reads = ("crossover_rate", "mutation_rate", "tournament_size", "elites", "novelty_tries", "multi_fidelity")

    def register(self, toolbox) -> None:
        s, c = self.search, self.search.settings
        if s.pareto:
            toolbox.register("select", tools.selNSGA2)
        else:
            toolbox.register("select", tools.selTournament, tournsize=c.tournament_size)
        toolbox.register("mate", s.space.crossover, rng=s.rng)
        toolbox.register("mutate", s.space.mutate, rng=s.rng)
        toolbox.register("initial", lambda: [s.space.sample(s.rng) for _ in range(c.population)])
        toolbox.register("reconstruct", lambda archs, generation: archs)
        toolbox.register("reconstruct_initial", lambda archs: archs)
        toolbox.register("propose_initial", self.propose_initial)
        toolbox.register("propose", self.propose)
        toolbox.register("evaluate", s.evaluate)

    def run(self) -> list:
        s, c, toolbox = self.search, self.search.settings, self.toolbox
        start = checkpoint.load(s)
        if start < 0:
            s.seed_generation(0)
            population = s.full_fidelity(toolbox.evaluate(toolbox.propose_initial(), 0))
            s.record(0, population, s.store.evaluated_in(0))
            checkpoint.save(s, 0)
        for generation in range(max(start, 0) + 1, c.generations + 1):  # generation 0 is the initial one
            s.seed_generation(generation)
            population = s.population
            elites = c.elites if not s.pareto else 0
            archs = toolbox.propose(population, c.population - elites, generation)
            offspring = s.full_fidelity(toolbox.evaluate(archs, generation))
            if s.pareto:
                population = tools.selNSGA2(population + offspring, c.population)
            else:  # the elites, and with --multi_fidelity as many more as offspring were not promoted
                population = tools.selBest(population, c.population - len(offspring)) + offspring
            s.record(generation, population, s.store.evaluated_in(generation))
            checkpoint.save(s, generation)
        return s.population

    def propose_initial(self) -> list:
        """The initial population: sampled, reconstructed (gpt-ga), within the limits."""
        s, toolbox = self.search, self.toolbox
        archs = toolbox.reconstruct_initial(toolbox.initial())
        return [s.make_feasible(a) for a in archs]

    def propose(self, population: list, n: int, generation: int) -> list:
        """`n` offspring of `population`: selection, variation, reconstruction (gpt-ga), the novelty rule."""
        s, toolbox = self.search, self.toolbox
        parents = toolbox.select(population, n)
        parents = [parents[i % len(parents)] for i in range(n)]  # NSGA-II picks each at most once
        archs = toolbox.reconstruct(self.vary(parents), generation)
        return self.novel([s.make_feasible(a) for a in archs], generation)

    def vary(self, parents: list) -> list:
        """Crossover of neighbouring pairs, then mutation, on the parents' architectures (DEAP's varAnd)."""
        rng, c = self.search.rng, self.search.settings
        archs = [p.arch for p in parents]
        for i in range(1, len(archs), 2):
            if rng.random() < c.crossover_rate:
                archs[i - 1], archs[i] = self.toolbox.mate(archs[i - 1], archs[i])
        for i in range(len(archs)):
            if rng.random() < c.mutation_rate:
                archs[i] = self.toolbox.mutate(archs[i])
        return archs

    def novel(self, archs: list, generation: int) -> list:
        """The offspring, each made new (`Search.novel`) to earlier generations and to the offspring before it."""
        s = self.search
        seen: set[str] = set()
        out = []
        for arch in archs:
            arch = s.novel(arch, generation, self.toolbox.mutate, seen)
            seen.add(s.space.key(arch))
            out.append(arch)
        return out
