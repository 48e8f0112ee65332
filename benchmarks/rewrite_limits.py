"""Do the GPT's rewrites keep a network within the search's FLOPs limit?

    python benchmarks/rewrite_limits.py [--gpt PATH] [--networks 40] [--image_size 8] [--max_flops 5120000]

Draws uniform `cifar` networks within the limit (multiply-accumulates at --image_size, 10 classes: the cpu
profile's cap for 8x8 digits by default), lets the GPT reconstruct them at each elimination rate as gpt-ga
does, once free and once within the limit (`reconstruct(..., limits=...)`), and reports how many networks
changed, how many end over the limit (a search would mutate those until they fit, or replace them by
uniform samples), the median FLOPs before and after, and the seconds the rewriting took.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from gptnas.gpt.model import ArchGPT
from gptnas.search.reconstruct import reconstruct
from gptnas.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpt", default=None)
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--image_size", type=int, default=8)
    parser.add_argument("--max_flops", type=int, default=5_120_000)
    parser.add_argument("--rates", default="0.1,0.4", help="elimination rates (gpt-ga starts at 0.4)")
    args = parser.parse_args()
    space, gpt = get_space("cifar"), ArchGPT.from_pretrained(args.gpt)
    cap = args.max_flops

    def flops(arch) -> int:
        return space.cost(arch, 10, args.image_size)["flops"]

    rng, networks = random.Random(0), []
    while len(networks) < args.networks:
        arch = space.sample(rng)
        if flops(arch) <= cap:
            networks.append(arch)
    limits = [(space.cost_bounds("flops", args.image_size, 10), cap)]
    print("| rate | rewriting | networks changed | over the limit | median MACs before / after | seconds |")
    print("|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        for name, held in (("free", ()), ("within the limit", limits)):
            started = time.perf_counter()
            rewritten, stats = reconstruct(gpt, space, networks, rate, random.Random(1), seed=1, limits=held)
            seconds = time.perf_counter() - started
            over = sum(flops(a) > cap for a in rewritten)
            before, after = (statistics.median(map(flops, archs)) for archs in (networks, rewritten))
            print(f"| {rate} | {name} | {stats.changed}/{len(networks)} | {over}/{len(networks)} | "
                  f"{before / 1e6:.2f} M / {after / 1e6:.2f} M | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
