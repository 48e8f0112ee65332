"""The images the searched networks train and are scored on, loaded once and split reproducibly.

Candidate evaluation, final retraining and the proxies' minibatch all read
their images here, so loading, splitting and standardising happen one way.
Every dataset becomes uint8 tensors (N, 3, H, W) plus int64 labels 0..K-1, small
enough to hold whole on a GPU (CIFAR: 150 MB). Splits are seeded: the
validation split that fitness is measured on is carved from the training set;
the test split is only ever reported.

`dataset` is one of:
- a Hugging Face Hub dataset id (`owner/name`, e.g. `uoft-cs/cifar10`), at `revision` when pinned;
- a local folder: class subfolders of image files (`imagefolder`, optionally under train/ and
  test/), a DatasetDict saved with `save_to_disk`, or any folder `datasets.load_dataset` reads;
- a bundled name: `cifar10` / `cifar100` (the Hub's `uoft-cs/cifar10` / `uoft-cs/cifar100`, or
  their local copy in `data_dir`), or `digits`: scikit-learn's 8x8 digits as 8x8 RGB (the
  networks pool globally, so any size works, and at 8x8 a CPU trains a candidate in seconds);
  needs no network, so smoke runs and tests use it.

The images and labels are read from `image_column` / `label_column` (default: the first of
image/img and of label/labels/fine_label). The class count is the label column's ClassLabel's,
else the number of distinct labels (mapped to 0..K-1 in sorted order). Images keep their common
square side, or are resized to `image_size` (given, or the space's input size when their sizes
differ); grayscale, palette and RGBA images become RGB. The test split is the dataset's `test`
split, else its `validation` split, else a fixed 20 % of train (seed 0).
A loaded dataset is cached per process (`load_images`), with its pixel statistics, so candidates
never prepare it again.

`dataset_source(dataset, data_dir, revision)` says which data that is, for a run to record: the Hub
id and the commit the loaded copy came from (online or from the offline cache), or the local folder
(with, for image folders, the file count and a hash of the file listing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from gptnas.errors import GptnasError, check_limit, one_line, quote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """A bundled dataset name."""

    hub_id: str | None  # None: built in, no download
    image_columns: tuple[str, ...]  # first one present is used
    label_columns: tuple[str, ...]
    num_classes: int  # fixed: labels of a local copy need not be a ClassLabel
    image_size: int


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("uoft-cs/cifar10", ("img", "image"), ("label",), 10, 32),
    "cifar100": DatasetSpec("uoft-cs/cifar100", ("img", "image"), ("fine_label", "label"), 100, 32),
    "digits": DatasetSpec(None, (), (), 10, 8),
}
IMAGE_COLUMNS = ("image", "img")  # tried in this order when no image_column is given
LABEL_COLUMNS = ("label", "labels", "fine_label")
TEST_SPLITS = ("test", "validation")  # the first one present is the test split
HOLD_OUT_FRACTION = 0.2  # of train, as the test split of a dataset that has none
HOLD_OUT_SEED = 0  # that split is fixed, whatever the evaluation seed
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
COMMIT = re.compile(r"[0-9a-f]{40}")
DECODE_CHUNK = 1024  # images decoded at a time
MAX_IMAGE_SIZE = 1_024  # pixels a side: 1024x1024 is already 16x ImageNet's 224x224
MAX_BATCH_SIZE = 65_536  # images in one batch, for training, proxies and retraining
VALID = "cifar10, cifar100, digits, a Hub dataset id (owner/name) or a local folder"

# What this process loaded, by (dataset, data_dir): (the revision asked for, the record dataset_source returns).
_SOURCES: dict[tuple[str, str | None], tuple[str | None, dict]] = {}


@dataclass(frozen=True)
class ImageData:
    train_images: torch.Tensor  # uint8 (N, 3, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    hflip: bool = True  # horizontal flips are a valid augmentation (not for handwritten digits)

    @cached_property
    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, std) of all training images, computed once per loaded dataset."""
        return channel_stats(self.train_images)


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
    hflip: bool = True  # augment with horizontal flips

    def to(self, device: torch.device) -> Splits:
        kept = ("num_classes", "hflip")
        moved = {name: getattr(self, name).to(device) for name in self.__dataclass_fields__ if name not in kept}
        return Splits(**moved, num_classes=self.num_classes, hflip=self.hflip)


def check_dataset(dataset: str, also: tuple[str, ...] = ()) -> None:
    """Refuses, without reading anything, a name that is no bundled dataset, Hub id or existing folder."""
    if dataset in DATASETS or dataset in also or _local_folder(dataset) is not None or HUB_ID.fullmatch(dataset):
        return
    if _looks_like_path(dataset):
        raise GptnasError(f"dataset folder {quote(dataset)} does not exist; check the path")
    raise GptnasError(f"unknown dataset {quote(dataset)}; valid: {', '.join((VALID, *also))}")


@lru_cache(maxsize=4)
def load_images(
    dataset: str,
    data_dir: str | None = None,
    input_size: int = 32,
    *,
    revision: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    image_size: int | None = None,
) -> ImageData:
    """The whole dataset as uint8 tensors (cached per process). Images keep their common square side,
    or are resized to `image_size`, or to `input_size` when their sizes differ."""
    check_dataset(dataset)
    check_limit("image_size", image_size, MAX_IMAGE_SIZE, low=1)
    if dataset == "digits":
        given = [f"--{name}" for name, value in (("image_column", image_column), ("label_column", label_column))
                 if value is not None]
        if given:
            raise GptnasError(f"--dataset digits is bundled with its own images and labels; drop {given[0]}")
        return _digits(image_size)
    spec = DATASETS.get(dataset)
    splits = _read_splits(dataset, data_dir, revision)
    train, test, test_from = _train_and_test(splits, dataset)
    fixed = spec.num_classes if spec and label_column is None else None  # a local copy may have plain int labels
    image_column = _column(train, image_column, spec.image_columns if spec else IMAGE_COLUMNS, dataset, "image")
    label_column = _column(train, label_column, spec.label_columns if spec else LABEL_COLUMNS, dataset, "label")
    for column, what in ((image_column, "image"), (label_column, "label")):
        _column(test, column, (), dataset, what, split="test")
    train_labels, test_labels, num_classes = _labels(train, test, label_column, fixed, dataset)
    size = image_size or (spec.image_size if spec else None)
    train_images, test_images = _images({"train": train, "test": test}, image_column, size, input_size, dataset)
    side = train_images.shape[-1]
    log.info("loaded %s: %d train, %d test images (%s), %d classes, %dx%d",
             dataset, len(train_labels), len(test_labels), test_from, num_classes, side, side)
    return ImageData(train_images, train_labels, test_images, test_labels, num_classes)


def dataset_source(dataset: str, data_dir: str | None = None, revision: str | None = None) -> dict:
    """Where the images of `dataset` come from: `{"dataset", "hub_id", "revision", "data_dir", "fingerprints"}`,
    plus `files` and `listing_sha256` (of the image files' paths and sizes) for an image folder.

    `revision` is the Hub commit of the copy `datasets` loaded (datasets caches a Hub dataset under its
    commit, so this holds offline too); None when not known: a local folder (then recorded, resolved),
    or the bundled digits. `fingerprints` are `datasets`' content fingerprints of each split (None for
    digits). Loads the dataset (from the cache, after the first time) unless this process already has
    (with `revision` None: at whatever revision it was loaded)."""
    check_dataset(dataset)
    if dataset == "digits":
        return {"dataset": dataset, "hub_id": None, "revision": None, "data_dir": None, "fingerprints": None}
    loaded = _SOURCES.get((dataset, data_dir))
    if loaded is None or (revision is not None and loaded[0] != revision):
        _read_splits(dataset, data_dir, revision)
    return dict(_SOURCES[(dataset, data_dir)][1])


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
        data.hflip,
    )


def scaled(data: ImageData, side: int) -> ImageData:
    """`data` with its images resized to `side` pixels a side (bilinear, antialiased)."""
    return ImageData(_resize(data.train_images, side), data.train_labels, _resize(data.test_images, side),
                     data.test_labels, data.num_classes, data.hflip)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) of uint8 images (N, 3, H, W), pixels scaled to [0, 1]: what `normalise` takes."""
    pixels = images.float().div_(255).transpose(0, 1).reshape(3, -1)
    return pixels.mean(1), pixels.std(1)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32, standardised per channel."""
    return (images.float().div_(255) - mean[:, None, None]) / std[:, None, None]


def hold_out(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(test, train) indices of a dataset with no test split: a fixed 20 % held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(HOLD_OUT_SEED))
    n_test = round(n * HOLD_OUT_FRACTION)
    return order[:n_test], order[n_test:]


# ---------------------------------------------------------------- sources


def _digits(image_size: int | None) -> ImageData:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GptnasError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0  # 0..16 grey levels
    images = (images * 255).round().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    if image_size is not None:
        images = _resize(images, image_size)
    labels = torch.from_numpy(digits.target).long()
    test, train = hold_out(len(labels))
    return ImageData(images[train], labels[train], images[test], labels[test], 10, hflip=False)  # a mirrored 2 is no 2


def _local_folder(dataset: str) -> Path | None:
    path = Path(dataset).expanduser()
    return path if dataset not in DATASETS and path.exists() else None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~")) or Path(name).is_absolute() or name.count("/") + name.count(os.sep) > 1


def _read_splits(dataset: str, data_dir: str | None, revision: str | None) -> dict:
    """The dataset's splits as `datasets.Dataset`s, by name; records where they came from."""
    spec = DATASETS.get(dataset)
    folder = _local_folder(dataset)
    if folder is not None and data_dir is not None:
        raise GptnasError(f"--dataset {dataset} is already a folder; drop --data_dir {data_dir}")
    if revision is not None and (folder is not None or data_dir is not None):
        raise GptnasError(f"--dataset_revision pins a Hub dataset; {folder or data_dir} is a local folder, drop it")
    if folder is not None or data_dir is not None:
        path = folder if folder is not None else Path(data_dir).expanduser()
        splits, extra = _read_folder(path, dataset, given_as="data_dir" if folder is None else "dataset folder")
    else:
        splits, extra = _read_hub(spec.hub_id if spec else dataset, dataset, revision), {}
    _record_source(dataset, data_dir, revision, splits, folder, extra)
    return splits


def _read_hub(hub_id: str, dataset: str, revision: str | None) -> dict:
    import datasets  # slow to import; only runs that train on Hub data need it

    online = hub_reachable()
    if not online:  # straight to the local cache: no retries against a Hub that cannot answer
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        splits = datasets.load_dataset(hub_id, revision=revision)
    except Exception as error:  # noqa: BLE001 - offline, DNS, auth: all mean "get the data another way"
        where = "from the Hugging Face Hub" if online else "(offline, and it is not in the local Hugging Face cache)"
        at = f" at revision {revision}" if revision else ""
        raise GptnasError(
            f"could not load {dataset}{at} {where}: {one_line(error)}; use --dataset digits (bundled, no download), "
            f"a local folder (--dataset FOLDER, or --data_dir with a local copy), "
            f"or run once online (then HF_HUB_OFFLINE=1 reads the cache)"
        ) from None
    splits = _as_dict(splits)
    cached = _cached_commit(splits)
    if revision is not None and COMMIT.fullmatch(revision) and cached is not None and cached != revision:
        # offline, datasets reads the most recent cached copy whatever the revision asked for
        raise GptnasError(f"the cached copy of {dataset} is commit {cached}, not the pinned --dataset_revision "
                          f"{revision}; run once online to fetch that revision")
    return splits


def _read_folder(path: Path, dataset: str, given_as: str) -> tuple[dict, dict]:
    """(splits, what to record beyond the path) of a local folder."""
    import datasets

    if not path.exists():
        raise GptnasError(f"{given_as} {quote(str(path))} does not exist; point it at a local copy of {dataset}")
    if not path.is_dir():
        raise GptnasError(f"{given_as} {quote(str(path))} is a file; give a folder")
    extra: dict = {}
    try:
        with _quiet_datasets():
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                splits = datasets.load_from_disk(str(path))
            elif images := _image_files(path):  # class subfolders (optionally under train/ and test/)
                listing = "".join(f"{file.relative_to(path).as_posix()}\t{file.stat().st_size}\n" for file in images)
                extra = {"files": len(images), "listing_sha256": hashlib.sha256(listing.encode()).hexdigest()}
                splits = datasets.load_dataset("imagefolder", data_dir=str(path), drop_labels=False)  # labels: folder names
            else:
                splits = datasets.load_dataset(str(path))
    except Exception as error:  # noqa: BLE001 - unreadable, empty, not a dataset: the same advice for all
        raise GptnasError(
            f"could not read {dataset} from {quote(str(path))} ({one_line(error)}); give a folder of class "
            f"subfolders of images or a DatasetDict saved with save_to_disk"
        ) from None
    return _as_dict(splits), extra


def _image_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


@contextmanager
def _quiet_datasets():
    """Reading a local folder takes seconds: no progress bars (they would garble a one-line error)."""
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _as_dict(splits) -> dict:
    """A DatasetDict as a plain dict; a bare Dataset as the train split."""
    return dict(splits) if isinstance(splits, dict) else {"train": splits}


def _cached_commit(splits: dict) -> str | None:
    # datasets keeps a Hub dataset in <cache>/<name>/<config>/<version>/<commit>/<name>-<split>.arrow
    files = [f["filename"] for split in splits.values() for f in split.cache_files]
    commits = {Path(f).parent.name for f in files if COMMIT.fullmatch(Path(f).parent.name)}
    return commits.pop() if len(commits) == 1 else None


def _record_source(dataset: str, data_dir: str | None, revision: str | None, splits: dict,
                   folder: Path | None, extra: dict) -> None:
    local = folder if folder is not None else (Path(data_dir).expanduser() if data_dir is not None else None)
    hub_id = None if local is not None else (DATASETS[dataset].hub_id if dataset in DATASETS else dataset)
    record = {
        "dataset": dataset,
        "hub_id": hub_id,
        "revision": None if local is not None else (_cached_commit(splits) or revision),
        "data_dir": None if local is None else str(local.resolve()),
        "fingerprints": {name: getattr(split, "_fingerprint", None) for name, split in splits.items()},
        **extra,
    }
    _SOURCES[(dataset, data_dir)] = (revision, record)


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


# ---------------------------------------------------------------- splits, columns, labels


def _train_and_test(splits: dict, dataset: str):
    """(train, test, how the test split was chosen); the held-out part is fixed (seed 0)."""
    if "train" not in splits:
        raise GptnasError(f"{dataset} has splits {', '.join(splits) or 'none'}; it needs a 'train' split")
    train = splits["train"]
    for name in TEST_SPLITS:
        if name in splits:
            return train, splits[name], f"the test split is its {name!r} split"
    if len(train) < 2:
        raise GptnasError(f"{dataset} has {len(train)} training image(s) and no test split; it needs more")
    test, kept = hold_out(len(train))
    return (train.select(kept.tolist()), train.select(test.tolist()),
            f"no test or validation split: a fixed {HOLD_OUT_FRACTION:.0%} of train held out as the test split")


def _column(table, given: str | None, candidates: tuple[str, ...], dataset: str, what: str,
            split: str | None = None) -> str:
    """The image or label column: `given` (which must exist), else the first candidate present."""
    where = f"{dataset} ({split} split)" if split else dataset
    columns = table.column_names
    if given is not None:
        if given not in columns:
            raise GptnasError(f"{where} has no column {quote(given)} (--{what}_column); its columns: {', '.join(columns)}")
        return given
    for name in candidates:
        if name in columns:
            return name
    raise GptnasError(
        f"{where} has no {what} column (looked for {', '.join(candidates)}); its columns: {', '.join(columns)}; "
        f"name it with --{what}_column"
    )


def _labels(train, test, column: str, fixed: int | None, dataset: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train labels, test labels, class count): a ClassLabel's classes, else `fixed` (a bundled name's
    own labels), else the distinct labels of both splits, mapped to 0..K-1 in sorted order."""
    import datasets

    values = [np.asarray(split.select_columns([column]).with_format("numpy")[:][column]) for split in (train, test)]
    if any(v.ndim != 1 or any(isinstance(x, (list, np.ndarray)) for x in v[:100]) for v in values):
        raise GptnasError(f"{dataset} column {quote(column)} must hold one label per image; is --label_column right?")
    feature = train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        num_classes, names = feature.num_classes, feature.names
    elif fixed is not None:
        num_classes, names = fixed, None
    else:
        classes = _classes(values, column, dataset)
        values = [np.searchsorted(classes, v) for v in values]
        num_classes, names = len(classes), [str(c) for c in classes]
    if num_classes < 2:
        raise GptnasError(f"{dataset} has one class only ({', '.join(names or ['?'])}) in column {quote(column)}; "
                          f"a classifier needs at least two (one subfolder per class)")
    try:
        train_labels, test_labels = (torch.as_tensor(v.astype(np.int64)) for v in values)
    except (TypeError, ValueError):
        raise GptnasError(f"{dataset} column {quote(column)} holds {values[0].dtype} values, not class indices; "
                          f"is --label_column right?") from None
    for labels in (train_labels, test_labels):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise GptnasError(f"{dataset} labels must lie in 0..{num_classes - 1}; is column {quote(column)} right?")
    return train_labels, test_labels, num_classes


def _classes(values: list[np.ndarray], column: str, dataset: str) -> np.ndarray:
    """The classes of plain labels, sorted: the distinct labels of the training split (`values[0]`), which must
    be integers or strings; a test label that no training image has is refused (no network could predict it)."""
    train, test = values
    for split in values:
        kinds = {type(x) for x in split[:1000].tolist()}
        if not (kinds <= {int} or kinds <= {str}):
            found = ", ".join(sorted(k.__name__ for k in kinds))
            raise GptnasError(f"{dataset} column {quote(column)} holds {found} labels; labels must be integers or "
                              "strings (one kind); is --label_column right?")
    try:
        classes = np.unique(train)
        unseen = np.setdiff1d(np.unique(test), classes)
    except TypeError:  # integers and strings mixed across the splits
        raise GptnasError(f"{dataset} column {quote(column)} mixes kinds of labels; is --label_column right?") from None
    if len(unseen):
        raise GptnasError(f"{dataset}: the test split has labels no training image has ({quote(unseen[:5].tolist())}); "
                          "classes are taken from the training split: add training images of them or drop them")
    return classes


# ---------------------------------------------------------------- pixels


def _images(parts: dict, column: str, size: int | None, fallback: int, dataset: str) -> list[torch.Tensor]:
    """Every part's images as uint8 (N, 3, S, S): S is `size`, else the images' own common square side,
    else (sizes differ) `fallback`, said in one log line."""
    import datasets

    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in parts}
    side, native, seen = size, None, []
    for name, table in parts.items():
        if isinstance(table.features[column], datasets.Image):
            table = table.cast_column(column, datasets.Image(mode="RGB"))  # grayscale, palette, RGBA -> RGB
        table = table.select_columns([column]).with_format("numpy")
        for start in range(0, len(table), DECODE_CHUNK):
            for batch in _decode(table, column, start, dataset, name):
                shape = tuple(batch.shape[2:])
                if side is None and native is None and shape[0] == shape[1]:
                    native = shape
                if side is None and shape != native:
                    side = fallback
                    seen = sorted({native, shape} - {None})
                    log.warning("%s: images differ in size (%s, ...); all resized to %dx%d: pass --image_size to "
                                "choose the size", dataset, ", ".join(f"{h}x{w}" for h, w in seen), side, side)
                    chunks = {key: [_resize(c, side) for c in value] for key, value in chunks.items()}
                chunks[name].append(batch if side is None else _resize(batch, side))
    if not chunks["train"]:
        raise GptnasError(f"{dataset} has no training images")
    side = side or native[0]
    return [torch.cat(chunks[name]) if chunks[name] else torch.empty((0, 3, side, side), dtype=torch.uint8)
            for name in parts]


def _decode(table, column: str, start: int, dataset: str, split: str) -> list[torch.Tensor]:
    """Rows start.. of the chunk as uint8 (n, 3, h, w) batches, one per run of equal sizes."""
    try:
        images = table[start : start + DECODE_CHUNK][column]
    except Exception:  # a broken file: find which, one row at a time
        for row in range(start, min(start + DECODE_CHUNK, len(table))):
            try:
                table[row][column]
            except Exception as error:  # noqa: BLE001
                raise GptnasError(f"{dataset}: cannot read image {_image_name(table, column, row)} of the {split} "
                                  f"split ({one_line(error)}); fix or remove it") from None
        raise
    if isinstance(images, np.ndarray) and images.dtype != object:
        return [_to_uint8_nchw(images)]
    batches: list[torch.Tensor] = []
    for image in images:
        tensor = _to_uint8_nchw(np.asarray(image)[None])
        if batches and batches[-1].shape[1:] == tensor.shape[1:]:
            batches[-1] = torch.cat([batches[-1], tensor])
        else:
            batches.append(tensor)
    return batches


def _image_name(table, column: str, row: int) -> str:
    import datasets

    try:
        raw = table.cast_column(column, datasets.Image(decode=False)).with_format(None)[row][column]
        return repr(raw.get("path") or f"#{row}")
    except Exception:  # noqa: BLE001 - not an image column: the row number says enough
        return f"#{row}"


def _to_uint8_nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) pixels -> uint8 (N, 3, H, W)."""
    if images.dtype != np.uint8:
        scale = 255.0 if images.max() <= 1.0 else 1.0
        images = np.clip(images.astype(np.float32) * scale, 0, 255).round().astype(np.uint8)
    tensor = torch.from_numpy(np.require(images, requirements=("C", "W")))  # datasets' arrays are read-only
    if tensor.ndim == 3:
        tensor = tensor[..., None]
    if tensor.ndim != 4:
        raise GptnasError(f"images must be (H, W) or (H, W, C) pixel arrays, got shape {tuple(tensor.shape[1:])}")
    tensor = tensor.permute(0, 3, 1, 2)
    channels = tensor.shape[1]
    tensor = tensor.expand(-1, 3, -1, -1) if channels == 1 else tensor[:, :3]
    return tensor.contiguous()


def _resize(images: torch.Tensor, side: int) -> torch.Tensor:
    if tuple(images.shape[2:]) == (side, side):
        return images
    resized = F.interpolate(images.float(), size=(side, side), mode="bilinear", antialias=True)
    return resized.round().clamp_(0, 255).to(torch.uint8)
