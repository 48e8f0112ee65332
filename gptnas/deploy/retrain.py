"""Final training of what a search found: the best network, from scratch, with the full schedule.

The GPT-NAS protocol: 350 epochs of SGD (momentum 0.9, Nesterov, weight decay
5e-4), batch 128, learning rate 0.01 divided by 10 every 100 epochs. The
search is over, so by default the network trains on the whole training set
(no validation split) and the test split is scored once, at the end. The loop
is candidate evaluation's (loop.py), with the learning rate stepped per epoch.

Everything lands in RUN_DIR/retrain/: the exported network (model.safetensors,
config.json, README.md: see export.py; `gptnas.load_network` reads it without
the run directory), result.json (written last) and log.csv. A retraining runs
for days, so after every epoch a checkpoint (weights, optimizer, schedule, the
generator that draws batch order and augmentation) is written atomically: a
killed retraining continues where it stopped and, on a CPU, ends with exactly
the weights of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from gptnas.config import flatten, load_yaml
from gptnas.errors import GptnasError, check_limit, one_line, quote
from gptnas.files import atomic_path, write_atomic, write_json
from gptnas.spaces import SearchSpace, run_space
from gptnas.training.data import (
    MAX_BATCH_SIZE,
    MAX_IMAGE_SIZE,
    ImageData,
    Splits,
    dataset_source,
    load_images,
    make_splits,
)
from gptnas.training.device import resolve_device
from gptnas.deploy.export import export_network
from gptnas.training.loop import Diverged, accuracy, build_network, sgd, train_epoch

log = logging.getLogger(__name__)

RETRAIN_DIR = "retrain"
CHECKPOINT = "checkpoint.pt"
DATA_OPTIONS = ("data_dir", "dataset_revision", "image_column", "label_column")  # names (or unset) in config.yaml
RESULT = "result.json"  # written last: it marks the retraining finished
MAX_RETRAIN_EPOCHS = 100_000
LR_STEP_SHARE = 100 / 350  # GPT-NAS's schedule: 350 epochs, the learning rate divided by 10 every 100
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
    # The learning rate is multiplied by lr_gamma every this many epochs; None: GPT-NAS's 100 of 350 epochs,
    # scaled to `epochs` (a retraining of 30 epochs steps down every 9), so a short one decays too.
    lr_step_epochs: int | None = None
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
        if self.lr_step_epochs is None:
            object.__setattr__(self, "lr_step_epochs", max(1, round(self.epochs * LR_STEP_SHARE)))
        check_limit("batch_size", self.batch_size, MAX_BATCH_SIZE)
        check_limit("epochs", self.epochs, MAX_RETRAIN_EPOCHS)
        if not self.lr > 0 or self.lr_step_epochs < 1 or not 0 < self.lr_gamma <= 1:
            raise GptnasError(
                f"need lr > 0, lr_step_epochs >= 1 and 0 < lr_gamma <= 1, "
                f"got {self.lr}, {self.lr_step_epochs} and {self.lr_gamma}"
            )
        if self.max_train_examples is not None and self.max_train_examples < 2:
            raise GptnasError(f"max_train_examples must be >= 2, got {self.max_train_examples}")


@dataclass
class Retraining:
    """One retraining in progress: what it trains, on what, and how far it has got."""

    space: SearchSpace
    arch: Any
    key: str
    dataset: str
    data_dir: str | None
    search_config: dict[str, Any]  # the run's config.yaml, for the model card
    device: torch.device
    splits: Splits
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.StepLR
    generator: torch.Generator  # batch order and augmentation, on the CPU
    identity: dict[str, Any]  # what a checkpoint must match to be continued
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one log.csv row per epoch
    seconds: float = 0.0  # training and testing time, over every call


def retrain(run_dir: str | Path, settings: RetrainSettings | None = None, *, stop_after_epochs: int | None = None):
    """Trains the best architecture of the finished search in `run_dir` and scores it on the test split.

    Returns the result (what result.json holds). Continues from RUN_DIR/retrain/checkpoint.pt when
    there is one; returns the saved result without training when result.json already exists.

    `stop_after_epochs` is for tests and planned interruptions: once that many epochs are done
    (counting those of earlier calls) and more remain, None is returned with the checkpoint
    written, exactly as if the process had been killed there; call again to finish.
    """
    settings = settings or RetrainSettings()
    out = Path(run_dir) / RETRAIN_DIR
    if (out / RESULT).exists():
        return _read_json(out / RESULT, "delete it to retrain")
    run = _set_up(Path(run_dir), settings)
    out.mkdir(parents=True, exist_ok=True)
    if (out / CHECKPOINT).exists():
        _load_checkpoint(out / CHECKPOINT, run, settings)
        log.info("resuming the retraining after epoch %d of %d", run.epochs_done, settings.epochs)
    log.info("retraining %s on %d %s images for %d epochs on %s",
             run.key, len(run.splits.train_labels), run.dataset, settings.epochs, run.device)
    try:
        if not _train_epochs(run, settings, out, stop_after_epochs):
            return None
        test_accuracy = _score_on_test(run)
    except Diverged as error:
        raise GptnasError(f"retraining diverged: {error}; retrain with a lower lr") from None
    result = _save_results(run, settings, out, test_accuracy)
    log.info("retrained %s: test accuracy %.2f%% after %d epochs (%.0fs)",
             run.key, test_accuracy, run.epochs_done, run.seconds)
    return result


# ---------------------------------------------------------------- the steps


def _set_up(run_dir: Path, settings: RetrainSettings) -> Retraining:
    """The network of the run's best architecture, freshly initialised, with its data, optimizer and schedule."""
    space, key, config = read_run(run_dir)
    dataset = config.get("dataset", "cifar10")
    data_dir = settings.data_dir if settings.data_dir is not None else config.get("data_dir")
    device = resolve_device(settings.device)
    data = load_images(  # the search's dataset options; a local copy given here replaces the pinned Hub revision
        dataset, data_dir, space.input_size, revision=config.get("dataset_revision") if settings.data_dir is None else None,
        image_column=config.get("image_column"), label_column=config.get("label_column"),
        image_size=config.get("image_size") or space.image_size,
    )
    splits = training_splits(data, settings).to(device)
    arch = space.from_key(key)
    model = build_network(space, arch, splits.num_classes, settings.seed, device)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = sgd(model, settings.lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_epochs, settings.lr_gamma)
    identity = {"key": key, "dataset": dataset, **{name: getattr(settings, name) for name in RESUME_IDENTITY}}
    return Retraining(space, arch, key, dataset, data_dir, config, device, splits, model, optimizer, schedule,
                      generator, identity)


def _train_epochs(run: Retraining, settings: RetrainSettings, out: Path, stop_after_epochs: int | None) -> bool:
    """Trains the remaining epochs, checkpointing after each; False when stopped by `stop_after_epochs`.
    Raises Diverged before a non-finite epoch is checkpointed."""
    loss_fn = nn.CrossEntropyLoss()
    progress = tqdm(total=settings.epochs, initial=run.epochs_done, desc="retrain", unit="epoch")
    try:
        for epoch in range(run.epochs_done + 1, settings.epochs + 1):
            if stop_after_epochs is not None and run.epochs_done >= stop_after_epochs:
                return False
            start = time.perf_counter()
            lr = run.optimizer.param_groups[0]["lr"]
            trained = train_epoch(
                run.model, run.splits, run.optimizer, loss_fn, run.generator, settings.batch_size, epoch
            )
            run.schedule.step()
            run.seconds += time.perf_counter() - start
            run.history.append({"epoch": epoch, "lr": lr, "train_loss": trained.loss,
                                "train_accuracy": trained.accuracy, "seconds": round(run.seconds, 3)})
            run.epochs_done = epoch
            _save_checkpoint(out / CHECKPOINT, run)
            _write_log(out / "log.csv", run.history)
            progress.update(1)
            progress.set_postfix(loss=f"{trained.loss:.3f}", acc=f"{trained.accuracy:.1f}")
    finally:
        progress.close()
    return True


def _score_on_test(run: Retraining) -> float:
    """Test accuracy in %, scored once, after the last epoch."""
    start = time.perf_counter()
    test_accuracy = accuracy(run.model, run.splits.test_images, run.splits.test_labels, run.splits)
    run.seconds += time.perf_counter() - start
    return test_accuracy


def _save_results(run: Retraining, settings: RetrainSettings, out: Path, test_accuracy: float) -> dict[str, Any]:
    """Exports the network (weights, config.json, model card), then writes the result (last); drops the
    checkpoint they supersede."""
    splits, images = run.splits, run.splits.test_images
    revision = run.search_config.get("dataset_revision") if settings.data_dir is None else None
    source = dataset_source(run.dataset, run.data_dir, revision)
    name = run.dataset if source["data_dir"] is None else Path(run.dataset).name  # a local path stays local
    training = {name: getattr(settings, name) for name in RESUME_IDENTITY}
    training.update(epochs=run.epochs_done, train_examples=len(splits.train_labels),
                    seconds=round(run.seconds, 3), device=str(run.device))
    exported = export_network(
        out, run.model, space=run.space, arch=run.arch, num_classes=splits.num_classes,
        input_shape=tuple(images.shape[1:]), mean=splits.mean.tolist(), std=splits.std.tolist(),
        dataset={"name": name, "hub_id": source["hub_id"], "revision": source["revision"]},
        test_accuracy=test_accuracy, latency_batch_sizes=(1, settings.batch_size),
        training=training, search={**run.search_config, "space": run.space.name, "dataset": name},
    )
    result = {
        "test_accuracy": test_accuracy,
        "epochs": run.epochs_done,
        "seconds": round(run.seconds, 3),
        "params": exported["results"]["params"],
        "space": run.space.name,
        "key": run.key,
        "dataset": run.dataset,
        "train_examples": len(splits.train_labels),
        "device": str(run.device),
        "settings": asdict(settings),
    }
    write_json(out / RESULT, result)
    (out / CHECKPOINT).unlink(missing_ok=True)
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
    config = flatten(load_yaml(config_path))
    best = _read_json(best_path, "rerun or resume the search")
    if "space" not in config or not isinstance(best, dict) or not isinstance(best.get("key"), str):
        raise GptnasError(f"{run_dir}: config.yaml needs a space and best.json a key; is this a gptnas run?")
    for name in ("space", "dataset", *DATA_OPTIONS):
        if not (isinstance(config.get(name), str) or (config.get(name) is None and name != "space")):
            raise GptnasError(f"{config_path}: {name} must be a name, got {quote(config.get(name))}; is this a "
                              "gptnas run?")
    if config.get("image_size") is not None:
        if isinstance(config["image_size"], bool) or not isinstance(config["image_size"], int):
            raise GptnasError(f"{config_path}: image_size must be an integer, got {quote(config['image_size'])}")
        check_limit(f"{config_path}: image_size", config["image_size"], MAX_IMAGE_SIZE, low=1)
    return run_space(config["space"], run_dir), best["key"], config


def training_splits(data: ImageData, settings: RetrainSettings) -> Splits:
    """The search's train/validation split, or (default) every training example with no validation split."""
    val_fraction = VAL_FRACTION if settings.use_validation_split else 0.0
    return make_splits(data, val_fraction, settings.seed, settings.max_train_examples)


# ---------------------------------------------------------------- files


def _save_checkpoint(path: Path, run: Retraining) -> None:
    state = {
        "identity": run.identity,
        "epoch": run.epochs_done,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "generator": run.generator.get_state(),
        "history": run.history,
        "seconds": run.seconds,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, run: Retraining, settings: RetrainSettings) -> None:
    """Restores the training state of `run` in place, or says why the checkpoint cannot be continued."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["identity"]
        epoch = int(state["epoch"])
        if saved == run.identity:
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.schedule.load_state_dict(state["schedule"])
            run.generator.set_state(state["generator"])
    except Exception as error:  # noqa: BLE001 - truncated, garbled or foreign: the same advice for all
        raise GptnasError(f"{path} is corrupt ({one_line(error)}); delete it to start the retraining over") from None
    if saved != run.identity:
        changed = sorted(name for name in run.identity if saved.get(name) != run.identity[name])
        raise GptnasError(
            f"{path} was made with other settings ({', '.join(changed)} differ); "
            f"retrain with the same settings or delete it to start over"
        )
    if epoch > settings.epochs:
        raise GptnasError(
            f"{path} is already at epoch {epoch}, past epochs={settings.epochs}; raise epochs or delete it"
        )
    run.epochs_done, run.history, run.seconds = epoch, list(state["history"]), float(state["seconds"])


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(history)
    write_atomic(path, text.getvalue())


def _read_json(path: Path, fix: str):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise GptnasError(f"{path} cannot be read ({error}); {fix}") from None


__all__ = ["RetrainSettings", "read_run", "retrain", "training_splits"]
