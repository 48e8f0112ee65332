"""The individual of every strategy: an architecture and its canonical key, with a DEAP fitness."""

from __future__ import annotations

from deap import base, creator


class Candidate:
    """One individual: an architecture of the search space (DEAP adds `.fitness`)."""

    fidelity = 1.0  # the share of the full schedule its fitness was measured at (gptnas/search/fidelity.py)

    def __init__(self, arch, key: str):
        self.arch = arch
        self.key = key

    def __eq__(self, other) -> bool:  # the hall of fame keeps one copy per network
        return isinstance(other, Candidate) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def candidate_type(objectives: int) -> type:
    """The DEAP individual for a search with `objectives` objectives: accuracy maximised, the rest minimised.
    DEAP types live in `creator`, made once per process."""
    name = f"GptnasCandidate{objectives}"
    if not hasattr(creator, name):
        creator.create(f"GptnasFitness{objectives}", base.Fitness, weights=(1.0,) + (-1.0,) * (objectives - 1))
        creator.create(name, Candidate, fitness=getattr(creator, f"GptnasFitness{objectives}"))
    return getattr(creator, name)
