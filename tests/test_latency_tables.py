"""Latency from a device's measured table (HELP's NAS-Bench-201 latencies): every evaluation carries the
device's number for its network, limits hold on the device, the run records which files it read, and a bad
device, space or file is refused in one line without running anything in it."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil

import pytest
import torch

import evolve
from gptnas import latency_tables
from gptnas.tables import BENCHMARK_DIR_ENV, benchmark_dir

NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar100", "--strategy", "ga",
         "--population", "8", "--generations", "1"]


def rows(run) -> list[dict]:
    with open(run / "evaluations.csv") as f:
        return list(csv.DictReader(f))


def raw(name: str):
    return torch.load(benchmark_dir() / "hw-latency" / f"{name}.pt", weights_only=True)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_every_evaluation_carries_the_devices_measured_latency(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar100")
    requires_table("hw-latency:fpga")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--objectives", "accuracy,latency", "--latency_table", "fpga",
                        "--output_dir", str(run)]) == 0
    index, fpga = raw("str_arch2idx"), raw("fpga")
    evaluated = rows(run)
    assert len(evaluated) >= 8
    assert all(float(r["latency_ms"]) == pytest.approx(fpga[index[r["key"]]], abs=1e-4) for r in evaluated)
    sources = json.loads((run / "sources.json").read_text())["latency"]
    assert sources["device"] == "fpga" and sources["latency"]["sha256"] == latency_tables.PINNED["fpga"]


def test_a_latency_limit_holds_on_the_device(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar100")
    requires_table("hw-latency:eyeriss")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--max_latency_ms", "5.1", "--latency_table", "eyeriss", "--output_dir", str(run)]) == 0
    assert all(0 < float(r["latency_ms"]) <= 5.1 for r in rows(run))


def test_a_device_file_not_pinned_is_read_and_its_sha256_recorded(tmp_path, monkeypatch, caplog, requires_table):
    requires_table("hw-latency:fpga")
    folder = tmp_path / "benchmarks" / "hw-latency"
    folder.mkdir(parents=True)
    for name, as_name in (("str_arch2idx", "str_arch2idx"), ("fpga", "pixel2")):  # pixel2: a device not pinned here
        shutil.copy(benchmark_dir() / "hw-latency" / f"{name}.pt", folder / f"{as_name}.pt")
    monkeypatch.setenv(BENCHMARK_DIR_ENV, str(tmp_path / "benchmarks"))
    latency_tables.load_latency_table.cache_clear()
    with caplog.at_level(logging.WARNING):
        table = latency_tables.load_latency_table("pixel2")
    assert "pixel2" not in latency_tables.PINNED and "not pinned" in caplog.text
    assert table.source["latency"]["sha256"] == latency_tables.PINNED["fpga"]  # the bytes it read
    latency_tables.load_latency_table.cache_clear()


@pytest.mark.parametrize("flags, expected", [
    (["--latency_table", "fpgax", "--max_latency_ms", "3"], "unknown latency table 'fpgax'; name one of HELP's devices"),
    (["--latency_table", "/nowhere/fpga.pt", "--max_latency_ms", "3"], "latency table '/nowhere/fpga.pt' is not a file"),
    (["--latency_table", "/dev/zero", "--max_latency_ms", "3"], "latency table '/dev/zero' is not a file"),
    (["--latency_table", "fpga"], "--latency_table needs --objectives accuracy,latency or --max_latency_ms"),
    (["--latency_table", "fpga", "--max_latency_ms", "3", "--latency_batch_size", "4"],
     "--latency_batch_size measures on this machine"),
])
def test_bad_latency_settings_are_refused_in_one_line(tmp_path, capsys, flags, expected):
    assert evolve.main([*NB201, *flags, "--output_dir", str(tmp_path / "run")]) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_table_of_another_space_is_refused(tmp_path, capsys):
    argv = ["--space", "nas-bench-macro", "--evaluator", "benchmark", "--strategy", "ga", "--max_latency_ms", "3",
            "--latency_table", "raspi4", "--output_dir", str(tmp_path / "run")]
    assert evolve.main(argv) == 2
    assert "latency table 'raspi4' covers the nas-bench-201 space only, not 'nas-bench-macro'" in one_error_line(capsys)


class Payload:  # what a hostile file would run on an unsafe load
    def __reduce__(self):
        return os.system, ("touch pwned",)


@pytest.mark.parametrize("content, expected", [
    ([1.0] * 100, "has 100 entries; the nas-bench-201 space has 15,625 networks, so the table does not cover it"),
    ([1.0] * 15_624 + [float("nan")], "holds entries that are not finite latencies > 0"),
    ({"a": 1.0}, "holds a dict, not a list of 15,625 latencies"),
    (Payload(), "cannot be read as a list of 15,625 latencies (ms) (UnpicklingError)"),
])
def test_a_handed_latency_file_that_does_not_cover_the_space_is_refused(tmp_path, monkeypatch, capsys, requires_table,
                                                                        content, expected):
    requires_table("hw-latency:fpga")  # the cell index comes from the benchmark directory
    requires_table("nas-bench-201:cifar100")
    monkeypatch.chdir(tmp_path)
    torch.save(content, tmp_path / "mine.pt")
    assert evolve.main([*NB201, "--latency_table", str(tmp_path / "mine.pt"), "--max_latency_ms", "3",
                        "--output_dir", str(tmp_path / "run")]) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_a_handed_latency_file_that_is_a_link_or_too_large_is_refused_unread(tmp_path, capsys):
    big = tmp_path / "big.pt"
    with open(big, "wb") as f:
        f.truncate(latency_tables.MAX_FILE_BYTES + 1)
    (tmp_path / "link.pt").symlink_to(big)
    for name, expected in (("big.pt", "is larger than 16 MiB"), ("link.pt", "a symbolic link is not followed")):
        assert evolve.main([*NB201, "--latency_table", str(tmp_path / name), "--max_latency_ms", "3",
                            "--output_dir", str(tmp_path / "run")]) == 2
        assert expected in one_error_line(capsys)
