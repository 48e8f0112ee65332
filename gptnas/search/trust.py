"""How much of the search the GPT gets to rewrite, learned from the run's own evaluations (`--trust learned`).

A GPT whose prior does not fit a space pulls every candidate towards networks that score worse there
(benchmarks/RESULTS.md: gpt-ga below ga on the macro tables). With `--trust learned` the search runs a
randomised experiment inside itself: each offspring is rewritten by the GPT with probability `share` and
left as crossover and mutation made it otherwise, and the share of the next generation is the evidence,
so far, that rewritten offspring score better than plain ones of the same generation.

The evidence is a Mann-Whitney test stratified by generation: within every earlier generation, each
(rewritten, plain) pair of offspring evaluated in it counts 1 when the rewritten one scored higher, 1/2 on
a tie; the sums over generations give z, and the share is Phi(z), the one-sided confidence that the GPT
helps, kept within [floor, 1 - floor] so that neither arm stops being measured. Before any evidence (the
initial population) the share is 1/2. Comparing within a generation keeps the rising fitness of later
generations out of it; nothing in it knows which operations or widths score well.
"""

from __future__ import annotations

import math
from statistics import NormalDist

NO_EVIDENCE = 0.5


def gpt_share(log: list[dict], generation: int, fitness_in, floor: float) -> float:
    """The share of offspring the GPT rewrites in `generation`, from the arms recorded in the reconstruction
    `log` of earlier generations; `fitness_in(key, generation)` is the fitness of an architecture evaluated
    in that generation, None when it was not (over the budget, screened out, or evaluated earlier)."""
    u = expected = variance = 0.0
    for entry in log:
        if entry["gen"] >= generation or "gpt" not in entry:
            continue
        rewritten = _scores(entry["gpt"], entry["gen"], fitness_in)
        plain = _scores(entry["plain"], entry["gen"], fitness_in)
        n, m = len(rewritten), len(plain)
        if not n or not m:
            continue
        u += sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in rewritten for b in plain)
        expected += n * m / 2
        variance += n * m * (n + m + 1) / 12
    if variance == 0:
        return NO_EVIDENCE
    share = NormalDist().cdf((u - expected) / math.sqrt(variance))
    return min(max(share, floor), 1 - floor)


def _scores(keys: list[str], generation: int, fitness_in) -> list[float]:
    scores = (fitness_in(key, generation) for key in dict.fromkeys(keys))
    return [s for s in scores if s is not None]
