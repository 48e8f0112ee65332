"""The benchmark harness: a small study from the command line, its files, resuming, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from gptnas.bench.__main__ import main
from gptnas.bench.harness import DEFAULT_BENCHMARKS, Benchmark
from gptnas.bench.report import first_query_reaching, optimum, reported_curve, short_lines
from gptnas.files import file_sha256
from gptnas.gpt.folder import default_model_dir
from gptnas.tables import table_for

SMALL = ["--spaces", "nas-bench-macro,nas-bench-201:cifar10", "--strategies", "gpt-ga,ga,random",
         "--seeds", "2", "--budget", "12", "--config", "none"]
# The tables a study without --spaces reads; they are verified before strategies and config are.
DEFAULT_TABLES = [table_for(b.space, b.dataset) for b in map(Benchmark.parse, DEFAULT_BENCHMARKS)]


def test_reported_accuracy_is_the_test_accuracy_of_the_best_fitness_so_far():
    trajectory = {"fitness": [1.0, 3.0, 2.0], "test": [10.0, 5.0, 50.0]}
    assert reported_curve(trajectory, 5) == [10.0, 5.0, 5.0, 5.0, 5.0]  # a run that stopped early keeps its value
    assert first_query_reaching(trajectory, 2.0) == 2
    assert first_query_reaching(trajectory, 3.5) is None


def test_the_report_counts_runs_that_stopped_before_the_budget():
    run = lambda queries: {"fitness": [1.0] * queries, "test": [1.0] * queries}
    lines = short_lines({"ga": [run(5), run(3), run(4)], "random": [run(5)]}, 5)
    assert lines == ["", "- 2 of 3 `ga` runs stopped before the budget, with nothing new left to propose, after 3-4 "
                         "queries; each keeps its last value."]
    assert short_lines({"ga": [run(5)]}, 5) == []


def test_optimum_counts_canonical_architectures_only(requires_table):
    requires_table("nas-bench-201:cifar10")
    best = optimum(Benchmark("nas-bench-201", "cifar10"))
    assert best.architectures == 6466  # isomorphic cells count once
    assert best.best_test >= best.test


def test_small_study_writes_a_well_formed_report(tmp_path, capsys, requires_table):
    requires_table("nas-bench-macro")
    requires_table("nas-bench-201:cifar10")
    out = tmp_path / "study"
    assert main([*SMALL, "--output_dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in ("### nas-bench-macro", "### nas-bench-201:cifar10", "Paired one-sided Wilcoxon", "## Targets",
                    "No leakage"):
        assert heading in report
    assert (out / "regret_nas-bench-macro.png").stat().st_size > 0
    assert (out / "regret_nas-bench-201_cifar10.png").stat().st_size > 0

    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["benchmark", "strategy", "seed", "queries", "accuracy"]
    assert len(rows) == 2 * 3 * 2 * 2  # benchmarks x strategies x seeds x query points (10, and the budget)
    assert {r["queries"] for r in rows} == {"10", "12"}
    by_run = {}
    for r in rows:
        by_run.setdefault((r["benchmark"], r["strategy"], r["seed"]), []).append(float(r["accuracy"]))
    macro = [at for (benchmark, *_), at in by_run.items() if benchmark == "nas-bench-macro"]
    assert all(at10 <= at12 for at10, at12 in macro)  # NB-Macro reports the fitness itself: never worse later

    with open(out / "optimum.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["benchmark", "strategy", "seed", "queries_to_optimum", "queries_to_within_0.1"]
    assert len(rows) == 12
    for r in rows:
        assert r["queries_to_optimum"] == "" or 1 <= int(r["queries_to_optimum"]) <= 12

    # Paired seeds: each run has exactly `budget` unique queries, and the baselines use no GPT time.
    trajectory = json.loads(next((out / "runs" / "nas-bench-macro" / "ga").glob("seed_0/trajectory.json")).read_text())
    assert len(trajectory["keys"]) == len(set(trajectory["keys"])) == 12
    assert trajectory["gpt_seconds"] == 0


def test_rerun_resumes_and_a_different_study_is_refused(tmp_path, capsys, requires_table):
    requires_table("nas-bench-macro")
    out = tmp_path / "study"
    args = ["--spaces", "nas-bench-macro", "--strategies", "ga,random", "--seeds", "2", "--budget", "8",
            "--config", "none", "--output_dir", str(out)]
    assert main(args) == 0
    finished = out / "runs" / "nas-bench-macro" / "ga" / "seed_1" / "trajectory.json"
    stamp, first = finished.stat().st_mtime_ns, (out / "runs.csv").read_text()
    finished.with_name("results.sqlite").unlink()  # a finished run is never recomputed
    assert main(args) == 0
    assert finished.stat().st_mtime_ns == stamp and (out / "runs.csv").read_text() == first

    capsys.readouterr()
    assert main([*args[:-2], "--budget", "9", "--output_dir", str(out)]) == 2
    assert "holds another study" in capsys.readouterr().err


def test_a_study_whose_gpt_weights_changed_is_another_study(tmp_path, capsys, requires_table):
    """Resumed after its GPT was retrained in place (or a newer gptnas shipped another), a study would mix two
    GPTs' runs in one report: it is refused, and the report names the weights it used."""
    requires_table("nas-bench-macro")
    gpt, out = tmp_path / "gpt", tmp_path / "study"
    shutil.copytree(default_model_dir(), gpt)
    args = ["--spaces", "nas-bench-macro", "--strategies", "gpt-ga,ga", "--seeds", "1", "--budget", "4",
            "--config", "none", "--gpt", str(gpt), "--output_dir", str(out)]
    assert main(args) == 0
    sha = file_sha256(gpt / "model.safetensors")
    assert json.loads((out / "study.json").read_text())["gpt_weights"] == {str(gpt): sha}
    assert f"(weights sha256 {sha[:12]})" in (out / "report.md").read_text()
    (gpt / "model.safetensors").write_bytes(default_model_dir().joinpath("model.safetensors").read_bytes()[:-1] + b" ")
    capsys.readouterr()
    assert main(args) == 2
    assert "holds another study (gpt_weights differ)" in capsys.readouterr().err


def test_parallel_runs_give_the_serial_numbers(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar100")
    args = ["--spaces", "nas-bench-201:cifar100", "--strategies", "regularized-evolution", "--seeds", "2",
            "--budget", "10", "--config", "none"]
    assert main([*args, "--output_dir", str(tmp_path / "serial")]) == 0
    assert main([*args, "--workers", "2", "--output_dir", str(tmp_path / "parallel")]) == 0
    assert (tmp_path / "serial" / "runs.csv").read_text() == (tmp_path / "parallel" / "runs.csv").read_text()


@pytest.mark.parametrize(
    ("flags", "message", "tables"),
    [
        (["--spaces", "nas-bench-999"], "'nas-bench-999' is no benchmark table", []),
        (["--spaces", "nas-bench-201:mnist"], "has no dataset 'mnist'", []),
        (["--strategies", "gpt-ga,hillclimb"], "unknown strategy 'hillclimb'", DEFAULT_TABLES),
        (["--seeds", "0"], "at least 1", []),
        (["--config", "missing.yaml"], "does not exist", DEFAULT_TABLES),
    ],
)
def test_bad_input_gets_one_line(tmp_path, capsys, requires_table, flags, message, tables):
    for table in tables:
        requires_table(table)
    assert main([*flags, "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_study_config_errors_name_the_fix(tmp_path, capsys, requires_table):
    for table in DEFAULT_TABLES:
        requires_table(table)
    config = tmp_path / "study.yaml"
    config.write_text("strategies:\n  gpt-ga:\n    budget: 5\n")
    assert main(["--config", str(config), "--output_dir", str(tmp_path / "x")]) == 2
    assert "'budget' is set by the harness" in capsys.readouterr().err
    config.write_text("common:\n  populaton: 5\n")
    assert main(["--config", str(config), "--output_dir", str(tmp_path / "y")]) == 2
    assert "populaton" in capsys.readouterr().err
    config.write_text("strategies:\n  ga:\n    trust: learned\n")  # a setting its strategy would ignore
    assert main(["--config", str(config), "--output_dir", str(tmp_path / "z")]) == 2
    assert f"{config}, strategies.ga: --trust needs --strategy gpt-ga" in capsys.readouterr().err


def test_a_missing_table_is_reported_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GPTNAS_BENCHMARK_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert main(["--spaces", "nas-bench-macro", "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "is not at" in err and "GPTNAS_BENCHMARK_DIR" in err
    assert not (tmp_path / "x").exists()


def test_one_study_process_per_folder(tmp_path, requires_table):
    """A study on a folder another process holds is refused in one line that names the holder."""
    requires_table("nas-bench-201:cifar10")
    from gptnas.files import exclusive_lock

    study = ["--spaces", "nas-bench-201:cifar10", "--strategies", "random", "--seeds", "1", "--budget", "2",
             "--config", "none", "--output_dir", str(tmp_path / "study")]
    assert main(study) == 0
    with exclusive_lock(tmp_path / "study"):  # held by this process: running the study again is refused
        done = subprocess.run([sys.executable, "-m", "gptnas.bench", *study], capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    holder = f"pid {os.getpid()} on {socket.gethostname()} since "
    assert line.startswith(f"error: {tmp_path / 'study'} is in use by {holder}")
    assert line.endswith("; wait for it to end or stop it, then try again")
