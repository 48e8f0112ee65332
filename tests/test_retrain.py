"""Final training of a search's best network: its files, its resume, its errors (digits, on the CPU)."""

import csv
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import gptnas
from gptnas.errors import GptnasError
from gptnas.spaces import get_space
from gptnas.spaces.cifar import Block, CifarArch
from gptnas.training.data import load_images
from gptnas.deploy.retrain import RetrainSettings, retrain, training_splits

# Three strided blocks first keep the network cheap: most of it runs at 4x4.
TINY = CifarArch(16, (Block("resnet_basic", 16, 2),) * 3 + (Block("resnet_basic", 16, 1),) * 7)
QUICK = RetrainSettings(epochs=2, batch_size=32, max_train_examples=128, device="cpu")


def finished_search(path):
    """A run directory as a finished search leaves it (only what retraining reads)."""
    path.mkdir()
    config = {"space": "cifar", "dataset": "digits", "data_dir": None, "seed": 0}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "best.json").write_text(json.dumps({"key": get_space("cifar").key(TINY), "fitness": 50.0}))
    return path


def test_retrain_writes_a_loadable_model_its_architecture_a_log_and_a_test_score(tmp_path):
    run = finished_search(tmp_path / "run")
    result = retrain(run, QUICK)
    out = run / "retrain"
    for name in ("model.safetensors", "config.json", "README.md", "result.json", "log.csv"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()  # superseded by the model once finished

    assert 0 <= result["test_accuracy"] <= 100 and result["epochs"] == 2
    assert result["params"] == sum(p.numel() for p in get_space("cifar").build_model(TINY, 10).parameters())
    assert json.loads((out / "result.json").read_text()) == result

    architecture = json.loads((out / "config.json").read_text())  # the export's: tests/test_export.py
    assert architecture["num_classes"] == 10 and architecture["key"] == get_space("cifar").key(TINY)
    model = gptnas.build_model(architecture["space"], architecture["key"], architecture["num_classes"])
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)

    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # two epochs step down after 100/350 of them, rounded up to one: every epoch
    assert [float(r["lr"]) for r in rows] == pytest.approx([QUICK.lr, QUICK.lr * QUICK.lr_gamma])

    # finished: a second call returns the saved result without training again
    (out / "model.safetensors").unlink()
    assert retrain(run, QUICK) == result
    assert not (out / "model.safetensors").exists()


def test_an_interrupted_retraining_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = finished_search(tmp_path / "straight")
    interrupted = finished_search(tmp_path / "interrupted")
    retrain(straight, QUICK)

    assert retrain(interrupted, QUICK, stop_after_epochs=1) is None
    assert (interrupted / "retrain" / "checkpoint.pt").is_file()
    assert not (interrupted / "retrain" / "result.json").exists()
    resumed = retrain(interrupted, QUICK)

    expected = load_file(straight / "retrain" / "model.safetensors")
    got = load_file(interrupted / "retrain" / "model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert resumed["test_accuracy"] == json.loads((straight / "retrain" / "result.json").read_text())["test_accuracy"]
    with open(interrupted / "retrain" / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_retraining_uses_every_training_example_unless_asked_to_hold_out_the_validation_split():
    data = load_images("digits")
    everything = training_splits(data, RetrainSettings())
    assert len(everything.train_labels) == len(data.train_labels) and len(everything.val_labels) == 0
    held_out = training_splits(data, RetrainSettings(use_validation_split=True))
    assert len(held_out.val_labels) == round(0.1 * len(data.train_labels))
    assert len(held_out.train_labels) + len(held_out.val_labels) == len(data.train_labels)


def test_the_learning_rate_steps_down_every_lr_step_epochs(tmp_path):
    run = finished_search(tmp_path / "run")
    settings = RetrainSettings(epochs=3, lr=0.01, lr_step_epochs=2, lr_gamma=0.1, batch_size=32,
                               max_train_examples=32, device="cpu")
    retrain(run, settings)
    with open(run / "retrain" / "log.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs == pytest.approx([0.01, 0.01, 0.001])


def test_a_diverging_retraining_says_to_lower_the_learning_rate_and_leaves_no_checkpoint(tmp_path):
    run = finished_search(tmp_path / "run")
    with pytest.raises(GptnasError, match="diverged.*lower lr"):
        retrain(run, RetrainSettings(epochs=1, lr=1e30, batch_size=32, max_train_examples=64, device="cpu"))
    assert not (run / "retrain" / "checkpoint.pt").exists()


def test_a_run_without_best_json_is_refused(tmp_path):
    run = finished_search(tmp_path / "run")
    (run / "best.json").unlink()
    with pytest.raises(GptnasError, match="not a finished gptnas search"):
        retrain(run, QUICK)


def test_a_corrupt_checkpoint_says_to_delete_it(tmp_path):
    run = finished_search(tmp_path / "run")
    (run / "retrain").mkdir()
    (run / "retrain" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GptnasError, match="corrupt.*delete it"):
        retrain(run, QUICK)


def test_a_checkpoint_made_with_other_settings_is_not_continued(tmp_path):
    run = finished_search(tmp_path / "run")
    retrain(run, QUICK, stop_after_epochs=1)
    with pytest.raises(GptnasError, match="batch_size"):
        retrain(run, RetrainSettings(epochs=2, batch_size=16, max_train_examples=128, device="cpu"))


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=0), dict(lr_gamma=0), dict(max_train_examples=1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(GptnasError):
        RetrainSettings(**bad)
