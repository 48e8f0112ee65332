"""Settings of a search run (evolve.py and the benchmark harness), in groups.

Each group is a dataclass owned by the module that uses it, and one section of `evolve.py --help`:

| group | dataclass | module |
|---|---|---|
| `search` | `SearchSettings` | gptnas/search/core.py |
| `gpt` | `GptSettings` (gpt-ga only) | gptnas/search/strategies/gpt_genetic.py |
| `data` | `DataSettings` | gptnas/evaluators/__init__.py |
| `training` | `CandidateTraining` (--evaluator train only) | gptnas/evaluators/train.py |
| `run` | `RunSettings` (the only group --resume may change) | gptnas/search/run.py |

A run's config.yaml holds one mapping per group, every value resolved. Flags name a field without its group
(field names are unique), and a flat mapping of field names (config files and run directories written before
the groups) is read through `gptnas.config.flatten`. A setting that would have no effect in the chosen set-up
(`--trust` without gpt-ga, `--epochs` without the train evaluator) is refused by `refuse_unused`, naming what
it needs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import torch

from gptnas.config import flatten, from_dict, groups
from gptnas.errors import GptnasError, quote
from gptnas.evaluators import DataSettings, settings_type
from gptnas.evaluators.train import FIDELITIES, CandidateTraining
from gptnas.search.core import SearchSettings
from gptnas.search.fidelity import DEFAULT_ETA
from gptnas.search.run import RunSettings
from gptnas.search.strategies.all import GptSettings, get_strategy, strategies
from gptnas.tables import TABLES_BY_SPACE

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


@dataclass
class EvolveConfig:
    search: SearchSettings = field(default_factory=SearchSettings, metadata={
        "title": "search", "help": "what is searched, for how long, under which objectives and limits"})
    gpt: GptSettings = field(default_factory=GptSettings, metadata={
        "title": "GPT (--strategy gpt-ga)", "help": "the GPT that rewrites offspring, and how it adapts"})
    data: DataSettings = field(default_factory=DataSettings, metadata={
        "title": "evaluator and data", "help": "how candidates are scored, and on which data"})
    training: CandidateTraining = field(default_factory=CandidateTraining, metadata={
        "title": "candidate training (--evaluator train)", "help": "unset values come from --profile and --fidelity"})
    run: RunSettings = field(default_factory=RunSettings, metadata={
        "title": "run", "help": "how the run executes; the only settings --resume may change"})

    @classmethod
    def from_flags(cls, flags: dict, where: str = "command line", *, accelerator: bool | None = None) -> EvolveConfig:
        """The config of `flags` ({field: value}, any group; strings are converted), defaults resolved
        (`accelerator`: whether candidates train on a GPU; default: asked of torch) and validated."""
        config = from_dict(cls, group_flags(flags, where), where, validate=False)
        config.resolve(accelerator)
        config.validate()
        return config

    def group(self, kind: type | None):
        """The group of type `kind` (a strategy's settings_type); None when `kind` is None."""
        for spec in groups(self):
            if kind is not None and isinstance(getattr(self, spec.name), kind):
                return getattr(self, spec.name)
        return None

    def flat(self) -> dict:
        """{field: value} over every group."""
        return flatten(dataclasses.asdict(self))

    def resolve(self, accelerator: bool | None = None) -> None:
        """Fills the settings left unset: the evaluator from the space, the profile from where candidates train,
        population, generations, workers and the training schedule from the profile and the fidelity."""
        s, t, d, r = self.search, self.training, self.data, self.run
        if d.evaluator is None:
            d.evaluator = "benchmark" if s.space in TABLES_BY_SPACE else "train"
        if r.output_dir is None:
            r.output_dir = f"runs/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        if s.profile is None:
            on_gpu = _trains_on_gpu(r.device) if accelerator is None else accelerator
            s.profile = "cpu" if d.evaluator == "train" and not on_gpu else "gpt-nas"
        steps, data, side = FIDELITIES[t.fidelity]
        scaled = {"epochs": steps, "min_steps": steps}
        for name, value in PROFILES[s.profile].items():
            owner = s if hasattr(s, name) else t
            if getattr(owner, name) is None:
                setattr(owner, name, math.ceil(value * scaled[name]) if name in scaled else value)
        if r.workers is None:
            r.workers = min(os.cpu_count() or 1, s.population) if s.profile == "cpu" else 1
        if t.train_fraction is None:
            t.train_fraction = data
        if t.image_scale is None:
            t.image_scale = side
        if (s.multi_fidelity is not None or get_strategy(s.strategy).own_fidelities) and s.eta is None:
            s.eta = DEFAULT_ETA

    def validate(self) -> None:
        get_strategy(self.search.strategy)  # an unknown name is refused, listing the valid ones
        for group in groups(self):
            getattr(self, group.name).validate()
        warm, screen = self.gpt.warm_start, self.search.screen
        if warm and screen and warm != screen:  # the result store keeps one proxy score per network
            raise GptnasError(f"--warm_start {warm} and --screen {screen} would store two proxies' scores; give "
                              "both the same proxy")

    def refuse_unused(self, given) -> None:
        """GptnasError naming the first setting of `given` (field names) that would have no effect here."""
        for name in given:
            need = self.needs(name)
            if need:
                raise GptnasError(f"--{name} needs {need}; drop it or add that")

    def needs(self, name: str) -> str | None:
        """What setting `name` needs to have an effect in this config; None when it has one."""
        strategy = get_strategy(self.search.strategy)
        group, spec = _field(self, name)
        owners = [s.name for s in strategies() if s.settings_type is not None and isinstance(group, s.settings_type)]
        readers = owners or [s.name for s in strategies() if s.uses(name)]  # its group's strategies, or its readers
        if readers and strategy.name not in readers:
            return f"--strategy {' or '.join(readers)}"
        predicate, text = spec.metadata.get("needs", (None, None))
        return text if predicate is not None and not predicate(self) else None

    def settings_record(self) -> dict:
        """{field: value} of every setting but how the run executes (the run group): what a resume must keep."""
        run = {f.name for f in dataclasses.fields(RunSettings)}
        return {k: v for k, v in self.flat().items() if k not in run}

    def limit_flops(self, evaluator) -> None:
        """Sets the cpu profile's FLOPs cap for the images `evaluator` trains on, unless a cap is set."""
        if self.search.profile == "cpu" and self.data.evaluator == "train" and self.search.max_flops is None:
            self.search.max_flops = CPU_FLOPS_PER_PIXEL * evaluator.input_size ** 2

    def evaluator_options(self) -> dict:
        """The settings of the chosen evaluator that this config holds (seed, device, data and training
        fields the evaluator's settings have), set ones only."""
        settings = settings_type(self.data.evaluator)
        names = {f.name for f in dataclasses.fields(settings)} if settings else set()
        shared = {"seed": self.search.seed, "device": self.run.device}
        values = shared | {k: v for k, v in dataclasses.asdict(self.data).items() if k not in ("evaluator", "dataset")}
        if self.data.evaluator == "train":
            values |= {k: v for k, v in dataclasses.asdict(self.training).items() if k != "fidelity"}
        return {k: v for k, v in values.items() if k in names and v is not None}


def group_flags(flags: dict, where: str) -> dict:
    """{group: {field: value}} of a flat or grouped mapping; an unknown field is refused, listing the valid ones."""
    owner = _owners()
    grouped: dict[str, dict] = {}
    for name, value in flatten(flags).items():
        if name not in owner:
            raise GptnasError(f"{where}: unknown setting {quote(name)}; valid: {', '.join(owner)}")
        grouped.setdefault(owner[name], {})[name] = value
    return grouped


def _owners() -> dict[str, str]:
    """field -> the group that holds it."""
    defaults = EvolveConfig()
    return {f.name: g.name for g in groups(EvolveConfig) for f in dataclasses.fields(getattr(defaults, g.name))}


def _field(config: EvolveConfig, name: str):
    """(group instance, dataclass field) of setting `name`."""
    for group in groups(config):
        instance = getattr(config, group.name)
        for spec in dataclasses.fields(instance):
            if spec.name == name:
                return instance, spec
    raise KeyError(name)


def _trains_on_gpu(device: str | None) -> bool:
    return device.startswith("cuda") if device is not None else torch.cuda.is_available()
