"""gpt-ga with a given GPT on tuning seeds (1000 and up), in the study's settings: the check a new GPT
passes on tuning seeds before it replaces the shipped one (benchmarks/RESULTS.md, issue 24, c5).

    python benchmarks/tune_gpt.py --gpt runs/cifar_scale --output_dir /tmp/tune_new [--seeds 10] [--budget 100]
                                  [--study STUDY.yaml]

Prints, per benchmark, the mean reported test accuracy at 10, 25, 50 and 100 queries and the GPT's seconds
per run. Finished runs are kept in --output_dir and not run again.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from gptnas.bench import harness
from gptnas.bench.__main__ import STUDY_CONFIG
from gptnas.bench.report import reported_curve

BENCHMARKS = "nas-bench-macro,channel-bench-mobilenet,nas-bench-201:cifar10,nas-bench-201:cifar100"
FIRST_TUNING_SEED = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpt", default="shipped", help="a GPT folder, or 'shipped'")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=10, help="tuning seeds 1000 .. 1000+N-1")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--study", default=str(STUDY_CONFIG), help="the study's settings (default: the shipped "
                        "study.yaml); a copy with one setting changed tunes that setting")
    args = parser.parse_args()
    benchmarks = harness.parse_benchmarks(BENCHMARKS)
    study = harness.load_study_config(args.study)
    tasks = harness.plan(benchmarks, ["gpt-ga"], args.seeds, args.budget, study, args.output_dir, args.gpt,
                         first_seed=FIRST_TUNING_SEED)
    results = harness.run_all(tasks, args.workers)
    for benchmark in benchmarks:
        runs = [r for t, r in zip(tasks, results) if t.benchmark == benchmark]
        curves = [reported_curve(r, args.budget) for r in runs]
        at = " / ".join(f"@{q} {statistics.mean(c[q - 1] for c in curves):.2f}" for q in (10, 25, 50, 100)
                        if q <= args.budget)
        print(f"{benchmark.name}: {at}; GPT {statistics.mean(r['gpt_seconds'] for r in runs):.1f} s per run")


if __name__ == "__main__":
    main()
