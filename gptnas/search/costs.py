"""What a network costs, and the objectives and limits a search puts on it.

Parameters and FLOPs (multiply-accumulates) come from the space. Latency is
measured on the evaluation device (`gptnas.training.latency`: median of timed
forward passes after a warm-up), at batch 1 (and at `--latency_batch_size` when
given), once per architecture; or, with `--latency_table DEVICE`, it is looked
up in that device's measured table (`gptnas.latency_tables`).
`--objectives accuracy,params|flops|latency` makes the search multi-objective
(NSGA-II): accuracy is maximised, every other objective minimised.
`--max_params`, `--max_flops` and `--max_latency_ms` are hard limits: a network
over one is never evaluated.
"""

from __future__ import annotations

import dataclasses

from gptnas.evaluators.base import Evaluation
from gptnas.latency_tables import load_latency_table
from gptnas.training.device import resolve_device
from gptnas.training.latency import measure_latency

UNITS = {"params": "parameters", "flops": "multiply-accumulates", "latency": "latency (ms, batch 1)"}
COST_OBJECTIVES = tuple(UNITS)
FAILED_COST = 1e18  # a failed network's cost: worse than any real one


class Costs:
    def __init__(self, settings, space, evaluator, device: str | None):
        """`settings`: the run's SearchSettings (objectives, limits); `device`: where latency is measured."""
        self.config, self.space, self.evaluator, self.device = settings, space, evaluator, device
        self.objectives = settings.objective_list()
        self.measures_latency = settings.measures_latency()
        limits = (settings.max_params, settings.max_flops, settings.max_latency_ms)
        self.limited = bool(space.limits) or any(limit is not None for limit in limits)
        self._latency: dict[str, tuple[float, float]] = {}  # key -> (batch 1, batch N) ms, this process
        self.table = None if settings.latency_table is None else load_latency_table(settings.latency_table, space.name)

    def source(self) -> dict | None:
        """Where latency comes from: the device table's files and their sha256, or None (measured here)."""
        return None if self.table is None else {"device": self.table.device, **self.table.source}

    def feasible(self, arch) -> bool:
        if not self.space.within_limits(arch):  # a declared space's own limits, at its input size
            return False
        c = self.config
        limits = {"params": c.max_params, "flops": c.max_flops}
        if any(limit is not None for limit in limits.values()):
            cost = self.space.cost(arch, self.evaluator.num_classes, self.evaluator.input_size)  # as evaluated
            if any(limit is not None and cost[name] > limit for name, limit in limits.items()):
                return False
        return c.max_latency_ms is None or self.latency(arch)[0] <= c.max_latency_ms

    def latency(self, arch) -> tuple[float, float | None]:
        """(ms at batch 1, ms at --latency_batch_size or None) of the network on the evaluation device, or
        (ms on the table's device, None)."""
        key = self.space.key(arch)
        if self.table is not None:
            return self.table(key), None
        if key not in self._latency:
            model = self.space.build_model(arch, self.evaluator.num_classes)
            size = self.evaluator.input_size
            device = resolve_device(self.device)
            batch = self.config.latency_batch_size
            self._latency[key] = (measure_latency(model, (3, size, size), device),
                                  batch and measure_latency(model, (3, size, size), device, batch, warmup=2, repeats=5))
        return self._latency[key]

    def with_latency(self, arch, evaluation: Evaluation) -> Evaluation:
        """The evaluation with the network's latency, when the search measures it."""
        if not self.measures_latency:
            return evaluation
        one, batch = self.latency(arch)
        return dataclasses.replace(evaluation, latency_ms=round(one, 4), latency_batch_ms=batch and round(batch, 4))

    def fitness(self, evaluation: Evaluation, fitness: float) -> tuple[float, ...]:
        """The DEAP fitness values: accuracy first, then each cost objective."""
        values = {"params": evaluation.params, "flops": evaluation.flops, "latency": evaluation.latency_ms}
        costs = [values[name] if evaluation.ok and values[name] is not None else FAILED_COST for name in self.objectives[1:]]
        return (fitness, *costs)
