"""evolve.py: the search runs, runs in parallel, survives bad candidates, keeps limits (kill -9 and --resume:
tests/test_run_directory.py)."""

import csv
import json
from pathlib import Path

import pytest

import evolve

NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10", "--strategy", "ga"]


def outcome(run_dir: Path) -> dict:
    """What a run decided: its hall of fame, logbook and evaluation order."""
    hall = json.loads((run_dir / "hall_of_fame.json").read_text())
    with open(run_dir / "logbook.csv") as f:
        logbook = list(csv.DictReader(f))
    with open(run_dir / "evaluations.csv") as f:
        order = [(r["query"], r["key"]) for r in csv.DictReader(f)]
    return {"hall": [h["key"] for h in hall], "logbook": logbook, "order": order}


def test_benchmark_search_writes_the_full_run_directory(tmp_path, requires_table, capsys):
    requires_table("nas-bench-201:cifar10")
    out = tmp_path / "run"
    assert evolve.main([*NB201, "--generations", "5", "--seed", "0", "--output_dir", str(out)]) == 0
    for name in ("config.yaml", "logbook.csv", "hall_of_fame.json", "best.json", "best_architecture.txt",
                 "fitness.png", "pareto.png", "results.sqlite", "evaluations.csv"):
        assert (out / name).is_file(), name
    best = json.loads((out / "best.json").read_text())
    assert best["fitness"] >= 90 and "gptnas.build_model('nas-bench-201'" in best["build"]
    assert "unique architectures evaluated" in capsys.readouterr().out
    keys = [k for _, k in outcome(out)["order"]]
    assert len(keys) == len(set(keys))  # never evaluated twice


def test_parallel_workers_equal_the_serial_run(tmp_path, requires_table):
    """Two worker processes decide as one process does (Ray's executor: tests/test_run_directory.py)."""
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--population", "8", "--generations", "2", "--seed", "5"]
    runs = {}
    for name, extra in (("serial", []), ("workers", ["--workers", "2"])):
        out = tmp_path / name
        assert evolve.main([*args, *extra, "--output_dir", str(out)]) == 0
        runs[name] = outcome(out)
    assert runs["workers"] == runs["serial"]


def test_diverging_candidates_get_the_worst_fitness_and_a_run_where_all_failed_says_so(tmp_path, capsys):
    out = tmp_path / "nan"
    args = ["--space", "cifar", "--strategy", "ga", "--dataset", "digits", "--population", "3", "--generations", "1",
            "--epochs", "1", "--min_steps", "0", "--batch_size", "32", "--max_train_examples", "64", "--lr", "1e30",
            "--workers", "1", "--output_dir", str(out)]
    assert evolve.main(args) == 2  # the search went on through every generation, but found nothing that works
    with open(out / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 3 and all(r["status"] == "diverged" and float(r["fitness"]) == 0.0 for r in rows)
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"all {len(rows)} candidates failed ({len(rows)} diverged; the first: " in err[0]
    assert "there is no best network" in err[0] and not (out / "best.json").exists()


def test_constraints_are_respected(tmp_path, requires_table):
    requires_table("nas-bench-macro")
    out = tmp_path / "small"
    limit = 1_000_000
    assert evolve.main(["--space", "nas-bench-macro", "--strategy", "ga", "--generations", "3", "--population", "10",
                        "--max_params", str(limit), "--output_dir", str(out)]) == 0
    with open(out / "evaluations.csv") as f:
        params = [int(r["params"]) for r in csv.DictReader(f)]
    assert params and max(params) <= limit


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "cifar11"], "unknown search space 'cifar11'; valid: cifar"),
        (["--strategy", "hill-climbing"], "unknown strategy 'hill-climbing'; valid: ga, gpt-ga"),
        (["--population", "1"], "population must be at least 2"),
        (["--mutation_rate", "-0.1"], "mutation_rate must lie in [0, 1]"),
        (["--evaluator", "oracle"], "unknown evaluator 'oracle'; valid: benchmark"),
        (["--resume", "nowhere"], "nowhere is not a gptnas run directory"),
        (["--candidate_ranking", "best"], "argument --candidate_ranking: invalid choice: 'best' (choose from 'likelihood', "
                                         "'network', 'gain', 'ratio')"),
        (["--temperature", "nan"], "temperature must be a finite number >= 0"),
        (["--temperature", "inf"], "temperature must be a finite number >= 0"),
        (["--temperature", "-1"], "temperature must be a finite number >= 0"),
        (["--top_k", "-3"], "top_k must be >= 1"),
        (["--max_params", "-5"], "max_params must be >= 1"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, args, message):
    assert evolve.main([*args, "--output_dir", str(tmp_path / "x")] if "--resume" not in args else args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x").exists()  # nothing made for a run that cannot start


@pytest.mark.parametrize("ranking", [[], ["--reconstruct_candidates", "3", "--candidate_ranking", "gain"]])
def test_gpt_ga_reconstructs_and_adapts_online_and_resumes_with_the_saved_adapter(tmp_path, requires_table, ranking):
    requires_table("nas-bench-201:cifar10")
    args = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10", "--population", "6",
            "--generations", "2", "--adapt_every", "1", "--adapt_steps", "2", "--init", "gpt", "--seed", "1", *ranking]
    out = tmp_path / "gpt"
    assert evolve.main([*args, "--output_dir", str(out)]) == 0
    log = json.loads((out / "reconstruction.json").read_text())
    assert [entry["gen"] for entry in log] == [0, 1]  # the rate decays to 0 at the last generation
    assert log[0]["rate"] == 0.4 and abs(log[1]["rate"] - 0.2) < 1e-9
    assert sum(entry["selected"] for entry in log) > 0
    assert (out / "adapters" / "generation_1" / "adapter_model.safetensors").is_file()
    # a resumed run reloads the saved adapter rather than training a new one, and ends the same
    again = tmp_path / "again"
    assert evolve.main([*args, "--output_dir", str(again)]) == 0
    (again / "checkpoint.json").unlink()
    (again / "hall_of_fame.json").unlink()
    assert evolve.main(["--resume", str(again)]) == 0
    assert outcome(again) == outcome(out)


def test_retrain_trains_the_best_network_of_a_run(tmp_path):
    out = tmp_path / "run"
    assert evolve.main(["--space", "cifar", "--strategy", "ga", "--dataset", "digits", "--population", "2",
                        "--generations", "0", "--epochs", "1", "--min_steps", "0", "--batch_size", "32",
                        "--max_train_examples", "64", "--workers", "1", "--output_dir", str(out)]) == 0
    assert evolve.main(["--retrain", str(out), "--retrain_epochs", "1", "--retrain_batch_size", "32",
                        "--retrain_max_train_examples", "64"]) == 0
    result = json.loads((out / "retrain" / "result.json").read_text())
    assert 0 <= result["test_accuracy"] <= 100 and (out / "retrain" / "model.safetensors").is_file()


def test_multi_objective_mode_returns_a_pareto_front(tmp_path, requires_table):
    requires_table("nas-bench-macro")
    out = tmp_path / "nsga"
    assert evolve.main(["--space", "nas-bench-macro", "--strategy", "ga", "--objectives", "accuracy,params", "--population", "12",
                        "--generations", "3", "--output_dir", str(out)]) == 0
    front = json.loads((out / "hall_of_fame.json").read_text())
    assert len(front) >= 2
    for a in front:  # no member is dominated by another (higher accuracy with no more parameters)
        assert not any(b["fitness"] > a["fitness"] and b["params"] <= a["params"] for b in front)


def test_ga_spends_its_budget_on_new_networks(tmp_path, requires_table):
    """A converging GA proposes networks it has already evaluated; those are mutated again,
    so a budget is spent on new ones instead of running out of generations."""
    requires_table("nas-bench-macro")
    out = tmp_path / "run"
    args = ["--space", "nas-bench-macro", "--evaluator", "benchmark", "--strategy", "ga", "--population", "20",
            "--generations", "10", "--seed", "0", "--output_dir", str(out)]
    assert evolve.main(args) == 0
    with open(out / "logbook.csv") as f:
        new = [int(r["new"]) for r in csv.DictReader(f)][1:]
    assert min(new) >= 19  # the elite is the only repeat
