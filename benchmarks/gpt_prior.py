"""Does the GPT's prior know what scores well on a benchmark? (It has never seen an accuracy.)

    python benchmarks/gpt_prior.py [--gpt PATH_OR_HUB_ID] [--samples 500]

For each benchmark: Kendall tau between the GPT's log-likelihood and the table's
fitness over uniform samples of the space; the mean fitness of the 10 most
likely of those samples; and the mean / best-of-10 fitness of samples drawn from
the GPT at temperatures 1.0 and 0.5, against uniform sampling.
"""

from __future__ import annotations

import argparse
import random
import statistics

from scipy.stats import kendalltau

from gptnas.bench.harness import DEFAULT_BENCHMARKS, Benchmark
from gptnas.evaluators import get_evaluator
from gptnas.gpt.model import ArchGPT
from gptnas.spaces import get_space


def best_of_10(values: list[float]) -> float:
    return statistics.fmean(max(values[i : i + 10]) for i in range(0, len(values) - 9, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpt", default=None)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    gpt = ArchGPT.from_pretrained(args.gpt)
    print("| benchmark | tau(log-likelihood, fitness) | uniform: mean / best of 10 | 10 most likely: mean | GPT T=1.0: mean / best of 10 | GPT T=0.5: mean / best of 10 |")
    print("|---|---|---|---|---|---|")
    for name in DEFAULT_BENCHMARKS:
        benchmark = Benchmark.parse(name)
        space = get_space(benchmark.space)
        evaluator = get_evaluator("benchmark", space, benchmark.dataset)
        fitness = lambda archs: [evaluator.evaluate(space, a).fitness for a in archs]  # noqa: E731
        uniform = [space.sample(random.Random(seed)) for seed in range(args.samples)]
        scores, values = gpt.score(space, uniform), fitness(uniform)
        tau = kendalltau(scores, values)[0]
        likely = [v for _, v in sorted(zip(scores, values), key=lambda p: -p[0])[:10]]
        cells = [name, f"{tau:.3f}", f"{statistics.fmean(values):.2f} / {best_of_10(values):.2f}", f"{statistics.fmean(likely):.2f}"]
        for temperature in (1.0, 0.5):
            drawn = fitness(gpt.complete(space, [""], n=100, temperature=temperature, seed=1)[0])
            cells.append(f"{statistics.fmean(drawn):.2f} / {best_of_10(drawn):.2f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
