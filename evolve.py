"""Search for an architecture: GPT-NAS evolution (or a baseline) with a real evaluator.

    python evolve.py --space cifar                                    # CIFAR-10 through the Hub
    python evolve.py --space cifar --dataset digits --population 6 --generations 2   # offline smoke run
    python evolve.py --space nas-bench-201 --evaluator benchmark --dataset cifar10 --generations 5 --seed 0
    python evolve.py --resume runs/2026-11-22_10-00-00               # continue a killed run exactly
    python evolve.py --retrain runs/2026-11-22_10-00-00              # train the best network in full, test it once
    python evolve.py --config configs/evolve_cifar.yaml --workers 4   # flags override the YAML

Every evaluation is stored the moment it finishes (results.sqlite in the run
directory), so nothing is evaluated twice and --resume picks up exactly.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from gptnas.config import build_parser, from_dict, load_yaml, save_config, to_dict
from gptnas.errors import GptnasError
from gptnas.search.config import EvolveConfig

logger = logging.getLogger("evolve")


RETRAIN_FLAGS = {"retrain_epochs": ("epochs", int), "retrain_lr": ("lr", float), "retrain_batch_size": ("batch_size", int),
                 "retrain_max_train_examples": ("max_train_examples", int)}


def parse(argv: list[str] | None):
    parser = build_parser(EvolveConfig, __doc__)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved config")
    parser.add_argument("--retrain", metavar="RUN_DIR",
                        help="train the best architecture of a finished run with the full schedule (GPT-NAS: 350 epochs, "
                             "lr 0.01 divided by 10 every 100), test it once, save its weights; resumable")
    for flag, (_, kind) in RETRAIN_FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, default=None, help=f"--retrain: {flag.removeprefix('retrain_')}")
    args = vars(parser.parse_args(argv))
    retrain_dir = args.pop("retrain")
    retrain_options = {RETRAIN_FLAGS[f][0]: args.pop(f) for f in RETRAIN_FLAGS}
    if retrain_dir:
        from gptnas.search.retrain import RetrainSettings

        options = {k: v for k, v in retrain_options.items() if v is not None}
        options.update({k: args[k] for k in ("device", "data_dir") if args[k] is not None})
        if args["seed"] is not None:
            options["seed"] = int(args["seed"])
        return ("retrain", Path(retrain_dir), RetrainSettings(**options))
    resume, config_path = args.pop("resume"), args.pop("config")
    if resume:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise GptnasError(f"{resume} is not a gptnas run directory (no config.yaml); check the path")
        data = load_yaml(saved)
        overrides = {k: v for k, v in args.items() if v is not None}
        for name in ("workers", "executor", "ray_address", "device"):  # how to run may change, not what
            if name in overrides:
                data[name] = overrides.pop(name)
        if overrides:
            raise GptnasError(f"--resume continues a run as it was configured; drop --{sorted(overrides)[0]}")
        data["output_dir"] = str(resume)
        return from_dict(EvolveConfig, data, str(saved)), True
    data = load_yaml(config_path) if config_path else {}
    if config_path:
        from_dict(EvolveConfig, data, config_path)
    data.update({k: v for k, v in args.items() if v is not None})
    return from_dict(EvolveConfig, data, config_path or "command line"), False


def prepare(config: EvolveConfig, resuming: bool) -> tuple[EvolveConfig, Path]:
    """Fills in defaults that depend on the space and picks the run directory."""
    from gptnas.spaces import get_space

    space = get_space(config.space)
    if config.evaluator is None:
        config.evaluator = "benchmark" if hasattr(space, "table") else "train"
    run_dir = Path(config.output_dir or f"runs/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if not resuming and run_dir.exists() and any(run_dir.iterdir()):
        raise GptnasError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick a new --output_dir")
    config.output_dir = str(run_dir)
    return config, run_dir


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        parsed = parse(argv)
        if parsed[0] == "retrain":
            from gptnas.search.retrain import retrain

            result = retrain(parsed[1], parsed[2])
            print(f"test accuracy {result['test_accuracy']:.2f} %; weights in {parsed[1] / 'retrain' / 'model.safetensors'}")
            return 0
        config, resuming = parsed
        config, run_dir = prepare(config, resuming)
        return search(config, run_dir)
    except GptnasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def search(config: EvolveConfig, run_dir: Path) -> int:
    from gptnas.evaluators import get_evaluator
    from gptnas.search.evolution import Search
    from gptnas.search.executors import make_executor
    from gptnas.search.report import summary_table, write_outputs
    from gptnas.spaces import get_space

    space = get_space(config.space)
    options = {}
    if config.evaluator == "train":
        options = {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr, "seed": config.seed,
                   "max_train_examples": config.max_train_examples, "data_dir": config.data_dir, "device": config.device}
    evaluator = get_evaluator(config.evaluator, space, config.dataset, **options)

    def load_gpt():
        from gptnas.gpt.model import ArchGPT

        return ArchGPT.from_pretrained(config.gpt, adapter=config.gpt_adapter, device=config.device)

    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    executor = make_executor(config.executor, config.workers, config.ray_address)
    try:
        search = Search(config, space, evaluator, run_dir, executor, gpt_loader=load_gpt)
        search.run()
    finally:
        executor.close()
    best = write_outputs(search, run_dir)
    print(summary_table(search, best))
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
