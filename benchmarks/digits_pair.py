"""The GPT-NAS claim in its own space, with real training: gpt-ga against ga on `--space cifar --dataset digits`.

    python benchmarks/digits_pair.py --output_dir runs/digits_pair [--seeds 0-9] [--strategies ga,gpt-ga]

Each (strategy, seed) is one `python evolve.py --space cifar --dataset digits --strategy S --seed N` run (the cpu
profile on a CPU) in OUTPUT_DIR/S/seed_N. A finished run (its best.json exists) is not run again, a killed one
is resumed. Then, per strategy: the mean over runs of the mean validation accuracy of the candidates each run
evaluated, and of its best network's test accuracy; and paired one-sided Wilcoxon p-values that gpt-ga's are
higher than ga's (same seeds). Runs are paired by seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

from scipy.stats import wilcoxon

EVOLVE = Path(__file__).resolve().parent.parent / "evolve.py"


def seeds_of(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def run(run_dir: Path, strategy: str, seed: int) -> None:
    """One evolve.py run, resumed when a killed one left its checkpoint; nothing when it finished."""
    if (run_dir / "best.json").exists():
        return
    if (run_dir / "config.yaml").exists():  # a run directory: killed, maybe before its first checkpoint
        command = [sys.executable, str(EVOLVE), "--resume", str(run_dir)]
    else:
        command = [sys.executable, str(EVOLVE), "--space", "cifar", "--dataset", "digits", "--strategy", strategy,
                   "--seed", str(seed), "--output_dir", str(run_dir)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def outcome(run_dir: Path) -> dict:
    """The mean validation accuracy of the run's evaluated candidates, their number, the best's test accuracy."""
    with open(run_dir / "evaluations.csv", newline="") as f:
        fitness = [float(row["fitness"]) for row in csv.DictReader(f) if row["status"] == "ok"]
    best = json.loads((run_dir / "best.json").read_text())
    return {"mean_val": statistics.mean(fitness), "evaluated": len(fitness), "best_test": best["test_accuracy"],
            "best_params": best["params"]}


def report(results: dict[str, list[dict]], seeds: list[int]) -> None:
    print(f"\nseeds {seeds[0]}-{seeds[-1]} ({len(seeds)} runs per strategy)")
    print("| strategy | mean val. accuracy of evaluated candidates | best network's test accuracy | evaluated |")
    print("|---|---|---|---|")
    for strategy, rows in results.items():
        val = [r["mean_val"] for r in rows]
        test = [r["best_test"] for r in rows]
        print(f"| {strategy} | {statistics.mean(val):.2f} ± {statistics.stdev(val):.2f} | "
              f"{statistics.mean(test):.2f} ± {statistics.stdev(test):.2f} | "
              f"{statistics.mean(r['evaluated'] for r in rows):.1f} |")
    if {"ga", "gpt-ga"} <= results.keys():
        for name, field in (("mean validation accuracy", "mean_val"), ("best test accuracy", "best_test")):
            ours = [r[field] for r in results["gpt-ga"]]
            theirs = [r[field] for r in results["ga"]]
            p = wilcoxon(ours, theirs, alternative="greater", zero_method="zsplit").pvalue
            wins = sum(o > t for o, t in zip(ours, theirs))
            print(f"gpt-ga > ga, {name}: p = {p:.3g} (one-sided paired Wilcoxon; higher in {wins} of {len(ours)})")
    print("(± is the standard deviation over seeds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--seeds", default="0-9", help="report seeds, FIRST-LAST")
    parser.add_argument("--strategies", default="ga,gpt-ga")
    parser.add_argument("--report_only", action="store_true", help="summarise the finished runs; start none")
    args = parser.parse_args()
    seeds, strategies = seeds_of(args.seeds), args.strategies.split(",")
    if not args.report_only:
        for seed in seeds:  # seed by seed, so that an interrupted study still has pairs
            for strategy in strategies:
                run(args.output_dir / strategy / f"seed_{seed}", strategy, seed)
    done = [s for s in seeds if all((args.output_dir / st / f"seed_{s}" / "best.json").exists() for st in strategies)]
    if len(done) < 2:
        sys.exit(f"{len(done)} finished pairs; a comparison needs at least 2")
    report({st: [outcome(args.output_dir / st / f"seed_{s}") for s in done] for st in strategies}, done)


if __name__ == "__main__":
    main()
