"""Fitness by training: a short run of the candidate network, scored on held-out training data.

The GPT-NAS protocol: 6 epochs, SGD (momentum 0.9, Nesterov, weight decay
5e-4), batch 512, learning rate warmed up linearly to 0.01 over the first
epoch, then decayed (cosine by default) to zero. Fitness is accuracy (%) on a
validation split carved from the training set; test accuracy is computed too
but is only ever reported.

The schedule fits small data (`schedule`): the batch is capped so that an
epoch has at least MIN_STEPS_PER_EPOCH steps, and there are more epochs when
the epochs give fewer than `min_steps` optimizer steps. On CIFAR-10 (45,000
training images, batch 512, 6 epochs: 528 steps) neither binds; on the 1,007
training images of digits, batch 512 would be 2 steps an epoch. A small dataset
also gets a larger validation split (`validation_share`). The loop itself
(batching, augmentation, the GPU path) is gptnas/training/loop.py, shared with
the final retraining.

A candidate that diverges, runs out of memory or breaks is recorded as such
with WORST_FITNESS; it never stops the search.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from gptnas.errors import GptnasError, check_limit, quote
from gptnas.evaluators.base import (
    EVALUATORS,
    Evaluation,
    check_space,
    describe,
    diverged,
    failure,
    image_spec,
    safe_cost,
)
from gptnas.spaces import SearchSpace, get_space
from gptnas.training.data import (
    MAX_BATCH_SIZE,
    MAX_IMAGE_SIZE,
    DATASETS,
    ImageData,
    Splits,
    check_dataset,
    dataset_source,
    load_images,
    make_splits,
    scaled,
)
from gptnas.training.device import free_accelerator_memory, resolve_device
from gptnas.training.loop import (
    Diverged,
    accuracy,
    build_network,
    lr_factor,
    sgd,
    steps_per_epoch,
    train_epoch,
)

log = logging.getLogger(__name__)

DECAYS = ("cosine", "linear")  # what lr_factor decays by after the warm-up
MIN_STEPS_PER_EPOCH = 10  # the batch is capped at a tenth of the training images
DEFAULT_MIN_FIDELITY = 1 / 9  # the lowest rung of multi-fidelity search: a ninth of the schedule
MIN_SCALED_SIDE = 8  # image_scale never makes images smaller than this
MIN_VAL_EXAMPLES, MAX_VAL_SHARE = 500, 0.3  # a validation split of at least 500 images, up to 30 % of the data


# Cheaper candidate training for a less exact ranking, on top of the profile: (share of the profile's epochs and
# minimum steps, share of the training split, share of the image side; the train evaluator keeps 8 pixels at least).
FIDELITIES = {"high": (1.0, 1.0, 1.0), "medium": (0.5, 0.5, 1.0), "low": (0.25, 0.25, 0.5)}


def _trains(config) -> bool:
    return config.data.evaluator == "train"


_NEEDS_TRAIN = (_trains, "--evaluator train")


@dataclass
class CandidateTraining:
    """How the train evaluator trains each candidate (GPT-NAS: 6 epochs, SGD, warm-up to lr 0.01, batch 512);
    unset values come from --profile and --fidelity."""

    fidelity: Literal["high", "medium", "low"] = field(default="high", metadata={
        "help": "high, medium (half the epochs and training images) or low (a quarter, images at half their side): "
                "faster, less exact ranking", "needs": _NEEDS_TRAIN})
    epochs: int | None = field(default=None, metadata={"help": "epochs per candidate (from --profile: 6)",
                                                       "needs": _NEEDS_TRAIN})
    min_steps: int | None = field(default=None, metadata={"help": "train for more epochs when the epochs give "
                                  "fewer optimizer steps than this (small datasets)", "needs": _NEEDS_TRAIN})
    batch_size: int | None = field(default=None, metadata={"help": "at most; capped so that an epoch has at least "
                                   "10 steps (from --profile: 512 or 64)", "needs": _NEEDS_TRAIN})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate, reached after one epoch of "
                             "warm-up (from --profile: 0.01 or 0.05)", "needs": _NEEDS_TRAIN})
    max_train_examples: int | None = field(default=None, metadata={"help": "train candidates on at most this many "
                                           "images (smoke runs)", "needs": _NEEDS_TRAIN})
    train_fraction: float | None = field(default=None, metadata={"help": "train candidates on this share of the "
                                         "training split (from --fidelity)", "needs": _NEEDS_TRAIN})
    image_scale: float | None = field(default=None, metadata={"help": "train candidates on images scaled to this "
                                      "share of their side (from --fidelity; --image_size wins)", "needs": _NEEDS_TRAIN})

    def validate(self) -> None:
        if self.epochs < 1 or self.min_steps < 0:
            raise GptnasError(f"epochs must be >= 1 and min_steps >= 0, got {self.epochs} and {self.min_steps}")
        for name in ("train_fraction", "image_scale"):
            if not 0 < getattr(self, name) <= 1:
                raise GptnasError(f"{name} must lie in (0, 1], got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise GptnasError(f"lr must be a finite number > 0, got {self.lr}")
        check_limit("batch_size", self.batch_size, MAX_BATCH_SIZE)
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise GptnasError(f"max_train_examples must be >= 1 (or unset for no limit), got {self.max_train_examples}")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 6
    batch_size: int = 512
    lr: float = 0.01  # peak, reached at the end of the first epoch
    decay: str = "cosine"  # after the warm-up: "cosine" or "linear" to zero
    val_fraction: float = 0.1  # of the training set, held out to measure fitness (more on small data: validation_share)
    seed: int = 0  # initialisation, validation split, batch order and augmentation
    device: str | None = None  # None: cuda when available
    max_train_examples: int | None = None  # fewer training examples, for smoke runs
    data_dir: str | None = None  # local copy of the dataset (no Hub download)
    dataset_revision: str | None = None  # Hub commit or tag of the dataset
    image_column: str | None = None  # None: image or img
    label_column: str | None = None  # None: label, labels or fine_label
    image_size: int | None = None  # None: the images' own side (the space's input size when they differ)
    label_smoothing: float = 0.0
    min_steps: int = 300  # at least this many optimizer steps: more epochs on small data
    train_fraction: float = 1.0  # share of the training split candidates train on (--fidelity)
    image_scale: float = 1.0  # share of the images' side (--fidelity); image_size wins
    schedule_share: float = 1.0  # share of the optimizer steps: a rung of multi-fidelity search (gptnas/search/fidelity.py)

    def __post_init__(self):
        if not 0 < self.schedule_share <= 1:
            raise GptnasError(f"schedule_share must lie in (0, 1], got {self.schedule_share}")
        if self.min_steps < 0 or not 0 < self.train_fraction <= 1 or not 0 < self.image_scale <= 1:
            raise GptnasError(f"need min_steps >= 0 and train_fraction, image_scale in (0, 1], got {self.min_steps}, "
                              f"{self.train_fraction} and {self.image_scale}")
        if self.epochs < 1 or self.batch_size < 2:
            raise GptnasError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        check_limit("batch_size", self.batch_size, MAX_BATCH_SIZE)
        check_limit("image_size", self.image_size, MAX_IMAGE_SIZE, low=1)
        if not self.lr > 0:
            raise GptnasError(f"lr must be > 0, got {self.lr}")
        if self.decay not in DECAYS:
            raise GptnasError(f"unknown decay {quote(self.decay)}; valid: {', '.join(DECAYS)}")
        if not 0 < self.val_fraction < 1:
            raise GptnasError(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if self.max_train_examples is not None and self.max_train_examples < 2:
            raise GptnasError(f"max_train_examples must be >= 2, got {self.max_train_examples}")
        if self.image_size is not None and self.image_size < 1:
            raise GptnasError(f"image_size must be >= 1, got {self.image_size}")
        if not 0 <= self.label_smoothing < 1:
            raise GptnasError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")


@EVALUATORS.register
class TrainEvaluator:
    """Trains each candidate briefly on `dataset` and scores it on a validation split."""

    name = "train"
    settings_type = TrainSettings

    def __init__(self, space: SearchSpace | str, dataset: str, settings: TrainSettings | None = None):
        check_dataset(dataset)
        self.space_ref = get_space(space).reference
        self.dataset = dataset
        self.settings = settings or TrainSettings()
        self._splits: dict[str, Splits] = {}  # device -> splits held there; made on first use

    def __getstate__(self):
        return {**self.__dict__, "_splits": {}}

    metric = "validation accuracy (%)"

    def source(self) -> dict:
        return dataset_source(self.dataset, self.settings.data_dir, self.settings.dataset_revision)

    def prepare(self) -> None:
        self.splits(resolve_device(self.settings.device))

    def input_spec(self) -> dict:
        return image_spec(self.data())

    @property
    def num_classes(self) -> int:
        """The dataset's class count (loads the data, once per process)."""
        return self.data().num_classes

    @property
    def input_size(self) -> int:
        """The side of the images the networks see (their FLOPs and latency are counted at it)."""
        return self.data().train_images.shape[-1]

    def data(self) -> ImageData:
        """The whole dataset, loaded once per process (GptnasError when it cannot be had)."""
        s, space = self.settings, get_space(self.space_ref)
        data = load_images(self.dataset, s.data_dir, space.input_size, revision=s.dataset_revision,
                           image_column=s.image_column, label_column=s.label_column,
                           image_size=s.image_size or space.image_size)
        if s.image_size is None and s.image_scale < 1:
            side = data.train_images.shape[-1]
            data = scaled(data, max(min(side, MIN_SCALED_SIDE), round(side * s.image_scale)))
        return data

    def splits(self, device: torch.device) -> Splits:
        """The dataset's splits on `device` (GptnasError when the data cannot be had)."""
        if str(device) not in self._splits:
            data = self.data()
            s = self.settings
            val_fraction = validation_share(len(data.train_labels), s.val_fraction)
            n_train = len(data.train_labels) - max(1, round(len(data.train_labels) * val_fraction))
            limit = n_train if s.train_fraction == 1 else max(2, round(n_train * s.train_fraction))
            if s.max_train_examples is not None:
                limit = min(limit, s.max_train_examples)
            splits = make_splits(data, val_fraction, s.seed, None if limit == n_train else limit)
            self._splits[str(device)] = splits.to(device)
        return self._splits[str(device)]

    def fidelities(self, eta: int, lowest: float | None = None) -> list[float]:
        """The rungs of multi-fidelity search, as shares of the full schedule: 1, 1/eta, 1/eta^2 ... down to
        `lowest` (default DEFAULT_MIN_FIDELITY), ascending. Each rung trains from scratch for its share of the
        optimizer steps, with warm-up and decay shortened alike (a network is not continued from a lower rung:
        the schedule it was trained on has ended)."""
        levels, lowest = [1.0], DEFAULT_MIN_FIDELITY if lowest is None else lowest
        while levels[-1] / eta >= lowest * (1 - 1e-9):
            levels.append(levels[-1] / eta)
        return levels[::-1]

    def at_fidelity(self, fidelity: float) -> TrainEvaluator:
        if fidelity == self.settings.schedule_share:
            return self
        settings = dataclasses.replace(self.settings, schedule_share=fidelity)
        other = TrainEvaluator(self.space_ref, self.dataset, settings)
        other._splits = self._splits  # the same data and split: only the schedule differs
        return other

    def evaluate(self, space: SearchSpace | str, arch: Any) -> Evaluation:
        space = check_space(self.space_ref, space)
        device = resolve_device(self.settings.device)
        splits = self.splits(device)  # a user error (no data) stops the run: every candidate would fail alike
        cost = safe_cost(space, arch, splits.num_classes, splits.train_images.shape[-1])
        start = time.perf_counter()
        try:
            val_accuracy, test_accuracy = train_and_score(space, arch, splits, self.settings, device)
            result = Evaluation(val_accuracy, test_accuracy, cost["params"], cost["flops"], time.perf_counter() - start)
        except Diverged as error:
            result = diverged(str(error), cost, time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 - a broken candidate must not stop the search
            result = failure(error, cost, time.perf_counter() - start)
        if result.status == "out_of_memory":
            free_accelerator_memory()  # here, once the exception and its frames are gone
        log.info(
            "%s: %s, fitness %.2f, %.1fs%s",
            describe(space, arch),
            result.status,
            result.fitness,
            result.seconds,
            f" ({result.reason})" if result.reason else "",
        )
        return result

    def __repr__(self) -> str:
        return f"TrainEvaluator({get_space(self.space_ref).name!r}, {self.dataset!r}, {self.settings})"


# ---------------------------------------------------------------- the run


def train_and_score(
    space: SearchSpace, arch: Any, splits: Splits, settings: TrainSettings, device: torch.device
) -> tuple[float, float]:
    """Trains a fresh network of `arch`; returns (validation accuracy, test accuracy) in %."""
    model = build_network(space, arch, splits.num_classes, settings.seed, device)
    generator = torch.Generator().manual_seed(settings.seed)  # batch order and augmentation, on the CPU
    batch_size, epochs = schedule(len(splits.train_labels), settings)
    per_epoch = steps_per_epoch(len(splits.train_labels), batch_size)
    warmup_steps = share_of(per_epoch, settings.schedule_share)  # the whole first epoch (of the full schedule)
    total_steps = share_of(epochs * per_epoch, settings.schedule_share)
    optimizer = sgd(model, settings.lr)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, settings.decay)
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    for epoch in range(1, math.ceil(total_steps / per_epoch) + 1):
        train_epoch(model, splits, optimizer, loss_fn, generator, batch_size, epoch, step_schedule=lr_schedule,
                    max_steps=min(per_epoch, total_steps - (epoch - 1) * per_epoch))
    val_accuracy = accuracy(model, splits.val_images, splits.val_labels, splits)
    test_accuracy = accuracy(model, splits.test_images, splits.test_labels, splits)
    return val_accuracy, test_accuracy


def validation_share(n: int, val_fraction: float) -> float:
    """The share of `n` training images held out for fitness: `val_fraction`, or enough for MIN_VAL_EXAMPLES
    images (up to MAX_VAL_SHARE) when that is more. On digits 144 images (10 %) rank networks in steps of
    0.7 % and the best ones tie at 100 %; CIFAR-10's 5,000 stay as they are."""
    return max(val_fraction, min(MIN_VAL_EXAMPLES / n, MAX_VAL_SHARE))


def schedule(n_train: int, settings: TrainSettings) -> tuple[int, int]:
    """(batch size, epochs) for `n_train` training images: the batch at most `settings.batch_size` and small
    enough for MIN_STEPS_PER_EPOCH steps an epoch; the epochs at least `settings.epochs` and enough for
    `settings.min_steps` steps in all. A rung of multi-fidelity search trains `settings.schedule_share` of these
    steps, with the warm-up and decay shortened alike (`share_of`)."""
    batch_size = max(2, min(settings.batch_size, n_train // MIN_STEPS_PER_EPOCH))
    per_epoch = steps_per_epoch(n_train, batch_size)
    return batch_size, max(settings.epochs, math.ceil(settings.min_steps / per_epoch))


def share_of(steps: int, share: float) -> int:
    """`share` of `steps` optimizer steps, at least one."""
    return steps if share == 1 else max(1, round(steps * share))


__all__ = ["DATASETS", "TrainEvaluator", "TrainSettings", "schedule", "train_and_score", "validation_share"]
