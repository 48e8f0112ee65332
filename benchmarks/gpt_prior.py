"""Does the GPT know what scores well on a benchmark, before the search evaluates anything?

    python benchmarks/gpt_prior.py [--gpt PATH_OR_HUB_ID | --gpt transfer] [--samples 500]

For each benchmark: Kendall tau with the table's fitness, over uniform samples of
the space, of the GPT's log-likelihood, of its log-likelihood under the best
quality token, log p(arch | q4), and of its quality ratio
log p(arch | q4) - log p(arch) (the GPT as a predictor); the mean fitness of the
10 samples each ranks highest; and the mean / best-of-10 fitness of samples drawn
from the GPT (T=1.0, with and without the best quality token) against uniform
sampling. `--gpt transfer` uses, per benchmark, the leave-space-out GPT the
benchmark harness uses (gptnas/gpt/transfer.py): it never saw a table of that space.
"""

from __future__ import annotations

import argparse
import random
import statistics

from scipy.stats import kendalltau

from gptnas.bench.harness import DEFAULT_BENCHMARKS, Benchmark
from gptnas.evaluators import get_evaluator
from gptnas.gpt import transfer
from gptnas.gpt.model import ArchGPT
from gptnas.spaces import get_space


def best_of_10(values: list[float]) -> float:
    return statistics.fmean(max(values[i : i + 10]) for i in range(0, len(values) - 9, 10))


def top_10(scores: list[float], values: list[float]) -> float:
    return statistics.fmean(v for _, v in sorted(zip(scores, values), key=lambda p: -p[0])[:10])


def load_gpt(name: str | None, space: str) -> ArchGPT:
    if name == "transfer":
        return ArchGPT.from_pretrained(transfer.model_for(space))
    return ArchGPT.from_pretrained(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpt", default=None, help="folder or Hub id; 'transfer': the leave-space-out GPT per benchmark")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--benchmarks", default=",".join(DEFAULT_BENCHMARKS))
    args = parser.parse_args()
    print("| benchmark | tau(log-likelihood) | tau(log p given q4) | tau(quality ratio) | uniform: mean / best of 10 | top 10 by likelihood "
          "| top 10 by ratio | GPT: mean / best of 10 | GPT under q4: mean / best of 10 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.benchmarks.split(","):
        benchmark = Benchmark.parse(name)
        space = get_space(benchmark.space)
        gpt = load_gpt(args.gpt, space.name)
        evaluator = get_evaluator("benchmark", space, benchmark.dataset)
        fitness = lambda archs: [evaluator.evaluate(space, a).fitness for a in archs]  # noqa: E731
        uniform = [space.sample(random.Random(seed)) for seed in range(args.samples)]
        values, likelihood, best = fitness(uniform), gpt.score(space, uniform), gpt.score(space, uniform, quality=4)
        ratio = [b - p for b, p in zip(best, likelihood)]
        cells = [name, f"{kendalltau(likelihood, values)[0]:.3f}", f"{kendalltau(best, values)[0]:.3f}",
                 f"{kendalltau(ratio, values)[0]:.3f}",
                 f"{statistics.fmean(values):.2f} / {best_of_10(values):.2f}",
                 f"{top_10(likelihood, values):.2f}", f"{top_10(ratio, values):.2f}"]
        for quality in (None, 4):
            drawn = fitness(gpt.complete(space, [""], n=100, seed=1, quality=quality)[0])
            cells.append(f"{statistics.fmean(drawn):.2f} / {best_of_10(drawn):.2f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
