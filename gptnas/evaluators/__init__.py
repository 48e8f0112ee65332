"""Evaluators, found by name: `get_evaluator("benchmark" | "train" | "proxy", space, dataset, **options)`.

Each turns an architecture into an `Evaluation` whose `fitness` the search
maximises. They are picklable and cheap to send to worker processes: tables,
data and models are loaded on first use in the process that evaluates.
"""

from __future__ import annotations

from typing import Any

from gptnas.config import from_dict
from gptnas.errors import GptnasError
from gptnas.evaluators.base import WORST_FITNESS, Evaluation, Evaluator
from gptnas.evaluators.proxy import ProxyEvaluator, ProxySettings
from gptnas.evaluators.table import TableEvaluator
from gptnas.evaluators.train import TrainEvaluator, TrainSettings
from gptnas.spaces import SearchSpace

# name -> (evaluator class, its settings dataclass, or None when it takes no settings)
_REGISTRY: dict[str, tuple[type, type | None]] = {
    "benchmark": (TableEvaluator, None),
    "train": (TrainEvaluator, TrainSettings),
    "proxy": (ProxyEvaluator, ProxySettings),
}


def evaluator_names() -> list[str]:
    return list(_REGISTRY)


def settings_type(name: str) -> type | None:
    """The settings dataclass of evaluator `name` (None: it takes no settings)."""
    return _lookup(name)[1]


def get_evaluator(name: str, space: SearchSpace | str, dataset: str, **options: Any) -> Evaluator:
    """The evaluator `name` for `space` on `dataset`; GptnasError listing valid names, datasets or options.

    Options are the fields of the evaluator's settings dataclass (strings are converted)."""
    evaluator, settings = _lookup(name)
    if settings is None:
        if options:
            raise GptnasError(f"evaluator {name!r} takes no options, got {', '.join(options)}")
        return evaluator(space, dataset)
    return evaluator(space, dataset, from_dict(settings, options, f"evaluator {name!r}"))


def _lookup(name: str) -> tuple[type, type | None]:
    if name not in _REGISTRY:
        raise GptnasError(f"unknown evaluator {name!r}; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


__all__ = [
    "WORST_FITNESS",
    "Evaluation",
    "Evaluator",
    "ProxyEvaluator",
    "ProxySettings",
    "TableEvaluator",
    "TrainEvaluator",
    "TrainSettings",
    "evaluator_names",
    "get_evaluator",
    "settings_type",
]
