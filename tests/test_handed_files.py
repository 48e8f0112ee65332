"""Files a user is handed cannot hurt them: a run directory, a study folder, an exported network or a GPT folder
made by someone else is read without following links, without trusting its settings or its numbers, and a bad
one is refused in one line before anything is written."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import evolve
import train_gpt
from gptnas.bench import __main__ as bench
from gptnas.deploy.export import load_network
from gptnas.deploy.retrain import RetrainSettings
from gptnas.errors import GptnasError
from gptnas.evaluators.base import Evaluation, failure
from gptnas.gpt.folder import default_model_dir
from gptnas.gpt.model import ArchGPT
from gptnas.search.store import ResultStore
from gptnas.training.data import load_images

NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10"]
RUN = [*NB201, "--strategy", "ga", "--population", "10", "--generations", "2", "--seed", "1"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished run, made once for the module (on the first call) and copied by each test."""
    made = {}

    def make() -> Path:
        if "run" not in made:
            made["run"] = tmp_path_factory.mktemp("template") / "run"
            assert evolve.main([*RUN, "--output_dir", str(made["run"])]) == 0
        return made["run"]

    return make


@pytest.fixture
def run(template, tmp_path, requires_table) -> Path:
    """A copy of a finished NAS-Bench-201 run, the test's to break."""
    requires_table("nas-bench-201:cifar10")
    copy = tmp_path / "run"
    shutil.copytree(template(), copy)
    return copy


def refused(capsys, main, args: list[str], message: str) -> str:
    """`main(args)` exits 2 with one line that holds `message`; returns the line."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    return err[0]


def files_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def plant_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)


# ---------------------------------------------------------------- 1. links are never followed


@pytest.mark.parametrize("name", [".lock", "fitness.png", "pareto.png", "results.sqlite", "results.sqlite-wal",
                                  "checkpoint.json", "config.yaml", "evaluations.csv", "best.json"])
def test_a_link_in_a_run_directory_is_refused_and_its_target_untouched(run, tmp_path, capsys, name):
    target = tmp_path / "precious"
    if name.startswith("results.sqlite"):  # another database, which must not become a store
        with closing(sqlite3.connect(target)) as db:
            db.execute("CREATE TABLE mine (x)")
            db.commit()
    else:
        target.write_bytes((run / name).read_bytes() if (run / name).is_file() else b"mine\n")
    before = target.read_bytes()
    plant_link(run / name, target)
    refused(capsys, evolve.main, ["--resume", str(run)], f"{run / name} is a symbolic link")
    assert target.read_bytes() == before


def test_a_linked_retrain_folder_is_refused_and_nothing_written_through_it(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plant_link(run / "retrain", elsewhere)
    refused(capsys, evolve.main, ["--retrain", str(run), "--retrain_epochs", "1"], "retrain is a symbolic link")
    assert not any(elsewhere.iterdir())


def test_a_link_in_a_study_folder_is_refused(tmp_path, capsys, requires_table):
    requires_table("nas-bench-201:cifar10")
    study = ["--spaces", "nas-bench-201:cifar10", "--strategies", "random", "--seeds", "1", "--budget", "4",
             "--config", "none", "--output_dir", str(tmp_path / "study")]
    assert bench.main(study) == 0
    target = tmp_path / "precious"
    target.write_text("mine\n")
    plant_link(tmp_path / "study" / ".lock", target)
    refused(capsys, bench.main, study, ".lock is a symbolic link")
    assert target.read_text() == "mine\n"


# ---------------------------------------------------------------- 2. how a run executes comes from the command line


def edit_config(run: Path, **changes) -> None:
    path = run / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for name, value in changes.items():
        group = next(g for g in config if name in config[g])
        config[group][name] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_handed_config_yaml_cannot_make_a_resume_connect_anywhere(run, capsys, caplog):
    caplog.set_level(logging.INFO)
    edit_config(run, executor="ray", ray_address="127.0.0.1:1", workers=64, device="cuda:7")
    assert evolve.main(["--resume", str(run)]) == 0  # serial, here, on the default device
    assert "not used on resume" in caplog.text and "ray_address: '127.0.0.1:1'" in caplog.text
    saved = yaml.safe_load((run / "config.yaml").read_text())["run"]
    assert (saved["executor"], saved["ray_address"], saved["device"]) == ("serial", None, None)


# ---------------------------------------------------------------- 5. silent wrong results


@pytest.mark.parametrize("name, value", [("mutation_rate", 0.9), ("generations", 5)])
def test_a_hand_edited_search_setting_is_refused_on_resume_naming_it(run, capsys, name, value):
    edit_config(run, **{name: value})
    refused(capsys, evolve.main, ["--resume", str(run)], f"{name} is {value} but the run was started with")


def test_an_empty_config_yaml_is_refused_on_resume(run, capsys):
    (run / "config.yaml").write_text("")
    refused(capsys, evolve.main, ["--resume", str(run)], "config.yaml is empty")


# ---------------------------------------------------------------- 3. small files and flags, huge costs


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def test_a_billion_laughs_yaml_is_refused_at_its_first_alias(run, tmp_path, capsys):
    (run / "config.yaml").write_text(BILLION_LAUGHS)
    refused(capsys, evolve.main, ["--resume", str(run)], "aliases (*name) are not allowed")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    refused(capsys, evolve.main, ["--config", str(bomb)], "aliases (*name) are not allowed")


LIMITED_FLAGS = [
    (["--population", "100000000"], "population must be at most 100,000, got 100000000"),
    (["--novelty_tries", "1000000000"], "novelty_tries must be at most 1,000"),
    (["--generations", str(10**12)], "generations must be at most 1,000,000"),
    (["--seed", str(10**26), "--screen", "naswot"], "seed must be at most 4,294,967,295"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--objectives", "accuracy,latency", "--latency_batch_size", "1000000000"],
     "latency_batch_size must be at most 4,096"),
    (["--evaluator", "proxy", "--image_size", "60000"], "image_size must be at most 1,024"),
    (["--evaluator", "train", "--batch_size", "100000000"], "batch_size must be at most 65,536"),
]


@pytest.mark.parametrize("flags, message", LIMITED_FLAGS, ids=[" ".join(f) for f, _ in LIMITED_FLAGS])
def test_a_flag_that_sizes_memory_or_loops_has_a_stated_limit(tmp_path, capsys, flags, message):
    refused(capsys, evolve.main, [*NB201, *flags, "--output_dir", str(tmp_path / "run")], message)
    assert not (tmp_path / "run").exists()


def exported_network(folder: Path, **config) -> Path:
    folder.mkdir()
    key = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|"
    base = {"format": "gptnas-network", "format_version": 1, "space": "nas-bench-201", "key": key, "num_classes": 10}
    (folder / "config.json").write_text(json.dumps({**base, **config}))
    return folder


@pytest.mark.parametrize("config, message", [
    ({"num_classes": 10_000_000}, "num_classes must be at most 100,000"),
    ({"num_classes": True}, "check num_classes"),
])
def test_an_exported_config_json_is_checked_before_the_network_is_built(tmp_path, config, message):
    folder = exported_network(tmp_path / "net", **config)
    with pytest.raises(GptnasError, match=re.escape(message)):
        load_network(folder)


def test_deeply_nested_json_is_one_line(tmp_path):
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GptnasError, match="cannot be read as JSON"):
        load_network(folder)


def gpt_copy(folder: Path, config_name: str = "config.json", **changes) -> Path:
    shutil.copytree(default_model_dir(), folder)
    path = folder / config_name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return folder


@pytest.mark.parametrize("name, value", [("n_layer", 100_000), ("n_embd", 10**9), ("vocab_size", 10**12),
                                         ("n_positions", 10**9), ("num_hidden_layers", 100_000)])
def test_a_gpt_config_json_asking_for_a_huge_model_is_refused_before_loading(tmp_path, name, value):
    folder = gpt_copy(tmp_path / "gpt", **{name: value})
    with pytest.raises(GptnasError, match=f"{name} must be at most"):
        ArchGPT.from_pretrained(folder)


def test_an_adapter_of_a_huge_rank_is_refused_before_loading(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 1_000_000}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(GptnasError, match="r must be at most 1,024"):
        ArchGPT.from_pretrained(adapter=adapter)


def test_complete_asked_for_millions_of_networks_is_refused():
    gpt = ArchGPT.from_pretrained()
    with pytest.raises(GptnasError, match="n must be at most 100,000"):
        gpt.complete("nas-bench-201", n=10**7)


# ---------------------------------------------------------------- 4. the store checks what it reads


def craft_store(run: Path, *statements: str, params: tuple = ()) -> None:
    """Runs SQL on the run's store, then gives the checkpoint the digest of what the store now holds (a
    crafted store that matches its checkpoint)."""
    with closing(sqlite3.connect(run / "results.sqlite")) as db:
        for statement in statements:
            db.execute(statement, params if "?" in statement else ())
        db.commit()
        path = run / "checkpoint.json"
        state = json.loads(path.read_text())
        rows = db.execute("SELECT query, key, result FROM evaluations WHERE generation <= ? ORDER BY query",
                          (state["generation"],)).fetchall()
    state["store"] = {"rows": len(rows), "last_query": rows[-1][0] if rows else 0,
                      "sha256": hashlib.sha256("".join(f"{q}\t{k}\t{r}\n" for q, k, r in rows).encode()).hexdigest()}
    path.write_text(json.dumps(state))


def first_result(run: Path) -> dict:
    with closing(sqlite3.connect(run / "results.sqlite")) as db:
        return json.loads(db.execute("SELECT result FROM evaluations WHERE query = 1").fetchone()[0])


@pytest.mark.parametrize("sql, message", [
    ("CREATE TRIGGER forget AFTER INSERT ON meta BEGIN DELETE FROM evaluations WHERE query > 1; END",
     "it holds trigger 'forget', which gptnas does not create"),
    ("CREATE VIEW best AS SELECT * FROM evaluations", "it holds view 'best'"),
    ("CREATE TABLE extra (x)", "it holds table 'extra'"),
])
def test_a_store_whose_schema_gptnas_did_not_create_is_refused(run, capsys, sql, message):
    craft_store(run, sql)
    refused(capsys, evolve.main, ["--resume", str(run)], message)


def test_a_view_in_place_of_the_evaluations_table_is_refused(run, capsys):
    craft_store(run, "ALTER TABLE evaluations RENAME TO kept",
                "CREATE VIEW evaluations AS SELECT * FROM kept")
    refused(capsys, evolve.main, ["--resume", str(run)], "which gptnas does not create")


@pytest.mark.parametrize("fitness", [float("nan"), float("inf"), float("-inf"), "90", None])
def test_a_row_whose_fitness_is_not_a_finite_number_is_refused_naming_it(run, capsys, fitness):
    result = json.dumps({**first_result(run), "fitness": fitness})
    craft_store(run, "UPDATE evaluations SET result = ? WHERE query = 1", params=(result,))
    refused(capsys, evolve.main, ["--resume", str(run)], "query 1")


@pytest.mark.parametrize("result", ["not json", json.dumps({"params": 1}), "[1]", "1" + "0" * 500])
def test_a_row_that_is_not_an_evaluation_is_refused_naming_it(run, capsys, result):
    craft_store(run, "UPDATE evaluations SET result = ? WHERE query = 1", params=(result,))
    line = refused(capsys, evolve.main, ["--resume", str(run)], "the result of query 1 is not an evaluation")
    assert len(line) < 600


# ---------------------------------------------------------------- 5, 6. checkpoints: cut, crafted or out of range


def edit_checkpoint(run: Path, text: str | None = None, **changes) -> None:
    path = run / "checkpoint.json"
    state = json.loads(path.read_text())
    state.update(changes)
    path.write_text(text if text is not None else json.dumps(state))


@pytest.mark.parametrize("change, message", [
    ({"population": "cut"}, "its population has 1 networks, the run's 10"),
    ({"population": []}, "its population has 0 networks"),
    ({"hall_of_fame": []}, "its hall of fame is empty"),
    ({"logbook": [1, 2, 3]}, "its logbook is not one row of named values"),
    ({"logbook": []}, "its logbook is not one row"),
    ({"generation": 10**30}, "generation 1000000000000000000000000000000 is not a generation number"),
    ({"generation": 7}, "generation 7 is past the run's last, 2"),
    ({"generation": True}, "is not a generation number"),
])
def test_a_cut_or_crafted_checkpoint_is_refused_in_one_line(run, capsys, change, message):
    state = json.loads((run / "checkpoint.json").read_text())
    if change.get("population") == "cut":
        change = {"population": state["population"][:1]}
    edit_checkpoint(run, **change)
    refused(capsys, evolve.main, ["--resume", str(run)], message)


def test_a_checkpoint_generation_of_1e999_is_one_line(run, capsys):
    text = (run / "checkpoint.json").read_text()
    state = json.loads(text)
    edit_checkpoint(run, text=text.replace(f'"generation": {state["generation"]}', '"generation": 1e999', 1))
    refused(capsys, evolve.main, ["--resume", str(run)], "generation inf is not a generation number")


@pytest.mark.parametrize("state, message", [
    ({"reconstruction_log": [1]}, "reconstruction_log must be a list of entries"),
    ({"reconstruction_log": [{"gen": 0}]}, "reconstruction_log must be a list of entries"),
    ({"reconstruction_log": "x"}, "reconstruction_log must be a list of entries"),
    ({"reconstruction_log": [], "gpt_weights": "a" * 100_000}, "gpt_weights must be the sha256 of the GPT's weights"),
])
def test_crafted_gpt_ga_state_is_one_line(tmp_path, requires_table, capsys, state, message):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "gpt-ga", "--population", "4", "--generations", "1",
                        "--output_dir", str(run)]) == 0
    edit_checkpoint(run, strategy=state)
    refused(capsys, evolve.main, ["--resume", str(run)], message)


# ---------------------------------------------------------------- 5. data, failures and retraining


QUICK_SEARCH = ["--space", "cifar", "--strategy", "ga", "--population", "2", "--generations", "0", "--epochs", "1",
                "--min_steps", "0", "--batch_size", "32", "--max_train_examples", "64", "--device", "cpu",
                "--workers", "1"]


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """`datasets` caches what it reads: here, not in the user's cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


def saved_dataset(folder: Path, train_labels: list, test_labels: list) -> Path:
    import datasets

    def split(labels):
        return datasets.Dataset.from_dict({"image": [np.zeros((8, 8), np.uint8)] * len(labels), "label": labels})

    datasets.DatasetDict(train=split(train_labels), test=split(test_labels)).save_to_disk(folder)
    return folder


@pytest.mark.parametrize("train, test, message", [
    ([0, 1] * 4, [0, 1, 2, 2], "the test split has labels no training image has ([2])"),
    ([0.0, 1.0] * 4, [0.0, 1.0], "holds float labels; labels must be integers or strings"),
    ([True, False] * 4, [True, False], "holds bool labels"),
])
def test_labels_are_integers_or_strings_and_classes_come_from_the_training_split(tmp_path, capsys, datasets_cache,
                                                                                 train, test, message):
    folder = saved_dataset(tmp_path / "saved", train, test)
    refused(capsys, evolve.main, [*QUICK_SEARCH, "--dataset", str(folder), "--output_dir", str(tmp_path / "run")],
            message)
    assert not (tmp_path / "run").exists()


def test_string_labels_seen_in_training_are_classes(tmp_path, datasets_cache):
    folder = saved_dataset(tmp_path / "saved", ["cat", "dog"] * 4, ["dog", "cat"])
    data = load_images(str(folder))
    assert data.num_classes == 2 and data.test_labels.tolist() == [1, 0]


def test_a_column_flag_for_the_bundled_digits_is_refused(tmp_path, capsys):
    refused(capsys, evolve.main, [*QUICK_SEARCH, "--dataset", "digits", "--label_column", "foo",
                                  "--output_dir", str(tmp_path / "run")], "drop --label_column")
    assert not (tmp_path / "run").exists()


def test_a_cpu_out_of_memory_is_recorded_as_out_of_memory():
    for allocate in (lambda: torch.empty(2**50, dtype=torch.uint8), lambda: bytearray(2**62)):
        try:
            allocate()
        except (RuntimeError, MemoryError, OverflowError) as error:
            evaluation = failure(error, {"params": 1, "flops": 1}, 0.0)
        assert evaluation.status == "out_of_memory", evaluation.reason


def test_a_short_retraining_steps_its_learning_rate_down():
    assert RetrainSettings(epochs=30).lr_step_epochs == 9  # 100 of GPT-NAS's 350 epochs, scaled
    assert RetrainSettings().lr_step_epochs == 100
    assert RetrainSettings(epochs=30, lr_step_epochs=50).lr_step_epochs == 50


def test_a_tie_at_the_top_goes_to_the_fewest_parameters_then_the_earliest_query_with_a_warning(run, caplog):
    caplog.set_level(logging.WARNING)
    with closing(sqlite3.connect(run / "results.sqlite")) as db:
        rows = db.execute("SELECT query, key, result FROM evaluations WHERE query IN (3, 5, 7, 9)").fetchall()
    tied = sorted((json.loads(result)["params"], query, key) for query, key, result in rows)
    craft_store(run, "UPDATE evaluations SET result = json_set(result, '$.fitness', 100.0) "
                     "WHERE query IN (3, 5, 7, 9)")
    assert evolve.main(["--resume", str(run)]) == 0
    best = json.loads((run / "best.json").read_text())
    assert (best["fitness"], best["key"]) == (100.0, tied[0][2])
    assert "4 networks tie at the top fitness (100.00): validation is saturated" in caplog.text


def test_a_full_disk_is_one_line_and_loses_nothing(run):
    store = ResultStore(run / "results.sqlite", identity_of(run))
    before = len(store)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    evaluation = Evaluation(50.0, None, 1, 1, 0.1, reason="x" * 100_000)
    with pytest.raises(GptnasError, match="is full .*every evaluation committed before is kept"):
        store.add(10_000, "new key", "new encoding", 3, evaluation)
    store.close()
    assert len(ResultStore(run / "results.sqlite", identity_of(run))) == before


def identity_of(run: Path) -> dict:
    with closing(sqlite3.connect(run / "results.sqlite")) as db:
        return {name: json.loads(value) for name, value in db.execute("SELECT name, value FROM meta")
                if name not in ("format", "settings")}


# ---------------------------------------------------------------- 7. messages quote little of their input


@pytest.mark.parametrize("config", [{"objectives": "x" * 1_000_000}, {"x" * 1_000_000: 1},
                                    {"population": "9" * 100_000}, {"space": "x" * 1_000_000}])
def test_an_error_quotes_at_most_about_200_characters_of_its_input(tmp_path, capsys, config):
    path = tmp_path / "big.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    line = refused(capsys, evolve.main, ["--config", str(path), "--output_dir", str(tmp_path / "run")], "error: ")
    assert len(line) < 700, len(line)
    line = refused(capsys, evolve.main, ["--strategy", "y" * 1_000_000, "--output_dir", str(tmp_path / "run")],
                   "unknown strategy")
    assert len(line) < 700, len(line)


# ---------------------------------------------------------------- 6. --retrain reads a handed config.yaml


@pytest.mark.parametrize("change, message", [
    ({"image_size": [8]}, "image_size must be an integer, got [8]"),
    ({"image_size": 60_000}, "image_size must be at most 1,024"),
    ({"dataset": {"a": 1}}, "dataset must be a name, got {'a': 1}"),
    ({"label_column": 3}, "label_column must be a name"),
])
def test_retrain_checks_the_data_settings_of_the_run(run, capsys, change, message):
    edit_config(run, **change)
    refused(capsys, evolve.main, ["--retrain", str(run), "--retrain_epochs", "1"], message)
    assert not (run / "retrain").exists()


# ---------------------------------------------------------------- 5. the logbook counts what happened


def test_the_logbooks_new_and_rewritten_columns_count_this_generation_only(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    for strategy, extra in (("regularized-evolution", ["--population", "6"]),
                            ("gpt-ga", ["--population", "4", "--trust", "learned"])):
        run = tmp_path / strategy
        assert evolve.main([*NB201, "--strategy", strategy, "--generations", "3", *extra,
                            "--output_dir", str(run)]) == 0
        with open(run / "logbook.csv") as f:
            rows = list(csv.DictReader(f))
        queries = [int(r["queries"]) for r in rows]
        assert [int(r["new"]) for r in rows] == [queries[0]] + [b - a for a, b in zip(queries, queries[1:])]
        if strategy == "gpt-ga":
            log = json.loads((run / "reconstruction.json").read_text())
            changed = {g: sum(e["changed"] for e in log if e["gen"] == g) for g in range(4)}
            assert [int(r["rewritten"]) for r in rows] == [changed[g] for g in range(4)]


def test_train_gpt_refuses_a_model_larger_than_gptnas_loads(tmp_path, capsys):
    refused(capsys, train_gpt.main, ["--n_layer", "100000", "--output_dir", str(tmp_path / "gpt")],
            "n_layer must be at most 64")
    refused(capsys, train_gpt.main, ["--per_device_train_batch_size", str(10**9), "--output_dir", str(tmp_path / "gpt")],
            "per_device_train_batch_size must be at most 65,536")
    assert not (tmp_path / "gpt").exists()
