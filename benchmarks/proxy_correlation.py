"""How well do the zero-cost proxies rank architectures? Kendall tau against benchmark tables.

    GPTNAS_BENCHMARK_DIR=/work/shared/benchmarks python benchmarks/proxy_correlation.py --samples 100 \\
        --update-docs docs/evaluators.md

For every benchmark table found in the benchmark directory, samples a seeded
set of distinct architectures of its space, looks up their benchmark fitness
(validation accuracy on NAS-Bench-201, mean test accuracy on NAS-Bench-Macro /
Channel-Bench) and scores them with each proxy on N(0, 1) inputs (no dataset
download). Candidates a proxy fails on keep WORST_FITNESS, as a search would
see them. The parameter count is listed as a baseline. Prints a Markdown
table; `--update-docs FILE` also writes it between the markers
`<!-- proxy-correlation:start -->` and `<!-- proxy-correlation:end -->`.

`--batch_sizes 8,16,32,64` instead measures what screening (`evolve.py --screen`)
pays for its ranking: Kendall tau and seconds per network (building it and
scoring it, no params/FLOPs count, as a screened candidate is timed) of naswot
at each minibatch size, on the same architectures, beside synflow (which scores
one all-ones input whatever the batch size). CPU seconds (median) are what a
network costs on a machine shared with other work; wall seconds depend on it.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import statistics
import time
from pathlib import Path

from scipy.stats import kendalltau

from gptnas.evaluators import get_evaluator
from gptnas.spaces import get_space
from gptnas.tables import TABLES_BY_SPACE, benchmark_dir, on_disk

log = logging.getLogger("proxy_correlation")

PROXIES = ("synflow", "naswot")
START, END = "<!-- proxy-correlation:start -->", "<!-- proxy-correlation:end -->"
SETUPS = [(space, dataset) for space, datasets in TABLES_BY_SPACE.items() for dataset in datasets]


def sample_archs(space, n: int, seed: int) -> list:
    """`n` architectures with distinct canonical keys (fewer if the space has fewer)."""
    rng, archs, seen = random.Random(seed), [], set()
    for _ in range(100 * n):
        arch = space.sample(rng)
        if space.key(arch) not in seen:
            seen.add(space.key(arch))
            archs.append(arch)
            if len(archs) == n:
                break
    return archs


def measure(space_name: str, dataset: str, samples: int, seed: int, device: str | None) -> dict:
    space = get_space(space_name)
    archs = sample_archs(space, samples, seed)
    benchmark = get_evaluator("benchmark", space, dataset)
    truth = [benchmark.evaluate(space, arch) for arch in archs]
    fitness = [t.fitness for t in truth]
    row = {"n": len(archs), "params": kendalltau([t.params for t in truth], fitness).statistic}
    for proxy in PROXIES:
        evaluator = get_evaluator("proxy", space, dataset, proxy=proxy, random_inputs=True, seed=seed, device=device)
        start = time.perf_counter()
        results = [evaluator.evaluate(space, arch) for arch in archs]
        row[f"{proxy}_seconds"] = (time.perf_counter() - start) / len(archs)
        row[proxy] = kendalltau([r.fitness for r in results], fitness).statistic
        row[f"{proxy}_failed"] = sum(not r.ok for r in results)
        log.info("%s %s %s: tau %.3f", space_name, dataset, proxy, row[proxy])
    return row


def measure_batch_sizes(space_name: str, dataset: str, samples: int, seed: int, device: str | None,
                        batch_sizes: list[int]) -> list[dict]:
    """One row per (proxy, batch size) on one seeded set of architectures."""
    space = get_space(space_name)
    archs = sample_archs(space, samples, seed)
    benchmark = get_evaluator("benchmark", space, dataset)
    fitness = [benchmark.evaluate(space, arch).fitness for arch in archs]
    rows = []
    for proxy, batch in [("synflow", 64)] + [("naswot", b) for b in batch_sizes]:
        evaluator = get_evaluator("proxy", space, dataset, proxy=proxy, batch_size=batch, random_inputs=True, seed=seed,
                                  device=device, costs=False)
        evaluator.evaluate(space, archs[0])  # warm-up: the inputs, the first allocation
        results, cpu = [], []
        for arch in archs:
            start = time.process_time()  # CPU time: what a network costs, however busy the machine is
            results.append(evaluator.evaluate(space, arch))
            cpu.append(time.process_time() - start)
        rows.append({"space": space_name, "dataset": dataset, "n": len(archs), "proxy": proxy,
                     "batch": "1 (all ones)" if proxy == "synflow" else str(batch),
                     "tau": kendalltau([r.fitness for r in results], fitness).statistic,
                     "cpu": statistics.median(cpu), "wall": statistics.mean(r.seconds for r in results),
                     "failed": sum(not r.ok for r in results)})
        log.info("%s %s %s batch %s: tau %.3f, %.3f CPU s/network", space_name, dataset, proxy, batch,
                 rows[-1]["tau"], rows[-1]["cpu"])
    return rows


def markdown_batch_sizes(rows: list[dict]) -> str:
    lines = ["| space | dataset | N | proxy | batch | Kendall tau | CPU s / network (median) | wall s / network (mean) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = f" ({r['failed']} not ok)" if r["failed"] else ""
        lines.append(f"| {r['space']} | {r['dataset']} | {r['n']} | {r['proxy']} | {r['batch']} | {r['tau']:.3f}{failed} "
                     f"| {r['cpu']:.3f} | {r['wall']:.3f} |")
    return "\n".join(lines)


def markdown(rows: dict[tuple[str, str], dict]) -> str:
    lines = [
        "| space | dataset (fitness) | N | synflow tau | naswot tau | params tau (baseline) "
        "| s/arch synflow | s/arch naswot |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (space, dataset), row in rows.items():
        target = "val_acc_200" if space == "nas-bench-201" else "mean test acc"
        failed = {p: f" ({row[f'{p}_failed']} not ok)" if row[f"{p}_failed"] else "" for p in PROXIES}
        lines.append(
            f"| {space} | {dataset} ({target}) | {row['n']} | {row['synflow']:.3f}{failed['synflow']} "
            f"| {row['naswot']:.3f}{failed['naswot']} | {row['params']:.3f} "
            f"| {row['synflow_seconds']:.2f} | {row['naswot_seconds']:.2f} |"
        )
    return "\n".join(lines)


def update_docs(path: Path, table: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {START} ... {END} markers to write the table between")
    path.write_text(pattern.sub(lambda _: f"{START}\n{table}\n{END}", text))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200, help="architectures per table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    parser.add_argument(
        "--setups", nargs="*", default=[f"{s}:{d}" for s, d in SETUPS], help="space:dataset pairs (default: all)"
    )
    parser.add_argument("--update-docs", type=Path, default=None, help="Markdown file to write the table into")
    parser.add_argument("--batch_sizes", default=None,
                        help="comma-separated naswot batch sizes: tau and seconds per network at each (screening cost)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    rows, batch_rows = {}, []
    for setup in args.setups:
        space_name, dataset = setup.split(":", 1)
        table = TABLES_BY_SPACE[space_name][dataset]
        if not on_disk(table):
            log.info("%s: not in %s, skipped", table, benchmark_dir())
            continue
        if batch_sizes:
            batch_rows += measure_batch_sizes(space_name, dataset, args.samples, args.seed, args.device, batch_sizes)
        else:
            rows[(space_name, dataset)] = measure(space_name, dataset, args.samples, args.seed, args.device)
    table = markdown_batch_sizes(batch_rows) if batch_sizes else markdown(rows)
    print(table)
    if args.update_docs:
        update_docs(args.update_docs, table)


if __name__ == "__main__":
    main()
