"""DEHB (Awad et al. 2021, "DEHB: Evolutionary Hyperband for Scalable, Robust and Efficient Hyperparameter
Optimization") as an external peer, driven through the `dehb` package's ask-and-tell interface.

DEHB runs differential evolution inside Hyperband's brackets, with its own fidelity handling: it asks for
a configuration and the fidelity to evaluate it at, and is told the result. Here:
- a configuration is DEHB's vector in [0, 1]^D, read as the space's own choices (`SearchSpace.choose`): the
  i-th choice takes option floor(v[i] * options), with i taken modulo D, and D the most choices any of 256
  seeded samples of the space makes (a space with a variable number of blocks has a longer tail of choices);
- its fidelities run from the evaluator's lowest rung (--min_fidelity) to 1 in steps of --eta, an eta of at
  most 1 / the lowest rung, so that DEHB has at least two fidelities. The evaluator answers each at the
  highest of its own fidelities not above it (NAS-Bench-201: the 12-epoch table below the full 200), and
  that is what the budget is charged (`--budget_unit full`) and DEHB told;
- DEHB minimises, so it is told 100 minus the fitness; a network outside the hard limits is told the worst
  (100) and costs nothing, not even a cycle: DEHB is asked again.

One ask is one cycle, evaluated before the next is asked (DEHB's synchronous mode); a generation of the
logbook is `population` cycles. Only networks evaluated at the full schedule enter the population and the
hall of fame. It keeps no checkpoint: DEHB is seeded by the run's seed, so a resumed run replays its asks,
finds every evaluation in the result store and continues exactly.

`dehb` is an optional extra (`pip install 'gptnas[peers]'`). Its newest release (0.1.2) pins numpy below 2,
which would replace the numpy 2 that the rest of the stack uses; the extra asks for 0.1.1, whose ask/tell
interface is the same.
"""

from __future__ import annotations

import random
import tempfile

from deap import tools

from gptnas.errors import GptnasError
from gptnas.search import fidelity
from gptnas.search.seeds import derived_seed
from gptnas.search.strategies import Strategy, register

WORST = 100.0  # what DEHB minimises is 100 - fitness; a network that cannot be evaluated is told this
DIMENSION_SAMPLES = 256
MAX_INFEASIBLE_ASKS = 1_000  # in a row; in the cpu profile's `cifar` space at 8x8 about 1 in 12 asks is feasible


def _dehb():
    try:
        from dehb import DEHB  # an optional extra: only this strategy needs it
        from loguru import logger
    except ImportError:
        raise GptnasError("--strategy dehb needs DEHB: pip install 'gptnas[peers]'") from None
    logger.disable("dehb")  # it logs every step; the result store and the logbook hold what a run did
    return DEHB


@register
class Dehb(Strategy):
    name = "dehb"
    multi_objective = False
    screens = False
    own_fidelities = True

    def register(self, toolbox) -> None:
        s = self.search
        self.levels = fidelity.rungs(s.settings, s.evaluator)
        self.dimensions = choice_count(s.space, s.settings.seed)
        self.scratch = tempfile.TemporaryDirectory(prefix="gptnas-dehb-")  # DEHB's own log: the store has it all
        self.dehb = _dehb()(f=None, cs=None, dimensions=self.dimensions, min_fidelity=self.levels[0],
                            max_fidelity=1.0, eta=min(s.settings.eta, 1 / self.levels[0]), n_workers=1,
                            configspace=False,
                            seed=derived_seed(s.settings.seed, "dehb") % 2**32,
                            output_path=self.scratch.name, save_freq="end")
        toolbox.register("select", tools.selBest, k=s.settings.population)

    def architecture(self, vector):
        """The architecture DEHB's vector in [0, 1]^D encodes."""
        def pick(_, options, i):
            return options[min(int(vector[i % self.dimensions] * len(options)), len(options) - 1)]
        return self.search.space.choose(pick)

    def level(self, fidelity: float) -> float:
        """The highest of the evaluator's fidelities not above the one DEHB asked for."""
        return max(level for level in self.levels if level <= fidelity * (1 + 1e-9))

    def run(self) -> list:
        with self.scratch:
            return self.cycles()

    def cycles(self) -> list:
        s, c = self.search, self.search.settings
        everyone = {}  # key -> candidate, of the networks evaluated at the full schedule
        for cycle in range(c.population * (c.generations + 1)):
            job, arch, level = self.feasible_ask()
            key = s.space.key(arch)
            s.evaluate_within_budget(level, key, arch, cycle)
            evaluation = s.store.rung(key, level)
            self.dehb.tell(job, {"fitness": WORST - (evaluation.fitness if evaluation.ok else 0.0), "cost": level})
            if level == 1.0:
                everyone[key] = s.candidate(arch, key)
            if (cycle + 1) % c.population == 0:
                new = s.store.evaluated_through(cycle) - s.store.evaluated_through(cycle - c.population)
                s.record(cycle // c.population, self.toolbox.select(list(everyone.values())), new, through=cycle)
        return s.population


    def feasible_ask(self) -> tuple:
        """(job, architecture, fidelity) of DEHB's next ask within the hard limits; the asks outside them are told
        the worst at no cost and take no cycle."""
        for _ in range(MAX_INFEASIBLE_ASKS):
            job = self.dehb.ask()
            arch = self.architecture(job["config"])
            if self.search.costs.feasible(arch):
                return job, arch, self.level(float(job["fidelity"]))
            self.dehb.tell(job, {"fitness": WORST, "cost": 0.0})
        raise GptnasError(f"dehb asked for {MAX_INFEASIBLE_ASKS} networks in a row outside --max_params/--max_flops/"
                          "--max_latency_ms; loosen them")


def choice_count(space, seed: int) -> int:
    """The most choices (segments) any of DIMENSION_SAMPLES seeded samples of `space` makes."""
    rng = random.Random(derived_seed(seed, "dehb-dimensions"))
    return max(len(space.segments(space.sample(rng))) for _ in range(DIMENSION_SAMPLES))


