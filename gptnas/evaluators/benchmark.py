"""Fitness from a tabular NAS benchmark: a look-up of the architecture's canonical key.

Each look-up stands for a network the benchmark authors trained in full, so a
search on a table is measured in queries (distinct canonical keys evaluated),
not seconds: `Evaluation.seconds` is 0.

What is selection fitness and what is only reported, per table:
- NAS-Bench-201 (cifar10, cifar100, imagenet16-120): fitness = `val_acc_200`,
  test_accuracy = `test_acc_200`. The `rank` field is sorted by test accuracy
  and is never read.
- NAS-Bench-Macro and Channel-Bench-Macro (cifar10): the tables have no
  validation split, only the test accuracy averaged over three seeds
  (`mean_acc` / `mean`); it is both the fitness and test_accuracy. Reports
  must say that the search selected on test accuracy.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from gptnas.benchmarks import load_table
from gptnas.errors import GptnasError
from gptnas.evaluators.base import Evaluation, check_space, model_cost
from gptnas.spaces import SearchSpace, get_space

log = logging.getLogger(__name__)


class TableFields(NamedTuple):
    fitness: str
    test: str


# space -> dataset -> table name (in gptnas.benchmarks.TABLES)
TABLES_BY_SPACE: dict[str, dict[str, str]] = {
    "nas-bench-macro": {"cifar10": "nas-bench-macro"},
    "channel-bench-mobilenet": {"cifar10": "channel-bench-mobilenet"},
    "channel-bench-resnet": {"cifar10": "channel-bench-resnet"},
    "nas-bench-201": {
        "cifar10": "nas-bench-201:cifar10",
        "cifar100": "nas-bench-201:cifar100",
        "imagenet16-120": "nas-bench-201:imagenet16-120",
    },
}
FIELDS: dict[str, TableFields] = {
    "nas-bench-macro": TableFields("mean_acc", "mean_acc"),
    "channel-bench-mobilenet": TableFields("mean", "mean"),
    "channel-bench-resnet": TableFields("mean", "mean"),
    "nas-bench-201:cifar10": TableFields("val_acc_200", "test_acc_200"),
    "nas-bench-201:cifar100": TableFields("val_acc_200", "test_acc_200"),
    "nas-bench-201:imagenet16-120": TableFields("val_acc_200", "test_acc_200"),
}
# Network shape per dataset, for params/FLOPs of tables that do not list them.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
INPUT_SIZE = {"imagenet16-120": 16}
_COSTS: dict[tuple[str, str], dict[str, int]] = {}  # (table, key) -> cost, for tables without params/FLOPs; per process


def table_for(space: SearchSpace | str, dataset: str) -> str:
    """The table name for (space, dataset); GptnasError listing what is valid."""
    space = get_space(space)
    datasets = TABLES_BY_SPACE.get(space.name)
    if datasets is None:
        raise GptnasError(
            f"space {space.name!r} has no benchmark table; use the train or proxy evaluator, "
            f"or a space with a table: {', '.join(TABLES_BY_SPACE)}"
        )
    if dataset not in datasets:
        raise GptnasError(
            f"space {space.name!r} has no benchmark table for dataset {dataset!r}; "
            f"valid datasets: {', '.join(datasets)}"
        )
    return datasets[dataset]


class BenchmarkEvaluator:
    """Looks architectures up in the benchmark table of (space, dataset)."""

    name = "benchmark"

    def __init__(self, space: SearchSpace | str, dataset: str):
        self.table_name = table_for(space, dataset)
        self.space_name = get_space(space).name
        self.dataset = dataset
        self.fields = FIELDS[self.table_name]

    @property
    def table(self) -> dict[str, dict]:
        return load_table(self.table_name)  # cached per process by gptnas.benchmarks

    def evaluate(self, space: SearchSpace | str, arch: Any) -> Evaluation:
        space = check_space(self.space_name, space)
        key = space.key(arch)
        record = self.table.get(key)
        if record is None:  # every canonical key is in its table; a miss is a bug in the space
            raise KeyError(f"{key!r} is not in benchmark table {self.table_name!r}")
        cost = self._cost(space, arch, key, record)
        return Evaluation(
            fitness=float(record[self.fields.fitness]),
            test_accuracy=float(record[self.fields.test]),
            params=cost["params"],
            flops=cost["flops"],
            seconds=0.0,
        )

    def _cost(self, space: SearchSpace, arch: Any, key: str, record: dict) -> dict[str, int]:
        if "params" in record and "flops" in record:
            return {"params": int(record["params"]), "flops": int(record["flops"])}
        cached = (self.table_name, key)
        if cached not in _COSTS:
            _COSTS[cached] = model_cost(space, arch, NUM_CLASSES[self.dataset], INPUT_SIZE.get(self.dataset, space.input_size))
        return _COSTS[cached]

    def __repr__(self) -> str:
        return f"BenchmarkEvaluator({self.space_name!r}, {self.dataset!r})"
