"""Settings of a search run (evolve.py and the benchmark harness)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields

from gptnas.errors import GptnasError
from gptnas.search.strategies import get_strategy

EXECUTORS = ("serial", "process", "ray")
INITS = ("random", "gpt")
CANDIDATE_RANKINGS = ("likelihood", "gain", "ratio")
ADAPT_DATA = ("elite", "ranked")
TRUSTS = ("full", "learned")
# Defaults by where candidates are trained; a run's config.yaml records the resolved values. "gpt-nas" is the
# paper's protocol (its schedule keeps at least min_steps optimizer steps on a small dataset); "cpu" is the default
# when the train evaluator runs on a CPU: a search of about 30 candidates, one worker process per core, each
# trained for 300 steps of 64 images, with a FLOPs cap from the images' side (CPU_FLOPS_PER_PIXEL). Measured:
# README, "On a CPU".
PROFILES = {
    "gpt-nas": {"population": 30, "generations": 20, "epochs": 6, "batch_size": 512, "lr": 0.01, "min_steps": 300},
    "cpu": {"population": 8, "generations": 3, "epochs": 6, "batch_size": 64, "lr": 0.05, "min_steps": 300},
}
CPU_FLOPS_PER_PIXEL = 80_000  # MACs; twice ResNet-20's per input pixel: 82 M at 32x32, 5.1 M at 8x8
# Cheaper candidate training for a less exact ranking, on top of the profile: (share of the profile's epochs and
# minimum steps, share of the training split, share of the image side; the train evaluator keeps 8 pixels at least).
FIDELITIES = {"high": (1.0, 1.0, 1.0), "medium": (0.5, 0.5, 1.0), "low": (0.25, 0.25, 0.5)}
COST_OBJECTIVES = ("params", "flops", "latency")
TRACKERS = ("none", "tensorboard", "wandb", "all")


@dataclass
class EvolveConfig:
    space: str = field(default="cifar", metadata={"help": "search space name"})
    strategy: str = field(default="gpt-ga", metadata={"help": "gpt-ga, ga (no GPT), regularized-evolution, random"})
    evaluator: str | None = field(default=None, metadata={"help": "benchmark, train or proxy (default: benchmark when the space has a table, else train)"})
    dataset: str = field(default="cifar10", metadata={"help": "cifar10, cifar100, digits (bundled, offline smoke runs), a Hub "
                         "dataset id (owner/name), a local folder (class subfolders of images, or save_to_disk); "
                         "the benchmark tables: cifar10, cifar100, imagenet16-120"})
    data_dir: str | None = field(default=None, metadata={"help": "local dataset folder instead of the Hub", "evaluator": "any"})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub commit or tag of --dataset (pins the data)",
                                         "evaluator": "any"})
    image_column: str | None = field(default=None, metadata={"help": "the images' column (default: image or img)",
                                     "evaluator": "any"})
    label_column: str | None = field(default=None, metadata={"help": "the labels' column (default: label, labels or "
                                     "fine_label)", "evaluator": "any"})
    image_size: int | None = field(default=None, metadata={"help": "resize images to this side (default: their own, "
                                   "when they all share one)", "evaluator": "any"})
    profile: str | None = field(default=None, metadata={"help": "defaults for population, generations and the training "
                                "schedule: gpt-nas (the paper's) or cpu (small, fast searches); default: cpu when the "
                                "train evaluator runs on a CPU, else gpt-nas"})
    fidelity: str = field(default="high", metadata={"help": "candidate training: high, medium (half the epochs and "
                          "training images) or low (a quarter, images at half their side): faster, less exact ranking"})
    # the genetic algorithm
    population: int | None = field(default=None, metadata={"help": "from --profile: 30 (gpt-nas) or 8 (cpu)"})
    generations: int | None = field(default=None, metadata={"help": "from --profile: 20 (gpt-nas) or 3 (cpu)"})
    crossover_rate: float = 0.9
    mutation_rate: float = 0.3
    tournament_size: int = 3
    elites: int = 1
    sample_size: int = field(default=5, metadata={"help": "tournament size of regularized evolution"})
    budget: int | None = field(default=None, metadata={"help": "stop after this many unique evaluations"})
    novelty_tries: int = field(default=10, metadata={"help": "GA offspring evaluated before are mutated again up to this often (0: never)"})
    # zero-cost screening (gptnas/search/screen.py), for every strategy
    screen: str | None = field(default=None, metadata={"help": "rank proposals with this zero-cost proxy (naswot or "
                               "synflow) and evaluate only the best; queries are counted as before"})
    screen_pool: int = field(default=4, metadata={"help": "--screen: the strategy proposes this many times as many "
                             "architectures as it evaluates"})
    # the GPT
    init: str = field(default="random", metadata={"help": "initial population: random or gpt (sampled from the GPT)"})
    gpt: str | None = field(default=None, metadata={"help": "ArchGPT folder or Hub id (default: the shipped model)"})
    gpt_adapter: str | None = None
    elimination_rate: float = field(default=0.4, metadata={"help": "probability that reconstruction selects a layer, at the start"})
    initial_reconstruction: bool = field(default=True, metadata={"help": "rewrite the initial population with the GPT (GPT-NAS); "
                                         "off: the GPT first acts on offspring"})
    elimination_rate_final: float = field(default=0.0, metadata={"help": "... at the last generation (linear decay)"})
    temperature: float = 1.0
    top_k: int | None = None
    trust: str = field(default="full", metadata={"help": "full: the GPT rewrites every offspring (GPT-NAS); learned: "
                       "a share of them, learned from how rewritten offspring score against plain ones in this run"})
    trust_floor: float = field(default=0.1, metadata={"help": "--trust learned: the share stays within [floor, 1 - floor]"})
    reconstruct_candidates: int = field(default=1, metadata={"help": "samples per rewritten segment; one is kept by --candidate_ranking"})
    candidate_ranking: str = field(default="likelihood", metadata={"help": "likelihood (the most likely rewrite), gain "
                                   "(the one online adaptation made most likely relative to the original GPT) or ratio "
                                   "(highest p(arch | best quality) / p(arch): the GPT as a predictor)"})
    quality: int | None = field(default=None, metadata={"help": "sample the initial population and rewrites under this "
                                "quality token (0..4, 4: the best fifth); needs a GPT trained with quality tokens"})
    adapt_every: int = field(default=0, metadata={"help": "LoRA-adapt the GPT on the evaluated elite every K generations (0: never)"})
    adapt_data: str = field(default="elite", metadata={"help": "what adaptation learns from: elite (the adapt_top best, "
                            "rank-weighted) or ranked (every evaluation, under the quality token of its rank in this run)"})
    adapt_top: int = field(default=20, metadata={"help": "how many of the best evaluated architectures adaptation learns from"})
    adapt_steps: int = 30
    adapt_batch: int = field(default=32, metadata={"help": "each adaptation step learns from a random minibatch of "
                             "this many architectures when there are more"})
    adapt_lr: float = 0.002
    # constraints and objectives
    max_params: int | None = None
    max_flops: int | None = None
    objectives: str = field(default="accuracy", metadata={"help": "accuracy, or accuracy plus one or two of params, flops, "
                            "latency (comma-separated): NSGA-II returns a Pareto front"})
    max_latency_ms: float | None = field(default=None, metadata={"help": "networks slower than this at batch 1 on the "
                                         "evaluation device are never evaluated"})
    latency_batch_size: int | None = field(default=None, metadata={"help": "also measure latency at this batch size "
                                           "(stored with every evaluation; the objective and limit use batch 1)"})
    # the training evaluator (GPT-NAS fitness protocol: 6 epochs, SGD, warm-up to lr 0.01, batch 512); unset
    # values come from --profile and --fidelity
    epochs: int | None = field(default=None, metadata={"evaluator": "train"})
    min_steps: int | None = field(default=None, metadata={"evaluator": "train", "help": "train for more epochs when "
                                  "the epochs give fewer optimizer steps than this (small datasets)"})
    batch_size: int | None = field(default=None, metadata={"evaluator": "train", "help": "at most; capped so that an "
                                   "epoch has at least 10 steps"})
    lr: float | None = field(default=None, metadata={"evaluator": "train"})
    max_train_examples: int | None = field(default=None, metadata={"evaluator": "train"})
    train_fraction: float | None = field(default=None, metadata={"evaluator": "train", "help": "train candidates on "
                                         "this share of the training split (from --fidelity)"})
    image_scale: float | None = field(default=None, metadata={"evaluator": "train", "help": "train candidates on "
                                      "images scaled to this share of their side (from --fidelity; --image_size wins)"})
    # execution and bookkeeping
    workers: int | None = field(default=None, metadata={"help": "evaluations in parallel, one process each "
                                "(default: 1; the cpu profile: one per core, up to the population)"})
    executor: str = field(default="serial", metadata={"help": "serial, process (--workers) or ray"})
    ray_address: str | None = None
    seed: int = field(default=0, metadata={"evaluator": "any"})
    output_dir: str | None = field(default=None, metadata={"help": "run directory (default: a new one under runs/)"})
    report_to: str = field(default="none", metadata={"help": "live view per generation: tensorboard, wandb, all or none "
                           "(accelerate's tracker names; logs go to RUN_DIR/tracking)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda or cuda:N (default: cuda when available)",
                                                       "evaluator": "any"})

    def __post_init__(self):
        from gptnas.tables import TABLES_BY_SPACE

        if self.evaluator is None:
            self.evaluator = "benchmark" if self.space in TABLES_BY_SPACE else "train"
        if self.output_dir is None:
            self.output_dir = f"runs/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        if self.profile is None:
            self.profile = "cpu" if self.evaluator == "train" and not _trains_on_gpu(self.device) else "gpt-nas"
        if self.profile not in PROFILES:
            raise GptnasError(f"unknown profile {self.profile!r}; valid: {', '.join(PROFILES)}")
        if self.fidelity not in FIDELITIES:
            raise GptnasError(f"unknown fidelity {self.fidelity!r}; valid: {', '.join(FIDELITIES)}")
        steps, data, side = FIDELITIES[self.fidelity]
        scaled = {"epochs": steps, "min_steps": steps}
        for name, value in PROFILES[self.profile].items():
            if getattr(self, name) is None:
                setattr(self, name, math.ceil(value * scaled[name]) if name in scaled else value)
        if self.workers is None:
            self.workers = min(os.cpu_count() or 1, self.population) if self.profile == "cpu" else 1
        if self.train_fraction is None:
            self.train_fraction = data
        if self.image_scale is None:
            self.image_scale = side

    def limit_flops(self, evaluator) -> None:
        """Sets the cpu profile's FLOPs cap for the images `evaluator` trains on, unless a cap is set."""
        if self.profile == "cpu" and self.evaluator == "train" and self.max_flops is None:
            self.max_flops = CPU_FLOPS_PER_PIXEL * evaluator.input_size ** 2

    def objective_list(self) -> list[str]:
        return [name.strip() for name in self.objectives.split(",") if name.strip()]

    def evaluator_options(self) -> dict:
        """The settings of the evaluator that this config holds: fields marked for that evaluator or for
        any evaluator (seed, device, data_dir), where the evaluator's settings have them."""
        from gptnas.evaluators import settings_type

        settings = settings_type(self.evaluator)
        names = {f.name for f in fields(settings)} if settings else set()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata.get("evaluator") in ("any", self.evaluator) and f.name in names
                and getattr(self, f.name) is not None}

    def validate(self) -> None:
        get_strategy(self.strategy)  # an unknown name is refused, listing the valid ones
        from gptnas.evaluators import settings_type

        settings_type(self.evaluator)  # likewise
        if self.executor not in EXECUTORS:
            raise GptnasError(f"unknown executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if self.init not in INITS:
            raise GptnasError(f"unknown init {self.init!r}; valid: {', '.join(INITS)}")
        if self.population < 2:
            raise GptnasError(f"population must be at least 2, got {self.population}")
        if self.generations < 0 or self.workers < 1 or self.tournament_size < 1 or self.epochs < 1 or self.min_steps < 0:
            raise GptnasError("generations and min_steps must be >= 0; workers, tournament_size and epochs >= 1")
        for name in ("train_fraction", "image_scale"):
            if not 0 < getattr(self, name) <= 1:
                raise GptnasError(f"{name} must lie in (0, 1], got {getattr(self, name)}")
        for name in ("crossover_rate", "mutation_rate", "elimination_rate", "elimination_rate_final"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise GptnasError(f"{name} must lie in [0, 1], got {value}")
        if not 0 <= self.elites < self.population:
            raise GptnasError(f"elites must lie in [0, population), got {self.elites}")
        if self.budget is not None and self.budget < 1:
            raise GptnasError(f"budget must be at least 1, got {self.budget}")
        if self.adapt_every < 0 or self.adapt_top < 1 or self.adapt_steps < 1 or self.adapt_batch < 1:
            raise GptnasError("adapt_every must be >= 0; adapt_top, adapt_steps and adapt_batch >= 1")
        if self.candidate_ranking not in CANDIDATE_RANKINGS:
            raise GptnasError(f"unknown candidate_ranking {self.candidate_ranking!r}; valid: {', '.join(CANDIDATE_RANKINGS)}")
        if self.trust not in TRUSTS:
            raise GptnasError(f"unknown trust {self.trust!r}; valid: {', '.join(TRUSTS)}")
        if not 0 <= self.trust_floor <= 0.5:
            raise GptnasError(f"trust_floor must lie in [0, 0.5], got {self.trust_floor}")
        if self.adapt_data not in ADAPT_DATA:
            raise GptnasError(f"unknown adapt_data {self.adapt_data!r}; valid: {', '.join(ADAPT_DATA)}")
        if self.quality is not None and not 0 <= self.quality <= 4:
            raise GptnasError(f"quality must be 0..4 (4: the best fifth), got {self.quality}")
        if self.novelty_tries < 0:
            raise GptnasError(f"novelty_tries must be >= 0, got {self.novelty_tries}")
        objectives = self.objective_list()
        if objectives[:1] != ["accuracy"] or len(objectives) > 3 or len(set(objectives)) < len(objectives) \
                or not set(objectives[1:]) <= set(COST_OBJECTIVES):
            raise GptnasError(f"objectives must be accuracy, then one or two of {', '.join(COST_OBJECTIVES)}; "
                              f"got {self.objectives!r}")
        if self.max_latency_ms is not None and not (math.isfinite(self.max_latency_ms) and self.max_latency_ms > 0):
            raise GptnasError(f"max_latency_ms must be a finite number > 0, got {self.max_latency_ms}")
        if self.latency_batch_size is not None and self.latency_batch_size < 1:
            raise GptnasError(f"latency_batch_size must be >= 1, got {self.latency_batch_size}")
        if self.report_to not in TRACKERS:
            raise GptnasError(f"unknown report_to {self.report_to!r}; valid: {', '.join(TRACKERS)}")
        if self.reconstruct_candidates < 1:
            raise GptnasError(f"reconstruct_candidates must be >= 1, got {self.reconstruct_candidates}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise GptnasError(f"temperature must be a finite number >= 0 (0: greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise GptnasError(f"top_k must be >= 1 (or unset for no limit), got {self.top_k}")
        for name in ("max_params", "max_flops", "max_train_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise GptnasError(f"{name} must be >= 1 (or unset for no limit), got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0) or not math.isfinite(self.adapt_lr) or self.adapt_lr <= 0:
            raise GptnasError(f"lr and adapt_lr must be finite numbers > 0, got {self.lr} and {self.adapt_lr}")
        # zero-cost screening
        from gptnas.evaluators.proxy import PROXIES

        if self.screen is not None and self.screen not in PROXIES:
            raise GptnasError(f"unknown screen proxy {self.screen!r}; valid: {', '.join(PROXIES)}")
        if self.screen_pool < 1:
            raise GptnasError(f"screen_pool must be >= 1, got {self.screen_pool}")


def _trains_on_gpu(device: str | None) -> bool:
    if device is not None:
        return device.startswith("cuda")
    import torch

    return torch.cuda.is_available()
