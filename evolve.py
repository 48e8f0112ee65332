"""Search for an architecture: GPT-NAS evolution (or a baseline) with a real evaluator.

    python evolve.py --space cifar                                    # CIFAR-10 through the Hub
    python evolve.py --space cifar --dataset digits --population 6 --generations 2   # offline smoke run
    python evolve.py --space nas-bench-201 --evaluator benchmark --dataset cifar10 --generations 5 --seed 0
    python evolve.py --resume runs/2026-11-22_10-00-00               # continue a killed run exactly
    python evolve.py --retrain runs/2026-11-22_10-00-00              # train the best network in full, test it once
    python evolve.py --retrain runs/2026-11-22_10-00-00 --push_to_hub --hub_model_id org/name   # ... and publish it
    python evolve.py --config configs/evolve.yaml --workers 4         # flags override the YAML

Every evaluation is stored the moment it finishes (results.sqlite in the run
directory), so nothing is evaluated twice and --resume picks up exactly.
"""

from __future__ import annotations

import logging
import shutil
import sys
from contextlib import closing
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from gptnas.config import build_parser, from_dict, load_yaml, save_config
from gptnas.errors import GptnasError
from gptnas.files import exclusive_lock
from gptnas.search.config import EvolveConfig

logger = logging.getLogger("evolve")

RETRAIN_SETTINGS = ("epochs", "lr", "batch_size", "max_train_examples")  # given as --retrain_<name>
SHARED_WITH_RETRAIN = ("seed", "device", "data_dir")  # given as --<name>
HUB_FLAGS = ("push_to_hub", "hub_model_id", "hub_private_repo", "hub_token")  # --retrain only
HOW_TO_RUN = ("workers", "executor", "ray_address", "device")  # what --resume may change: how a run runs, not what


def parse(argv: list[str] | None) -> tuple[str, tuple]:
    """("search", (config, resuming)) or ("retrain", (run_dir, settings, hub settings or None))."""
    parser = build_parser(EvolveConfig, __doc__)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved config")
    parser.add_argument("--retrain", metavar="RUN_DIR",
                        help="train the best architecture of a finished run with the full schedule (GPT-NAS: 350 epochs, "
                             "lr 0.01 divided by 10 every 100), test it once, save its weights; resumable")
    for name in RETRAIN_SETTINGS:
        parser.add_argument(f"--retrain_{name}", default=None, metavar=name.upper(), help=f"--retrain: {name}")
    parser.add_argument("--push_to_hub", action="store_true", default=None,
                        help="--retrain: publish RUN_DIR/retrain (weights, config.json, model card) to the Hub")
    parser.add_argument("--hub_model_id", metavar="ORG/NAME", help="--push_to_hub: the Hub repository")
    parser.add_argument("--hub_private_repo", action="store_true", default=None,
                        help="--push_to_hub: create the repository private")
    parser.add_argument("--hub_token", metavar="TOKEN", help="--push_to_hub: Hub token (default: `hf auth login`'s)")
    args = vars(parser.parse_args(argv))
    retrain_dir, resume, config_path = args.pop("retrain"), args.pop("resume"), args.pop("config")
    retrain = {name: args.pop(f"retrain_{name}") for name in RETRAIN_SETTINGS}
    hub = {name: args.pop(name) for name in HUB_FLAGS}
    flags = {k: v for k, v in args.items() if v is not None}
    if retrain_dir:
        return "retrain", (Path(retrain_dir), retrain_settings(retrain, flags), hub_settings(hub))
    if any(v is not None for v in retrain.values()):
        raise GptnasError("the --retrain_* flags need --retrain RUN_DIR")
    if any(v is not None for v in hub.values()):
        raise GptnasError("--push_to_hub and the --hub_* flags publish a retrained network: they need --retrain RUN_DIR")
    if resume:
        return "search", (resumed_config(Path(resume), flags), True)
    data = load_yaml(config_path) if config_path else {}
    if config_path:
        from_dict(EvolveConfig, data, config_path)  # a bad file is reported as the file's fault
    return "search", (from_dict(EvolveConfig, {**data, **flags}, config_path or "command line"), False)


def retrain_settings(retrain: dict, flags: dict):
    from gptnas.training.retrain import RetrainSettings

    other = sorted(set(flags) - set(SHARED_WITH_RETRAIN))
    if other:
        raise GptnasError(f"--retrain trains what the run found; drop --{other[0]} (it takes --retrain_* flags "
                          f"and --{', --'.join(SHARED_WITH_RETRAIN)})")
    options = {**{k: v for k, v in retrain.items() if v is not None}, **flags}
    return from_dict(RetrainSettings, options, "command line")


def hub_settings(hub: dict) -> dict | None:
    """The --push_to_hub settings, checked before a retraining of days; None when not publishing."""
    repo_id = hub["hub_model_id"]
    if not hub["push_to_hub"]:
        given = [name for name in HUB_FLAGS if hub[name] is not None]
        if given:
            raise GptnasError(f"--{given[0]} only applies with --push_to_hub; add it or drop --{given[0]}")
        return None
    if not repo_id:
        raise GptnasError("--push_to_hub needs --hub_model_id org/name (the Hub repository to publish to)")
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name:
        raise GptnasError(f"--hub_model_id must be org/name, got {repo_id!r}")
    return {"repo_id": repo_id, "token": hub["hub_token"], "private": bool(hub["hub_private_repo"])}


def resumed_config(run_dir: Path, flags: dict) -> EvolveConfig:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise GptnasError(f"{run_dir} is not a gptnas run directory (no config.yaml); check the path")
    changed = sorted(set(flags) - set(HOW_TO_RUN))
    if changed:
        raise GptnasError(f"--resume continues a run as it was configured; drop --{changed[0]}")
    data = {**load_yaml(saved), **flags, "output_dir": str(run_dir)}
    return from_dict(EvolveConfig, data, str(saved))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        command, args = parse(argv)
        return retrain(*args) if command == "retrain" else search(*args)
    except GptnasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def search(config: EvolveConfig, resuming: bool) -> int:
    from gptnas.evaluators import get_evaluator
    from gptnas.search.report import summary_table, write_outputs
    from gptnas.spaces import get_space

    run_dir = Path(config.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GptnasError(f"--output_dir {run_dir} is a file; give a folder")
    if not resuming and run_dir.exists() and any(run_dir.iterdir()):
        raise GptnasError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick a new --output_dir")
    space = get_space(config.space)
    evaluator = get_evaluator(config.evaluator, space, config.dataset, **config.evaluator_options())
    evaluator.prepare()  # missing data or tables: one line, before any folder is made
    config.limit_flops(evaluator)
    new_dir = not run_dir.exists()
    make_run_dir(run_dir)
    try:
        with exclusive_lock(run_dir):
            search = run_search(config, space, evaluator, run_dir, resuming)
            best = write_outputs(search, run_dir)
    except KeyboardInterrupt:
        print(f"\ninterrupted; every finished evaluation is saved. Continue with: python evolve.py --resume {run_dir}",
              file=sys.stderr)
        return 130
    except BaseException:
        if new_dir and _evaluations(run_dir) == 0:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was evaluated: leave no half-made run behind
        raise
    print(summary_table(search, best))
    print(f"run directory: {run_dir}")
    return 0


def run_search(config: EvolveConfig, space, evaluator, run_dir: Path, resuming: bool):
    from gptnas.search.core import Search
    from gptnas.search.executors import make_executor

    def load_gpt():  # only gpt-ga asks, on first use
        from gptnas.gpt.model import ArchGPT

        return ArchGPT.from_pretrained(config.gpt, adapter=config.gpt_adapter, device=config.device)

    if not resuming:  # first, so that a run killed at any moment can be resumed
        save_config(config, run_dir / "config.yaml")
    executor = make_executor(config.executor, config.workers, config.ray_address)
    try:
        search = Search(config, space, evaluator, run_dir, executor, gpt_loader=load_gpt)  # checks a resumed store
        save_config(config, run_dir / "config.yaml")  # a resume may change how it runs (--workers ...)
        with logging_redirect_tqdm():  # log lines above the progress bar, not glued onto it
            search.run()
    finally:
        executor.close()
    return search


def _evaluations(run_dir: Path) -> int:
    import sqlite3

    if not (run_dir / "results.sqlite").is_file():
        return 0
    try:
        with closing(sqlite3.connect(run_dir / "results.sqlite")) as db:
            return db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.Error:
        return 0


def make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".writable"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError:
        raise GptnasError(f"--output_dir {run_dir} is a file; give a folder") from None
    except OSError as error:
        raise GptnasError(f"cannot write the run directory {run_dir} ({error.strerror}); pick another --output_dir") from None


def retrain(run_dir: Path, settings, hub: dict | None = None) -> int:
    from gptnas.training.retrain import RETRAIN_DIR
    from gptnas.training.retrain import retrain as train_best

    result = train_best(run_dir, settings)
    out = run_dir / RETRAIN_DIR
    print(f"test accuracy {result['test_accuracy']:.2f} %; exported to {out} (gptnas.load_network({str(out)!r}))")
    if hub:
        from gptnas.training.export import push_network

        url = push_network(out, hub["repo_id"], token=hub["token"], private=hub["private"])
        print(f"published: gptnas.load_network({hub['repo_id']!r}) ({url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
