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

import errno
import logging
import shutil
import sqlite3
import sys
from contextlib import closing
from dataclasses import fields
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from gptnas.config import build_parser, flatten, from_dict, load_yaml
from gptnas.deploy.export import push_network
from gptnas.deploy.onnx_export import check_onnx_runtime, export_onnx
from gptnas.deploy.retrain import RETRAIN_DIR, RetrainSettings
from gptnas.deploy.retrain import retrain as train_best
from gptnas.errors import GptnasError, message, quote
from gptnas.files import exclusive_lock, refuse_links
from gptnas.search.config import EvolveConfig
from gptnas.search.report import summary_table, write_outputs
from gptnas.search.run import CONFIG_FILE, RunSettings, build_search

logger = logging.getLogger("evolve")

RETRAIN_SETTINGS = ("epochs", "lr", "batch_size", "max_train_examples")  # given as --retrain_<name>
SHARED_WITH_RETRAIN = ("seed", "device", "data_dir")  # given as --<name>
HUB_FLAGS = ("push_to_hub", "hub_model_id", "hub_private_repo", "hub_token")  # --retrain only
HOW_TO_RUN = tuple(f.name for f in fields(RunSettings) if f.name != "output_dir")  # what --resume may change
RUN_DEFAULTS = {f.name: f.default for f in fields(RunSettings)}


def build_cli():
    parser = build_parser(EvolveConfig, __doc__, usage="%(prog)s [--config FILE] [--SETTING VALUE ...] | "
                          "--resume RUN_DIR [--RUN_SETTING VALUE ...] | --retrain RUN_DIR [--retrain_* ...]")
    runs = parser.add_argument_group("resume, retrain and publish", "work on a run directory instead of starting "
                                     "a search")
    runs.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved config "
                      "(only the run settings may change)")
    runs.add_argument("--retrain", metavar="RUN_DIR",
                      help="train the best architecture of a finished run with the full schedule (GPT-NAS: 350 "
                           "epochs, lr 0.01 divided by 10 every 100; with --retrain_epochs N, every N*100/350), "
                           "test it once, save its weights; resumable")
    for name in RETRAIN_SETTINGS:
        runs.add_argument(f"--retrain_{name}", default=None, metavar=name.upper(), help=f"--retrain: {name}")
    runs.add_argument("--export", choices=["onnx"], default=None,
                      help="--retrain: also write RUN_DIR/retrain/model.onnx, checked against PyTorch with "
                           "onnxruntime (needs pip install 'gptnas[onnx]'); on a finished retraining, exports only")
    runs.add_argument("--push_to_hub", action="store_true", default=None,
                      help="--retrain: publish RUN_DIR/retrain (weights, config.json, model card) to the Hub")
    runs.add_argument("--hub_model_id", metavar="ORG/NAME", help="--push_to_hub: the Hub repository")
    runs.add_argument("--hub_private_repo", action="store_true", default=None,
                      help="--push_to_hub: create the repository private")
    runs.add_argument("--hub_token", metavar="TOKEN", help="--push_to_hub: Hub token (default: HF_TOKEN, else "
                      "`hf auth login`'s; a token given here is visible to other users of this machine in the "
                      "process list)")
    return parser


def parse(argv: list[str] | None) -> tuple[str, tuple]:
    """("search", (config, resuming)) or ("retrain", (run_dir, settings, hub settings or None))."""
    args = vars(build_cli().parse_args(argv))
    retrain_dir, resume, config_path = args.pop("retrain"), args.pop("resume"), args.pop("config")
    retrain = {name: args.pop(f"retrain_{name}") for name in RETRAIN_SETTINGS}
    hub = {name: args.pop(name) for name in HUB_FLAGS}
    export = args.pop("export")
    flags = {k: v for k, v in args.items() if v is not None}
    if retrain_dir:
        return "retrain", (Path(retrain_dir), retrain_settings(retrain, flags), hub_settings(hub), export)
    if export:
        raise GptnasError("--export writes the retrained network as ONNX: it needs --retrain RUN_DIR")
    if any(v is not None for v in retrain.values()):
        raise GptnasError("the --retrain_* flags need --retrain RUN_DIR")
    if any(v is not None for v in hub.values()):
        raise GptnasError("--push_to_hub and the --hub_* flags publish a retrained network: they need --retrain RUN_DIR")
    if resume:
        return "search", (resumed_config(Path(resume), flags), True)
    data = flatten(load_yaml(config_path)) if config_path else {}
    if config_path:
        EvolveConfig.from_flags(data, config_path)  # a bad file is reported as the file's fault
    config = EvolveConfig.from_flags({**data, **flags}, config_path or "command line")
    config.refuse_unused(flags)
    unused = [name for name in data if name not in flags and config.needs(name)]
    if unused:
        logger.info("%s: %s %s no effect in this set-up", config_path, ", ".join(unused),
                    "has" if len(unused) == 1 else "have")
    return "search", (config, False)


def retrain_settings(retrain: dict, flags: dict) -> RetrainSettings:
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
        raise GptnasError(f"--hub_model_id must be org/name, got {quote(repo_id)}")
    return {"repo_id": repo_id, "token": hub["hub_token"], "private": bool(hub["hub_private_repo"])}


def resumed_config(run_dir: Path, flags: dict) -> EvolveConfig:
    """The config of the run in `run_dir`: its config.yaml's settings, except how it runs (HOW_TO_RUN: where
    evaluations run, the Ray cluster, the device, workers, trackers), which come from `flags` alone: a handed
    run directory cannot make this machine connect anywhere or run anything it was not told to."""
    saved = run_dir / CONFIG_FILE
    if run_dir.is_dir():
        refuse_links(run_dir)
    if not saved.is_file():
        raise GptnasError(f"{run_dir} is not a gptnas run directory (no {CONFIG_FILE}); check the path")
    changed = sorted(set(flags) - set(HOW_TO_RUN))
    if changed:
        raise GptnasError(f"--resume continues a run as it was configured; drop --{changed[0]} (it may change "
                          f"only --{', --'.join(HOW_TO_RUN)})")
    stored = flatten(load_yaml(saved))
    if not stored:
        raise GptnasError(f"{saved} is empty; restore the run's config.yaml or start a new run")
    unused = {k: v for k, v in stored.items() if k in HOW_TO_RUN and v not in (None, RUN_DEFAULTS[k])}
    if unused:
        logger.info("%s: %s not used on resume; how a run executes comes from the command line (--%s)", saved,
                    ", ".join(f"{k}: {quote(v)}" for k, v in unused.items()), ", --".join(HOW_TO_RUN))
    data = {**{k: v for k, v in stored.items() if k not in HOW_TO_RUN}, **flags, "output_dir": str(run_dir)}
    config = EvolveConfig.from_flags(data, str(saved))
    config.refuse_unused(flags)
    return config


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        command, args = parse(argv)
        return retrain(*args) if command == "retrain" else search(*args)
    except GptnasError as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        print(f"error: the disk is full ({error.filename or error.strerror}); every finished evaluation is kept: "
              "free some space, then continue with --resume RUN_DIR", file=sys.stderr)
        return 2


def search(config: EvolveConfig, resuming: bool) -> int:
    run_dir = Path(config.run.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GptnasError(f"--output_dir {run_dir} is a file; give a folder")
    if not resuming and run_dir.exists() and any(run_dir.iterdir()):
        raise GptnasError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick a new --output_dir")
    new_dir = not run_dir.exists()
    make_run_dir(run_dir)
    try:
        with exclusive_lock(run_dir):
            search = build_search(config, run_dir)  # checks data, tables and a resumed store first
            logger.info("run directory: %s (%s)", run_dir, "resumed" if resuming else "new")
            try:
                with logging_redirect_tqdm():  # log lines above the progress bar, not glued onto it
                    search.run()
            except BaseException:
                search.executor.close()  # stops the workers now
                raise
            search.executor.close(finished=True)
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


def _evaluations(run_dir: Path) -> int:
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


def retrain(run_dir: Path, settings: RetrainSettings, hub: dict | None = None, export: str | None = None) -> int:
    if not run_dir.is_dir():
        raise GptnasError(f"{run_dir} is not a finished gptnas search (no such folder); pass the right run directory")
    if export:
        check_onnx_runtime()  # before a retraining of days
    with exclusive_lock(run_dir):  # one process at a time in a run directory: a search or a retraining
        result = train_best(run_dir, settings)
        out = run_dir / RETRAIN_DIR
        print(f"test accuracy {result['test_accuracy']:.2f} %; exported to {out} (gptnas.load_network({str(out)!r}))")
        if export:
            onnx = export_onnx(out, settings.seed)
            print(f"ONNX: {out / onnx['file']} (onnxruntime within {onnx['max_abs_difference']:.2g} of PyTorch)")
    if hub:
        url = push_network(out, hub["repo_id"], token=hub["token"], private=hub["private"])
        print(f"published: gptnas.load_network({hub['repo_id']!r}) ({url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
