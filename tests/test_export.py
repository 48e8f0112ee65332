"""A retrained network exported: it loads back without its run directory (folder or Hub cache), says
what it is and how well and fast it runs, publishes with a model card, refuses bad folders in one line."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import COMMIT, offline_cache
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from torch import nn

import evolve
import gptnas
from gptnas.errors import GptnasError
from gptnas.gpt.folder import default_model_dir
from gptnas.spaces import get_space
from gptnas.spaces.base import count_macs
from gptnas.spaces.cifar import Block, CifarArch
from gptnas.training.data import load_images, normalise
from gptnas.deploy.export import EXPORTED, model_card, push_network, read_config
from gptnas.training.latency import measure_latency
from gptnas.deploy.retrain import RetrainSettings, retrain

# Three strided blocks first keep the network cheap: most of it runs at 4x4.
TINY = CifarArch(16, (Block("resnet_basic", 16, 2),) * 3 + (Block("resnet_basic", 16, 1),) * 7)
QUICK = RetrainSettings(epochs=1, batch_size=32, max_train_examples=64, device="cpu")

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished search on digits, retrained (one quick epoch); the tests copy what they change."""
    path = tmp_path_factory.mktemp("export") / "run"
    path.mkdir()
    config = {"space": "cifar", "dataset": "digits", "data_dir": None, "seed": 0, "population": 6,
              "output_dir": str(path)}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "best.json").write_text(json.dumps({"key": get_space("cifar").key(TINY), "fitness": 50.0}))
    retrain(path, QUICK)
    return path


def exported_copy(run, to: Path) -> Path:
    """The exported files alone, away from the run directory."""
    to.mkdir()
    for name in EXPORTED:
        shutil.copy(run / "retrain" / name, to / name)
    return to


def test_an_exported_network_loads_alone_and_scores_the_test_accuracy_it_reports(run, tmp_path):
    folder = exported_copy(run, tmp_path / "alone")
    model = gptnas.load_network(folder)
    assert not model.training

    trained = gptnas.build_model("cifar", get_space("cifar").key(TINY), num_classes=10)
    trained.load_state_dict(load_file(run / "retrain" / "model.safetensors"))
    images = torch.rand(5, 3, 8, 8)
    with torch.inference_mode():
        assert torch.equal(model(images), trained.eval()(images))

    # config.json holds all a user needs to reproduce the number: the input size and standardisation
    config = json.loads((folder / "config.json").read_text())
    data = load_images("digits")
    mean, std = torch.tensor(config["normalisation"]["mean"]), torch.tensor(config["normalisation"]["std"])
    assert tuple(data.test_images.shape[1:]) == (config["input_channels"], config["input_size"], config["input_size"])
    with torch.inference_mode():
        predicted = model(normalise(data.test_images, mean, std)).argmax(1)
    assert 100.0 * (predicted == data.test_labels).sum().item() / len(predicted) == config["results"]["test_accuracy"]


def test_config_json_says_what_the_network_is_on_what_data_how_well_and_how_fast(run):
    out = run / "retrain"
    config = json.loads((out / "config.json").read_text())
    result = json.loads((out / "result.json").read_text())
    space = get_space("cifar")
    assert config["format"] == "gptnas-network" and config["format_version"] == 1
    assert config["gptnas_version"] == gptnas.__version__
    assert (config["space"], config["key"], config["encoding"]) == ("cifar", space.key(TINY), space.encode(TINY))
    assert (config["num_classes"], config["input_size"], config["input_channels"]) == (10, 8, 3)
    assert config["dataset"] == {"name": "digits", "hub_id": None, "revision": None}

    results = config["results"]
    model = space.build_model(TINY, 10)
    assert results["test_accuracy"] == result["test_accuracy"]
    assert results["params"] == result["params"] == sum(p.numel() for p in model.parameters())
    assert results["flops"] == count_macs(model, 8) > 0  # multiply-accumulates at the trained input size
    assert set(results["latency_ms"]) == {"batch_size_1", "batch_size_32"}  # 1 and the training batch
    assert all(0 < ms < math.inf for ms in results["latency_ms"].values())
    assert results["latency_device"].startswith("cpu")

    assert config["training"]["epochs"] == 1 and config["training"]["train_examples"] == 64
    assert config["search"]["population"] == 6 and "output_dir" not in config["search"]  # no local paths


class FakeApi:
    """Records what huggingface_hub.HfApi would create and copies what it would upload into `hub`."""

    def __init__(self, hub: Path, token=None):
        self.hub, self.token, self.calls = hub, token, []

    def create_repo(self, repo_id, exist_ok, private):
        self.calls.append(("create", repo_id, private))

    def upload_folder(self, folder_path, repo_id, allow_patterns, commit_message):
        self.hub.mkdir(exist_ok=True)
        for path in Path(folder_path).iterdir():
            if any(Path(path.name).match(pattern) for pattern in allow_patterns):
                shutil.copy(path, self.hub / path.name)
        self.calls.append(("upload", repo_id))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/x"})()


def test_push_publishes_the_folder_with_a_card_naming_the_repo_and_its_test_accuracy(run, tmp_path):
    folder = exported_copy(run, tmp_path / "folder")
    api = FakeApi(tmp_path / "hub")
    assert push_network(folder, "org/tiny-digits", api=api, private=True).endswith("/commit/x")
    assert api.calls == [("create", "org/tiny-digits", True), ("upload", "org/tiny-digits")]
    assert {p.name for p in api.hub.iterdir()} == set(EXPORTED)

    card = ModelCard.load(api.hub / "README.md")
    config = read_config(folder)
    assert card.data.library_name == "pytorch"
    assert {"gptnas", "neural-architecture-search"} <= set(card.data.tags)
    (evaluation,) = card.data.eval_results
    assert evaluation.metric_type == "accuracy" and evaluation.dataset_split == "test"
    assert evaluation.metric_value == config["results"]["test_accuracy"]
    assert 'gptnas.load_network("org/tiny-digits")' in card.text
    assert "conv3x3/s2 w16 bn relu" in card.text and "population: 6" in card.text  # architecture, search
    assert gptnas.load_network(api.hub) is not None  # what was uploaded loads back

    # a Hub dataset is named in the metadata, with its commit
    cifar = {**config, "dataset": {"name": "cifar10", "hub_id": "uoft-cs/cifar10", "revision": COMMIT}}
    card = ModelCard(str(model_card(cifar, "org/net")))
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert card.data.eval_results[0].dataset_type == "uoft-cs/cifar10"
    assert card.data.eval_results[0].dataset_revision == COMMIT


def retrained_copy_and_fake_hub(run, tmp_path, monkeypatch) -> tuple[Path, list]:
    """A copy of the retrained run, and the fake Hub APIs `huggingface_hub.HfApi` now makes (into tmp_path/hub)."""
    import huggingface_hub

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    made = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: made.append(FakeApi(tmp_path / "hub", token))
                        or made[-1])
    return copy, made


def test_evolve_retrain_push_to_hub_publishes_a_finished_retraining(run, tmp_path, monkeypatch, capsys):
    copy, made = retrained_copy_and_fake_hub(run, tmp_path, monkeypatch)
    args = ["--retrain", str(copy), "--push_to_hub", "--hub_model_id", "org/net", "--hub_private_repo",
            "--hub_token", "hf_secret"]
    assert evolve.main(args) == 0  # finished already: publishes without training again
    assert made[0].token == "hf_secret" and made[0].calls[0] == ("create", "org/net", True)
    assert 'gptnas.load_network("org/net")' in (tmp_path / "hub" / "README.md").read_text()
    assert {p.name for p in (tmp_path / "hub").iterdir()} == set(EXPORTED)  # not result.json, log.csv
    assert "hf_secret" not in "".join(p.read_text() for p in (tmp_path / "hub").glob("*.json"))
    assert {p.name for p in (copy / "retrain").iterdir()} == {*EXPORTED, "result.json", "log.csv"}  # nothing left
    assert (copy / "retrain" / "README.md").read_text() == (run / "retrain" / "README.md").read_text()  # unchanged
    assert "gptnas.load_network('org/net')" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--push_to_hub"], "--push_to_hub needs --hub_model_id org/name"),
    (["--push_to_hub", "--hub_model_id", "net"], "--hub_model_id must be org/name"),
    (["--hub_model_id", "org/net"], "--hub_model_id only applies with --push_to_hub"),
])
def test_bad_push_flags_are_refused_before_any_training(tmp_path, capsys, args, message):
    assert evolve.main(["--retrain", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert evolve.main(["--space", "cifar", "--push_to_hub", "--hub_model_id", "org/net"]) == 2
    assert "need --retrain RUN_DIR" in capsys.readouterr().err


def test_a_hub_id_loads_from_the_offline_cache_and_a_missing_one_says_so_in_one_line(run, tmp_path):
    cache = offline_cache(tmp_path, "org/tiny-digits", exported_copy(run, tmp_path / "folder"))
    code = ("import gptnas, torch\n"
            "model = gptnas.load_network('org/tiny-digits')\n"
            "print(model(torch.zeros(1, 3, 8, 8)).shape[-1])\n"
            "try:\n    gptnas.load_network('org/other')\n"
            "except gptnas.GptnasError as error:\n    print(error)\n")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "10"
    assert len(lines) == 2 and "'org/other' is not in the local Hugging Face cache" in lines[1]


def _break(folder: Path, how: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    if how == "no config":
        (folder / "config.json").unlink()
    elif how == "garbled config":
        (folder / "config.json").write_text("{not json")
    elif how == "no weights":
        (folder / "model.safetensors").unlink()
    elif how == "corrupt weights":
        (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    else:
        changes = {"newer format": {"format_version": 2}, "no key": {"key": None}, "bad key": {"key": "garbage"},
                   "other network": {"num_classes": 100}}[how]
        (folder / "config.json").write_text(json.dumps({**config, **changes}))


@pytest.mark.parametrize("how, message", [
    ("no config", "has no config.json"),
    ("garbled config", "config.json cannot be read"),
    ("newer format", "newer than this gptnas reads (1); upgrade gptnas"),
    ("no key", "needs a space and key"),
    ("bad key", "a cifar key looks like"),
    ("no weights", "has no model.safetensors"),
    ("corrupt weights", "model.safetensors cannot be read"),
    ("other network", "does not fit the network config.json describes"),
])
def test_a_bad_folder_is_refused_in_one_line(run, tmp_path, how, message):
    folder = exported_copy(run, tmp_path / "bad")
    _break(folder, how)
    with pytest.raises(GptnasError) as caught:
        gptnas.load_network(folder)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_what_is_not_an_exported_network_is_refused_in_one_line(tmp_path):
    for where, message in ((tmp_path / "nowhere", "no network folder at"),
                           (default_model_dir(), "does not describe a gptnas network")):  # an ArchGPT folder
        with pytest.raises(GptnasError, match=message) as caught:
            gptnas.load_network(where)
        assert "\n" not in str(caught.value)


def test_latency_is_a_positive_number_of_milliseconds_and_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    running_mean = model[1].running_mean.clone()
    ms = measure_latency(model, (3, 16, 16), "cpu", batch_size=4, warmup=1, repeats=3)
    assert 0 < ms < math.inf
    assert model.training and torch.equal(model[1].running_mean, running_mean)  # timed in eval mode
    with pytest.raises(ValueError):
        measure_latency(model, (3, 16, 16), repeats=0)


def test_export_onnx_writes_a_checked_model_the_card_lists_and_push_publishes(run, tmp_path, monkeypatch, capsys):
    import onnxruntime

    copy, _ = retrained_copy_and_fake_hub(run, tmp_path, monkeypatch)
    assert evolve.main(["--retrain", str(copy), "--export", "onnx", "--push_to_hub", "--hub_model_id", "org/net"]) == 0
    out = copy / "retrain"
    record = read_config(out)["onnx"]
    assert record["file"] == "model.onnx" and record["max_abs_difference"] <= 1e-4 and record["checked_batch"] == 8
    assert "## ONNX" in (out / "README.md").read_text() and "model.onnx (" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "hub").iterdir()} == {*EXPORTED, "model.onnx"}

    # the runtime's answer on other images, any batch size, equals the PyTorch network's
    model, session = gptnas.load_network(out), onnxruntime.InferenceSession(str(out / "model.onnx"))
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.inference_mode():
        assert torch.allclose(torch.from_numpy(logits), model(images), atol=1e-4)

    retrain(copy, QUICK)  # finished: nothing changes
    assert (out / "model.onnx").exists()


def test_export_onnx_needs_a_retraining_and_the_extra(run, tmp_path, capsys, monkeypatch):
    assert evolve.main(["--space", "cifar", "--export", "onnx"]) == 2
    assert "--export writes the retrained network as ONNX: it needs --retrain RUN_DIR" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert evolve.main(["--retrain", str(copy), "--export", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'gptnas[onnx]'" in err[0]
    assert not (copy / "retrain" / "model.onnx").exists()
