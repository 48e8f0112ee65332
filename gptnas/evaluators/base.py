"""What every evaluator returns, the protocol they implement, and what they share.

An evaluator turns an architecture of a search space into an `Evaluation`.
Evaluators are sent to worker processes (and Ray actors), so they hold only
their settings; tables, data and models are made on first use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gptnas.errors import GptnasError, one_line
from gptnas.spaces import SearchSpace, get_space
from gptnas.training.device import is_out_of_memory
from gptnas.registry import Registry

WORST_FITNESS = 0.0  # every fitness is >= 0 (accuracy in %, synflow, naswot), so failures rank last


@dataclass(frozen=True)
class Evaluation:
    fitness: float  # what the search maximises: validation accuracy in % (or a proxy score); WORST_FITNESS on failure
    test_accuracy: float | None  # reported only, never used for selection
    params: int
    flops: int  # multiply-accumulates of one forward pass on one input
    seconds: float  # wall time of this evaluation
    status: str = "ok"  # "ok" | "diverged" | "out_of_memory" | "failed"
    reason: str = ""  # one line, for failures
    latency_ms: float | None = None  # forward pass at batch 1 on the evaluation device (when the search measures it)
    latency_batch_ms: float | None = None  # ... at --latency_batch_size

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Evaluation:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(record) - names
        if unknown:
            raise GptnasError(f"unknown evaluation fields {sorted(unknown)}; valid: {', '.join(sorted(names))}")
        test = record.get("test_accuracy")
        return cls(
            fitness=float(record["fitness"]),
            test_accuracy=None if test is None else float(test),
            params=int(record["params"]),
            flops=int(record["flops"]),
            seconds=float(record["seconds"]),
            status=str(record.get("status", "ok")),
            reason=str(record.get("reason", "")),
            latency_ms=_optional_float(record.get("latency_ms")),
            latency_batch_ms=_optional_float(record.get("latency_batch_ms")),
        )


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


EVALUATORS: Registry = Registry("evaluator")  # every evaluator class registers itself: @EVALUATORS.register


@runtime_checkable
class Evaluator(Protocol):
    name: str
    settings_type: type | None  # its settings dataclass (the options of get_evaluator); None: it takes none
    num_classes: int  # of the networks it evaluates (what a user must build the winner with)
    input_size: int  # the side of the images they see
    metric: str  # what its fitness is, with the unit, for plots and reports

    def source(self) -> dict:
        """Where its numbers come from, pinned: the table's URL and sha256, or the dataset's Hub commit."""
        ...

    def prepare(self) -> None:
        """Fetches what evaluation needs (table, data) now, so a missing piece is a one-line error
        before a run directory exists; evaluation would otherwise do it on first use."""
        ...

    def input_spec(self) -> dict:
        """What the networks' inputs are: {"input_channels": 3, "normalisation": {"mean": [...], "std": [...]}
        (per channel, of pixels scaled to [0, 1]) or None where it trains no network on images itself}."""
        ...

    def evaluate(self, space: SearchSpace | str, arch: Any) -> Evaluation: ...


def image_spec(data) -> dict:
    """`Evaluator.input_spec` of networks trained on `data` (gptnas.training.data.ImageData)."""
    mean, std = data.stats
    return {"input_channels": int(data.train_images.shape[1]),
            "normalisation": {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std]}}


# ---------------------------------------------------------------- shared by the evaluators


def check_space(expected: str | dict, space: SearchSpace | str) -> SearchSpace:
    """`space`, when it is the one an evaluator was made for (`expected`: that space's reference)."""
    space, name = get_space(space), get_space(expected).name
    if space.name != name:
        raise ValueError(f"this evaluator was made for space {name!r}, not {space.name!r}")
    return space


def failure(error: BaseException, cost: dict[str, int], seconds: float) -> Evaluation:
    """The Evaluation of a candidate whose build or run raised `error` (out of memory or failed)."""
    status = "out_of_memory" if is_out_of_memory(error) else "failed"
    return Evaluation(WORST_FITNESS, None, cost["params"], cost["flops"], seconds, status, one_line(error))


def diverged(reason: str, cost: dict[str, int], seconds: float) -> Evaluation:
    return Evaluation(WORST_FITNESS, None, cost["params"], cost["flops"], seconds, "diverged", reason)


def safe_cost(space: SearchSpace, arch: Any, num_classes: int, input_size: int | None = None) -> dict[str, int]:
    """`space.cost` of the network as evaluated, or zeros when the architecture cannot even be built (the
    evaluation reports why)."""
    try:
        return space.cost(arch, num_classes, input_size)
    except Exception:  # noqa: BLE001 - the evaluation that follows records the real error
        return {"params": 0, "flops": 0}


def describe(space: SearchSpace, arch: Any) -> str:
    """The architecture's key for log lines, or its repr when it is too broken to have one."""
    try:
        return space.key(arch)
    except Exception:  # noqa: BLE001
        return repr(arch)
