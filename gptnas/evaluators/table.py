"""Fitness from a tabular NAS benchmark: a look-up of the architecture's canonical key.

Each look-up stands for a network the benchmark authors trained in full, so a
search on a table is measured in queries (distinct canonical keys evaluated),
not seconds: `Evaluation.seconds` is 0.

Which table serves (space, dataset), and which of its fields is the fitness and
which the test accuracy, is `gptnas.tables` (TABLES_BY_SPACE, TABLES):
- NAS-Bench-201 (cifar10, cifar100, imagenet16-120): fitness = `val_acc_200`,
  test_accuracy = `test_acc_200`.
- NAS-Bench-Macro and Channel-Bench-Macro (cifar10): the tables have no
  validation split, only the test accuracy averaged over three seeds
  (`mean_acc` / `mean`); it is both the fitness and test_accuracy. Reports
  must say that the search selected on test accuracy.

Where a table of the same networks after fewer epochs exists (`gptnas.tables.LOW_FIDELITY`: NAS-Bench-201
at 12 of 200 epochs), the evaluator also answers at that fidelity, for multi-fidelity search
(gptnas/search/fidelity.py): `at_fidelity(12 / 200)` looks up the 12-epoch validation and test accuracy.
"""

from __future__ import annotations

import logging
from typing import Any

from gptnas.evaluators.base import EVALUATORS, Evaluation, check_space
from gptnas.spaces import SearchSpace, get_space
from gptnas.errors import GptnasError
from gptnas.tables import LOW_FIDELITY, TABLES, load_low_fidelity, load_table, table_for

log = logging.getLogger(__name__)

# Network shape per dataset, for params/FLOPs of tables that do not list them.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
INPUT_SIZE = {"imagenet16-120": 16}
_COSTS: dict[tuple[str, str], dict[str, int]] = {}  # (table, key) -> cost, for tables without params/FLOPs; per process


@EVALUATORS.register
class TableEvaluator:
    """Looks architectures up in the benchmark table of (space, dataset)."""

    name = "benchmark"
    settings_type = None

    def __init__(self, space: SearchSpace | str, dataset: str, fidelity: float = 1.0):
        self.table_name = table_for(space, dataset)
        self.space_ref = get_space(space).reference
        self.dataset = dataset
        self.fidelity = fidelity
        if fidelity == 1.0:
            self.spec = TABLES[self.table_name]  # .fitness and .test name the record fields read
        elif fidelity in self.fidelities():
            self.spec = LOW_FIDELITY[self.table_name].spec
        else:
            raise GptnasError(f"table {self.table_name} has no fidelity {fidelity:g}; it has "
                              f"{', '.join(f'{f:g}' for f in self.fidelities())}")

    def fidelities(self, eta: int | None = None, lowest: float | None = None) -> list[float]:
        """The fidelities it answers at, as shares of the full schedule, ascending and ending at 1: the
        tables' own (`eta` does not apply), from `lowest` up."""
        low = LOW_FIDELITY.get(self.table_name)
        return [f for f in ([low.fraction] if low else []) if lowest is None or f >= lowest] + [1.0]

    def at_fidelity(self, fidelity: float) -> TableEvaluator:
        return self if fidelity == self.fidelity else TableEvaluator(self.space_ref, self.dataset, fidelity)

    @property
    def metric(self) -> str:
        split = "test" if self.spec.fitness == self.spec.test else "validation"
        return f"{split} accuracy (%)"

    def source(self) -> dict:
        return {"table": self.table_name, "url": self.spec.url, "sha256": self.spec.sha256}

    def prepare(self) -> None:
        self.table  # noqa: B018 - loads (and verifies) it now

    def input_spec(self) -> dict:
        return {"input_channels": 3, "normalisation": None}  # the table's networks were trained by the benchmark

    @property
    def input_size(self) -> int:
        return INPUT_SIZE.get(self.dataset, get_space(self.space_ref).input_size)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def table(self) -> dict[str, dict]:
        if self.fidelity < 1.0:
            return load_low_fidelity(self.table_name)
        return load_table(self.table_name)  # cached per process by gptnas.tables

    def evaluate(self, space: SearchSpace | str, arch: Any) -> Evaluation:
        space = check_space(self.space_ref, space)
        key = space.key(arch)
        record = self.table.get(key)
        if record is None:  # every canonical key is in its table; a miss is a bug in the space
            raise KeyError(f"{key!r} is not in benchmark table {self.table_name!r}")
        cost = self._cost(space, arch, key, record)
        return Evaluation(
            fitness=float(record[self.spec.fitness]),
            test_accuracy=float(record[self.spec.test]),
            params=cost["params"],
            flops=cost["flops"],
            seconds=0.0,
        )

    def _cost(self, space: SearchSpace, arch: Any, key: str, record: dict) -> dict[str, int]:
        if "params" in record and "flops" in record:
            return {"params": int(record["params"]), "flops": int(record["flops"])}
        cached = (self.table_name, key)
        if cached not in _COSTS:
            _COSTS[cached] = space.cost(arch, NUM_CLASSES[self.dataset], INPUT_SIZE.get(self.dataset, space.input_size))
        return _COSTS[cached]

    def __repr__(self) -> str:
        fidelity = f", fidelity={self.fidelity:g}" if self.fidelity < 1.0 else ""
        return f"TableEvaluator({get_space(self.space_ref).name!r}, {self.dataset!r}{fidelity})"
