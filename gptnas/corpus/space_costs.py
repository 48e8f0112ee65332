"""Cost-only samples of a search space: what each cost token means in the space's own spelling.

    python -m gptnas.corpus.space_costs --space cifar --out data

writes `cifar_space_costs.jsonl`: for every cost bucket that uniform samples of the space reach
within `--draws` draws, up to `--per_bucket` of those samples (the first drawn), each spelled
behind its cost token and no quality token (`p1m space:cifar conv3x3 w32 ...`). The records say
how large a network is, which the space computes, and nothing about how well it scores: no
network here was trained or evaluated. Uniform samples of a space are mostly small, so drawing
per bucket gives the large buckets as many examples as the small ones. Deterministic: the same
seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from gptnas.errors import GptnasError
from gptnas.files import write_jsonl
from gptnas.language import tokens
from gptnas.spaces import get_space

log = logging.getLogger(__name__)


def cost_samples(space_name: str, per_bucket: int, draws: int, seed: int) -> list[dict]:
    """Up to `per_bucket` uniform samples per cost bucket, from `draws` draws, in bucket order."""
    space, rng = get_space(space_name), random.Random(seed)
    by_bucket: dict[str, list[dict]] = {}
    for _ in tqdm(range(draws), desc=f"{space_name} samples", disable=None):
        arch = space.sample(rng)
        params = space.params(arch)
        bucket = by_bucket.setdefault(tokens.params_bucket(params), [])
        if len(bucket) < per_bucket:
            words = [tokens.params_bucket(params), *space.encode(arch).split()]
            bucket.append({"name": f"{space_name}-sample-{len(bucket)}-{words[0]}", "source": "space-sample",
                           "family": f"{space_name}-samples", "text": " ".join(words), "n_tokens": len(words),
                           "params": params, "quality": None})
    return [r for token in tokens.PARAM_TOKENS for r in by_bucket.get(token, [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gptnas.corpus.space_costs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="cifar", help="the search space (default: cifar)")
    parser.add_argument("--per_bucket", type=int, default=50, help="samples kept per cost bucket (default: 50)")
    parser.add_argument("--draws", type=int, default=16000, help="uniform samples drawn (default: 16000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("data"), help="output directory (default: data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        records = cost_samples(args.space, args.per_bucket, args.draws, args.seed)
        write_jsonl(records, args.out / f"{args.space}_space_costs.jsonl")
    except GptnasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = Counter(r["text"].split()[0] for r in records)
    log.info("wrote %d samples of %s: %s", len(records), args.space,
             ", ".join(f"{token} {counts[token]}" for token in tokens.PARAM_TOKENS if counts[token]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
