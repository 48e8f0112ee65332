"""Does the cost token steer the GPT's `cifar` networks to a parameter budget?

    python benchmarks/cifar_conditioning.py [--gpt PATH] [--samples 30] [--drafts 4] [--caps 1000000,5000000,20000000]

For each cap: samples drawn under the best quality token and `max_params` = cap (`ArchGPT.complete`: the
prompt holds the GPT's cost token of `tokens.cap_bucket(cap)`; each sample is written with between 75 % of
the cap and the cap, the likeliest of `--drafts` drafts) against uniform samples of the space under the same
cap (rejection sampling). Reports the parameter distribution (median as a fraction of the cap, the largest),
the GPT's drafts and redraws (samples drawn again for being over the cap) per sample and its seconds per
sample, how many never downsample, and the NASWOT and synflow scores (random inputs, as screening computes
them). A cap the GPT cannot meet is reported as such.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from gptnas.errors import GptnasError
from gptnas.evaluators.proxy import ProxyEvaluator, ProxySettings
from gptnas.gpt.model import DRAFTS, ArchGPT
from gptnas.language.tokens import cap_bucket
from gptnas.spaces import get_space


def gpt_under(gpt, space, cap: int, n: int, seed: int, drafts: int) -> tuple[list, float, float]:
    """(`ArchGPT.complete`'s n samples under the best quality token and the cap, the mean number of
    redraws per sample: rows sampled beyond the n drafts, and the seconds per sample)."""
    sampled, sample = [], gpt.sample

    def counted(space, rows, *args, **kwargs):
        sampled.append(len(rows))
        return sample(space, rows, *args, **kwargs)

    gpt.sample = counted
    started = time.perf_counter()
    try:
        archs = gpt.complete(space, [""], n=n, quality=4, max_params=cap, seed=seed, drafts=drafts)[0]
    finally:
        gpt.sample = sample
    seconds = (time.perf_counter() - started) / n
    return archs, (sum(sampled) - n * drafts) / n, seconds


def uniform_under(space, cap: int, n: int, seed: int) -> list:
    rng, out = random.Random(seed), []
    while len(out) < n:
        arch = space.sample(rng)
        if space.cost(arch)["params"] <= cap:
            out.append(arch)
    return out


def describe(space, archs: list, cap: int, proxies: dict) -> list[str]:
    params = [space.cost(a)["params"] for a in archs]
    flat = sum(all(block.stride == 1 for block in a.blocks) for a in archs)
    cells = [f"{statistics.median(params) / cap:.2f}", f"{max(params) / cap:.2f}", f"{flat}/{len(archs)}"]
    for name, proxy in proxies.items():
        scores = [proxy.evaluate(space, a).fitness for a in archs]
        median = statistics.median(scores)
        cells.append(f"{math.log10(median):.1f}" if name == "synflow" else f"{median:.1f}")  # synflow spans decades
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpt", default=None)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--caps", default="300000,1000000,5000000,20000000")
    parser.add_argument("--drafts", type=int, default=DRAFTS, help="drafts per sample, the likeliest kept")
    args = parser.parse_args()
    space, gpt = get_space("cifar"), ArchGPT.from_pretrained(args.gpt)
    proxies = {name: ProxyEvaluator(space, "none", ProxySettings(proxy=name, batch_size=32, random_inputs=True,
                                                                  costs=False)) for name in ("naswot", "synflow")}
    print("| cap | sampler | cost token | median params / cap | max params / cap | drafts / redraws per sample "
          "| s per sample | never downsample | NASWOT (median) | log10 synflow (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cap in (int(c) for c in args.caps.split(",")):
        token = cap_bucket(cap, gpt.vocab)
        try:
            drawn, redraws, seconds = gpt_under(gpt, space, cap, args.samples, seed=0, drafts=args.drafts)
            cells = describe(space, drawn, cap, proxies)
            print(f"| {cap:,} | GPT, q4 | {token} | " + " | ".join(
                [*cells[:2], f"{args.drafts} / {redraws:.2f}", f"{seconds:.2f}", *cells[2:]]) + " |", flush=True)
        except GptnasError as error:
            print(f"| {cap:,} | GPT, q4 | {token} | failed: {error} | | | | | | |", flush=True)
        cells = describe(space, uniform_under(space, cap, args.samples, seed=0), cap, proxies)
        print(f"| {cap:,} | uniform | - | " + " | ".join([*cells[:2], "-", "-", *cells[2:]]) + " |", flush=True)


if __name__ == "__main__":
    main()
