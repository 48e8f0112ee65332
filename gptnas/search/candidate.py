"""The individual of every strategy: an architecture and its canonical key, with a DEAP fitness."""

from __future__ import annotations

from deap import base, creator


class Candidate:
    """One individual: an architecture of the search space (DEAP adds `.fitness`)."""

    def __init__(self, arch, key: str):
        self.arch = arch
        self.key = key

    def __eq__(self, other) -> bool:  # the hall of fame keeps one copy per network
        return isinstance(other, Candidate) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


if not hasattr(creator, "GptnasFitness"):  # DEAP types live in `creator`, made once per process
    creator.create("GptnasFitness", base.Fitness, weights=(1.0,))
    creator.create("GptnasParetoFitness", base.Fitness, weights=(1.0, -1.0))  # accuracy up, params down
    creator.create("GptnasCandidate", Candidate, fitness=creator.GptnasFitness)
    creator.create("GptnasParetoCandidate", Candidate, fitness=creator.GptnasParetoFitness)

SINGLE_CANDIDATE = creator.GptnasCandidate  # fitness: (accuracy,)
PARETO_CANDIDATE = creator.GptnasParetoCandidate  # fitness: (accuracy, params), NSGA-II
