"""Measured latencies of every NAS-Bench-201 network on real devices (HELP: Lee et al., NeurIPS 2021,
"HELP: Hardware-Adaptive Efficient Latency Prediction for NAS via Meta-Learning"; MIT licence).

`--latency_table DEVICE` makes a search's latency a look-up for that device instead of a measurement on the
machine running the search. A device is one of HELP's (`DEVICES`: phones, a Raspberry Pi, an FPGA, the Eyeriss
accelerator, GPUs at batch 1 / 32 / 256, server CPUs) or the path of a file in the same format. Each device
file is a list of 15,625 latencies in ms, in NAS-Bench-201's index order; `str_arch2idx` maps a cell's string
(the space's key) to that index. Both are torch-saved plain lists and dicts, read with
`torch.load(..., weights_only=True)`, which executes no code. Files are downloaded from HELP's repository at a
pinned commit into the benchmark directory (`gptnas.tables.benchmark_dir`); those in `PINNED` are checked
against their sha256, and for the others the sha256 of what was read is logged and recorded with the run.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from gptnas.errors import GptnasError, quote
from gptnas.files import file_sha256
from gptnas.tables import BENCHMARK_DIR_ENV, benchmark_dir, download

log = logging.getLogger(__name__)

HELP_REPO, HELP_COMMIT = "HayeonLee/HELP", "45f70eb92d0d735970a33b608d1544ad3c52f285"
FOLDER = "hw-latency"  # inside the benchmark directory
INDEX = "str_arch2idx"
SPACE = "nas-bench-201"  # the only space HELP's tables cover
NETWORKS = 15_625
MAX_FILE_BYTES = 16 << 20  # a device file is about 140 kB; a handed file larger than this is refused unread
# Every device of HELP's data/nasbench201/latency at HELP_COMMIT (a _N suffix is the batch size).
DEVICES = ("raspi4", "pixel3", "eyeriss", "fpga", "pixel2", "samsung_a50", "samsung_s7", "essential_ph_1",
           "gold_6226", "gold_6240", "silver_4114", "silver_4210r",
           *(f"{gpu}_{batch}" for gpu in ("1080ti", "2080ti", "titan_rtx", "titanx", "titanxp")
             for batch in (1, 32, 256)))
PINNED = {  # sha256 of the files verified for this project (the benchmark directory's SOURCES.md)
    "raspi4": "2fae425c50bcaef7aacc5391244cd0af98bfc7fba689a8741e461cb18192f57c",
    "pixel3": "cf1387da12e06b1d4541ce85f3ca4869d551084e09daf4acf024b6e21a80d465",
    "eyeriss": "6f1dd2f8c0442289a09ab78e63e49bde96489f6d455cc33d5fa5aed37edb5d03",
    "fpga": "6a0333c1476a3ab039d8c39e5d42ac99efe9e7f3ff521289569013fa84233b28",
    INDEX: "e1d7b7cc7cf51d7c3cd6f9e726e7395bea87d7ba674e26202fb8633f963aef0d",
}


@dataclass(frozen=True)
class LatencyTable:
    """The latency in ms of every network of the space on one device, by the space's key."""

    device: str  # a HELP device, or the path of the file
    ms: dict[str, float] = field(repr=False)
    source: dict = field(repr=False)  # per file: url or path, sha256

    def __call__(self, key: str) -> float:
        return self.ms[key]


def upstream_url(name: str) -> str:
    folder = "data/nasbench201" if name == INDEX else "data/nasbench201/latency"
    return f"https://raw.githubusercontent.com/{HELP_REPO}/{HELP_COMMIT}/{folder}/{name}.pt"


def is_path(device: str) -> bool:
    return device.endswith(".pt") or "/" in device


def check_device(device: str) -> None:
    """One-line GptnasError unless `device` is a HELP device or the path of an existing file."""
    if is_path(device):
        path = Path(device)
        if path.is_symlink() or not path.is_file():
            raise GptnasError(f"latency table {quote(device)} is not a file (a symbolic link is not followed)")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise GptnasError(f"latency table {quote(device)} is larger than {MAX_FILE_BYTES >> 20} MiB; a device "
                              f"file holds {NETWORKS:,} numbers")
    elif device not in DEVICES:
        raise GptnasError(f"unknown latency table {quote(device)}; name one of HELP's devices ({', '.join(DEVICES)}) "
                          "or the path of a .pt file in their format")


def check_space(device: str, space: str) -> None:
    if space != SPACE:
        raise GptnasError(f"latency table {quote(device)} covers the {SPACE} space only, not {quote(space)}; "
                          "drop --latency_table to measure latency on this machine")


def local_file(name: str) -> tuple[Path, str]:
    """(path, sha256) of HELP's file `name` in the benchmark directory, downloaded (pinned commit) if missing."""
    path = benchmark_dir() / FOLDER / f"{name}.pt"
    pinned = PINNED.get(name)
    if not path.exists():
        try:
            download(upstream_url(name), pinned, path)
        except OSError as error:  # no network, DNS failure, HTTP error, read-only cache
            raise GptnasError(f"latency table {quote(name)} is not at {path} and could not be downloaded ({error}); "
                              f"download {upstream_url(name)} to that path, or set {BENCHMARK_DIR_ENV} to a folder "
                              f"that has {FOLDER}/{name}.pt") from None
    digest = file_sha256(path)
    if pinned is not None and digest != pinned:
        raise GptnasError(f"latency table {path} is corrupt (sha256 mismatch); delete it to download it again, "
                          f"or replace it with {upstream_url(name)}")
    if pinned is None:
        log.warning("latency table %s is not pinned to a sha256 here; read %s (sha256 %s)", name, path, digest)
    return path, digest


def _read(path: Path, kind: type, what: str):
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise GptnasError(f"{path} cannot be read as {what} ({type(error).__name__})") from None
    if not isinstance(data, kind):
        raise GptnasError(f"{path} holds a {type(data).__name__}, not {what}")
    return data


def _index() -> tuple[dict[str, int], dict]:
    path, digest = local_file(INDEX)
    index = _read(path, dict, "a dict from cell string to index")
    if len(index) != NETWORKS or sorted(index.values()) != list(range(NETWORKS)):
        raise GptnasError(f"{path} does not map the {NETWORKS:,} {SPACE} cells to their indices")
    return index, {"url": upstream_url(INDEX), "sha256": digest}


@lru_cache(maxsize=None)
def load_latency_table(device: str, space: str = SPACE) -> LatencyTable:
    """The latency table of `device` (a HELP device or a path) for `space`; one-line GptnasError for an unknown
    device, a space it does not cover, or a file that does not hold one finite latency > 0 per network."""
    check_device(device)
    check_space(device, space)
    index, index_source = _index()
    if is_path(device):
        path = Path(device)
        origin, digest = {"path": str(path.resolve())}, file_sha256(path)
    else:
        path, digest = local_file(device)
        origin = {"url": upstream_url(device)}
    values = _read(path, list, f"a list of {NETWORKS:,} latencies (ms)")
    if len(values) != NETWORKS:
        raise GptnasError(f"latency table {quote(device)} has {len(values):,} entries; the {SPACE} space has "
                          f"{NETWORKS:,} networks, so the table does not cover it")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values):
        raise GptnasError(f"latency table {quote(device)} holds entries that are not finite latencies > 0 (ms)")
    ms = {key: float(values[i]) for key, i in index.items()}
    return LatencyTable(device, ms, {"latency": {**origin, "sha256": digest}, INDEX: index_source})
