"""The images the searched networks train and are scored on, loaded once and split reproducibly.

Candidate evaluation, final retraining and the proxies' minibatch all read
their images here, so loading, splitting and standardising happen one way.
Every dataset becomes uint8 tensors (N, 3, H, W) plus int64 labels, small
enough to hold whole on a GPU (CIFAR: 150 MB). Splits are seeded: the
validation split that fitness is measured on is carved from the training set;
the test split is only ever reported.

- `cifar10`, `cifar100`: the Hugging Face Hub datasets `uoft-cs/cifar10` /
  `uoft-cs/cifar100`, or a local `data_dir` (a DatasetDict with train and test
  splits saved with `save_to_disk`, or any folder `datasets.load_dataset` reads).
- `digits`: scikit-learn's bundled 8x8 digits as 8x8 RGB (the networks pool globally, so any
  size works, and at 8x8 a CPU trains a candidate in seconds); needs no network, so smoke
  runs and tests use it.

`dataset_source(dataset, data_dir)` says which data that is, for a run to record: the Hub id
and the commit the loaded copy came from (online or from the offline cache), or the local folder.
"""

from __future__ import annotations

import logging
import socket
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from gptnas.errors import GptnasError, one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    hub_id: str | None  # None: built in, no download
    image_columns: tuple[str, ...]  # first one present is used
    label_columns: tuple[str, ...]
    num_classes: int


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("uoft-cs/cifar10", ("img", "image"), ("label",), 10),
    "cifar100": DatasetSpec("uoft-cs/cifar100", ("img", "image"), ("fine_label", "label"), 100),
    "digits": DatasetSpec(None, (), (), 10),
}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # the digits test split is fixed, whatever the evaluation seed

_SOURCES: dict[tuple[str, str | None], dict] = {}  # what _load_hf loaded in this process, by (dataset, data_dir)


@dataclass(frozen=True)
class ImageData:
    train_images: torch.Tensor  # uint8 (N, 3, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


@dataclass(frozen=True)
class Splits:
    """Train / validation (both from the training set) / test, and the train split's pixel statistics."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor  # (3,) per-channel, pixels scaled to [0, 1]
    std: torch.Tensor
    num_classes: int

    def to(self, device: torch.device) -> Splits:
        moved = {name: getattr(self, name).to(device) for name in self.__dataclass_fields__ if name != "num_classes"}
        return Splits(**moved, num_classes=self.num_classes)


def check_dataset(dataset: str, allowed: tuple[str, ...] = tuple(DATASETS)) -> None:
    if dataset not in allowed:
        raise GptnasError(f"unknown dataset {dataset!r}; valid: {', '.join(allowed)}")


@lru_cache(maxsize=4)
def load_images(dataset: str, data_dir: str | None = None, input_size: int = 32) -> ImageData:
    """The whole dataset as uint8 tensors at `input_size` x `input_size` (cached per process)."""
    check_dataset(dataset)
    if dataset == "digits":
        return _digits(input_size)
    spec = DATASETS[dataset]
    splits = _load_hf(spec, dataset, data_dir)
    missing = [split for split in ("train", "test") if split not in splits]
    if missing:
        raise GptnasError(f"{dataset} data has splits {list(splits)}; it needs 'train' and 'test'")
    train_images, train_labels = _split_tensors(splits["train"], spec, dataset, input_size)
    test_images, test_labels = _split_tensors(splits["test"], spec, dataset, input_size)
    log.info("loaded %s: %d train, %d test images", dataset, len(train_labels), len(test_labels))
    return ImageData(train_images, train_labels, test_images, test_labels, spec.num_classes)


def dataset_source(dataset: str, data_dir: str | None = None) -> dict:
    """Where the images of `dataset` come from: `{"dataset", "hub_id", "revision", "data_dir", "fingerprints"}`.

    `revision` is the Hub commit of the copy `datasets` loaded (datasets caches a Hub dataset under its
    commit, so this holds offline too); None when not known: a local `data_dir` (then recorded, resolved),
    or the bundled digits. `fingerprints` are `datasets`' content fingerprints of each split (None for
    digits). Loads the dataset (from the cache, after the first time) unless this process already has."""
    check_dataset(dataset)
    if dataset == "digits":
        return {"dataset": dataset, "hub_id": None, "revision": None, "data_dir": None, "fingerprints": None}
    if (dataset, data_dir) not in _SOURCES:
        _load_hf(DATASETS[dataset], dataset, data_dir)
    return dict(_SOURCES[(dataset, data_dir)])


def _record_source(dataset: str, data_dir: str | None, spec: DatasetSpec, splits) -> None:
    splits = dict(splits) if isinstance(splits, dict) else {}  # a bare Dataset is refused later, by load_images
    revision = None
    if data_dir is None:
        # datasets keeps a Hub dataset in <cache>/<name>/<config>/<version>/<commit>/<name>-<split>.arrow
        files = [f["filename"] for split in splits.values() for f in split.cache_files]
        commits = {Path(f).parent.name for f in files if re.fullmatch(r"[0-9a-f]{40}", Path(f).parent.name)}
        revision = commits.pop() if len(commits) == 1 else None
    _SOURCES[(dataset, data_dir)] = {
        "dataset": dataset,
        "hub_id": spec.hub_id if data_dir is None else None,
        "revision": revision,
        "data_dir": None if data_dir is None else str(Path(data_dir).expanduser().resolve()),
        "fingerprints": {name: getattr(split, "_fingerprint", None) for name, split in splits.items()},
    }


def make_splits(data: ImageData, val_fraction: float, seed: int, max_train_examples: int | None = None) -> Splits:
    """Carves a seeded validation split from the training set (none for val_fraction 0, as the final
    retraining uses by default); optionally keeps fewer training examples."""
    n = len(data.train_labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n_val >= n:
        raise GptnasError(f"val_fraction {val_fraction} leaves no training examples out of {n}")
    val, train = order[:n_val], order[n_val:]
    if max_train_examples is not None:
        train = train[:max_train_examples]
    train_images = data.train_images[train]
    mean, std = channel_stats(train_images)
    return Splits(
        train_images,
        data.train_labels[train],
        data.train_images[val],
        data.train_labels[val],
        data.test_images,
        data.test_labels,
        mean,
        std,
        data.num_classes,
    )


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) of uint8 images (N, 3, H, W), pixels scaled to [0, 1]: what `normalise` takes."""
    pixels = images.float().div_(255).transpose(0, 1).reshape(3, -1)
    return pixels.mean(1), pixels.std(1)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32, standardised per channel."""
    return (images.float().div_(255) - mean[:, None, None]) / std[:, None, None]


# ---------------------------------------------------------------- sources


def _digits(input_size: int) -> ImageData:
    del input_size  # kept at 8x8: see the module docstring
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GptnasError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0  # 0..16 grey levels
    images = (images * 255).round().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_test = round(len(labels) * DIGITS_TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return ImageData(images[train], labels[train], images[test], labels[test], 10)


def _load_hf(spec: DatasetSpec, dataset: str, data_dir: str | None):
    import datasets  # slow to import; only runs that train on CIFAR need it

    if data_dir is None:
        online = hub_reachable()
        if not online:  # straight to the local cache: no retries against a Hub that cannot answer
            datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
        try:
            splits = datasets.load_dataset(spec.hub_id)
        except Exception as error:  # noqa: BLE001 - offline, DNS, auth: all mean "get the data another way"
            where = "from the Hugging Face Hub" if online else "(offline, and it is not in the local Hugging Face cache)"
            raise GptnasError(
                f"could not load {dataset} {where}: {one_line(error)}; use --dataset digits (bundled, no download), "
                f"--data_dir with a local copy, or run once online (then HF_HUB_OFFLINE=1 reads the cache)"
            ) from None
        _record_source(dataset, data_dir, spec, splits)
        return splits
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise GptnasError(f"data_dir {str(path)!r} does not exist; point it at a local copy of {dataset}")
    try:
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            splits = datasets.load_from_disk(str(path))
        else:
            splits = datasets.load_dataset(str(path))
    except Exception as error:  # noqa: BLE001
        raise GptnasError(
            f"could not read {dataset} from {str(path)!r} ({one_line(error)}); "
            f"give a DatasetDict with train and test splits saved with save_to_disk"
        ) from None
    _record_source(dataset, data_dir, spec, splits)
    return splits


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers at all (one TCP connection; False when offline mode is set)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _column(split, candidates: tuple[str, ...], dataset: str, what: str) -> str:
    for name in candidates:
        if name in split.column_names:
            return name
    raise GptnasError(
        f"{dataset} data has no {what} column "
        f"(looked for {', '.join(candidates)}; found {', '.join(split.column_names)})"
    )


def _split_tensors(split, spec: DatasetSpec, dataset: str, input_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    image_column = _column(split, spec.image_columns, dataset, "image")
    label_column = _column(split, spec.label_columns, dataset, "label")
    table = split.with_format("numpy")[:]
    labels = torch.as_tensor(np.asarray(table[label_column]), dtype=torch.long)
    images = table[image_column]
    if isinstance(images, np.ndarray) and images.dtype != object:
        tensor = _to_uint8_nchw(images, input_size)
    else:  # images of different sizes: one at a time
        tensor = torch.cat([_to_uint8_nchw(np.asarray(image)[None], input_size) for image in images])
    if labels.min() < 0 or labels.max() >= spec.num_classes:
        raise GptnasError(f"{dataset} labels must lie in 0..{spec.num_classes - 1}; is column {label_column!r} right?")
    return tensor, labels


def _to_uint8_nchw(images: np.ndarray, input_size: int) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) pixels -> uint8 (N, 3, input_size, input_size)."""
    if images.dtype != np.uint8:
        scale = 255.0 if images.max() <= 1.0 else 1.0
        images = np.clip(images.astype(np.float32) * scale, 0, 255).round().astype(np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.ndim == 3:
        tensor = tensor[..., None]
    tensor = tensor.permute(0, 3, 1, 2)
    channels = tensor.shape[1]
    tensor = tensor.expand(-1, 3, -1, -1) if channels == 1 else tensor[:, :3]
    if tuple(tensor.shape[2:]) != (input_size, input_size):
        resized = F.interpolate(tensor.float(), size=(input_size, input_size), mode="bilinear", antialias=True)
        tensor = resized.round().clamp_(0, 255).to(torch.uint8)
    return tensor.contiguous()
