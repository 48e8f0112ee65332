"""Hardware-aware search: latency measured and stored with every evaluation, a Pareto front over the
chosen objectives, limits never broken, and a live view in TensorBoard."""

from __future__ import annotations

import csv
import json
import random
import statistics

import pytest

import evolve
from gptnas import get_space
from gptnas.training.device import resolve_device
from gptnas.training.latency import measure_latency

NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10", "--strategy", "ga"]


def rows(run) -> list[dict]:
    with open(run / "evaluations.csv") as f:
        return list(csv.DictReader(f))


def median_latency_ms(samples: int = 8) -> float:
    """The median latency of sampled NAS-Bench-201 networks here, measured as a search measures it: a limit at it
    rejects about half of them on any machine, fast or loaded."""
    space = get_space("nas-bench-201")
    rng = random.Random(0)
    models = [space.build_model(space.sample(rng), num_classes=10) for _ in range(samples)]
    return statistics.median(measure_latency(model, (3, 32, 32), resolve_device(None)) for model in models)


def test_two_objective_latency_search_returns_a_non_dominated_front_of_measured_networks(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    limit = round(median_latency_ms(), 3)
    assert evolve.main([*NB201, "--objectives", "accuracy,latency", "--max_latency_ms", str(limit), "--population", "6",
                        "--generations", "1", "--latency_batch_size", "4", "--output_dir", str(run)]) == 0
    evaluated = rows(run)
    assert evaluated and all(0 < float(r["latency_ms"]) <= limit and float(r["latency_batch_ms"]) > 0 for r in evaluated)
    front = json.loads((run / "hall_of_fame.json").read_text())
    assert front and all(h["latency_ms"] is not None for h in front)
    for a in front:  # no member dominated: more accurate and no slower
        assert not any(b["fitness"] > a["fitness"] and b["latency_ms"] <= a["latency_ms"] for b in front)


def test_three_objectives_and_a_tensorboard_view(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--objectives", "accuracy,flops,params", "--population", "6", "--generations", "2",
                        "--report_to", "tensorboard", "--output_dir", str(run)]) == 0
    assert all(r["latency_ms"] == "" for r in rows(run))  # measured only when the search asks for latency
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = [p for p in (run / "tracking").rglob("events.out.tfevents.*")]
    tags = set()
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"]) | set(accumulator.Tags()["tensors"])
    assert {"fitness/best", "fitness/mean", "queries", "seconds/evaluation"} <= tags
    assert any("best_architecture" in t for t in tags) and any("pareto_front" in t for t in tags)


@pytest.mark.parametrize("objectives", ["latency", "accuracy,speed", "accuracy,params,flops,latency", "accuracy,params,params"])
def test_bad_objectives_are_refused_in_one_line(tmp_path, capsys, objectives):
    assert evolve.main([*NB201, "--objectives", objectives, "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "objectives must be accuracy, then one or two of params, flops, latency" in err[0]
