"""How many training epochs multi-fidelity saves on a GPU-sized schedule, counted, not timed.

    python benchmarks/multi_fidelity_epochs.py --eta 3 --seeds 3

Runs the `gpt-nas` profile's search (population 30, 20 generations, `ga`, the `cifar` space) twice per seed,
single-fidelity and with `--multi_fidelity sh --eta E`, with a stand-in for the train evaluator that answers
at once: it has the train evaluator's rungs (1/eta^k of the schedule, down to a ninth) and scores each network
by a number drawn from its key and the fidelity, so selection, the novelty rule and promotion run as in a real
search. Every evaluation is counted as the epochs the train evaluator would train for it on CIFAR-10 (45,000
training images, batch 512, 6 epochs: 88 steps an epoch, `share_of` those steps at a rung).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
from pathlib import Path

from gptnas.evaluators.base import Evaluation
from gptnas.evaluators.train import TrainEvaluator, TrainSettings, schedule, share_of
from gptnas.search.config import EvolveConfig
from gptnas.search.executors import SerialExecutor
from gptnas.search.core import Search
from gptnas.search.report import evaluation_rows
from gptnas.spaces import get_space

CIFAR10_TRAIN = 45_000


class StandIn:
    """The train evaluator's rungs, with a score drawn from (key, fidelity) instead of training."""

    name, metric, num_classes, input_size = "stand-in", "score", 10, 32

    def __init__(self, fidelity: float = 1.0):
        self.fidelity = fidelity

    def fidelities(self, eta, lowest=None):
        return TrainEvaluator("cifar", "cifar10").fidelities(eta, lowest)

    def at_fidelity(self, fidelity):
        return StandIn(fidelity)

    def prepare(self):
        pass

    def source(self):
        return {}

    def input_spec(self):
        return {}

    def evaluate(self, space, arch):
        key = get_space(space).key(arch)
        digest = hashlib.sha256(f"{key}|{self.fidelity}".encode()).digest()
        return Evaluation(100 * int.from_bytes(digest[:4], "big") / 2**32, None, 0, 0, 0.0)


def epochs(rows) -> float:
    batch, full_epochs = schedule(CIFAR10_TRAIN, TrainSettings())
    per_epoch = -(-CIFAR10_TRAIN // batch)
    return sum(share_of(full_epochs * per_epoch, level) for *_, level, _ in rows) / per_epoch


def count(seed: int, multi_fidelity: dict) -> tuple[int, float]:
    flags = dict(space="cifar", strategy="ga", evaluator="proxy", dataset="cifar10", profile="gpt-nas", seed=seed,
                 **multi_fidelity)
    config = EvolveConfig.from_flags(flags)
    with tempfile.TemporaryDirectory() as run_dir:
        search = Search(config, get_space("cifar"), StandIn(), Path(run_dir), SerialExecutor(), show_progress=False)
        search.run()
        rows = evaluation_rows(search.store)
        search.store.close()
    return len(rows), epochs(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("| seed | evaluations (single) | epochs (single) | evaluations (multi-fidelity) | epochs (multi-fidelity) | "
          "saved |\n|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        single = count(seed, {})
        multi = count(seed, {"multi_fidelity": "sh", "eta": args.eta})
        print(f"| {seed} | {single[0]} | {single[1]:.0f} | {multi[0]} | {multi[1]:.0f} | {single[1] / multi[1]:.2f}x |")


if __name__ == "__main__":
    main()
