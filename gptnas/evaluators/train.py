"""Fitness by training: a short run of the candidate network, scored on held-out training data.

The GPT-NAS protocol: 6 epochs, SGD (momentum 0.9, Nesterov, weight decay
5e-4), batch 512, learning rate warmed up linearly to 0.01 over the first
epoch, then decayed (cosine by default) to zero. Fitness is accuracy (%) on a
validation split carved from the training set; test accuracy is computed too
but is only ever reported.

On a GPU the loop borrows airbench's ideas: the whole dataset lives on the
device as uint8, augmentation (4-pixel reflect-padded random crop, horizontal
flip) is done on the batch with tensor ops, the model runs channels_last under
bf16 autocast. On a CPU the same code runs in fp32 and is deterministic for a
seed. A candidate that diverges, runs out of memory or breaks is recorded as
such with WORST_FITNESS; it never stops the search.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gptnas.errors import GptnasError
from gptnas.evaluators.base import (
    Evaluation,
    check_space,
    describe,
    diverged,
    failure,
    free_accelerator_memory,
    resolve_device,
    safe_cost,
    without_inplace_activations,
)
from gptnas.evaluators.data import DATASETS, Splits, check_dataset, load_images, make_splits, normalise
from gptnas.spaces import SearchSpace, get_space

log = logging.getLogger(__name__)

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
CROP_PADDING = 4
EVAL_BATCH_SIZE = 1024
LOSS_CHECK_EVERY = 8  # steps between divergence checks on a GPU
DECAYS = ("cosine", "linear")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 6
    batch_size: int = 512
    lr: float = 0.01  # peak, reached at the end of the first epoch
    decay: str = "cosine"  # after the warm-up: "cosine" or "linear" to zero
    val_fraction: float = 0.1  # of the training set, held out to measure fitness
    seed: int = 0  # initialisation, validation split, batch order and augmentation
    device: str | None = None  # None: cuda when available
    max_train_examples: int | None = None  # fewer training examples, for smoke runs
    data_dir: str | None = None  # local copy of the dataset (no Hub download)
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 2:
            raise GptnasError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if not self.lr > 0:
            raise GptnasError(f"lr must be > 0, got {self.lr}")
        if self.decay not in DECAYS:
            raise GptnasError(f"unknown decay {self.decay!r}; valid: {', '.join(DECAYS)}")
        if not 0 < self.val_fraction < 1:
            raise GptnasError(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if self.max_train_examples is not None and self.max_train_examples < 2:
            raise GptnasError(f"max_train_examples must be >= 2, got {self.max_train_examples}")
        if not 0 <= self.label_smoothing < 1:
            raise GptnasError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")


class Diverged(Exception):
    """The loss or the outputs stopped being finite."""


class TrainEvaluator:
    """Trains each candidate briefly on `dataset` and scores it on a validation split."""

    name = "train"

    def __init__(self, space: SearchSpace | str, dataset: str, settings: TrainSettings | None = None):
        check_dataset(dataset)
        self.space_name = get_space(space).name
        self.dataset = dataset
        self.settings = settings or TrainSettings()
        self._splits: dict[str, Splits] = {}  # device -> splits held there; made on first use

    def __getstate__(self):
        return {**self.__dict__, "_splits": {}}

    def splits(self, device: torch.device) -> Splits:
        """The dataset's splits on `device` (GptnasError when the data cannot be had)."""
        if str(device) not in self._splits:
            space = get_space(self.space_name)
            data = load_images(self.dataset, self.settings.data_dir, space.input_size)
            splits = make_splits(data, self.settings.val_fraction, self.settings.seed, self.settings.max_train_examples)
            self._splits[str(device)] = splits.to(device)
        return self._splits[str(device)]

    def evaluate(self, space: SearchSpace | str, arch: Any) -> Evaluation:
        space = check_space(self.space_name, space)
        device = resolve_device(self.settings.device)
        splits = self.splits(device)  # a user error (no data) stops the run: every candidate would fail alike
        cost = safe_cost(space, arch, splits.num_classes)
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
        return f"TrainEvaluator({self.space_name!r}, {self.dataset!r}, {self.settings})"


# ---------------------------------------------------------------- the loop


def train_and_score(
    space: SearchSpace, arch: Any, splits: Splits, settings: TrainSettings, device: torch.device
) -> tuple[float, float]:
    """Trains a fresh network of `arch`; returns (validation accuracy, test accuracy) in %."""
    on_gpu = device.type == "cuda"
    with torch.random.fork_rng(devices=[]):  # seeded init without resetting the caller's RNG
        torch.manual_seed(settings.seed)
        model = space.build_model(arch, splits.num_classes)
    model = without_inplace_activations(model)
    model = model.to(device, memory_format=torch.channels_last) if on_gpu else model.to(device)
    generator = torch.Generator().manual_seed(settings.seed)  # batch order and augmentation, on the CPU

    n = len(splits.train_labels)
    steps_per_epoch = len(_batches(n, settings.batch_size, generator=None))
    total_steps = settings.epochs * steps_per_epoch
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, total_steps, settings.decay)
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu)
    check_every = LOSS_CHECK_EVERY if on_gpu else 1  # a check waits for the GPU; on a CPU it is free

    model.train()
    for epoch in range(settings.epochs):
        recent_loss = torch.zeros((), device=device)
        for step, batch in enumerate(_batches(n, settings.batch_size, generator)):
            batch = batch.to(device, non_blocking=True)
            images = augment(normalise(splits.train_images[batch], splits.mean, splits.std), generator)
            if on_gpu:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = loss_fn(model(images), splits.train_labels[batch])
            recent_loss += loss.detach().float()
            if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                if not torch.isfinite(recent_loss):  # before backward: non-finite arithmetic is slow
                    raise Diverged(f"training loss became {recent_loss.item()} in epoch {epoch + 1}")
                recent_loss.zero_()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()

    val_accuracy = accuracy(model, splits.val_images, splits.val_labels, splits, autocast, on_gpu)
    test_accuracy = accuracy(model, splits.test_images, splits.test_labels, splits, autocast, on_gpu)
    return val_accuracy, test_accuracy


def lr_factor(step: int, warmup_steps: int, total_steps: int, decay: str) -> float:
    """Linear warm-up over `warmup_steps` to 1, then cosine or linear decay towards 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else max(0.0, 1 - progress)


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one example is dropped (batch norm needs two)."""
    order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the reflect-padded batch and random horizontal flip, per image, as tensor ops."""
    n, _, height, width = images.shape
    device = images.device
    padded = F.pad(images, (CROP_PADDING,) * 4, mode="reflect").permute(0, 2, 3, 1)  # NHWC for the gather
    dy = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=generator).to(device)
    dx = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=generator).to(device)
    rows = dy[:, None] + torch.arange(height, device=device)
    cols = dx[:, None] + torch.arange(width, device=device)
    index = torch.arange(n, device=device)[:, None, None]
    crops = padded[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # back to NCHW
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, splits: Splits, autocast, on_gpu: bool
) -> float:
    """Accuracy in % (eval mode, no augmentation); Diverged if any output is not finite."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    finite = torch.ones((), dtype=torch.bool, device=images.device)
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        batch = normalise(images[start : start + EVAL_BATCH_SIZE], splits.mean, splits.std)
        if on_gpu:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(batch)
        finite &= torch.isfinite(logits).all()
        correct += (logits.argmax(1) == labels[start : start + EVAL_BATCH_SIZE]).sum()
    if not finite:
        raise Diverged("the trained network outputs non-finite values")
    return 100.0 * correct.item() / len(labels)


__all__ = ["DATASETS", "TrainEvaluator", "TrainSettings", "train_and_score"]
