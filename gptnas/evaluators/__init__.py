"""Evaluators, found by name: `get_evaluator("benchmark" | "train" | "proxy", space, dataset, **options)`.

Each turns an architecture into an `Evaluation` whose `fitness` the search
maximises. They are picklable and cheap to send to worker processes: tables,
data and models are loaded on first use in the process that evaluates.
"""

from __future__ import annotations

from typing import Any, Callable

from gptnas.errors import GptnasError
from gptnas.evaluators.base import WORST_FITNESS, Evaluation, Evaluator, settings_from_options
from gptnas.evaluators.benchmark import BenchmarkEvaluator
from gptnas.evaluators.proxy import ProxyEvaluator, ProxySettings
from gptnas.evaluators.train import TrainEvaluator, TrainSettings
from gptnas.spaces import SearchSpace


def _benchmark(space, dataset: str, options: dict[str, Any]) -> Evaluator:
    if options:
        raise GptnasError(f"evaluator 'benchmark' takes no options, got {', '.join(options)}")
    return BenchmarkEvaluator(space, dataset)


def _train(space, dataset: str, options: dict[str, Any]) -> Evaluator:
    return TrainEvaluator(space, dataset, settings_from_options(TrainSettings, "train", options))


def _proxy(space, dataset: str, options: dict[str, Any]) -> Evaluator:
    return ProxyEvaluator(space, dataset, settings_from_options(ProxySettings, "proxy", options))


_REGISTRY: dict[str, Callable[[Any, str, dict[str, Any]], Evaluator]] = {
    "benchmark": _benchmark,
    "train": _train,
    "proxy": _proxy,
}


def evaluator_names() -> list[str]:
    return list(_REGISTRY)


def get_evaluator(name: str, space: SearchSpace | str, dataset: str, **options: Any) -> Evaluator:
    """The evaluator `name` for `space` on `dataset`; GptnasError listing valid names, datasets or options."""
    if name not in _REGISTRY:
        raise GptnasError(f"unknown evaluator {name!r}; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](space, dataset, options)


__all__ = [
    "WORST_FITNESS",
    "BenchmarkEvaluator",
    "Evaluation",
    "Evaluator",
    "ProxyEvaluator",
    "ProxySettings",
    "TrainEvaluator",
    "TrainSettings",
    "evaluator_names",
    "get_evaluator",
]
