"""The CPU path with and without multi-fidelity: the digits example, one search after the other.

    python benchmarks/multi_fidelity_cpu.py --output_dir runs/mf_cpu [--seed 0] [-- extra evolve.py flags]

Runs `python evolve.py --space cifar --dataset digits` (the cpu profile) and the same command with
`--multi_fidelity sh`, one after the other in this process's machine (leave it idle), and prints for each
the wall time, the best network's test accuracy (`best.json`), the evaluations at each fidelity and the
full-training equivalents spent. A finished run is not run again (delete its folder to repeat it).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, flags: list[str], output_dir: Path) -> dict:
    run_dir = output_dir / name
    timing = output_dir / f"{name}.seconds"
    if not timing.exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "evolve.py"), "--space", "cifar", "--dataset", "digits", *flags,
                        "--output_dir", str(run_dir)], check=True)
        timing.write_text(f"{time.perf_counter() - started:.1f}\n")
    best = json.loads((run_dir / "best.json").read_text())
    with open(run_dir / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["fidelity"]] = counts.get(row["fidelity"], 0) + 1
    return {"seconds": float(timing.read_text()), "test": best["test_accuracy"], "counts": counts,
            "equivalents": sum(float(r["fidelity"]) for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("extra", nargs="*", help="more evolve.py flags for both runs")
    args = parser.parse_args()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    flags = ["--seed", str(args.seed), *args.extra]
    results = {"single-fidelity": run("single", flags, output_dir),
               "multi-fidelity": run("multi", [*flags, "--multi_fidelity", "sh"], output_dir)}
    print("| search | wall time | test accuracy | evaluations by fidelity | full-training equivalents |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        minutes, seconds = divmod(round(r["seconds"]), 60)
        counts = ", ".join(f"{n} at {f}" for f, n in sorted(r["counts"].items()))
        print(f"| {name} | {minutes}:{seconds:02d} | {r['test']:.2f} | {counts} | {r['equivalents']:.2f} |")
    share = results["multi-fidelity"]["seconds"] / results["single-fidelity"]["seconds"]
    print(f"\nmulti-fidelity took {share:.0%} of the single-fidelity wall time")


if __name__ == "__main__":
    main()
