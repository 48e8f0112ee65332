"""Test settings: benchmark tables come from ../shared/benchmarks when present (never the network)."""

import os
from pathlib import Path

import pytest
import torch

from gptnas.benchmarks import BENCHMARK_DIR_ENV

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
if not os.environ.get(BENCHMARK_DIR_ENV) and _SHARED.is_dir():
    os.environ[BENCHMARK_DIR_ENV] = str(_SHARED)


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one core per worker; oversubscribed BLAS threads crawl


def has_table(name: str) -> bool:
    from gptnas.benchmarks import TABLES, benchmark_dir

    return (benchmark_dir() / TABLES[name].path).exists()


@pytest.fixture
def requires_table():
    def check(name: str):
        if not has_table(name):
            pytest.skip(f"benchmark table {name} is not in {os.environ.get(BENCHMARK_DIR_ENV)}")

    return check
