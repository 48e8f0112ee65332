"""Test settings. Benchmark tables come from the benchmark directory (`GPTNAS_BENCHMARK_DIR`, else gptnas's
cache); a test that needs a table missing there downloads it (pinned URL, sha256-checked) when the table's
host can be reached, and otherwise skips, saying how to provide the tables."""

import os
import shutil
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from gptnas import latency_tables
from gptnas.tables import BENCHMARK_DIR_ENV, LOW_FIDELITY, TABLES, benchmark_dir, on_disk, table_path, verified_path

LATENCY = "hw-latency:"  # requires_table("hw-latency:fpga"): HELP's fpga latencies
LOW = "@12"  # requires_table("nas-bench-201:cifar10@12"): that table after 12 epochs
REACH_SECONDS = 5  # how long a test waits to learn whether a table's host can be reached

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one core per worker; oversubscribed BLAS threads crawl


def pytest_collection_modifyitems(items):
    """Tests that read a benchmark table carry the marker `table` (`pytest -m table` runs just those)."""
    for item in items:
        if "requires_table" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.table)


@lru_cache(maxsize=None)
def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=REACH_SECONDS).close()
        return True
    except OSError:
        return False


@pytest.fixture
def requires_table():
    """Call it with a table name first thing in every test that reads a table: the table is there, or is
    downloaded, or the test skips with the reason."""

    def check(name: str):
        if name.startswith(LATENCY):  # hw-latency:DEVICE, a HELP device table and its cell index
            return [check_latency(file) for file in (latency_tables.INDEX, name.removeprefix(LATENCY))]
        if name.endswith(LOW):
            return check_low_fidelity(name.removesuffix(LOW))
        if on_disk(name):
            return
        if reachable(TABLES[name].url):
            table_path(name)  # downloads into the benchmark directory, verified by sha256
            return
        pytest.skip(f"benchmark table {name} is not in {benchmark_dir()} and cannot be downloaded (offline); set "
                    f"{BENCHMARK_DIR_ENV} to a folder that holds the tables, e.g. ../shared/benchmarks")

    def check_low_fidelity(name: str):
        spec = LOW_FIDELITY[name].spec
        if (benchmark_dir() / spec.path).exists():
            return
        if reachable(spec.url):
            verified_path(name, spec)  # downloads into the benchmark directory, verified by sha256
            return
        pytest.skip(f"the 12-epoch table of {name} is not in {benchmark_dir()} and cannot be downloaded (offline); "
                    f"set {BENCHMARK_DIR_ENV} to a folder that holds it")

    def check_latency(name: str):
        if (benchmark_dir() / latency_tables.FOLDER / f"{name}.pt").exists():
            return
        if reachable(latency_tables.upstream_url(name)):
            latency_tables.local_file(name)  # downloads into the benchmark directory (pinned commit and sha256)
            return
        pytest.skip(f"latency table {name} is not in {benchmark_dir() / latency_tables.FOLDER} and cannot be "
                    f"downloaded (offline); set {BENCHMARK_DIR_ENV} to a folder that holds it")

    return check


COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the commit tests' offline Hub caches claim


def offline_cache(tmp_path, repo_id, folder) -> Path:
    """A Hugging Face cache laid out as huggingface_hub lays it out, holding `folder` as repo_id@main."""
    cache = tmp_path / "hub"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache
