"""Multi-fidelity search: the 12-epoch table, rung promotion, cost accounting, refusals (gptnas/search/fidelity.py)."""

from __future__ import annotations

import csv
import json
import math
import pickle
import random

import pytest

import evolve
from gptnas.bench.__main__ import main as bench_main
from gptnas.errors import GptnasError
from gptnas.evaluators import get_evaluator
from gptnas.evaluators.train import TrainEvaluator, TrainSettings, share_of
from gptnas.search.config import EvolveConfig
from gptnas.search.executors import SerialExecutor
from gptnas.search.run import build_search
from gptnas.spaces import get_space
from gptnas.tables import BENCHMARK_DIR_ENV, LOW_FIDELITY, load_low_fidelity

NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10"]
MINI = "nas-bench-201/mini-bench-arch-cell-accs.pd"


@pytest.fixture
def mini_table(requires_table):
    requires_table("nas-bench-201:cifar10")
    requires_table("nas-bench-201:cifar10@12")


def rows(run_dir) -> list[dict]:
    with open(run_dir / "evaluations.csv") as f:
        return list(csv.DictReader(f))


def test_the_12_epoch_table_is_read_after_its_pinned_hash(mini_table):
    table = load_low_fidelity("nas-bench-201:cifar10")
    assert len(table) == 15_625
    best = max(table, key=lambda k: table[k]["cifar10-val"])
    assert table[best]["cifar10-val"] == pytest.approx(84.89, abs=0.01)  # SOURCES.md: the 12-epoch maximum
    assert LOW_FIDELITY["nas-bench-201:cifar10"].fraction == 12 / 200


def test_a_pickle_that_is_not_the_pinned_table_is_refused_unread(tmp_path, monkeypatch):
    (tmp_path / MINI).parent.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    (tmp_path / MINI).write_bytes(pickle.dumps(Payload()))
    monkeypatch.setenv(BENCHMARK_DIR_ENV, str(tmp_path))
    load_low_fidelity.cache_clear()
    try:
        with pytest.raises(GptnasError, match="corrupt"):
            load_low_fidelity("nas-bench-201:cifar100")
    finally:
        load_low_fidelity.cache_clear()
    assert not marker.exists()


def test_the_best_third_of_a_rung_is_promoted_and_only_full_evaluations_enter_the_population(tmp_path, mini_table):
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "ga", "--population", "9", "--generations", "2", "--seed", "5",
                        "--multi_fidelity", "sh", "--eta", "3", "--output_dir", str(run)]) == 0
    evaluated = rows(run)
    for generation in ("0", "1", "2"):
        low = [r for r in evaluated if r["generation"] == generation and r["fidelity"] == "0.06"]
        full = [r for r in evaluated if r["generation"] == generation and r["fidelity"] == "1"]
        assert len(full) == math.ceil(len(low) / 3) and low
        best_low = sorted(low, key=lambda r: -float(r["fitness"]))[: len(full)]
        assert {r["key"] for r in full} == {r["key"] for r in best_low}
        first = int(full[0]["query"])
        assert [r["query"] for r in full] == [str(q) for q in range(first, first + len(full))]
    full_keys = {r["key"] for r in evaluated if r["fidelity"] == "1"}
    assert {h["key"] for h in json.loads((run / "hall_of_fame.json").read_text())} <= full_keys
    config = EvolveConfig.from_flags(dict(space="nas-bench-201", dataset="cifar10", strategy="ga", population=9,
                                          generations=2, seed=5, multi_fidelity="sh", eta=3, output_dir=str(run)))
    search = build_search(config, run, SerialExecutor(), show_progress=False)
    search.run()  # resumed: nothing left to evaluate
    assert search.population and all(c.key in full_keys for c in search.population)
    search.store.close()


@pytest.mark.parametrize("unit, budget", [("full", 4), ("query", 20)])
def test_the_budget_counts_every_rung_in_its_unit(tmp_path, mini_table, unit, budget):
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "ga", "--population", "10", "--generations", "50", "--seed", "2",
                        "--multi_fidelity", "sh", "--budget", str(budget), "--budget_unit", unit,
                        "--output_dir", str(run)]) == 0
    evaluated = rows(run)
    spent = sum(float(r["cost"]) for r in evaluated)
    expected = [float(r["fidelity"]) if unit == "full" else 1.0 for r in evaluated]
    assert [float(r["cost"]) for r in evaluated] == expected
    assert budget - 1 < spent <= budget + 1e-9  # spent up to what the next evaluation would overspend


def test_a_study_counts_full_training_equivalents(tmp_path, mini_table):
    out = tmp_path / "study"
    assert bench_main(["--spaces", "nas-bench-201:cifar10", "--strategies", "ga,dehb", "--seeds", "2",
                       "--budget", "5", "--budget_unit", "full", "--multi_fidelity", "sh", "--config", "none",
                       "--output_dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "acc @5" in report and "full-training equivalents" in report
    assert "`dehb`: " in report and "eta" not in json.loads((out / "study.json").read_text())["fidelity"]
    trajectory = json.loads((out / "runs/nas-bench-201_cifar10/ga/seed_0/trajectory.json").read_text())
    assert trajectory["rungs"] > 0 and trajectory["cost"] == sorted(trajectory["cost"])
    assert trajectory["cost"][-1] <= trajectory["spent"] <= 5 + 1e-9


def test_a_small_study_sets_gpt_ga_beside_dehb_and_tpe(tmp_path, mini_table):
    pytest.importorskip("optuna")
    pytest.importorskip("dehb")
    out = tmp_path / "study"
    assert bench_main(["--spaces", "nas-bench-201:cifar10", "--strategies", "gpt-ga,dehb,tpe", "--seeds", "2",
                       "--budget", "3", "--budget_unit", "full", "--multi_fidelity", "sh", "--config", "none",
                       "--output_dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "gpt-ga better than" in report and "| dehb |" in report and "| tpe |" in report
    dehb = json.loads((out / "runs/nas-bench-201_cifar10/dehb/seed_1/trajectory.json").read_text())
    assert dehb["rungs"] > 0 and dehb["spent"] <= 3 + 1e-9


def test_dehb_asks_fidelities_the_table_answers_at_and_is_refused_what_it_cannot_do(tmp_path, capsys, mini_table):
    pytest.importorskip("dehb")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "dehb", "--population", "6", "--generations", "4",
                        "--output_dir", str(run)]) == 0
    assert {r["fidelity"] for r in rows(run)} == {"0.06", "1"}
    capsys.readouterr()
    for flags in (["--objectives", "accuracy,params"], ["--screen", "naswot"], ["--multi_fidelity", "sh"]):
        assert evolve.main([*NB201, "--strategy", "dehb", *flags, "--output_dir", str(tmp_path / "no")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "no").exists()


def test_regularized_evolution_promotes_a_child_within_the_best_ninth_so_far(tmp_path, mini_table):
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "regularized-evolution", "--population", "18", "--generations", "3",
                        "--multi_fidelity", "sh", "--output_dir", str(run)]) == 0
    evaluated = rows(run)
    low = [r for r in evaluated if r["fidelity"] == "0.06"]
    promoted = {r["key"] for r in evaluated if r["fidelity"] == "1"}
    assert len(low) > 18 and 2 <= len(promoted) < len(low) / 3
    for r in low[18:]:  # a child: promoted when within the best ninth of the 12-epoch results up to it
        so_far = sorted((float(x["fitness"]) for x in low if int(x["generation"]) <= int(r["generation"])), reverse=True)
        assert (r["key"] in promoted) == (float(r["fitness"]) >= so_far[max(1, len(so_far) // 9) - 1])


def test_tpe_is_told_which_trials_were_pruned(tmp_path, mini_table):
    pytest.importorskip("optuna")
    config = EvolveConfig.from_flags(dict(space="nas-bench-201", dataset="cifar10", strategy="tpe", population=6,
                                          generations=1, seed=0, multi_fidelity="sh", output_dir=str(tmp_path)))
    search = build_search(config, tmp_path, SerialExecutor(), show_progress=False)
    search.run()
    states = [t.state.name for t in search.strategy.study.trials]
    assert states.count("COMPLETE") == search.store.evaluated_through(1) and "PRUNED" in states
    pruned = [t for t in search.strategy.study.trials if t.state.name == "PRUNED"]
    assert all(t.intermediate_values for t in pruned)
    search.store.close()


@pytest.mark.parametrize("flags, message", [
    (["--strategy", "dehb", "--multi_fidelity", "sh"], "--multi_fidelity needs --strategy"),
    (["--strategy", "ga", "--eta", "3"], "--eta needs --multi_fidelity sh"),
    (["--strategy", "ga", "--budget_unit", "full"], "--budget_unit needs --budget"),
    (["--strategy", "ga", "--multi_fidelity", "sh", "--eta", "1"], "eta must lie in"),
    (["--strategy", "ga", "--multi_fidelity", "sh", "--evaluator", "proxy"], "needs an evaluator that can train"),
])
def test_settings_that_cannot_work_are_refused_in_one_line(tmp_path, capsys, flags, message):
    args = ["--space", "nas-bench-201", "--dataset", "cifar10", *flags, "--output_dir", str(tmp_path / "run")]
    assert evolve.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_space_without_a_12_epoch_table_has_no_rung_below_the_full_one(requires_table):
    requires_table("nas-bench-macro")
    evaluator = get_evaluator("benchmark", "nas-bench-macro", "cifar10")
    assert evaluator.fidelities(3, None) == [1.0]


def test_train_rungs_are_shares_of_the_schedule():
    evaluator = TrainEvaluator("cifar", "digits", TrainSettings(epochs=6, min_steps=300, batch_size=64))
    assert evaluator.fidelities(3) == pytest.approx([1 / 9, 1 / 3, 1.0])
    assert evaluator.fidelities(3, 0.3) == pytest.approx([1 / 3, 1.0])
    assert evaluator.at_fidelity(1 / 9).settings.schedule_share == pytest.approx(1 / 9)
    assert share_of(308, 1 / 9) == 34 and share_of(308, 1.0) == 308 and share_of(5, 0.01) == 1


def test_a_train_rung_takes_its_share_of_the_optimizer_steps(monkeypatch):
    import gptnas.evaluators.train as train

    steps = []
    real = train.train_epoch

    def counting(*args, max_steps=None, **kwargs):
        steps.append(max_steps)
        return real(*args, max_steps=max_steps, **kwargs)
    monkeypatch.setattr(train, "train_epoch", counting)
    evaluator = get_evaluator("train", "cifar", "digits", device="cpu", epochs=3, min_steps=0, batch_size=64,
                              max_train_examples=256)
    arch = get_space("cifar").sample(random.Random(0))
    assert evaluator.evaluate("cifar", arch).ok
    full, epochs, steps[:] = sum(steps), len(steps), []
    assert evaluator.at_fidelity(1 / 3).evaluate("cifar", arch).ok
    assert epochs == 3 and sum(steps) == share_of(full, 1 / 3) == full // 3


def test_dehb_without_a_lower_fidelity_is_refused_before_the_run_directory(tmp_path, capsys, requires_table):
    requires_table("nas-bench-macro")
    assert evolve.main(["--space", "nas-bench-macro", "--strategy", "dehb", "--output_dir", str(tmp_path / "r")]) == 2
    assert "no fidelity below the full one" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_run_that_trains_nothing_in_full_says_so(tmp_path, capsys, mini_table):
    pytest.importorskip("dehb")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "dehb", "--population", "2", "--generations", "0",
                        "--output_dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no network was trained in full: 2 were evaluated below the full schedule" in err
