"""What every search strategy shares: evaluation through the store, the budget, constraints, records.

A strategy (gptnas/search/strategies/) proposes architectures and decides what survives (with
--screen, a zero-cost proxy first keeps the best of K times as many: gptnas/search/screen.py);
`Search` turns architectures into evaluated candidates. Every unique canonical key is evaluated
once, ever, and stored the moment it finishes; the budget counts those unique evaluations. Every
generation draws from generators seeded by (seed, generation) alone, so with the checkpoint a
strategy writes after each generation (gptnas/search/checkpoint.py) a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

from deap import tools
from tqdm.auto import tqdm

from gptnas.errors import GptnasError
from gptnas.evaluators.base import WORST_FITNESS
from gptnas.search import checkpoint, screen
from gptnas.search.candidate import candidate_type
from gptnas.search.config import EvolveConfig
from gptnas.search.costs import Costs
from gptnas.search.store import ResultStore
from gptnas.search.tracking import Tracker

log = logging.getLogger(__name__)
FEASIBLE_TRIES = 200
# What must match for a run directory to be resumed (the rest may change).
IDENTITY = ("space", "strategy", "evaluator", "dataset", "seed", "population", "objectives", "max_params",
            "max_flops", "max_latency_ms")


def derived_seed(*parts) -> int:
    """A seed for one step of the run, independent of what ran before it (so resumes draw the same)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


class BudgetSpent(Exception):
    """The run has evaluated as many unique architectures as it may."""


class Search:
    def __init__(self, config: EvolveConfig, space, evaluator, run_dir: Path, executor, gpt_loader=None,
                 show_progress: bool = True):
        from gptnas.search.strategies import get_strategy

        self.config, self.space, self.evaluator, self.executor = config, space, evaluator, executor
        self.run_dir, self.gpt_loader, self.show_progress = run_dir, gpt_loader, show_progress
        self.store = ResultStore(run_dir / "results.sqlite", self.identity(), must_exist=checkpoint.exists(run_dir))
        checkpoint.verify(self)  # a store that is not the checkpoint's is refused before anything is written
        self.rng = random.Random(config.seed)
        self.costs = Costs(config, space, evaluator)
        self.pareto = len(self.costs.objectives) > 1
        self.make = candidate_type(len(self.costs.objectives))
        self.hall_of_fame = tools.ParetoFront() if self.pareto else tools.HallOfFame(10)
        self.stats = tools.Statistics(key=lambda c: c.fitness.values[0])
        for name, fn in (("max", max), ("mean", lambda v: sum(v) / len(v)), ("min", min)):
            self.stats.register(name, fn)
        self.logbook = tools.Logbook()
        self.logbook.header = ["gen", "queries", "new", "max", "mean", "min", "rewritten"]
        self.population, self.reconstruction_log = [], []  # the latter: what GPT reconstruction did, per generation
        self.gpt_seconds = 0.0  # wall time spent in the GPT (reconstruction, adaptation), not evaluating
        self.screen = screen.Screen(self) if config.screen else None  # before the strategy: it decorates with it
        self.strategy = get_strategy(config.strategy)(self)
        self.tracker = Tracker(config.report_to, run_dir, vars(config))  # live view, per generation
        self._progress, self._best = None, 0.0

    def identity(self) -> dict:
        return {name: getattr(self.config, name) for name in IDENTITY} | screen.identity(self.config)

    def run(self) -> list:
        """Runs (or resumes) the search; returns the final population."""
        total = self.config.budget or self.config.population * (self.config.generations + 1)
        self._progress = tqdm(total=total, initial=len(self.store), desc="evaluations", unit="arch",
                              disable=not self.show_progress)
        self._best = max((e.fitness for *_, e in self.store.history()), default=0.0)
        with self._progress, self.tracker:
            try:
                self.strategy.run()
            except BudgetSpent:
                log.info("budget of %d unique evaluations spent", self.config.budget)
                # The last, partial generation counts too: everything evaluated may enter the hall of fame.
                evaluated = [self.candidate(self.space.decode(enc), key) for _, key, enc, _, _ in self.store.history()]
                self.hall_of_fame.update(evaluated)
                self.population = self.population or evaluated  # spent within the initial population
            self._progress.total = self._progress.n  # repeats and novelty retries made fewer than planned: 100 %
        return self.population

    def seed_generation(self, generation: int) -> None:
        """Seeds this generation's draws by (seed, generation) alone; DEAP's selection uses the global `random`."""
        self.rng.seed(derived_seed(self.config.seed, "generation", generation))
        random.seed(derived_seed(self.config.seed, "deap", generation))

    def make_feasible(self, arch):
        """`arch`, or a mutant (then a fresh sample) within the limits: infeasible networks are never evaluated."""
        for attempt in range(FEASIBLE_TRIES):
            if self.costs.feasible(arch):
                return arch
            arch = self.space.mutate(arch, self.rng) if attempt < 20 else self.space.sample(self.rng)
        raise GptnasError(f"no architecture within --max_params/--max_flops/--max_latency_ms in {FEASIBLE_TRIES} tries; "
                          "loosen them")

    def evaluate(self, archs: list, generation: int) -> list:
        """Candidates with fitness for `archs`; new unique keys are evaluated and stored first.

        Raises BudgetSpent (after storing what fitted) when the budget runs out. Query numbers follow
        submission order and depend on earlier generations only, so a generation resumed after a kill
        (with some of its evaluations stored, in any order) numbers and submits exactly what is left."""
        keys = [self.space.key(a) for a in archs]
        new, seen = [], set()
        for arch, key in zip(archs, keys):
            if not self.store.evaluated_before(key, generation) and key not in seen:
                seen.add(key)
                new.append((key, arch))
        base = self.store.evaluated_through(generation - 1)
        budget = self.config.budget
        allowed = new if budget is None else new[: max(budget - base, 0)]
        todo = [(base + 1 + i, key, arch) for i, (key, arch) in enumerate(allowed) if key not in self.store]
        for index, evaluation in self.executor.run(self.evaluator, self.space.name, [arch for *_, arch in todo]):
            query, key, arch = todo[index]
            self.store.add(query, key, self.space.encode(arch), generation, self.costs.with_latency(arch, evaluation))
            self._progress.update(1)
            self._best = max(self._best, evaluation.fitness)
            self._progress.set_postfix(best=f"{self._best:.2f}", last=f"{evaluation.fitness:.2f}")
        if len(allowed) < len(new):
            raise BudgetSpent
        return [self.candidate(arch, key) for arch, key in zip(archs, keys)]

    def candidate(self, arch, key: str):
        evaluation = self.store.get(key)
        candidate = self.make(arch, key)
        fitness = evaluation.fitness if evaluation.ok else WORST_FITNESS
        candidate.fitness.values = self.costs.fitness(evaluation, fitness)
        return candidate

    def record(self, generation: int, population: list, new: int, through: int | None = None) -> None:
        """Logs a generation; `through` is the store generation its queries are counted up to."""
        self.population = population
        self.hall_of_fame.update(population)
        queries = self.store.evaluated_through(generation if through is None else through)
        self.logbook.record(gen=generation, queries=queries, new=new, **self.stats.compile(population),
                            rewritten=self.reconstruction_log[-1]["rewritten"] if self.reconstruction_log else 0)
        log.info(self.logbook.stream)
        self.tracker.log(self, generation)

