"""The search loop: DEAP evolution with GPT reconstruction, and the baselines on the same machinery.

`Search.run()` reads like the algorithm: initialise, reconstruct, evaluate,
then per generation select, vary, reconstruct, evaluate, record, checkpoint.
Evaluations go through the result store (one per unique canonical key, ever),
and a checkpoint after each generation holds the population, hall of fame,
logbook and random state, so a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
import time
from collections import deque
from pathlib import Path

from deap import base, creator, tools
from tqdm.auto import tqdm

from gptnas.errors import GptnasError
from gptnas.evaluators.base import WORST_FITNESS, Evaluation
from gptnas.search.config import EvolveConfig
from gptnas.search.store import ResultStore

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pkl"


class Candidate:
    """One individual: an architecture of the search space (DEAP adds `.fitness`)."""

    def __init__(self, arch, key: str):
        self.arch = arch
        self.key = key

    def __eq__(self, other) -> bool:  # the hall of fame keeps one copy per network
        return isinstance(other, Candidate) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


# DEAP types live in `creator`; made once, at import, so checkpoints unpickle in any process.
if not hasattr(creator, "GptnasFitness"):
    creator.create("GptnasFitness", base.Fitness, weights=(1.0,))
    creator.create("GptnasParetoFitness", base.Fitness, weights=(1.0, -1.0))  # accuracy up, params down
    creator.create("GptnasCandidate", Candidate, fitness=creator.GptnasFitness)
    creator.create("GptnasParetoCandidate", Candidate, fitness=creator.GptnasParetoFitness)


def derived_seed(*parts) -> int:
    """A seed for one step of the run, independent of what ran before it (so resumes draw the same)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


class BudgetSpent(Exception):
    """The run has evaluated as many unique architectures as it may."""


class Search:
    def __init__(self, config: EvolveConfig, space, evaluator, run_dir: Path, executor, gpt_loader=None,
                 show_progress: bool = True):
        self.config = config
        self.show_progress = show_progress
        self.space = space
        self.evaluator = evaluator
        self.run_dir = run_dir
        self.executor = executor
        self._gpt_loader = gpt_loader
        self._gpt = None
        self.store = ResultStore(run_dir / "results.sqlite", self.identity())
        self.rng = random.Random(config.seed)
        self.pareto = config.multi_objective
        self.make = creator.GptnasParetoCandidate if self.pareto else creator.GptnasCandidate
        self.toolbox = base.Toolbox()
        if self.pareto:
            self.toolbox.register("select", tools.selNSGA2)
        else:
            self.toolbox.register("select", tools.selTournament, tournsize=config.tournament_size)
        self.hall_of_fame = tools.ParetoFront() if self.pareto else tools.HallOfFame(10)
        self.stats = tools.Statistics(key=lambda c: c.fitness.values[0])
        for name, fn in (("max", max), ("mean", lambda v: sum(v) / len(v)), ("min", min)):
            self.stats.register(name, fn)
        self.logbook = tools.Logbook()
        self.logbook.header = ["gen", "queries", "new", "max", "mean", "min", "rewritten"]
        self.progress = None
        self.population: list = []
        self.reconstruction_log: list[dict] = []
        self.gpt_seconds = 0.0  # wall time spent in the GPT (reconstruction, adaptation), not evaluating
        self._adapted_at: int | None = None

    def identity(self) -> dict:
        """What must match for a run directory to be resumed (the rest may change)."""
        c = self.config
        return {"space": c.space, "strategy": c.strategy, "evaluator": c.evaluator, "dataset": c.dataset,
                "seed": c.seed, "population": c.population, "multi_objective": c.multi_objective,
                "max_params": c.max_params, "max_flops": c.max_flops}

    # ------------------------------------------------------------ the GPT

    @property
    def uses_gpt(self) -> bool:
        return self.config.strategy == "gpt-ga"

    @property
    def gpt(self):
        if self._gpt is None:
            self._gpt = self._gpt_loader()
        return self._gpt

    def elimination_rate(self, generation: int) -> float:
        """Decays linearly over the run: over the budget when there is one, else over the generations."""
        c = self.config
        if c.budget:  # counted up to the previous generation, so a resumed generation sees what it first saw
            fraction = min(self.store.evaluated_through(generation - 1) / c.budget, 1.0)
        elif c.generations > 0:
            fraction = min(generation / c.generations, 1.0)
        else:
            return c.elimination_rate
        return c.elimination_rate + (c.elimination_rate_final - c.elimination_rate) * fraction

    def maybe_adapt(self, generation: int) -> None:
        """Every `adapt_every` generations, the GPT is LoRA-adapted on the elite evaluated so far."""
        from gptnas.search.adapt import adapt

        every = self.config.adapt_every
        if not self.uses_gpt or not every or generation < every:
            return
        due = generation - generation % every
        if self._adapted_at == due:
            return
        started = time.perf_counter()
        adapt(self.gpt, self.store, self.run_dir / "adapters" / f"generation_{due}", top=self.config.adapt_top,
              steps=self.config.adapt_steps, lr=self.config.adapt_lr, seed=derived_seed(self.config.seed, "adapt", due))
        self._adapted_at = due
        self.gpt_seconds += time.perf_counter() - started

    def reconstruct(self, archs: list, generation: int) -> list:
        from gptnas.search.reconstruct import reconstruct

        rate = self.elimination_rate(generation)
        if not self.uses_gpt or rate <= 0:
            return archs
        self.maybe_adapt(generation)
        started = time.perf_counter()
        out, stats = reconstruct(
            self.gpt, self.space, archs, rate, self.rng, seed=derived_seed(self.config.seed, "reconstruct", generation),
            temperature=self.config.temperature, top_k=self.config.top_k, candidates=self.config.reconstruct_candidates,
            ranking=self.config.candidate_ranking,
        )
        seconds = time.perf_counter() - started
        self.gpt_seconds += seconds
        self.reconstruction_log.append({"gen": generation, "rate": rate, "seconds": round(seconds, 3), **vars(stats)})
        return out

    # ------------------------------------------------------------ constraints

    def feasible(self, arch) -> bool:
        c = self.config
        if c.max_params is None and c.max_flops is None:
            return True
        cost = self.space.cost(arch)
        return (c.max_params is None or cost["params"] <= c.max_params) and (
            c.max_flops is None or cost["flops"] <= c.max_flops
        )

    def make_feasible(self, arch):
        """`arch`, or a mutant (then a fresh sample) within the limits: infeasible networks are never evaluated."""
        for attempt in range(200):
            if self.feasible(arch):
                return arch
            arch = self.space.mutate(arch, self.rng) if attempt < 20 else self.space.sample(self.rng)
        raise GptnasError("found no architecture within --max-params / --max-flops in 200 tries; loosen the limits")

    # ------------------------------------------------------------ evaluation

    def evaluate(self, archs: list, generation: int) -> list:
        """Candidates with fitness for `archs`; new unique keys are evaluated and stored first.

        Raises BudgetSpent (after storing what fitted) when the budget runs out."""
        keys = [self.space.key(a) for a in archs]
        new, seen = [], set()
        for arch, key in zip(archs, keys):
            if key not in self.store and key not in seen:
                seen.add(key)
                new.append((key, arch))
        budget = self.config.budget
        allowed = new if budget is None else new[: max(budget - len(self.store), 0)]
        first_query = len(self.store) + 1
        jobs = [arch for _, arch in allowed]
        for index, evaluation in self.executor.run(self.evaluator, self.space.name, jobs):
            key, arch = allowed[index]
            self.store.add(first_query + index, key, self.space.encode(arch), generation, evaluation)
            self._report(evaluation)
        if len(allowed) < len(new):
            raise BudgetSpent
        return [self._candidate(arch, key) for arch, key in zip(archs, keys)]

    def _candidate(self, arch, key: str):
        evaluation: Evaluation = self.store.get(key)
        candidate = self.make(arch, key)
        fitness = evaluation.fitness if evaluation.ok else WORST_FITNESS
        candidate.fitness.values = (fitness, evaluation.params) if self.pareto else (fitness,)
        return candidate

    def _report(self, evaluation: Evaluation) -> None:
        if self.progress is not None:
            self.progress.update(1)
            best = max((e.fitness for e in (self.store.get(k) for k in self.store._cache)), default=0)
            self.progress.set_postfix(best=f"{best:.2f}", last=f"{evaluation.fitness:.2f}")

    # ------------------------------------------------------------ variation

    def vary(self, parents: list) -> list:
        """Crossover and mutation of copies of `parents` (DEAP's varAnd, on architectures)."""
        archs = [p.arch for p in parents]
        for i in range(1, len(archs), 2):
            if self.rng.random() < self.config.crossover_rate:
                archs[i - 1], archs[i] = self.space.crossover(archs[i - 1], archs[i], self.rng)
        for i in range(len(archs)):
            if self.rng.random() < self.config.mutation_rate:
                archs[i] = self.space.mutate(archs[i], self.rng)
        return archs

    def novel(self, archs: list, generation: int) -> list:
        """Offspring evaluated in an earlier generation (or twice in this batch) are mutated again,
        up to `novelty_tries` times, so each generation spends its queries on new networks."""
        tries = self.config.novelty_tries
        seen: set[str] = set()
        out = []
        for arch in archs:
            key = self.space.key(arch)
            for _ in range(tries):
                if not self.store.evaluated_before(key, generation) and key not in seen:
                    break
                arch = self.make_feasible(self.space.mutate(arch, self.rng))
                key = self.space.key(arch)
            seen.add(key)
            out.append(arch)
        return out

    # ------------------------------------------------------------ strategies

    def initial_archs(self) -> list:
        if self.config.init == "gpt" and self.uses_gpt:
            started = time.perf_counter()
            samples = self.gpt.complete(self.space, [""], n=self.config.population, temperature=self.config.temperature,
                                        top_k=self.config.top_k, seed=derived_seed(self.config.seed, "init"))[0]
            self.gpt_seconds += time.perf_counter() - started
        else:
            samples = [self.space.sample(self.rng) for _ in range(self.config.population)]
        return samples

    def run(self) -> list:
        """Runs (or resumes) the search; returns the final population."""
        total = self.config.budget or self.config.population * (self.config.generations + 1)
        self.progress = tqdm(total=total, initial=len(self.store), desc="evaluations", unit="arch",
                             disable=not self.show_progress)
        try:
            if self.config.strategy in ("gpt-ga", "ga"):
                return self._genetic()
            if self.config.strategy == "regularized-evolution":
                return self._regularized_evolution()
            return self._random()
        except BudgetSpent:
            log.info("budget of %d unique evaluations spent", self.config.budget)
            # The last, partial generation counts too: everything evaluated may enter the hall of fame.
            evaluated = [self._candidate(self.space.decode(encoding), key) for _, key, encoding, _, _ in self.store.history()]
            self.hall_of_fame.update(evaluated)
            if not self.population:  # spent within the initial population
                self.population = evaluated
            return self.population
        finally:
            self.progress.close()

    def _seed_generation(self, generation: int) -> None:
        """Every generation draws from generators seeded by (seed, generation) alone, so a resumed
        run draws exactly what an uninterrupted one does. DEAP's selection uses the global
        `random`, so that is seeded too."""
        self.rng = random.Random(derived_seed(self.config.seed, "generation", generation))
        random.seed(derived_seed(self.config.seed, "deap", generation))

    def _record(self, generation: int, population: list, new: int, through: int | None = None) -> None:
        """Logs a generation; `through` is the store generation its queries are counted up to."""
        self.population = population
        self.hall_of_fame.update(population)
        rewritten = self.reconstruction_log[-1]["rewritten"] if self.reconstruction_log else 0
        queries = self.store.evaluated_through(generation if through is None else through)
        self.logbook.record(gen=generation, queries=queries, new=new, rewritten=rewritten,
                            **self.stats.compile(population))
        log.info(self.logbook.stream)

    def _genetic(self) -> list:
        c = self.config
        start = self._load_checkpoint()
        if start < 0:
            self._seed_generation(0)
            archs = self.initial_archs()
            if c.initial_reconstruction:
                archs = self.reconstruct(archs, 0)
            archs = [self.make_feasible(a) for a in archs]
            population = self.evaluate(archs, 0)
            self._record(0, population, self.store.evaluated_in(0))
            self._save_checkpoint(0)
        for generation in range(max(start, 0) + 1, c.generations + 1):  # generation 0 is the initial one
            self._seed_generation(generation)
            population = self.population
            elites = tools.selBest(population, c.elites) if c.elites and not self.pareto else []
            parents = self.toolbox.select(population, len(population) - len(elites))
            archs = self.reconstruct(self.vary(parents), generation)
            archs = self.novel([self.make_feasible(a) for a in archs], generation)
            offspring = self.evaluate(archs, generation)
            if self.pareto:
                population = tools.selNSGA2(population + offspring, c.population)
            else:
                population = elites + offspring
            self._record(generation, population, self.store.evaluated_in(generation))
            self._save_checkpoint(generation)
        return self.population

    def _regularized_evolution(self) -> list:
        """Real et al. 2019: sample S, mutate the best, add the child, drop the oldest."""
        c = self.config
        self._seed_generation(0)
        archs = [self.make_feasible(self.space.sample(self.rng)) for _ in range(c.population)]
        population = deque(self.evaluate(archs, 0))
        self._record(0, list(population), self.store.evaluated_in(0))
        cycles = c.population * c.generations
        for cycle in range(1, cycles + 1):
            parent = max(self.rng.sample(list(population), min(c.sample_size, len(population))), key=lambda p: p.fitness.values)
            child = self.make_feasible(self.space.mutate(parent.arch, self.rng))
            population.append(self.evaluate([child], cycle)[0])
            population.popleft()
            if cycle % c.population == 0:
                self._record(cycle // c.population, list(population), 0, through=cycle)
        return list(population)

    def _random(self) -> list:
        c = self.config
        everyone = []
        for generation in range(c.generations + 1):
            self._seed_generation(generation)
            archs = [self.make_feasible(self.space.sample(self.rng)) for _ in range(c.population)]
            everyone += self.evaluate(archs, generation)
            self._record(generation, tools.selBest(everyone, c.population), self.store.evaluated_in(generation))
        return self.population

    # ------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, generation: int) -> None:
        state = {"generation": generation, "population": self.population, "hall_of_fame": self.hall_of_fame,
                 "logbook": self.logbook, "reconstruction_log": self.reconstruction_log}
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.run_dir / CHECKPOINT)

    def _load_checkpoint(self) -> int:
        """The last finished generation, or -1 when there is no checkpoint yet."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return -1
        try:
            with open(path, "rb") as f:
                state = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as error:
            raise GptnasError(f"{path} is corrupt ({error}); start a new run with another --output_dir") from None
        self.population = state["population"]
        self.hall_of_fame = state["hall_of_fame"]
        self.logbook = state["logbook"]
        self.reconstruction_log = state["reconstruction_log"]
        log.info("resuming after generation %d", state["generation"])
        return state["generation"]
