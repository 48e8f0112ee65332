"""One way to assemble a search: config -> space -> evaluator -> `Search`, used by evolve.py, the benchmark
harness and the tests alike. `RunSettings` are how a run executes (where, with how many workers, what it
logs); they are the only settings a resumed run may change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from gptnas.config import save_config
from gptnas.errors import GptnasError
from gptnas.files import write_atomic
from gptnas.evaluators import get_evaluator
from gptnas.latency_tables import load_latency_table
from gptnas.search import fidelity
from gptnas.search.core import Search
from gptnas.search.executors import make_executor
from gptnas.spaces import SPACE_FILE, DeclaredSpace, run_space

CONFIG_FILE = "config.yaml"


def _on_ray(config) -> bool:
    return config.run.executor == "ray"


@dataclass
class RunSettings:
    """How the run executes and what it records; the only settings --resume may change."""

    output_dir: str | None = field(default=None, metadata={"help": "run directory (default: a new one under runs/)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda or cuda:N (default: cuda when available)"})
    executor: Literal["serial", "process", "ray"] = field(default="serial", metadata={
        "help": "where evaluations run: serial (this process; with --workers N > 1, N processes), process or ray"})
    workers: int | None = field(default=None, metadata={"help": "evaluations in parallel, one process each "
                                "(default: 1; the cpu profile: one per core, up to the population)"})
    ray_address: str | None = field(default=None, metadata={"help": "the Ray cluster to join (default: start a "
                                    "local one)", "needs": (_on_ray, "--executor ray")})
    report_to: Literal["none", "tensorboard", "wandb", "all"] = field(default="none", metadata={
        "help": "live view per generation (accelerate's tracker names; logs go to RUN_DIR/tracking)"})

    def validate(self) -> None:
        if self.workers < 1:
            raise GptnasError(f"workers must be >= 1, got {self.workers}")


def build_search(config, run_dir: Path, executor=None, *, show_progress: bool = True) -> Search:
    """The search `config` describes, in `run_dir` (resumed when it holds the run): its space, its evaluator
    (checked: data and tables are there before anything is written), config.yaml written before the result
    store (so a run killed at any moment can be resumed), and `executor` (by default the one the config names;
    the caller closes it with `search.executor.close()`)."""
    run_dir = Path(run_dir)
    space = run_space(config.search.space, run_dir)
    evaluator = get_evaluator(config.data.evaluator, space, config.data.dataset, **config.evaluator_options())
    fidelities = fidelity.used(config.search)
    if fidelities:
        fidelity.rungs(config.search, evaluator)  # an evaluator without them: one line, before any data is fetched
    evaluator.prepare()  # missing data or tables: one line, before anything is written
    if fidelities:
        fidelity.prepare(config.search, evaluator)
    if config.search.latency_table is not None:  # read and checked once per process (Costs looks it up)
        load_latency_table(config.search.latency_table, space.name)
    config.limit_flops(evaluator)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILE)  # a resume may change how it runs (--workers ...)
    if isinstance(space, DeclaredSpace) and not (run_dir / SPACE_FILE).is_file():
        write_atomic(run_dir / SPACE_FILE, yaml.safe_dump(space.definition, sort_keys=False))
    if executor is None:
        executor = make_executor(config.run.executor, config.run.workers, config.run.ray_address)
    return Search(config, space, evaluator, run_dir, executor, show_progress=show_progress)
