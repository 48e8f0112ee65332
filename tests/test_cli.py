"""evolve.py's command line: every flag in one group, flags that would do nothing refused in one line, one
config.yaml shape, and run directories written before the groups still resume exactly."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

import evolve
from gptnas.config import flatten
from gptnas.evaluators.proxy import PROXIES
from gptnas.search import checkpoint
from gptnas.search.config import EvolveConfig

GROUPS = ["search", "GPT (--strategy gpt-ga)", "evaluator and data", "candidate training (--evaluator train)", "run",
          "resume, retrain and publish"]
OLD_RUN = Path(__file__).parent / "data" / "run_before_groups"  # written by gptnas before the settings had groups
NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10"]


def flag_groups() -> dict[str, list[str]]:
    """--flag -> the titles of the --help sections that list it."""
    parser = evolve.build_cli()
    found: dict[str, list[str]] = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            for flag in action.option_strings:
                if flag.startswith("--") and not flag.startswith("--no-"):
                    found.setdefault(flag, []).append(group.title)
    return found


def test_every_flag_belongs_to_exactly_one_group_and_help_shows_the_groups(capsys):
    found = flag_groups()
    assert all(len(titles) == 1 for titles in found.values()), {f: t for f, t in found.items() if len(t) != 1}
    ours = {flag: titles[0] for flag, titles in found.items() if flag not in ("--help", "--config")}
    assert sorted(set(ours.values()), key=GROUPS.index) == GROUPS
    settings = {f"--{name}" for name in EvolveConfig.from_flags({}, accelerator=False).flat()}
    assert {flag for flag, title in ours.items() if title != GROUPS[-1]} == settings
    with pytest.raises(SystemExit):
        evolve.main(["--help"])
    shown = capsys.readouterr().out
    assert all(f"\n{title}:\n" in shown for title in GROUPS)
    assert all(action.help for action in evolve.build_cli()._actions), "every flag says what it does"


REFUSED = [
    (["--strategy", "ga", "--trust", "learned"], "--trust needs --strategy gpt-ga"),
    (["--strategy", "ga", "--adapt_every", "2"], "--adapt_every needs --strategy gpt-ga"),
    (["--strategy", "random", "--gpt", "org/model"], "--gpt needs --strategy gpt-ga"),
    (["--strategy", "random", "--crossover_rate", "0.5"], "--crossover_rate needs --strategy ga or gpt-ga"),
    (["--strategy", "regularized-evolution", "--elites", "2"], "--elites needs --strategy ga or gpt-ga"),
    (["--strategy", "ga", "--sample_size", "3"], "--sample_size needs --strategy regularized-evolution"),
    (["--adapt_top", "5"], "--adapt_top needs --adapt_every K >= 1"),
    (["--trust_floor", "0.2"], "--trust_floor needs --trust learned"),
    (["--candidate_ranking", "gain"], "--candidate_ranking needs --reconstruct_candidates N > 1"),
    (["--epochs", "3"], "--epochs needs --evaluator train"),
    (["--fidelity", "low"], "--fidelity needs --evaluator train"),
    (["--data_dir", "somewhere"], "--data_dir needs --evaluator train or proxy"),
    (["--image_size", "16"], "--image_size needs --evaluator train or proxy"),
    (["--screen_pool", "8"], "--screen_pool needs --screen naswot or synflow"),
    (["--ray_address", "127.0.0.1:1"], "--ray_address needs --executor ray"),
    (["--latency_batch_size", "4"], "--latency_batch_size needs --objectives accuracy,latency or --max_latency_ms"),
    (["--eta", "3"], "--eta needs --multi_fidelity sh (or --strategy dehb)"),
    (["--min_fidelity", "0.2"], "--min_fidelity needs --multi_fidelity sh (or --strategy dehb)"),
    (["--budget_unit", "full"], "--budget_unit needs --budget"),
    (["--budget", "10", "--budget_unit", "full"], "--budget_unit needs --budget with --multi_fidelity sh"),
    (["--multi_fidelity", "sh", "--min_fidelity", "1e-9"], "min_fidelity must lie in [0.001, 1)"),
    (["--strategy", "dehb", "--multi_fidelity", "sh"], "--multi_fidelity needs --strategy ga or gpt-ga"),
    (["--strategy", "dehb", "--objectives", "accuracy,params"], "--strategy dehb optimises accuracy alone"),
    (["--retrain_epochs", "3"], "the --retrain_* flags need --retrain RUN_DIR"),
    (["--hub_model_id", "org/name"], "they need --retrain RUN_DIR"),
    (["--trust", "always"], "argument --trust: invalid choice: 'always' (choose from 'full', 'learned')"),
    (["--executor", "mpi"], "argument --executor: invalid choice: 'mpi'"),
]


@pytest.mark.parametrize("flags, message", REFUSED, ids=[" ".join(flags) for flags, _ in REFUSED])
def test_a_flag_that_would_do_nothing_is_refused_in_one_line(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert evolve.main([*NB201, *flags, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_a_resume_may_change_only_how_the_run_executes(tmp_path, capsys):
    shutil.copytree(OLD_RUN, tmp_path / "run")
    assert evolve.main(["--resume", str(tmp_path / "run"), "--population", "4"]) == 2
    assert "--resume continues a run as it was configured; drop --population" in capsys.readouterr().err
    assert evolve.main(["--resume", str(tmp_path / "run"), "--ray_address", "127.0.0.1:1"]) == 2
    assert "--ray_address needs --executor ray" in capsys.readouterr().err


def test_a_config_file_may_hold_settings_another_set_up_uses(tmp_path, caplog):
    """configs/evolve.yaml holds the train evaluator's schedule; searching a table with it is no mistake."""
    caplog.set_level(logging.INFO)
    command, (config, _) = evolve.parse(["--config", "configs/evolve.yaml", *NB201, "--output_dir", str(tmp_path)])
    assert command == "search" and config.data.evaluator == "benchmark" and config.training.epochs == 6
    assert "epochs, batch_size, lr have no effect" in caplog.text


def test_config_yaml_has_one_mapping_per_group_and_reads_back_the_same(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    assert evolve.main([*NB201, "--strategy", "ga", "--population", "4", "--generations", "0",
                        "--output_dir", str(tmp_path / "run")]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert list(saved) == ["search", "gpt", "data", "training", "run"]
    assert saved["search"]["population"] == 4 and saved["data"]["evaluator"] == "benchmark"
    assert EvolveConfig.from_flags(saved) == EvolveConfig.from_flags(flatten(saved))


def test_the_conversion_of_a_flat_config_and_an_old_checkpoint():
    old = yaml.safe_load((OLD_RUN / "config.yaml").read_text())
    assert "search" not in old and old["trust"] == "learned"  # the fixture really is the old, flat shape
    config = EvolveConfig.from_flags(flatten(old))
    assert (config.search.population, config.gpt.trust, config.data.dataset) == (6, "learned", "cifar10")
    state = json.loads((OLD_RUN / checkpoint.CHECKPOINT).read_text())
    upgraded = checkpoint.upgrade(state)
    assert upgraded["strategy"]["reconstruction_log"] == state["reconstruction_log"]
    assert "reconstruction_log" not in upgraded and checkpoint.upgrade(upgraded) == upgraded


def keys(run: Path) -> list[str]:
    with open(run / "evaluations.csv") as f:
        return [row["key"] for row in csv.DictReader(f)]


def untimed(path: Path) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in json.loads(path.read_text())]


def test_a_run_directory_written_before_the_groups_resumes_exactly(tmp_path, requires_table):
    """The fixture is a gpt-ga run with learned trust killed after generation 1 by the previous version."""
    requires_table("nas-bench-201:cifar10")
    old = tmp_path / "old"
    shutil.copytree(OLD_RUN, old)
    assert evolve.main(["--resume", str(old)]) == 0
    straight = tmp_path / "straight"
    assert evolve.main([*NB201, "--population", "6", "--generations", "3", "--trust", "learned", "--seed", "5",
                        "--output_dir", str(straight)]) == 0
    assert keys(old) == keys(straight)
    assert untimed(old / "reconstruction.json") == untimed(straight / "reconstruction.json")
    assert list(yaml.safe_load((old / "config.yaml").read_text())) == ["search", "gpt", "data", "training", "run"]


def test_the_parser_checks_choices_itself():
    parser = evolve.build_cli()
    trust = next(a for a in parser._actions if "--trust" in a.option_strings)
    assert isinstance(trust, argparse.Action) and tuple(trust.choices) == ("full", "learned")


def test_the_screening_choices_are_the_proxies():
    parser = evolve.build_cli()
    screen = next(a for a in parser._actions if "--screen" in a.option_strings)
    assert set(screen.choices) == set(PROXIES)
