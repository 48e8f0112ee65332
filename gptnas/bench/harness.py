"""Runs every (benchmark, strategy, seed) search of a benchmark study, resumably.

Each run is an ordinary `Search` with a budget of unique queries, in its own run
directory (`runs/<benchmark>/<strategy>/seed_<n>`): on a benchmark table, or in a
space without one (a space file, say) whose networks the `train` evaluator trains.
Its trajectory (fitness and reported test accuracy of every query, in query
order) is written atomically when it finishes, so a killed study re-run with
the same command skips finished runs and resumes the one it was in.
Runs are independent and seeded by (seed) alone, so they may run in any
order, in any process, and give the same numbers.

A strategy named `<strategy>+<proxy>` (e.g. `ga+naswot`, `gpt-ga+naswot`) is that
strategy with zero-cost screening by the proxy (gptnas/search/screen.py): a
row of its own in the report, beside the plain strategies of the same study.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptnas.config import load_yaml
from gptnas.errors import GptnasError, quote
from gptnas.evaluators.proxy import PROXIES
from gptnas.files import refuse_links, write_atomic, write_json
from gptnas.gpt import transfer
from gptnas.gpt.folder import weights_sha256
from gptnas.gpt.provenance import leaked, tables_seen_by
from gptnas.search.config import EvolveConfig
from gptnas.search.executors import SerialExecutor, tie_to_parent, workers_ignore_ctrl_c
from gptnas.search.report import evaluation_rows
from gptnas.search.run import build_search
from gptnas.search.strategies.all import get_strategy
from gptnas.spaces import get_space
from gptnas.tables import TABLES, TABLES_BY_SPACE, benchmark_dir, table_for, table_path

DEFAULT_BENCHMARKS = ("nas-bench-macro", "channel-bench-mobilenet", "nas-bench-201:cifar10", "nas-bench-201:cifar100")
TRAJECTORY = "trajectory.json"
HARDWARE_FIELDS = ("objectives", "latency_table", "max_latency_ms")  # the study's, from the harness's flags
# ... and multi-fidelity, for the strategies that take it (dehb takes eta and min_fidelity, not multi_fidelity)
FIDELITY_FIELDS = ("multi_fidelity", "eta", "min_fidelity", "budget_unit")
# What the harness decides itself; a study config may not set these.
HARNESS_FIELDS = ("space", "dataset", "strategy", "seed", "budget", "evaluator", "output_dir", "executor", "workers",
                  "screen", *HARDWARE_FIELDS, *FIDELITY_FIELDS)
SCREENED = "+"  # ga+naswot: the strategy ga, screened by naswot
SHIPPED, TRANSFER = "shipped", "transfer"  # --gpt: the model shipped in the package / the leave-space-out GPTs
DEFAULT_GPT = SHIPPED  # benchmarks/RESULTS.md, "Leave-space-out transfer": the ablation that chose it


@dataclass(frozen=True)
class Benchmark:
    """What a study searches: a benchmark table as `space[:dataset]` (e.g. `nas-bench-201:cifar100`), answered by
    look-up; or, `trained`, a space (a built-in name or a space file) whose networks are trained on `dataset` by
    the `train` evaluator, as `python evolve.py --space SPACE --dataset DATASET` trains them."""

    space: str  # a space's name, or the path of a space file
    dataset: str  # the table's dataset, or what the networks are trained on (a name or an image folder)
    trained: bool = False

    @property
    def space_name(self) -> str:
        return get_space(self.space).name if self.trained else self.space

    @property
    def name(self) -> str:
        if self.trained:
            return f"{self.space_name}:{Path(self.dataset).name or self.dataset}"
        single = len(TABLES_BY_SPACE[self.space]) == 1
        return self.space if single else f"{self.space}:{self.dataset}"

    @classmethod
    def parse(cls, text: str) -> Benchmark:
        space, _, dataset = text.strip().partition(":")
        datasets = TABLES_BY_SPACE.get(space)
        if datasets is None:
            raise GptnasError(f"{quote(text)} is no benchmark table (valid: {', '.join(TABLES_BY_SPACE)}); to train "
                              "the networks of a space instead, name what they train on: --dataset NAME or folder")
        dataset = dataset or "cifar10"
        if dataset not in datasets:
            raise GptnasError(f"benchmark {quote(space)} has no dataset {quote(dataset)}; valid: {', '.join(datasets)}")
        return cls(space, dataset)

    @classmethod
    def trained_on(cls, space: str, dataset: str) -> Benchmark:
        """`space` (a name or a space file, checked now) searched by training its networks on `dataset`."""
        space = space.strip()
        get_space(space)  # an unknown name or a bad space file fails here, in one line
        return cls(space, dataset, trained=True)


def available_benchmarks() -> list[Benchmark]:
    """Every benchmark whose table is in the benchmark directory (no download)."""
    found = []
    for space, datasets in TABLES_BY_SPACE.items():
        for dataset, table in datasets.items():
            if (benchmark_dir() / TABLES[table].path).exists():
                found.append(Benchmark(space, dataset))
    return found


def parse_benchmarks(text: str, dataset: str | None = None) -> list[Benchmark]:
    """The tables named in `text`, or with a `dataset` the spaces named in it, trained on that dataset."""
    if dataset is not None:
        if text == "available":
            raise GptnasError("--spaces available names benchmark tables; with --dataset, name the spaces to train")
        return [Benchmark.trained_on(part, dataset) for part in text.split(",") if part.strip()]
    if text == "available":
        return available_benchmarks()
    return [Benchmark.parse(part) for part in text.split(",") if part.strip()]


def ensure_tables(benchmarks: list[Benchmark]) -> None:
    """Every table is on disk and verified (downloaded if needed) before any run starts."""
    for benchmark in benchmarks:
        if not benchmark.trained:
            table_path(table_for(benchmark.space, benchmark.dataset))


def split_variant(name: str) -> tuple[str, str | None]:
    """'ga+naswot' -> ('ga', 'naswot'); 'ga' -> ('ga', None). GptnasError for an unknown strategy or proxy."""
    strategy, _, proxy = name.partition(SCREENED)
    get_strategy(strategy)  # an unknown name is refused, listing the valid ones
    if proxy and proxy not in PROXIES:
        raise GptnasError(f"unknown screening proxy {quote(proxy)} in {quote(name)}; valid: {', '.join(PROXIES)} "
                          f"(as in {strategy}{SCREENED}naswot)")
    return strategy, proxy or None


def uses_gpt(name: str) -> bool:
    """Whether the study's strategy `name` (ga, gpt-ga+naswot ...) searches with a GPT."""
    return get_strategy(split_variant(name)[0]).uses_gpt


def gpt_for(benchmark: Benchmark, gpt: str | None) -> str | None:
    """The GPT gpt-ga searches `benchmark` with (None: the shipped model). `gpt` is "transfer" (the
    leave-space-out GPT of the benchmark's space, built once and cached: gptnas/gpt/transfer.py), "shipped"
    (None), or a folder / Hub id; any GPT that saw a table of the benchmark's space is refused."""
    if gpt == TRANSFER:
        folder = transfer.model_for(benchmark.space_name)
        return None if folder is None else str(folder)
    chosen = None if gpt in (None, SHIPPED) else gpt
    leaks = leaked(tables_seen_by(chosen), benchmark.space_name)
    if leaks:
        raise GptnasError(f"the GPT {chosen or SHIPPED} was trained on the table {leaks[0]}: a search of "
                          f"{benchmark.space_name} must not use a GPT that saw a table of its own space; use "
                          f"--gpt {TRANSFER} (a leave-space-out GPT) or another model")
    return chosen


def parse_strategies(text: str) -> list[str]:
    strategies = [s.strip() for s in text.split(",") if s.strip()]
    for strategy in strategies:
        split_variant(strategy)
    return strategies


def load_study_config(path: str | None) -> dict:
    """{strategy: EvolveConfig overrides}: `common` applies to all, `strategies.<name>` to one (a section
    `ga+naswot` applies on top of `ga`'s to that screened variant)."""
    if path is None:
        return {}
    data = load_yaml(path)
    unknown = set(data) - {"common", "strategies"}
    if unknown:
        raise GptnasError(f"{path}: unknown section {quote(sorted(unknown)[0])}; valid: common, strategies")
    sections = {"common": data.get("common") or {}, **(data.get("strategies") or {})}
    for name, overrides in sections.items():
        if name != "common":
            try:
                split_variant(name)
            except GptnasError as error:
                raise GptnasError(f"{path}: {error}") from None
        fixed = [k for k in overrides if k in HARNESS_FIELDS]
        if fixed:
            raise GptnasError(f"{path}: {quote(fixed[0])} is set by the harness (use its command-line flags)")
        if name != "common":  # a strategy's own section may hold only what that strategy uses
            strategy, proxy = split_variant(name)
            flags = {"strategy": strategy, **({"screen": proxy} if proxy else {}), **overrides}
            config = EvolveConfig.from_flags(flags, path)
            try:
                config.refuse_unused(overrides)
            except GptnasError as error:
                raise GptnasError(f"{path}, strategies.{name}: {error}") from None
        else:  # unknown keys and bad values fail here, listing valid ones
            EvolveConfig.from_flags(dict(overrides), path)
    return sections


@dataclass(frozen=True)
class RunTask:
    benchmark: Benchmark
    strategy: str  # as the study names it: ga, or ga+naswot (screened)
    seed: int
    settings: dict  # evolve.py's settings, by flag name
    run_dir: str


def plan(benchmarks: list[Benchmark], strategies: list[str], seeds: int, budget: int, study: dict,
         output_dir: Path, gpt: str | None = None, hardware: dict | None = None, first_seed: int = 0,
         fidelity: dict | None = None) -> list[RunTask]:
    """Every run of the study, on seeds first_seed .. first_seed + seeds - 1; `hardware` holds the
    HARDWARE_FIELDS the study sets for all runs, `fidelity` the FIDELITY_FIELDS, set on every run that takes them."""
    tasks, gpts = [], {}
    for benchmark in benchmarks:
        for strategy in strategies:
            base, proxy = split_variant(strategy)
            for seed in range(first_seed, first_seed + seeds):
                variant = study.get(strategy, {}) if proxy else {}  # ga+naswot's own section, on top of ga's
                settings = {**study.get("common", {}), **study.get(base, {}), **variant}
                settings.update(space=benchmark.space, dataset=benchmark.dataset, strategy=base, seed=seed,
                                budget=budget, evaluator="train" if benchmark.trained else "benchmark",
                                generations=budget, **(hardware or {}),
                                **fidelity_settings(base, fidelity or {}))
                if proxy:
                    settings["screen"] = proxy
                if get_strategy(base).uses_gpt:
                    option = gpt if gpt is not None else settings.get("gpt", DEFAULT_GPT)
                    if (benchmark.space_name, option) not in gpts:
                        gpts[benchmark.space_name, option] = gpt_for(benchmark, option)
                    settings["gpt"] = gpts[benchmark.space_name, option]
                EvolveConfig.from_flags(dict(settings), "study").refuse_unused(hardware or {})
                run_dir = output_dir / "runs" / benchmark.name.replace(":", "_") / strategy / f"seed_{seed}"
                tasks.append(RunTask(benchmark, strategy, seed, settings, str(run_dir)))
    return tasks


def fidelity_settings(strategy: str, fidelity: dict) -> dict:
    """The study's FIDELITY_FIELDS that `strategy` takes: all where it runs multi-fidelity (through
    --multi_fidelity, or its own way like dehb), none where it cannot."""
    flags = {"strategy": strategy, "budget": 1}
    if get_strategy(strategy).uses("multi_fidelity"):
        flags["multi_fidelity"] = "sh"
    config = EvolveConfig.from_flags(flags, "study")
    return {k: v for k, v in fidelity.items() if not config.needs(k)}


# ---------------------------------------------------------------- one run (in any process)


def run_one(task: RunTask) -> dict:
    """The trajectory of one search: fitness and reported accuracy of every query, in order."""
    run_dir = Path(task.run_dir)
    done = run_dir / TRAJECTORY
    if done.exists():
        return json.loads(done.read_text())
    config = EvolveConfig.from_flags({**task.settings, "output_dir": str(run_dir)}, "study")
    search = build_search(config, run_dir, SerialExecutor(), show_progress=False)
    search.run()
    history, screened = search.store.history(), search.store.screened()
    spent = spending(search) if any(k in task.settings for k in FIDELITY_FIELDS) else {}
    search.store.close()
    summary = search.strategy.summary()
    trajectory = {
        "benchmark": task.benchmark.name, "strategy": task.strategy, "seed": task.seed,
        "keys": [key for _, key, _, _, _ in history],
        "fitness": [e.fitness for *_, e in history],
        "test": [e.test_accuracy for *_, e in history],
        **({"latency": [e.latency_ms for *_, e in history]} if search.costs.measures_latency else {}),
        **spent,
        "gpt": summary.get("gpt"),
        "gpt_seconds": summary.get("gpt_seconds", 0.0),  # this process's time in the GPT (0 when resumed)
        "proxy_seconds": sum(seconds for *_, seconds in screened),  # the screening proxy's, over the whole run
        "screened": len(screened),  # architectures the proxy scored
        "gpt_share": summary.get("gpt_share", {}),  # --trust learned
    }
    write_atomic(done, json.dumps(trajectory))
    return trajectory


def spending(search) -> dict:
    """{"cost": the budget spent (in its unit) when each query of the history had finished, "rungs": evaluations
    below the full schedule, "spent": the whole run's}: what a study counting full-training equivalents plots."""
    cost, spent, rungs = [], 0.0, 0
    for *_, level, _ in evaluation_rows(search.store):  # in the order the run made them
        spent += search.price(level)
        if level == 1.0:
            cost.append(round(spent, 9))
        rungs += level < 1.0
    return {"cost": cost, "rungs": rungs, "spent": round(spent, 9)}


def _init_worker(parent: int) -> None:
    tie_to_parent(parent)
    torch.set_num_threads(1)  # one core per run: the runs themselves are the parallelism


def run_all(tasks: list[RunTask], workers: int) -> list[dict]:
    """Trajectories of all tasks (in task order); `workers` > 1 runs them in spawned processes."""
    results: dict[int, dict] = {}
    progress = tqdm(total=len(tasks), desc="runs", unit="run")
    # The slowest runs (those with a GPT, then the screened) go first, so the pool finishes together.
    slowest_first = [(not get_strategy(task.settings["strategy"]).uses_gpt, "screen" not in task.settings)
                     for task in tasks]
    order = sorted(range(len(tasks)), key=slowest_first.__getitem__)
    try:
        if workers <= 1:
            for i in order:
                results[i] = run_one(tasks[i])
                progress.update(1)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),))
            try:
                with workers_ignore_ctrl_c():  # the pool starts its workers on submit
                    futures = {pool.submit(run_one, tasks[i]): i for i in order}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    progress.update(1)
            finally:  # on an error, runs not yet started are dropped rather than waited for
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        progress.close()
    return [results[i] for i in range(len(tasks))]


def gpt_weights(tasks: list[RunTask]) -> dict[str, str]:
    """The sha256 of the weights of every GPT the study's runs load, by name: a study resumed after a model
    changed (retrained in its folder, or shipped anew with a newer gptnas) is another study, refused, not mixed."""
    models = {(task.settings.get("gpt"), task.settings.get("gpt_adapter")) for task in tasks
              if get_strategy(task.settings["strategy"]).uses_gpt}
    return {(gpt or SHIPPED) + (f" + {adapter}" if adapter else ""): weights_sha256(gpt, adapter)
            for gpt, adapter in sorted(models, key=str)}


def study_identity(benchmarks, strategies, seeds, budget, study, gpt, hardware: dict | None = None,
                   first_seed: int = 0, fidelity: dict | None = None, weights: dict | None = None) -> dict:
    return {"benchmarks": [b.name for b in benchmarks], "strategies": strategies, "seeds": seeds, "budget": budget,
            "study": study, "gpt": gpt, **({"gpt_weights": weights} if weights else {}),
            **({"hardware": hardware} if hardware else {}),
            **({"first_seed": first_seed} if first_seed else {}), **({"fidelity": fidelity} if fidelity else {})}


def claim_output_dir(output_dir: Path, identity: dict) -> None:
    """Creates `output_dir` for this study, or checks that it holds the same study (then it resumes)."""
    marker = output_dir / "study.json"
    if output_dir.is_dir():
        refuse_links(output_dir)  # a handed study folder: nothing in it is followed
    if marker.exists():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise GptnasError(f"{marker} is unreadable; use a new --output_dir") from None
        if stored != json.loads(json.dumps(identity)):
            differ = sorted(k for k in identity if stored.get(k) != json.loads(json.dumps(identity[k])))
            raise GptnasError(f"{output_dir} holds another study ({', '.join(differ) or 'format'} differ); "
                              "rerun it with its own settings or use a new --output_dir")
        return
    if output_dir.exists() and any(output_dir.iterdir()):
        raise GptnasError(f"{output_dir} is not empty and holds no study; use a new --output_dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, identity)
