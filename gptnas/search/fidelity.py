"""Multi-fidelity search (`--multi_fidelity sh --eta 9 --min_fidelity 0.11`): successive halving inside
every generation, for every strategy.

The architectures a generation evaluates for the first time train first at the lowest rung (a share of
the full schedule). The best ceil(n / eta) of them, by fitness at that rung (ties in proposal order), go on
to the next rung, and so on up to the full schedule. The rungs are the evaluator's (`fidelities`):
- `train`: 1, 1/eta, 1/eta^2 ... of the schedule's optimizer steps, down to --min_fidelity (default 1/9). Each
  rung trains from scratch, its warm-up and decay shortened alike; a network is not continued from its
  checkpoint at a lower rung, because the learning-rate schedule it was trained on has already ended there;
- `benchmark` on NAS-Bench-201: the 12-epoch table, then the 200-epoch one (a 12-epoch query costs 12/200).

Regularized evolution evaluates one child at a time, so there a network goes on when it is within the best
1/eta of every result at its rung so far (asynchronous successive halving, ASHA's rule).

Only networks evaluated at the full schedule are compared with each other: they alone enter the population
and the hall of fame (`Search.full_fidelity`); the others inform only the promotion of their own rung.
Every rung's result is stored the moment it finishes (below the full schedule in the store's `rungs`), and
what each rung holds depends only on stored results, so a run killed at any rung resumes exactly.

A budget counts in queries (every evaluation, at any rung, is one) or, with `--budget_unit full`, in
full-training equivalents: an evaluation at a share f of the schedule costs f. A rung's evaluations are
submitted in order until the next would overspend; what fitted is stored, then the run ends.

No library scheduler is used: Syne Tune's and Ray Tune's ASHA own the trial loop (they decide what to start
next and when), and Optuna's SuccessiveHalvingPruner prunes one trial at a time inside its objective. Here
the evolutionary loop decides what is proposed, so the scheduler is the small, synchronous halving of one
generation's batch that the loop needs.
"""

from __future__ import annotations

import math

from gptnas.errors import GptnasError
from gptnas.evaluators.base import WORST_FITNESS
from gptnas.search.strategies import get_strategy

DEFAULT_ETA = 9  # 1/9 promoted beat 1/3 on the tuning seeds (benchmarks/RESULTS.md, f1)
TOLERANCE = 1e-9  # sums of shares are compared to the budget up to rounding


def identity(settings) -> dict:
    """What multi-fidelity adds to a run's identity (`settings`: SearchSettings; nothing when it is off)."""
    return {name: getattr(settings, name) for name in ("multi_fidelity", "eta", "min_fidelity", "budget_unit")
            if getattr(settings, name) is not None}


def used(settings) -> bool:
    """Whether the run evaluates below the full schedule: --multi_fidelity, or a strategy with fidelities of its
    own (dehb)."""
    return settings.multi_fidelity is not None or get_strategy(settings.strategy).own_fidelities


def rungs(settings, evaluator) -> list[float]:
    """The fidelities the run evaluates at, ascending and ending at 1."""
    what = "--multi_fidelity" if settings.multi_fidelity else f"--strategy {settings.strategy}"
    if not hasattr(evaluator, "fidelities"):
        raise GptnasError(f"{what} needs an evaluator that can train for less: train, or benchmark on "
                          f"nas-bench-201 (its 12-epoch table); {evaluator.name} cannot")
    levels = evaluator.fidelities(settings.eta, settings.min_fidelity)
    if len(levels) < 2:
        floor = f" at or above --min_fidelity {settings.min_fidelity}" if settings.min_fidelity is not None else ""
        raise GptnasError(f"{what}: the {evaluator.name} evaluator has no fidelity below the full one here{floor}; "
                          "use another space or evaluator")
    return levels


def prepare(settings, evaluator) -> None:
    """Checks the rungs and fetches what each rung's evaluator needs (a low-fidelity table), so a missing piece
    is a one-line error before the run directory is written."""
    for level in rungs(settings, evaluator)[:-1]:  # the full one is the evaluator itself
        evaluator.at_fidelity(level).prepare()


class SuccessiveHalving:
    """Evaluates a generation's new architectures rung by rung through the search's executor and store."""

    def __init__(self, search):
        self.search = search
        self.levels = rungs(search.settings, search.evaluator)
        self.eta = search.settings.eta

    def run(self, new: list[tuple[str, object]], generation: int, asynchronous: bool = False) -> bool:
        """Evaluates `new` ((key, arch) first met in `generation`, in proposal order) rung by rung; False when
        the budget ran out (what fitted is stored). `asynchronous`: promote by `asynchronous_promotion`."""
        s = self.search
        spent = s.spent_through(generation - 1)
        group = new
        for level in self.levels:
            allowed = []
            for entry in group:
                if not s.affordable(spent, level):
                    break
                spent += s.price(level)
                allowed.append(entry)
            s.evaluate_at(level, allowed, generation)
            if len(allowed) < len(group):
                return False
            if level == 1.0:
                return True
            if asynchronous:
                group = self.asynchronous_promotion(allowed, level, generation)
                continue
            scores = {key: self.fitness(key, level) for key, _ in allowed}
            ranked = sorted(allowed, key=lambda entry: -scores[entry[0]])  # stable: ties keep proposal order
            group = ranked[: math.ceil(len(allowed) / self.eta)]
        return True

    def asynchronous_promotion(self, entries: list, level: float, generation: int) -> list:
        """Those of `entries` within the best max(1, n // eta) of all n results at `level` so far (generations up
        to `generation`): ASHA's rule (Li et al. 2020), for a strategy that evaluates one network at a time."""
        so_far = sorted(((self.fitness(key, level), key) for key, at, _, g, _ in self.search.store.rungs()
                         if at == level and g <= generation), reverse=True)
        best = {key for _, key in so_far[: max(1, len(so_far) // self.eta)]}
        return [entry for entry in entries if entry[0] in best]

    def fitness(self, key: str, level: float) -> float:
        evaluation = self.search.store.rung(key, level)
        return evaluation.fitness if evaluation.ok else WORST_FITNESS
