"""Hardware-aware studies in the harness: the hypervolume of each strategy's front against a stated reference,
the best accuracy under latency caps, and constrained searches measured against the constrained optimum."""

from __future__ import annotations

import csv
import json
import math

import pytest

from gptnas.bench import pareto
from gptnas.bench.__main__ import main
from gptnas.bench.harness import Benchmark
from gptnas.bench.report import optimum

CIFAR100 = Benchmark("nas-bench-201", "cifar100")
STUDY = ["--spaces", "nas-bench-201:cifar100", "--seeds", "2", "--budget", "25", "--config", "none"]


def test_hypervolume_is_taken_in_the_tables_unit_square_against_the_median_and_the_slowest():
    scale = pareto.Scale(median=50.0, best=70.0, fastest=1.0, slowest=5.0)
    assert scale.hypervolume([(70.0, 1.0)]) == pytest.approx(1.0)  # as good as the best and as fast as the fastest
    assert scale.hypervolume([(60.0, 3.0)]) == pytest.approx(0.25)
    assert scale.hypervolume([(60.0, 3.0), (50.0, 1.0), (40.0, 1.0)]) == pytest.approx(0.25)  # no gain at the median
    assert scale.hypervolume([(60.0, 3.0), (70.0, 4.0)]) == pytest.approx(0.25 + 0.5 * 0.25)
    assert scale.hypervolume([]) == 0.0


def test_a_runs_front_is_chosen_on_fitness_and_scored_on_test_accuracy():
    trajectory = {"fitness": [60.0, 70.0, 65.0, 50.0], "test": [61.0, 40.0, 66.0, 99.0], "latency": [1.0, 3.0, 2.0, 2.5]}
    assert pareto.front(pareto.run_points(trajectory, 4)) == [(60.0, 61.0, 1.0), (70.0, 40.0, 3.0), (65.0, 66.0, 2.0)]
    assert pareto.best_under(trajectory, 2.0) == 66.0 and pareto.best_under(trajectory, 2.9) == 66.0
    assert math.isnan(pareto.best_under(trajectory, 0.5))


def test_the_constrained_optimum_is_the_best_validation_within_the_limit(requires_table):
    requires_table("nas-bench-201:cifar100")
    requires_table("hw-latency:fpga")
    cells = pareto.table_cells(CIFAR100, "fpga")
    best = pareto.constrained_optimum(CIFAR100, "fpga", 3.8)
    within = [c for c in cells if c.latency <= 3.8]
    assert len(cells) == 6466 and 0 < len(within) < len(cells)
    assert best.latency <= 3.8 and best.fitness == max(c.fitness for c in within)
    assert optimum(CIFAR100, "fpga", 3.8).fitness == best.fitness < optimum(CIFAR100).fitness


def test_a_bi_objective_study_reports_hypervolume_caps_tests_and_fronts(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar100")
    requires_table("hw-latency:raspi4")
    out = tmp_path / "study"
    assert main([*STUDY, "--strategies", "gpt-ga,ga,tpe", "--objectives", "accuracy,latency", "--latency_table",
                 "raspi4", "--output_dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    for text in ("Latency on `raspi4`", "| strategy | HV @25 | acc within", "| the table (best possible) |",
                 "gpt-ga's hypervolume larger than", "| tpe |", "reference point (median accuracy, slowest latency)"):
        assert text in report
    assert "## Targets" not in report  # the table targets are for unconstrained single-objective searches
    assert (out / "front_nas-bench-201_cifar100.png").stat().st_size > 0


def test_a_constrained_study_counts_queries_to_the_constrained_optimum(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar100")
    requires_table("hw-latency:fpga")
    out = tmp_path / "study"
    assert main([*STUDY, "--strategies", "ga,random", "--max_latency_ms", "3.8", "--latency_table", "fpga",
                 "--output_dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "at most 3.8 ms. Constrained optimum" in report and "HELP (MetaD2A + HELP) reported 70.2 %" in report
    best = pareto.constrained_optimum(CIFAR100, "fpga", 3.8).fitness
    with open(out / "optimum.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # every run's fitness reaches the constrained optimum first at the query the csv names
        trajectory = json.loads((out / "runs" / "nas-bench-201_cifar100" / row["strategy"] /
                                               f"seed_{row['seed']}" / "trajectory.json").read_text())
        assert max(trajectory["latency"]) <= 3.8
        hit = next((q for q, f in enumerate(trajectory["fitness"], 1) if f >= best - 1e-9), None)
        assert row["queries_to_optimum"] == ("" if hit is None else str(hit))


@pytest.mark.parametrize("benchmark, flags, message", [
    ("nas-bench-macro", ["--latency_table", "fpga", "--max_latency_ms", "3"],
     "covers the nas-bench-201 space only, not 'nas-bench-macro'"),
    ("nas-bench-201:cifar100", ["--latency_table", "fpga"],
     "--latency_table needs --objectives accuracy,latency or --max_latency_ms"),
    ("nas-bench-201:cifar100", ["--latency_table", "tpu"], "unknown latency table 'tpu'"),
])
def test_hardware_flags_that_cannot_apply_are_refused_before_the_study_starts(tmp_path, capsys, requires_table,
                                                                                benchmark, flags, message):
    requires_table(Benchmark.parse(benchmark).name if ":" not in benchmark else benchmark)
    out = tmp_path / "study"
    assert main(["--spaces", benchmark, "--seeds", "1", "--budget", "5", *flags, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
