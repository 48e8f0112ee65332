"""python -m gptnas.bench: run a benchmark study and write its report (re-run the same command to resume)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from importlib.resources import files
from pathlib import Path

from gptnas.bench import harness, report
from gptnas.errors import GptnasError, message
from gptnas.files import exclusive_lock

# The study settings shipped inside the package, so the default works from any directory.
STUDY_CONFIG = files("gptnas.bench") / "study.yaml"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gptnas.bench", description=__doc__)
    parser.add_argument("--spaces", default=None,
                        help="comma-separated benchmarks as space[:dataset], or 'available' for every table on disk; "
                             "with --dataset, the spaces to train instead (names or space files, e.g. "
                             f"cifar,configs/spaces/mobile96.yaml) (default: {','.join(harness.DEFAULT_BENCHMARKS)})")
    parser.add_argument("--dataset", default=None, help="train the networks of --spaces on this dataset (a name "
                        "or an image folder, as evolve.py's --dataset) with the train evaluator, instead of looking "
                        "them up in benchmark tables; evolve.py's training settings go in --config's common section")
    parser.add_argument("--strategies", default="gpt-ga,ga,regularized-evolution,random")
    parser.add_argument("--seeds", type=int, default=30, help="seeds 0 .. N-1, the same for every strategy (paired)")
    parser.add_argument("--first_seed", type=int, default=0, help="seeds FIRST .. FIRST+N-1 instead (1000: the tuning "
                        "seeds settings are chosen on, kept apart from the report seeds 0-29)")
    parser.add_argument("--budget", type=int, default=200, help="unique queries per run (or full-training "
                        "equivalents: --budget_unit full)")
    parser.add_argument("--multi_fidelity", choices=["sh"], default=None, help="successive halving inside every "
                        "generation, for every strategy that takes it (nas-bench-201: its 12-epoch table)")
    parser.add_argument("--eta", type=int, default=None,
                        help="--multi_fidelity, dehb: 1/eta of a rung goes on (default 9)")
    parser.add_argument("--min_fidelity", type=float, default=None, help="--multi_fidelity: the lowest rung")
    parser.add_argument("--budget_unit", choices=["query", "full"], default=None, help="what --budget counts: "
                        "queries (default) or full-training equivalents (a 12-epoch query costs 12/200); the "
                        "report then reads accuracy at 5, 10, 25 ... equivalents")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel, one process each")
    parser.add_argument("--config", default=None,
                        help="per-strategy settings (YAML: common, strategies.<name>); default: the study settings "
                             "shipped with gptnas (gptnas/bench/study.yaml); 'none' for the plain defaults")
    parser.add_argument("--gpt", default=None, help="the GPT of gpt-ga: 'shipped' (the model shipped with gptnas), "
                        "'transfer' (per benchmark, the shipped model trained further on the tables of every other "
                        "space, built once and cached) or a folder / Hub id; a GPT that saw a table of the searched "
                        f"space is refused (default: {harness.DEFAULT_GPT})")
    parser.add_argument("--objectives", default="accuracy", help="accuracy, or accuracy,latency: the report then "
                        "gives each strategy's hypervolume and its best accuracy under latency caps")
    parser.add_argument("--latency_table", default=None, help="latency from this device's measured table "
                        "(nas-bench-201; HELP's devices: raspi4, pixel3, eyeriss, fpga ...; or a .pt path)")
    parser.add_argument("--max_latency_ms", type=float, default=None, help="constrained search: networks slower "
                        "than this are never evaluated; the report measures against the best network within it")
    parser.add_argument("--output_dir", default="bench", help="study directory; an existing one is resumed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    args = parse(argv)
    command = "python -m gptnas.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        if args.seeds < 1 or args.budget < 1 or args.workers < 1:
            raise GptnasError("--seeds, --budget and --workers must be at least 1")
        if args.first_seed < 0:
            raise GptnasError(f"--first_seed must be >= 0, got {args.first_seed}")
        if args.dataset is not None and args.spaces is None:
            raise GptnasError("--dataset trains the networks of the spaces named by --spaces; name them (e.g. --spaces "
                              "cifar or a space file)")
        benchmarks = harness.parse_benchmarks(args.spaces or ",".join(harness.DEFAULT_BENCHMARKS), args.dataset)
        if not benchmarks:
            raise GptnasError("no benchmark to run: --spaces is empty, or no table is in the benchmark directory")
        harness.ensure_tables(benchmarks)
        strategies = harness.parse_strategies(args.strategies)
        config = None if args.config == "none" else args.config or str(STUDY_CONFIG)
        if config is not None and not Path(config).is_file():
            raise GptnasError(f"study config {config} does not exist; pass a YAML file or --config none")
        study = harness.load_study_config(config)
        output_dir = Path(args.output_dir)
        hardware = {name: getattr(args, name) for name in harness.HARDWARE_FIELDS
                    if getattr(args, name) not in (None, "accuracy")}
        fidelity = {name: getattr(args, name) for name in harness.FIDELITY_FIELDS if getattr(args, name) is not None}
        tasks = harness.plan(benchmarks, strategies, args.seeds, args.budget, study, output_dir, args.gpt, hardware,
                             args.first_seed, fidelity)
        identity = harness.study_identity(benchmarks, strategies, args.seeds, args.budget, study, args.gpt, hardware,
                                          args.first_seed, fidelity, harness.gpt_weights(tasks))
        harness.claim_output_dir(output_dir, identity)
        with exclusive_lock(output_dir):  # one study process per folder
            trajectories = harness.run_all(tasks, args.workers)
            text = report.write_report(trajectories, benchmarks, strategies, args.budget, output_dir, command, identity)
    except GptnasError as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs are saved. Continue with the same command: {command}", file=sys.stderr)
        return 130
    print(text)
    print(f"\nreport: {output_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
