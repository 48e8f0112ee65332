"""What every search strategy shares: evaluation through the store, the budget, constraints, records.

A strategy (gptnas/search/strategies/) proposes architectures and decides what survives (with
--screen, a zero-cost proxy first keeps the best of K times as many: gptnas/search/screen.py);
`Search` turns architectures into evaluated candidates. Every unique canonical key is evaluated
once, ever, and stored the moment it finishes; the budget counts those unique evaluations. Every
generation draws from generators seeded by (seed, generation) alone, so with the checkpoint a
strategy writes after each generation (gptnas/search/checkpoint.py) a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deap import tools
from tqdm.auto import tqdm

from gptnas import latency_tables
from gptnas.errors import GptnasError, check_limit, quote
from gptnas.evaluators.base import WORST_FITNESS
from gptnas.search import checkpoint, fidelity, screen
from gptnas.search.candidate import candidate_type
from gptnas.search.costs import COST_OBJECTIVES, Costs
from gptnas.search.executors import ctrl_c_deferred
from gptnas.search.seeds import derived_seed
from gptnas.search.store import ResultStore
from gptnas.search.strategies import get_strategy
from gptnas.search.tracking import Tracker

log = logging.getLogger(__name__)
FEASIBLE_TRIES = 200
# Limits of the settings that size memory or loops: generous, and each stated by the error that enforces it.
MAX_POPULATION = 100_000
MAX_GENERATIONS = 1_000_000
MAX_NOVELTY_TRIES = 1_000
MAX_SCREEN_POOL = 1_000
MAX_LATENCY_BATCH_SIZE = 4_096
MAX_ETA = 100
MIN_FIDELITY = 0.001  # the lowest rung: a thousandth of the schedule
MAX_SEED = 2**32 - 1  # what every generator takes (numpy's legacy one included)
# What the result store records of the run it belongs to (the rest may change); a store of another run is refused.
IDENTITY = ("space", "strategy", "evaluator", "dataset", "seed", "population", "objectives", "max_params",
            "max_flops", "max_latency_ms", "latency_table")


# What --eta and --min_fidelity need: successive halving, or a strategy with its own fidelities.
_NEEDS_FIDELITY = (lambda c: c.search.multi_fidelity is not None or get_strategy(c.search.strategy).own_fidelities,
                   "--multi_fidelity sh (or --strategy dehb)")


@dataclass
class SearchSettings:
    """What is searched, how long, under which objectives and limits, and the operators' rates."""

    space: str = field(default="cifar", metadata={"help": "search space: cifar, nas-bench-macro, "
                       "channel-bench-mobilenet, channel-bench-resnet, nas-bench-201, or a space file "
                       "(SPACE.yaml: README, 'Your own search space')"})
    strategy: str = field(default="gpt-ga", metadata={"help": "gpt-ga (GPT-NAS), ga (no GPT), "
                          "regularized-evolution, random, or the optional extras tpe (Optuna's TPE) and dehb "
                          "(DEHB, with fidelities of its own)"})
    seed: int = field(default=0, metadata={"help": "every draw of the run, and the evaluator's initialisation"})
    profile: Literal["gpt-nas", "cpu"] | None = field(default=None, metadata={"help": "defaults for population, "
                                                     "generations, workers and candidate training: gpt-nas (the "
                                                     "paper's) or cpu (small, fast searches); default: cpu when the "
                                                     "train evaluator runs on a CPU, else gpt-nas"})
    population: int | None = field(default=None, metadata={"help": "from --profile: 30 (gpt-nas) or 8 (cpu)"})
    generations: int | None = field(default=None, metadata={"help": "from --profile: 20 (gpt-nas) or 3 (cpu)"})
    budget: int | None = field(default=None, metadata={"help": "stop after this many unique evaluations (or "
                               "full-training equivalents: --budget_unit full)"})
    budget_unit: Literal["query", "full"] | None = field(default=None, metadata={
        "help": "what --budget counts: query (default: each evaluation, at any fidelity) or full (full-training "
                "equivalents: an evaluation at a share f of the full schedule costs f)",
        "needs": (lambda c: c.search.budget is not None and fidelity.used(c.search),
                  "--budget with --multi_fidelity sh (or --strategy dehb)")})
    multi_fidelity: Literal["sh"] | None = field(default=None, metadata={
        "help": "sh: successive halving inside every generation: new candidates train first at the lowest "
                "fidelity, the best 1/eta go on to the next, and only networks trained in full enter the "
                "population (train evaluator, or benchmark on nas-bench-201's 12-epoch table)"})
    eta: int | None = field(default=None, metadata={
        "help": "--multi_fidelity, dehb: 1/eta of a rung goes on to the next (default 9); for the train evaluator "
                "the rungs are 1, 1/eta, 1/eta^2 ... of the schedule", "needs": _NEEDS_FIDELITY})
    min_fidelity: float | None = field(default=None, metadata={
        "help": "--multi_fidelity, dehb: the lowest rung, as a share of the full schedule (train evaluator: "
                "default 0.111, a ninth; benchmark: the table's 12/200 epochs)", "needs": _NEEDS_FIDELITY})
    objectives: str = field(default="accuracy", metadata={"help": "accuracy, or accuracy plus one or two of params, "
                            "flops, latency (comma-separated): NSGA-II returns a Pareto front"})
    max_params: int | None = field(default=None, metadata={"help": "networks with more parameters are never "
                                   "evaluated"})
    max_flops: int | None = field(default=None, metadata={"help": "networks with more multiply-accumulates (at the "
                                  "evaluated image size) are never evaluated; the cpu profile sets one"})
    max_latency_ms: float | None = field(default=None, metadata={"help": "networks slower than this at batch 1 on the "
                                         "evaluation device (or the --latency_table device) are never evaluated"})
    latency_table: str | None = field(default=None, metadata={
        "help": "latency from a device's measured table instead of this machine (nas-bench-201): one of HELP's "
                "devices (raspi4, pixel3, eyeriss, fpga, pixel2, gold_6226, 1080ti_1 ...; gptnas.latency_tables) "
                "or the path of a .pt file in their format",
        "needs": (lambda c: c.search.measures_latency(), "--objectives accuracy,latency or --max_latency_ms")})
    latency_batch_size: int | None = field(default=None, metadata={
        "help": "also measure latency at this batch size (stored with every evaluation; the objective and limit use "
                "batch 1)", "needs": (lambda c: c.search.measures_latency(), "--objectives accuracy,latency or "
                                      "--max_latency_ms (latency measured at all)")})
    screen: Literal["naswot", "synflow"] | None = field(default=None, metadata={"help": "rank proposals with this "
                                                        "zero-cost proxy and evaluate only the best; only "
                                                        "evaluations count as queries"})
    screen_pool: int = field(default=4, metadata={"help": "--screen: the strategy proposes this many times as many "
                             "architectures as it evaluates",
                             "needs": (lambda c: c.search.screen is not None, "--screen naswot or synflow")})
    crossover_rate: float = field(default=0.9, metadata={"help": "ga, gpt-ga: probability that a pair of parents "
                                  "is crossed"})
    mutation_rate: float = field(default=0.3, metadata={"help": "ga, gpt-ga: probability that an offspring is "
                                 "mutated"})
    tournament_size: int = field(default=3, metadata={"help": "ga, gpt-ga: parents are the best of this many"})
    elites: int = field(default=1, metadata={"help": "ga, gpt-ga: the best this many survive unchanged"})
    novelty_tries: int = field(default=10, metadata={"help": "ga, gpt-ga, regularized-evolution: offspring "
                               "evaluated before are mutated again up to this often, then replaced by fresh samples "
                               "up to as often (0: never)"})
    sample_size: int = field(default=5, metadata={"help": "regularized-evolution: parents are the best of this many"})

    def objective_list(self) -> list[str]:
        return [name.strip() for name in self.objectives.split(",") if name.strip()]

    def measures_latency(self) -> bool:
        return "latency" in self.objective_list() or self.max_latency_ms is not None

    def validate(self) -> None:
        for name, limit in (("population", MAX_POPULATION), ("generations", MAX_GENERATIONS),
                            ("novelty_tries", MAX_NOVELTY_TRIES), ("screen_pool", MAX_SCREEN_POOL),
                            ("latency_batch_size", MAX_LATENCY_BATCH_SIZE)):
            check_limit(name, getattr(self, name), limit)
        check_limit("seed", self.seed, MAX_SEED, low=0)
        if self.population < 2:
            raise GptnasError(f"population must be at least 2, got {self.population}")
        if not 0 <= self.elites < self.population:
            raise GptnasError(f"elites must lie in [0, population), got {self.elites}")
        if self.generations < 0 or self.tournament_size < 1 or self.sample_size < 1 or self.novelty_tries < 0:
            raise GptnasError("generations and novelty_tries must be >= 0; tournament_size and sample_size >= 1")
        if self.budget is not None and self.budget < 1:
            raise GptnasError(f"budget must be at least 1, got {self.budget}")
        if self.eta is not None and not 2 <= self.eta <= MAX_ETA:
            raise GptnasError(f"eta must lie in [2, {MAX_ETA}], got {self.eta}")
        if self.min_fidelity is not None and not MIN_FIDELITY <= self.min_fidelity < 1:
            raise GptnasError(f"min_fidelity must lie in [{MIN_FIDELITY}, 1), got {self.min_fidelity}")
        for name in ("crossover_rate", "mutation_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise GptnasError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        objectives = self.objective_list()
        strategy = get_strategy(self.strategy)
        if len(objectives) > 1 and not strategy.multi_objective:
            raise GptnasError(f"--strategy {self.strategy} optimises accuracy alone; "
                              f"drop --objectives {self.objectives}")
        if self.screen is not None and not strategy.screens:
            raise GptnasError(f"--strategy {self.strategy} proposes one network at a time through its own "
                              "optimiser; drop --screen")
        if objectives[:1] != ["accuracy"] or len(objectives) > 3 or len(set(objectives)) < len(objectives) \
                or not set(objectives[1:]) <= set(COST_OBJECTIVES):
            raise GptnasError(f"objectives must be accuracy, then one or two of {', '.join(COST_OBJECTIVES)}; "
                              f"got {quote(self.objectives)}")
        for name in ("max_params", "max_flops", "latency_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise GptnasError(f"{name} must be >= 1 (or unset for no limit), got {getattr(self, name)}")
        if self.max_latency_ms is not None and not (math.isfinite(self.max_latency_ms) and self.max_latency_ms > 0):
            raise GptnasError(f"max_latency_ms must be a finite number > 0, got {self.max_latency_ms}")
        if self.screen_pool < 1:
            raise GptnasError(f"screen_pool must be >= 1, got {self.screen_pool}")
        if self.latency_table is not None:
            latency_tables.check_device(self.latency_table)
            latency_tables.check_space(self.latency_table, self.space)
            if self.latency_batch_size is not None:
                raise GptnasError("--latency_batch_size measures on this machine; a latency table has its own "
                                  "batch size (HELP's GPU devices name it: 1080ti_32); drop one of them")


class BudgetSpent(Exception):
    """The run has spent its budget (--budget, in --budget_unit)."""


class Search:
    """One search run: `config` is the run's EvolveConfig (gptnas/search/config.py), whose groups it hands on:
    the search settings to itself and the strategy, the strategy's own group (gpt-ga's GPT) to the strategy."""

    def __init__(self, config, space, evaluator, run_dir: Path, executor, show_progress: bool = True):
        self.config, self.settings, self.device = config, config.search, config.run.device
        self.space, self.evaluator, self.executor = space, evaluator, executor
        self.run_dir, self.show_progress = run_dir, show_progress
        self.store = ResultStore(run_dir / "results.sqlite", self.identity(), must_exist=checkpoint.exists(run_dir))
        checkpoint.verify(self)  # a store that is not the checkpoint's is refused before anything is written
        self.store.check_settings(config.settings_record(), run_dir / "config.yaml")
        self.rng = random.Random(self.settings.seed)
        self.costs = Costs(self.settings, space, evaluator, self.device)
        self.pareto = len(self.costs.objectives) > 1
        self.make = candidate_type(len(self.costs.objectives))
        self.hall_of_fame = tools.ParetoFront() if self.pareto else tools.HallOfFame(10)
        self.stats = tools.Statistics(key=lambda c: c.fitness.values[0])
        for name, fn in (("max", max), ("mean", lambda v: sum(v) / len(v)), ("min", min)):
            self.stats.register(name, fn)
        self.population = []
        self.halving = fidelity.SuccessiveHalving(self) if self.settings.multi_fidelity else None
        self.screen = screen.Screen(self) if self.settings.screen else None  # before the strategy: it decorates with it
        strategy = get_strategy(self.settings.strategy)
        self.strategy = strategy(self, config.group(strategy.settings_type))
        self.logbook = tools.Logbook()
        self.logbook.header = ["gen", "queries", "new", "max", "mean", "min", *self.strategy.logbook_columns()]
        checkpoint.check(self)  # a checkpoint that cannot be resumed is refused before the run starts
        self.strategy.check_resume()
        self.tracker = Tracker(config.run.report_to, run_dir, config.flat())  # live view, per generation
        self._progress, self._best, self._table_started = None, 0.0, False

    def identity(self) -> dict:
        data = {"evaluator": self.config.data.evaluator, "dataset": self.config.data.dataset}
        return {name: data[name] if name in data else getattr(self.settings, name) for name in IDENTITY} \
            | screen.identity(self.settings) | fidelity.identity(self.settings)

    def run(self) -> list:
        """Runs (or resumes) the search; returns the final population."""
        total = self.settings.budget or self.settings.population * (self.settings.generations + 1)
        with ctrl_c_deferred():
            self._progress = tqdm(total=total, initial=len(self.store), desc="evaluations", unit="arch",
                                  disable=not self.show_progress)
        self._best = max((e.fitness for *_, e in self.store.history()), default=0.0)
        with self._progress, self.tracker:
            try:
                self.strategy.run()
            except BudgetSpent:
                log.info("budget of %d %s spent", self.settings.budget,
                         "full-training equivalents" if self.settings.budget_unit == "full" else "evaluations")
                # The last, partial generation counts too: everything evaluated may enter the hall of fame.
                evaluated = [self.candidate(self.space.decode(enc), key) for _, key, enc, _, _ in self.store.history()]
                self.hall_of_fame.update(evaluated)
                self.population = self.population or evaluated  # spent within the initial population
            self._progress.total = self._progress.n  # repeats and novelty retries made fewer than planned: 100 %
        return self.population

    def seed_generation(self, generation: int) -> None:
        """Seeds this generation's draws by (seed, generation) alone; DEAP's selection uses the global `random`."""
        self.rng.seed(derived_seed(self.settings.seed, "generation", generation))
        random.seed(derived_seed(self.settings.seed, "deap", generation))

    def make_feasible(self, arch):
        """`arch`, or a mutant (then a fresh sample) within the limits: infeasible networks are never evaluated."""
        for attempt in range(FEASIBLE_TRIES):
            if self.costs.feasible(arch):
                return arch
            arch = self.space.mutate(arch, self.rng) if attempt < 20 else self.space.sample(self.rng)
        raise GptnasError(f"no architecture within --max_params/--max_flops/--max_latency_ms in {FEASIBLE_TRIES} tries; "
                          "loosen them")

    def novel(self, arch, generation: int, mutate, seen: set[str] = frozenset()):
        """`arch`, or, when it was evaluated in an earlier generation or its key is in `seen`, a mutant (`mutate`),
        up to --novelty_tries times, then a fresh sample, up to as often; each within the limits. So a strategy
        spends its queries on new networks, even once it has evaluated every network within a few mutations of
        its population (under a tight --max_latency_ms only a few hundred NAS-Bench-201 cells remain)."""
        tries = self.settings.novelty_tries
        key = self.space.key(arch)
        for attempt in range(2 * tries):
            if not self.store.evaluated_before(key, generation) and key not in seen:
                break
            arch = self.make_feasible(mutate(arch) if attempt < tries else self.space.sample(self.rng))
            key = self.space.key(arch)
        return arch

    def evaluate(self, archs: list, generation: int, asynchronous: bool = False) -> list:
        """Candidates with fitness for `archs`; new unique keys are evaluated and stored first (with
        --multi_fidelity, rung by rung: gptnas/search/fidelity.py; `asynchronous`: promoted by ASHA's rule).

        Raises BudgetSpent (after storing what fitted) when the budget runs out. Query numbers follow
        submission order and depend on earlier generations only, so a generation resumed after a kill
        (with some of its evaluations stored, in any order) numbers and submits exactly what is left."""
        keys = [self.space.key(a) for a in archs]
        new, seen = [], set()
        for arch, key in zip(archs, keys):
            if not self.store.evaluated_before(key, generation) and key not in seen:
                seen.add(key)
                new.append((key, arch))
        if self.halving is not None:
            if not self.halving.run(new, generation, asynchronous):
                raise BudgetSpent
            return [self.candidate(arch, key) for arch, key in zip(archs, keys)]
        base = self.store.evaluated_through(generation - 1)
        budget = self.settings.budget
        allowed = new if budget is None else new[: max(budget - base, 0)]
        self.evaluate_at(1.0, allowed, generation)
        if len(allowed) < len(new):
            raise BudgetSpent
        return [self.candidate(arch, key) for arch, key in zip(archs, keys)]

    def evaluate_at(self, level: float, entries: list, generation: int) -> None:
        """Evaluates and stores those of `entries` ((key, arch)) not stored at `level` (a share of the full
        schedule) yet; at the full schedule they are numbered as queries, in order, after the earlier generations'."""
        if level == 1.0:
            base = self.store.evaluated_through(generation - 1)
            todo = [(base + 1 + i, key, arch) for i, (key, arch) in enumerate(entries) if key not in self.store]
        else:
            todo = [(None, key, arch) for key, arch in entries if self.store.rung(key, level) is None]
        evaluator = self.evaluator if level == 1.0 else self.evaluator.at_fidelity(level)
        for index, evaluation in self.executor.run(evaluator, self.space.reference, [arch for *_, arch in todo]):
            query, key, arch = todo[index]
            evaluation = self.costs.with_latency(arch, evaluation)
            if query is None:
                self.store.add_rung(key, level, self.space.encode(arch), generation, evaluation)
            else:
                self.store.add(query, key, self.space.encode(arch), generation, evaluation)
            self.evaluated(evaluation)

    def evaluate_within_budget(self, level: float, key: str, arch, generation: int) -> None:
        """Evaluates `arch` at `level` unless it is stored there; BudgetSpent when that would overspend."""
        if self.store.rung(key, level) is None:
            if not self.affordable(self.spent_through(generation - 1), level):
                raise BudgetSpent
            self.evaluate_at(level, [(key, arch)], generation)

    def affordable(self, spent: float, level: float) -> bool:
        """Whether an evaluation at `level` fits the budget after `spent`."""
        return self.settings.budget is None or spent + self.price(level) <= self.settings.budget + fidelity.TOLERANCE

    def evaluated(self, evaluation) -> None:
        """Shows one finished evaluation on the progress bar."""
        self._progress.update(1)
        self._best = max(self._best, evaluation.fitness)
        self._progress.set_postfix(best=f"{self._best:.2f}", last=f"{evaluation.fitness:.2f}")

    def price(self, level: float) -> float:
        """What an evaluation at `level` (a share of the full schedule) costs of the budget."""
        return level if self.settings.budget_unit == "full" else 1

    def spent_through(self, generation: int) -> float:
        """The budget spent by the evaluations up to and including `generation`."""
        return self.store.spent_through(generation, self.settings.budget_unit or "query")

    def fitness_in(self, key: str, generation: int) -> float | None:
        """The fitness of `key` if first evaluated in `generation`, at the fidelity every new architecture of a
        generation is evaluated at (the lowest rung with --multi_fidelity); None when it was not."""
        return self.store.fitness_in(key, generation, self.halving.levels[0] if self.halving else 1.0)

    def full_fidelity(self, candidates: list) -> list:
        """The candidates evaluated at the full schedule: the only ones a population or hall of fame holds."""
        return [c for c in candidates if c.fidelity == 1.0]

    def candidate(self, arch, key: str):
        """The candidate of an evaluated architecture, with the fitness of its highest fidelity."""
        evaluation, level = self.store.get(key), 1.0
        if evaluation is None:  # --multi_fidelity: not promoted to the full schedule
            level = max(f for f in self.halving.levels if self.store.rung(key, f) is not None)
            evaluation = self.store.rung(key, level)
        candidate = self.make(arch, key)
        candidate.fidelity = level
        fitness = evaluation.fitness if evaluation.ok else WORST_FITNESS
        candidate.fitness.values = self.costs.fitness(evaluation, fitness)
        return candidate

    def record(self, generation: int, population: list, new: int, through: int | None = None) -> None:
        """Logs a generation; `through` is the store generation its queries are counted up to."""
        self.population = population
        self.hall_of_fame.update(population)
        queries = self.store.evaluated_through(generation if through is None else through)
        figures = self.stats.compile(population) if population else {}  # dehb: none trained in full yet
        self.logbook.record(gen=generation, queries=queries, new=new, **figures,
                            **self.strategy.generation_record(generation))
        if not self._table_started:  # the header once per process, above the first row it prints
            log.info(table_row(self.logbook.header, {name: name for name in self.logbook.header}))
            self._table_started = True
        log.info(table_row(self.logbook.header, self.logbook[-1]))
        self.tracker.log(self, generation)


def table_row(columns: list[str], row: dict) -> str:
    """One row of the per-generation table: right-aligned columns, fitness with two decimals."""
    cells = [f"{row.get(name, ''):.2f}" if isinstance(row.get(name), float) else str(row.get(name, ""))
             for name in columns]
    return "  ".join(cell.rjust(max(len(name), 6)) for name, cell in zip(columns, cells))

