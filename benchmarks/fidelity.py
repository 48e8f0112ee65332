"""What `evolve.py --fidelity` buys: seconds per candidate against how well the cheap ranking agrees.

    OMP_NUM_THREADS=1 python benchmarks/fidelity.py --dataset digits --samples 12

Samples a seeded set of distinct `cifar`-space architectures within the run's
FLOPs cap (the cpu profile's, unless --profile gpt-nas), trains each with the
train evaluator at every fidelity (the settings evolve.py resolves for
`--fidelity F`, so exactly what a search would run) and prints, per fidelity:
median seconds per candidate, the Kendall tau of its validation accuracy with
the `high` fidelity's, the Kendall tau of its validation accuracy with the test
accuracy at `high` (how well the search's fitness predicts what a user gets),
and the `high` test accuracy of the network it ranks first.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from scipy.stats import kendalltau

from gptnas.evaluators import get_evaluator
from gptnas.evaluators.train import FIDELITIES
from gptnas.search.config import EvolveConfig
from gptnas.spaces import get_space


def sample(space, max_flops: int | None, input_size: int, num_classes: int, n: int, seed: int) -> list:
    rng, archs, seen = random.Random(seed), [], set()
    while len(archs) < n:
        arch = space.sample(rng)
        if space.key(arch) in seen:
            continue
        if max_flops is None or space.cost(arch, num_classes, input_size)["flops"] <= max_flops:
            seen.add(space.key(arch))
            archs.append(arch)
    return archs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    space = get_space(args.space)
    results = {}  # fidelity -> [(val, test, seconds)]
    archs = None
    for fidelity in FIDELITIES:
        config = EvolveConfig.from_flags(dict(space=args.space, dataset=args.dataset, evaluator="train",
                                              profile=args.profile, fidelity=fidelity, device="cpu", seed=args.seed))
        evaluator = get_evaluator("train", space, args.dataset, **config.evaluator_options())
        if archs is None:  # the cap of the full-fidelity images, as a search at `high` would have it
            config.limit_flops(evaluator)
            archs = sample(space, config.search.max_flops, evaluator.input_size, evaluator.num_classes, args.samples, args.seed)
        evaluator.prepare()
        rows = []
        for arch in archs:
            start = time.perf_counter()
            result = evaluator.evaluate(space, arch)
            rows.append((result.fitness, result.test_accuracy or 0.0, time.perf_counter() - start))
        results[fidelity] = rows
        print(f"{fidelity}: done ({config.evaluator_options()})", flush=True)
    high_val = [v for v, _, _ in results["high"]]
    high_test = [t for _, t, _ in results["high"]]
    print(f"\n{args.samples} `{args.space}` architectures on {args.dataset} (profile {args.profile}, seed {args.seed})\n")
    print("| fidelity | median s / candidate | tau(val, val at high) | tau(val, test at high) | "
          "test at high of its best |")
    print("|---|---|---|---|---|")
    for fidelity, rows in results.items():
        val = [v for v, _, _ in rows]
        best = max(range(len(val)), key=lambda i: val[i])
        print(f"| {fidelity} | {statistics.median(s for _, _, s in rows):.1f} | {kendalltau(val, high_val)[0]:.2f} | "
              f"{kendalltau(val, high_test)[0]:.2f} | {high_test[best]:.2f} |")


if __name__ == "__main__":
    main()
