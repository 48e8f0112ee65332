"""Evaluators, found by name: `get_evaluator("benchmark" | "train" | "proxy", space, dataset, **options)`.

Each turns an architecture into an `Evaluation` whose `fitness` the search
maximises. They are picklable and cheap to send to worker processes: tables,
data and models are loaded on first use in the process that evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gptnas.config import from_dict
from gptnas.errors import GptnasError, check_limit, quote
from gptnas.evaluators.base import EVALUATORS, WORST_FITNESS, Evaluation, Evaluator
from gptnas.evaluators.table import TableEvaluator  # each module registers its evaluator, in this order
from gptnas.evaluators.train import TrainEvaluator, TrainSettings
from gptnas.evaluators.proxy import ProxyEvaluator, ProxySettings
from gptnas.spaces import SearchSpace
from gptnas.training.data import MAX_IMAGE_SIZE


def _reads_images(config) -> bool:
    return config.data.evaluator in ("train", "proxy")


@dataclass
class DataSettings:
    """How candidates are scored, and on which data."""

    evaluator: str | None = field(default=None, metadata={"help": "benchmark (a table look-up), train or proxy "
                                  "(default: benchmark when the space has a table, else train)"})
    dataset: str = field(default="cifar10", metadata={"help": "cifar10, cifar100, digits (bundled, offline smoke "
                         "runs), a Hub dataset id (owner/name), a local folder (class subfolders of images, or "
                         "save_to_disk); the benchmark tables: cifar10, cifar100, imagenet16-120"})
    data_dir: str | None = field(default=None, metadata={"help": "local dataset folder instead of the Hub",
                                 "needs": (_reads_images, "--evaluator train or proxy")})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub commit or tag of --dataset (pins the "
                                         "data)", "needs": (_reads_images, "--evaluator train or proxy")})
    image_column: str | None = field(default=None, metadata={"help": "the images' column (default: image or img)",
                                     "needs": (_reads_images, "--evaluator train or proxy")})
    label_column: str | None = field(default=None, metadata={"help": "the labels' column (default: label, labels "
                                     "or fine_label)", "needs": (_reads_images, "--evaluator train or proxy")})
    image_size: int | None = field(default=None, metadata={"help": "resize images to this side (default: their "
                                   "own, when they all share one)", "needs": (_reads_images, "--evaluator train or proxy")})

    def validate(self) -> None:
        EVALUATORS.get(self.evaluator)  # an unknown name is refused, listing the valid ones
        check_limit("image_size", self.image_size, MAX_IMAGE_SIZE, low=1)


def evaluator_names() -> list[str]:
    return EVALUATORS.names()


def settings_type(name: str) -> type | None:
    """The settings dataclass of evaluator `name` (None: it takes no settings)."""
    return EVALUATORS.get(name).settings_type


def get_evaluator(name: str, space: SearchSpace | str, dataset: str, **options: Any) -> Evaluator:
    """The evaluator `name` for `space` on `dataset`; GptnasError listing valid names, datasets or options.

    Options are the fields of the evaluator's settings dataclass (strings are converted)."""
    evaluator = EVALUATORS.get(name)
    settings = evaluator.settings_type
    if settings is None:
        if options:
            raise GptnasError(f"evaluator {quote(name)} takes no options, got {', '.join(options)}")
        return evaluator(space, dataset)
    return evaluator(space, dataset, from_dict(settings, options, f"evaluator {name!r}"))


__all__ = [
    "WORST_FITNESS",
    "DataSettings",
    "Evaluation",
    "Evaluator",
    "ProxyEvaluator",
    "ProxySettings",
    "TableEvaluator",
    "TrainEvaluator",
    "TrainSettings",
    "evaluator_names",
    "get_evaluator",
    "settings_type",
]
