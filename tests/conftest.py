"""Test settings: benchmark tables come from ../shared/benchmarks when present (never the network)."""

import os
from pathlib import Path

import pytest
import torch

from gptnas.tables import BENCHMARK_DIR_ENV, on_disk

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
if not os.environ.get(BENCHMARK_DIR_ENV) and _SHARED.is_dir():
    os.environ[BENCHMARK_DIR_ENV] = str(_SHARED)


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one core per worker; oversubscribed BLAS threads crawl


@pytest.fixture
def requires_table():
    """Call it with a table name first thing in every test that reads a table: skips the test when the
    table is not in the benchmark directory (tests never download)."""

    def check(name: str):
        if not on_disk(name):
            pytest.skip(f"benchmark table {name} is not in {os.environ.get(BENCHMARK_DIR_ENV)}")

    return check
