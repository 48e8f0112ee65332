"""The one training loop for searched networks, shared by candidate evaluation and final retraining.

Both train with SGD (momentum 0.9, Nesterov, weight decay 5e-4) on the same
batches and augmentation; only the schedule differs. Candidate evaluation
(gptnas/evaluators/train.py) warms up and decays the learning rate every step
over 6 epochs; final retraining (retrain.py) steps it down every 100 of 350
epochs. One loop means a fix or a speed-up reaches both, and a retrained network
sees exactly the training its fitness was measured with.

On a GPU the loop borrows airbench's ideas: the whole dataset lives on the
device as uint8, augmentation (random crop of the image reflect-padded by an
eighth of its side, 4 pixels at 32x32; horizontal flip) is done on the batch
with tensor ops, the model runs channels_last under bf16 autocast. Batch
order and augmentation are drawn from a CPU generator, so
they do not depend on the device; on a CPU the same code runs in fp32 and is
deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gptnas.spaces import SearchSpace
from gptnas.training.data import Splits, normalise

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
CROP_PADDING = 1 / 8  # of the side: 4 pixels at 32x32 (the CIFAR recipe), 1 at 8x8
EVAL_BATCH_SIZE = 1024
LOSS_CHECK_EVERY = 8  # steps between divergence checks on a GPU


class Diverged(Exception):
    """The loss or the outputs stopped being finite."""


@dataclass(frozen=True)
class EpochResult:
    loss: float  # mean training loss
    accuracy: float  # % of the (augmented) training examples classified right
    examples: int


def without_inplace_activations(model: nn.Module) -> nn.Module:
    """Turns off `inplace` on activations. Cells that feed one tensor to several
    act-first edges (NAS-Bench-201) otherwise overwrite a tensor autograd saved,
    and activation hooks would see their input already rewritten."""
    for module in model.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return model


def build_network(space: SearchSpace, arch: Any, num_classes: int, seed: int, device: torch.device) -> nn.Module:
    """A freshly initialised network of `arch` on `device`; the same weights for the same seed."""
    with torch.random.fork_rng(devices=[]):  # seeded init without resetting the caller's RNG
        torch.manual_seed(seed)
        model = space.build_model(arch, num_classes)
    model = without_inplace_activations(model)
    return model.to(device, memory_format=torch.channels_last) if device.type == "cuda" else model.to(device)


def sgd(model: nn.Module, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)


def train_epoch(
    model: nn.Module,
    splits: Splits,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    generator: torch.Generator,
    batch_size: int,
    epoch: int,
    step_schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_steps: int | None = None,
) -> EpochResult:
    """One pass over the training split in a seeded order, with augmentation (its first `max_steps` batches only,
    when given: the last epoch of a shortened schedule).

    `step_schedule` is stepped after every optimizer step; a schedule by epochs is the caller's to step.
    Raises Diverged (naming `epoch`) as soon as a checked loss is not finite."""
    model.train()
    device = splits.train_labels.device
    on_gpu = device.type == "cuda"
    check_every = LOSS_CHECK_EVERY if on_gpu else 1  # a check waits for the GPU; on a CPU it is free
    loss_sum = torch.zeros((), device=device)
    recent_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    epoch_batches = batches(len(splits.train_labels), batch_size, generator)[:max_steps]
    for step, batch in enumerate(epoch_batches):
        batch = batch.to(device, non_blocking=True)
        images = augment(normalise(splits.train_images[batch], splits.mean, splits.std), generator, splits.hflip)
        if on_gpu:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = splits.train_labels[batch]
        with _autocast(device):
            logits = model(images)
            loss = loss_fn(logits, labels)
        recent_loss += loss.detach().float()
        if (step + 1) % check_every == 0 or step + 1 == len(epoch_batches):
            if not torch.isfinite(recent_loss):  # before backward: non-finite arithmetic is slow
                raise Diverged(f"training loss became {recent_loss.item()} in epoch {epoch}")
            recent_loss.zero_()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_schedule is not None:
            step_schedule.step()
        loss_sum += loss.detach().float() * len(batch)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(batch)
    return EpochResult(loss_sum.item() / seen, 100.0 * correct.item() / seen, seen)  # one wait for the GPU


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, splits: Splits) -> float:
    """Accuracy in % (eval mode, no augmentation, the train split's standardisation); Diverged if any
    output is not finite."""
    model.eval()
    device = images.device
    correct = torch.zeros((), dtype=torch.long, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        batch = normalise(images[start : start + EVAL_BATCH_SIZE], splits.mean, splits.std)
        if device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits = model(batch)
        finite &= torch.isfinite(logits).all()
        correct += (logits.argmax(1) == labels[start : start + EVAL_BATCH_SIZE]).sum()
    if not finite:
        raise Diverged("the trained network outputs non-finite values")
    return 100.0 * correct.item() / len(labels)


def lr_factor(step: int, warmup_steps: int, total_steps: int, decay: str) -> float:
    """Linear warm-up over `warmup_steps` to 1, then cosine or linear decay towards 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else max(0.0, 1 - progress)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return len(batches(n, batch_size, generator=None))


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Shuffled index batches (in order without a generator); a last batch of one example is
    dropped (batch norm needs two)."""
    order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks.pop()
    return chunks


def augment(images: torch.Tensor, generator: torch.Generator, hflip: bool = True) -> torch.Tensor:
    """Random crop of the batch reflect-padded by an eighth of its side, and (with `hflip`) random horizontal
    flip, per image, as tensor ops."""
    n, _, height, width = images.shape
    device = images.device
    pad = max(1, round(min(height, width) * CROP_PADDING))
    padded = F.pad(images, (pad,) * 4, mode="reflect").permute(0, 2, 3, 1)  # NHWC for the gather
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(device)
    rows = dy[:, None] + torch.arange(height, device=device)
    cols = dx[:, None] + torch.arange(width, device=device)
    index = torch.arange(n, device=device)[:, None, None]
    # Back to NCHW, and contiguous: oneDNN's CPU convolution backward corrupts the heap on NHWC-strided inputs
    # of some widths (torch 2.13, 12 channels); on a GPU the batch becomes channels_last after this.
    crops = padded[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    flip = (torch.rand(n, generator=generator) < (0.5 if hflip else 0.0)).to(device)  # the same draws either way
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)


def _autocast(device: torch.device):
    """bf16 autocast on a GPU; a no-op (fp32) elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


__all__ = [
    "MOMENTUM",
    "WEIGHT_DECAY",
    "Diverged",
    "EpochResult",
    "accuracy",
    "augment",
    "batches",
    "build_network",
    "lr_factor",
    "sgd",
    "steps_per_epoch",
    "train_epoch",
]
