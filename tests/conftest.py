"""Test settings: benchmark tables come from ../shared/benchmarks when present (never the network)."""

import os
import shutil
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


COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the commit tests' offline Hub caches claim


def offline_cache(tmp_path, repo_id, folder) -> Path:
    """A Hugging Face cache laid out as huggingface_hub lays it out, holding `folder` as repo_id@main."""
    cache = tmp_path / "hub"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache
