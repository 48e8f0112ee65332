"""Final training of what a search found: the best network, from scratch, with the full schedule.

The GPT-NAS protocol: 350 epochs of SGD (momentum 0.9, Nesterov, weight decay
5e-4), batch 128, learning rate 0.01 divided by 10 every 100 epochs. The
search is over, so by default the network trains on the whole training set
(no validation split) and the test split is scored once, at the end.

Everything lands in RUN_DIR/retrain/: model.safetensors, architecture.json,
result.json and log.csv. After every epoch a checkpoint (weights, optimizer,
schedule, the generator that draws batch order and augmentation) is written
atomically, so a killed retraining continues where it stopped and, on a CPU,
ends with exactly the weights of an uninterrupted one. The loop itself is the
training evaluator's: same data, batching, augmentation and GPU path.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from gptnas.config import load_yaml
from gptnas.errors import GptnasError
from gptnas.evaluators.base import resolve_device, without_inplace_activations
from gptnas.evaluators.data import ImageData, Splits, load_images, make_splits, normalise
from gptnas.evaluators.train import MOMENTUM, WEIGHT_DECAY, Diverged, _batches, accuracy, augment
from gptnas.spaces import SearchSpace, get_space
from gptnas.spaces.base import count_params

log = logging.getLogger(__name__)

RETRAIN_DIR = "retrain"
CHECKPOINT = "checkpoint.pt"
VAL_FRACTION = 0.1  # with use_validation_split, as in the search
LOG_FIELDS = ("epoch", "lr", "train_loss", "train_accuracy", "seconds")
# Settings a checkpoint must have been made with to be continued (epochs may grow).
RESUME_IDENTITY = (
    "lr", "lr_step_epochs", "lr_gamma", "batch_size", "seed", "max_train_examples", "use_validation_split",
)


@dataclass(frozen=True)
class RetrainSettings:
    epochs: int = 350
    lr: float = 0.01
    lr_step_epochs: int = 100  # the learning rate is multiplied by lr_gamma every this many epochs
    lr_gamma: float = 0.1
    batch_size: int = 128
    seed: int = 0  # initialisation, batch order and augmentation
    device: str | None = None  # None: cuda when available
    max_train_examples: int | None = None  # fewer training examples, for smoke runs
    use_validation_split: bool = False  # hold out the search's validation split (default: train on all of it)
    data_dir: str | None = None  # None: the run's own data_dir from config.yaml

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 2:
            raise GptnasError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if not self.lr > 0 or self.lr_step_epochs < 1 or not 0 < self.lr_gamma <= 1:
            raise GptnasError(
                f"need lr > 0, lr_step_epochs >= 1 and 0 < lr_gamma <= 1, "
                f"got {self.lr}, {self.lr_step_epochs} and {self.lr_gamma}"
            )
        if self.max_train_examples is not None and self.max_train_examples < 2:
            raise GptnasError(f"max_train_examples must be >= 2, got {self.max_train_examples}")


def retrain(run_dir: str | Path, settings: RetrainSettings | None = None, *, stop_after_epochs: int | None = None):
    """Trains the best architecture of the finished search in `run_dir` and scores it on the test split.

    Returns the result (what result.json holds). Continues from RUN_DIR/retrain/checkpoint.pt when
    there is one; returns the saved result without training when result.json already exists.

    `stop_after_epochs` is for tests and planned interruptions: once that many epochs are done
    (counting those of earlier calls) and more remain, None is returned with the checkpoint
    written, exactly as if the process had been killed there; call again to finish.
    """
    settings = settings or RetrainSettings()
    run_dir = Path(run_dir)
    out = run_dir / RETRAIN_DIR
    if (out / "result.json").exists():
        return _read_json(out / "result.json", "delete it to retrain")
    space, key, config = read_run(run_dir)
    arch = space.from_key(key)
    dataset = config.get("dataset", "cifar10")
    data_dir = settings.data_dir if settings.data_dir is not None else config.get("data_dir")
    device = resolve_device(settings.device)
    on_gpu = device.type == "cuda"
    splits = training_splits(load_images(dataset, data_dir, space.input_size), settings).to(device)

    with torch.random.fork_rng(devices=[]):  # seeded init without resetting the caller's RNG
        torch.manual_seed(settings.seed)
        model = space.build_model(arch, splits.num_classes)
    model = without_inplace_activations(model)
    model = model.to(device, memory_format=torch.channels_last) if on_gpu else model.to(device)
    generator = torch.Generator().manual_seed(settings.seed)  # batch order and augmentation, on the CPU
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
    )
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_epochs, settings.lr_gamma)
    loss_fn = nn.CrossEntropyLoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu)

    out.mkdir(parents=True, exist_ok=True)
    identity = {"key": key, "dataset": dataset, **{name: getattr(settings, name) for name in RESUME_IDENTITY}}
    done, history, seconds = 0, [], 0.0
    if (out / CHECKPOINT).exists():
        done, history, seconds = _load_checkpoint(
            out / CHECKPOINT, identity, settings, model, optimizer, schedule, generator
        )
        log.info("resuming the retraining after epoch %d of %d", done, settings.epochs)

    n = len(splits.train_labels)
    log.info("retraining %s on %d %s images for %d epochs on %s", key, n, dataset, settings.epochs, device)
    progress = tqdm(total=settings.epochs, initial=done, desc="retrain", unit="epoch")
    try:
        for epoch in range(done + 1, settings.epochs + 1):
            if stop_after_epochs is not None and done >= stop_after_epochs:
                return None
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            loss_sum, correct, seen = train_one_epoch(
                model, splits, optimizer, loss_fn, autocast, generator, settings.batch_size, on_gpu
            )
            schedule.step()
            train_loss = loss_sum / seen
            if not math.isfinite(train_loss):
                raise GptnasError(f"training diverged in epoch {epoch} (loss {train_loss}); retrain with a lower lr")
            seconds += time.perf_counter() - start
            history.append({"epoch": epoch, "lr": lr, "train_loss": train_loss,
                            "train_accuracy": 100.0 * correct / seen, "seconds": round(seconds, 3)})
            _save_checkpoint(out / CHECKPOINT, identity, epoch, model, optimizer, schedule, generator, history, seconds)
            _write_log(out / "log.csv", history)
            done = epoch
            progress.update(1)
            progress.set_postfix(loss=f"{train_loss:.3f}", acc=f"{history[-1]['train_accuracy']:.1f}")
    finally:
        progress.close()

    start = time.perf_counter()
    try:
        test_accuracy = accuracy(model, splits.test_images, splits.test_labels, splits, autocast, on_gpu)
    except Diverged as error:
        raise GptnasError(f"retraining diverged: {error}; retrain with a lower lr") from None
    seconds += time.perf_counter() - start

    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    _save_safetensors(state, out / "model.safetensors")
    build = f"import gptnas; model = gptnas.build_model({space.name!r}, {key!r}, num_classes={splits.num_classes})"
    architecture = {
        "space": space.name,
        "key": key,
        "encoding": space.encode(arch),
        "num_classes": splits.num_classes,
        "build": build,
        "load": "from safetensors.torch import load_file; model.load_state_dict(load_file('model.safetensors'))",
    }
    _write_atomic(out / "architecture.json", json.dumps(architecture, indent=2) + "\n")
    result = {
        "test_accuracy": test_accuracy,
        "epochs": done,
        "seconds": round(seconds, 3),
        "params": count_params(model),
        "space": space.name,
        "key": key,
        "dataset": dataset,
        "train_examples": n,
        "device": str(device),
        "settings": asdict(settings),
    }
    _write_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")  # last: it marks the run finished
    (out / CHECKPOINT).unlink(missing_ok=True)  # superseded by model.safetensors
    log.info("retrained %s: test accuracy %.2f%% after %d epochs (%.0fs)", key, test_accuracy, done, seconds)
    return result


# ---------------------------------------------------------------- the run and the data


def read_run(run_dir: Path) -> tuple[SearchSpace, str, dict[str, Any]]:
    """(space, canonical key of the best architecture, config) of a finished search run."""
    best_path, config_path = run_dir / "best.json", run_dir / "config.yaml"
    if not best_path.is_file() or not config_path.is_file():
        missing = "best.json" if not best_path.is_file() else "config.yaml"
        raise GptnasError(
            f"{run_dir} is not a finished gptnas search (no {missing}); "
            f"finish it with `python evolve.py --resume {run_dir}` or pass the right run directory"
        )
    config = load_yaml(config_path)
    best = _read_json(best_path, "rerun or resume the search")
    if "space" not in config or not isinstance(best, dict) or not isinstance(best.get("key"), str):
        raise GptnasError(f"{run_dir}: config.yaml needs a space and best.json a key; is this a gptnas run?")
    return get_space(config["space"]), best["key"], config


def training_splits(data: ImageData, settings: RetrainSettings) -> Splits:
    """The search's train/validation split, or (default) every training example with no validation split."""
    if settings.use_validation_split:
        return make_splits(data, VAL_FRACTION, settings.seed, settings.max_train_examples)
    n = len(data.train_labels)
    train = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))[: settings.max_train_examples]
    images, labels = data.train_images[train], data.train_labels[train]
    pixels = images.float().div_(255).transpose(0, 1).reshape(3, -1)
    return Splits(images, labels, images[:0], labels[:0], data.test_images, data.test_labels,
                  pixels.mean(1), pixels.std(1), data.num_classes)


# ---------------------------------------------------------------- one epoch


def train_one_epoch(model, splits: Splits, optimizer, loss_fn, autocast, generator, batch_size: int, on_gpu: bool):
    """One pass over the training split, as the training evaluator does it; (loss sum, correct, examples)."""
    model.train()
    device = splits.train_labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for batch in _batches(len(splits.train_labels), batch_size, generator):
        batch = batch.to(device, non_blocking=True)
        images = augment(normalise(splits.train_images[batch], splits.mean, splits.std), generator)
        if on_gpu:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = splits.train_labels[batch]
        with autocast:
            logits = model(images)
            loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().float() * len(batch)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(batch)
    return loss_sum.item(), correct.item(), seen  # one wait for the GPU per epoch


# ---------------------------------------------------------------- files


def _save_checkpoint(path: Path, identity, epoch, model, optimizer, schedule, generator, history, seconds) -> None:
    state = {
        "identity": identity,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "history": history,
        "seconds": seconds,
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path: Path, identity, settings, model, optimizer, schedule, generator):
    """Restores the training state in place; (epochs done, log rows, seconds trained)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["identity"]
        epoch = int(state["epoch"])
        if saved == identity:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            generator.set_state(state["generator"])
    except Exception as error:  # noqa: BLE001 - truncated, garbled or foreign: the same advice for all
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0] if lines else ''}"
        raise GptnasError(f"{path} is corrupt ({reason}); delete it to start the retraining over") from None
    if saved != identity:
        changed = sorted(name for name in identity if saved.get(name) != identity[name])
        raise GptnasError(
            f"{path} was made with other settings ({', '.join(changed)} differ); "
            f"retrain with the same settings or delete it to start over"
        )
    if epoch > settings.epochs:
        raise GptnasError(
            f"{path} is already at epoch {epoch}, past epochs={settings.epochs}; raise epochs or delete it"
        )
    return epoch, list(state["history"]), float(state["seconds"])


def _write_log(path: Path, history: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(history)
    _write_atomic(path, text.getvalue())


def _save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_json(path: Path, fix: str):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise GptnasError(f"{path} cannot be read ({error}); {fix}") from None


__all__ = ["RetrainSettings", "read_run", "retrain", "training_splits"]
