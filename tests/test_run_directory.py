"""Run directories survive anything: kill -9 at random moments (serial, parallel, Ray, each strategy that keeps
state of its own; gpt-ga with adaptation and learned trust: tests/test_trust.py) and --resume ends exactly like an
uninterrupted run; stores and checkpoints that do not belong together are refused before any file is touched; one
process per run directory."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

import evolve
from gptnas.files import exclusive_lock

ROOT = Path(__file__).resolve().parents[1]
NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10"]


def outcome(run_dir: Path) -> dict:
    """What a run decided: hall of fame, logbook, every evaluation with its query number."""
    with open(run_dir / "logbook.csv") as f:
        logbook = list(csv.DictReader(f))
    with open(run_dir / "evaluations.csv") as f:
        order = [(r["query"], r["key"], r["generation"], r["fidelity"]) for r in csv.DictReader(f)]
    hall = [h["key"] for h in json.loads((run_dir / "hall_of_fame.json").read_text())]
    return {"hall": hall, "logbook": logbook, "order": order, "best": json.loads((run_dir / "best.json").read_text())}


def stored_rows(run_dir: Path) -> int:
    """Evaluations stored, at every fidelity."""
    try:
        with sqlite3.connect(run_dir / "results.sqlite", timeout=0.1) as db:
            return db.execute("SELECT (SELECT COUNT(*) FROM evaluations) + (SELECT COUNT(*) FROM rungs)").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_store(run_dir: Path) -> bool:
    """Waits until the run's store has its tables; False after 60 s."""
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with closing(sqlite3.connect(f"file:{run_dir / 'results.sqlite'}?mode=ro", uri=True, timeout=0.1)) as db:
                db.execute("SELECT COUNT(*) FROM evaluations")
                return True
        except sqlite3.Error:
            time.sleep(0.01)
    return False


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "evolve.py"), *args], cwd=cwd,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                found.append(int(status.parent.name))
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def kill_when(process: subprocess.Popen, run_dir: Path, rows: int, extra_seconds: float = 0.0) -> list[int] | None:
    """kill -9 once the store holds `rows` evaluations (plus a moment); the killed process's children
    at that moment, or None if the run ended first."""
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and stored_rows(run_dir) < rows:
        time.sleep(0.01)
    time.sleep(extra_seconds)
    if process.poll() is not None:
        return None
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return workers


def kill_and_resume(args: list[str], run_dir: Path, total: int, kills: int, seed: int) -> list[list[int]]:
    """Starts the run, kills it `kills` times at random moments (resuming in between, with the flags of how it
    runs: a resume takes them from the command line), then finishes it. Returns the children each killed process had."""
    rng = random.Random(seed)
    killed = []
    how = [flag for name, value in zip(args, args[1:]) if name[2:] in evolve.HOW_TO_RUN for flag in (name, value)]
    process = start([*args, "--output_dir", str(run_dir)], run_dir.parent)
    for k in range(kills):
        at = stored_rows(run_dir) + rng.randint(1, max(1, total // (kills + 1)))
        workers = kill_when(process, run_dir, at, rng.uniform(0, 0.05))
        if workers is not None:
            killed.append(workers)
        if k + 1 < kills:
            process = start(["--resume", str(run_dir), *how], run_dir.parent)  # run as it was started
    assert evolve.main(["--resume", str(run_dir), *how]) == 0
    return killed


@pytest.mark.parametrize("name, extra, kills", [
    ("serial", ["--strategy", "ga"], 2),
    ("workers", ["--strategy", "ga", "--workers", "2"], 2),
    ("tpe", ["--strategy", "tpe"], 2),  # Optuna's sampler replays its trials from the store
    ("multi-fidelity", ["--strategy", "ga", "--multi_fidelity", "sh", "--budget", "30", "--budget_unit", "full"], 2),
    ("dehb", ["--strategy", "dehb", "--budget", "30", "--budget_unit", "full"], 2),  # DEHB replays its asks
    ("asha", ["--strategy", "regularized-evolution", "--multi_fidelity", "sh", "--budget", "20", "--budget_unit",
              "full"], 2),
])
def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, requires_table, name, extra, kills):
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--population", "24", "--generations", "8", "--seed", "3", *extra]
    straight = tmp_path / "straight"
    assert evolve.main([*args, "--output_dir", str(straight)]) == 0
    total = len(outcome(straight)["order"])
    killed = tmp_path / "killed"
    workers = kill_and_resume(args, killed, total, kills, seed=len(name))
    assert workers, "every run ended before its kill"
    assert outcome(killed) == outcome(straight)
    if "--workers" in extra:  # the worker processes died with the searches that started them
        assert any(workers)
        deadline = time.time() + 20  # a worker still importing when its search died ends once it starts
        while [pid for pids in workers for pid in pids if alive(pid)] and time.time() < deadline:
            time.sleep(0.2)
        orphans = [Path(f"/proc/{pid}/cmdline").read_bytes() for pids in workers for pid in pids if alive(pid)]
        assert not orphans, f"orphaned worker processes: {orphans}"


def test_kill_9_of_a_ray_run_then_resume_equals_an_uninterrupted_run(tmp_path, requires_table):
    ray = pytest.importorskip("ray")
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--strategy", "ga", "--population", "16", "--generations", "3", "--seed", "4",
            "--executor", "ray", "--workers", "2"]
    straight = tmp_path / "straight"
    assert evolve.main([*args[:-4], "--output_dir", str(straight)]) == 0  # serial: the reference
    killed = tmp_path / "killed"
    kill_and_resume(args, killed, len(outcome(straight)["order"]), 1, seed=0)
    assert outcome(killed) == outcome(straight)
    assert not ray.is_initialized()  # the resumed search stopped the local Ray it started


@pytest.fixture
def finished_run(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "ga", "--population", "10", "--generations", "3", "--seed", "1",
                        "--output_dir", str(run)]) == 0
    return run


def refused(capsys, args: list[str], message: str) -> None:
    capsys.readouterr()  # what earlier runs of the test printed
    assert evolve.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_emptied_store_is_refused_before_any_file_is_touched(finished_run, capsys):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file() and p.name != "results.sqlite"}
    (finished_run / "results.sqlite").write_bytes(b"")
    refused(capsys, ["--resume", str(finished_run)], "holds no results although the run directory has a checkpoint")
    after = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file() and p.name != "results.sqlite"}
    assert after == before  # evaluations.csv and the rest untouched


def test_a_store_copied_without_its_wal_file_is_refused(tmp_path, requires_table, capsys):
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--strategy", "ga", "--population", "30", "--generations", "30", "--seed", "2"]
    run = tmp_path / "run"
    process = start([*args, "--output_dir", str(run)], tmp_path)
    # A reader's open snapshot keeps SQLite from moving later rows out of the -wal file, so the
    # copy lacks rows the checkpoint expects however late the kill lands.
    assert wait_for_store(run)
    snapshot = sqlite3.connect(run / "results.sqlite", isolation_level=None)
    snapshot.execute("BEGIN")
    held = snapshot.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    assert kill_when(process, run, held + 100) is not None  # two checkpoints past the snapshot at least
    snapshot.close()
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    refused(capsys, ["--resume", str(copy)], "results.sqlite")
    assert evolve.main(["--resume", str(run)]) == 0  # the original, whole, still resumes


def test_a_checkpoint_of_another_run_is_refused(tmp_path, requires_table, capsys):
    requires_table("nas-bench-201:cifar10")
    runs = []
    for rate in ("0.0", "1.0"):  # same identity, different searches
        run = tmp_path / f"mutation_{rate}"
        assert evolve.main([*NB201, "--strategy", "ga", "--population", "10", "--generations", "2", "--seed", "0",
                            "--mutation_rate", rate, "--output_dir", str(run)]) == 0
        runs.append(run)
    shutil.copy(runs[0] / "checkpoint.json", runs[1] / "checkpoint.json")
    refused(capsys, ["--resume", str(runs[1])], "does not hold what checkpoint.json expects")


def test_a_doctored_checkpoint_runs_no_code(finished_run, capsys):
    import pickle

    marker = finished_run.parent / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name in ("checkpoint.json", "checkpoint.pkl"):
        (finished_run / name).write_bytes(pickle.dumps(Payload()))
    refused(capsys, ["--resume", str(finished_run)], "checkpoint.json is corrupt")
    assert not marker.exists()


def test_one_process_per_run_directory_and_the_lock_dies_with_its_holder(tmp_path, requires_table, capsys):
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--strategy", "ga", "--population", "30", "--generations", "200", "--seed", "7"]
    run = tmp_path / "run"
    process = start([*args, "--output_dir", str(run)], tmp_path)
    try:
        deadline = time.time() + 120
        while stored_rows(run) < 5 and time.time() < deadline:
            time.sleep(0.05)
        config = (run / "config.yaml").read_text()
        refused(capsys, ["--resume", str(run)], f"is in use by pid {process.pid}")
        refused(capsys, [*args, "--seed", "8", "--output_dir", str(run)], "already holds a run")
        assert (run / "config.yaml").read_text() == config  # nothing of the holder's overwritten
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with exclusive_lock(run):  # the dead holder's lock is gone
        pass


def test_a_retraining_takes_the_run_directory_as_a_search_does(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with exclusive_lock(run):  # a search, or another retraining, holds the run
        refused(capsys, ["--retrain", str(run)], "is in use by pid")
    refused(capsys, ["--retrain", str(tmp_path / "nowhere")], "is not a finished gptnas search (no such folder)")


def test_unusable_output_dirs_and_configs_are_refused_in_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(capsys, [*NB201, "--output_dir", str(afile)], "is a file; give a folder")
    refused(capsys, [*NB201, "--output_dir", str(afile / "run")], "cannot write the run directory")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("space: caf\xe9\n".encode("latin-1"))
    refused(capsys, ["--config", str(latin)], "is not UTF-8 text")


def test_best_json_builds_the_network_with_the_datasets_classes(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar100")
    run = tmp_path / "run"
    assert evolve.main(["--space", "nas-bench-201", "--dataset", "cifar100", "--strategy", "ga", "--population", "4",
                        "--generations", "1", "--output_dir", str(run)]) == 0
    best = json.loads((run / "best.json").read_text())
    assert "num_classes=100" in best["build"]


def test_sources_pin_the_table_and_the_gpt_a_run_used(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "gpt-ga", "--population", "4", "--generations", "1",
                        "--output_dir", str(run)]) == 0
    sources = json.loads((run / "sources.json").read_text())
    assert json.loads((run / "best.json").read_text())["sources"] == sources
    assert len(sources["evaluator"]["sha256"]) == 64 and "/nasbench201_cifar10.json" in sources["evaluator"]["url"]
    assert sources["gpt"]["name_or_path"] == "gptnas/default_model" and len(sources["gpt"]["sha256"]) == 64


def test_a_resume_whose_gpt_weights_changed_is_refused_before_any_evaluation(tmp_path, requires_table, capsys):
    """The same --gpt can name other weights by the time a run resumes (a retrained folder, a newer gptnas's
    model): the run would go on with another GPT than it started with, so it does not go on."""
    from safetensors.torch import load_file, safe_open, save_file

    from gptnas.gpt.folder import default_model_dir

    requires_table("nas-bench-201:cifar10")
    gpt, run = tmp_path / "gpt", tmp_path / "run"
    shutil.copytree(default_model_dir(), gpt)
    weights = gpt / "model.safetensors"
    original = weights.read_bytes()
    args = [*NB201, "--strategy", "gpt-ga", "--gpt", str(gpt), "--population", "8", "--generations", "2",
            "--seed", "2", "--output_dir", str(run)]
    assert kill_when(start(args, tmp_path), run, 10) is not None, "the run ended before its kill"
    pinned = json.loads((run / "checkpoint.json").read_text())["strategy"]["gpt_weights"]
    assert pinned == hashlib.sha256(original).hexdigest()

    with safe_open(weights, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3  # retrained, as far as the run can tell
    save_file(tensors, weights, metadata=metadata)
    rows = stored_rows(run)
    refused(capsys, ["--resume", str(run)], f"this run's GPT weights changed since it started (sha256 {pinned[:12]}")
    assert stored_rows(run) == rows  # nothing evaluated with the other GPT

    weights.write_bytes(original)
    assert evolve.main(["--resume", str(run)]) == 0
