"""Publishing and loading: Hub ids through an offline cache, plain HF classes, safetensors only;
what was loaded (model and image dataset) is recorded down to the Hub commit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gptnas.errors import GptnasError
from gptnas.gpt import hub
from gptnas.gpt.model import ArchGPT, default_model_dir, file_sha256

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def offline_cache(tmp_path, repo_id, folder) -> Path:
    """A Hugging Face cache laid out as huggingface_hub lays it out, holding `folder` as repo_id@main."""
    cache = tmp_path / "hub"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def run_offline(cache, code):
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_hub_id_loads_from_the_offline_cache_with_and_without_gptnas(tmp_path):
    cache = offline_cache(tmp_path, "gptnas/archgpt-test", default_model_dir())
    plain = run_offline(cache, (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "m = AutoModelForCausalLM.from_pretrained('gptnas/archgpt-test')\n"
        "t = AutoTokenizer.from_pretrained('gptnas/archgpt-test')\n"
        "import sys; assert 'gptnas' not in sys.modules\n"
        "ids = t('space:nas-bench-201 conv3x3 w16 bn', return_tensors='pt')\n"
        "assert 'token_type_ids' not in ids\n"
        "print(m(**ids).logits.shape[-1] == len(t))\n"
    ))
    assert plain.returncode == 0 and plain.stdout.strip() == "True", plain.stderr[-2000:]
    ours = run_offline(cache, (
        "from gptnas import ArchGPT\n"
        "g = ArchGPT.from_pretrained('gptnas/archgpt-test', device='cpu')\n"
        "print(len(g.complete('nas-bench-macro', [''], n=3)[0]))\n"
        "print(g.source['name_or_path'], g.source['revision'], g.source['sha256'])\n"
    ))
    assert ours.returncode == 0, ours.stderr[-2000:]
    sha256 = file_sha256(default_model_dir() / "model.safetensors")
    assert ours.stdout.split("\n")[:2] == ["3", f"gptnas/archgpt-test {COMMIT} {sha256}"]
    missing = run_offline(cache, "from gptnas import ArchGPT\nArchGPT.from_pretrained('gptnas/other')\n")
    assert "is not in the local Hugging Face cache" in missing.stderr


def test_push_uploads_model_tokenizer_and_card_to_the_named_repo(tmp_path):
    class FakeApi:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, exist_ok, private):
            self.calls.append(("create", repo_id, exist_ok))

        def upload_folder(self, folder_path, repo_id, allow_patterns, commit_message):
            files = sorted(p.name for p in Path(folder_path).iterdir()
                           if any(Path(p.name).match(pat) for pat in allow_patterns))
            self.calls.append(("upload", repo_id, files))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/x"})()

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    (folder / "step_10").mkdir()  # checkpoints stay local
    api = FakeApi()
    url = hub.push_folder(folder, "org/archgpt", api=api)
    assert url.endswith("/commit/x")
    assert api.calls[0] == ("create", "org/archgpt", True)
    _, repo, files = api.calls[1]
    assert repo == "org/archgpt"
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(files)
    assert "step_10" not in files


def test_bad_model_folders_get_one_line_errors(tmp_path):
    with pytest.raises(GptnasError, match="no model folder at"):
        ArchGPT.from_pretrained(str(tmp_path / "nothing/here/deep"))
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    (unsafe / "config.json").write_text("{}")
    (unsafe / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(GptnasError, match="safetensors only"):
        ArchGPT.from_pretrained(unsafe)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(default_model_dir(), corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(GptnasError, match="cannot load the model"):
        ArchGPT.from_pretrained(corrupt)


def test_the_source_of_the_shipped_and_of_a_local_model_is_recorded(tmp_path):
    sha256 = file_sha256(default_model_dir() / "model.safetensors")
    shipped = {"name_or_path": "gptnas/default_model", "revision": None, "sha256": sha256,
               "adapter": None, "adapter_revision": None, "adapter_sha256": None}
    assert ArchGPT.from_pretrained(device="cpu").source == shipped
    assert ArchGPT.from_pretrained(default_model_dir(), device="cpu").source == shipped
    local = tmp_path / "local"
    shutil.copytree(default_model_dir(), local)
    assert ArchGPT.from_pretrained(local, device="cpu").source == {**shipped, "name_or_path": str(local)}


def test_dataset_source_records_the_hub_commit_of_the_cached_copy_or_the_local_folder(tmp_path):
    """uoft-cs/cifar10 as `datasets` caches it after a download (<name>/<config>/<version>/<commit>/),
    read offline; and a local copy saved with save_to_disk."""
    import datasets
    import numpy as np
    from datasets.packaged_modules.parquet.parquet import Parquet

    from gptnas.training.data import dataset_source

    images = {"img": [np.zeros((4, 4, 3), np.uint8)] * 3, "label": [0, 1, 2]}
    splits = datasets.DatasetDict({split: datasets.Dataset.from_dict(images) for split in ("train", "test")})
    for split, table in splits.items():
        table.to_parquet(tmp_path / f"{split}.parquet")
    Parquet(cache_dir=str(tmp_path / "build"), dataset_name="cifar10", config_name="plain_text", hash=COMMIT,
            data_files={split: str(tmp_path / f"{split}.parquet") for split in splits}).download_and_prepare()
    built = next((tmp_path / "build").glob(f"cifar10/plain_text*/0.0.0/{COMMIT}"))
    shutil.copytree(built, tmp_path / "cache" / "uoft-cs___cifar10" / "plain_text" / "0.0.0" / COMMIT)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    code = "import json; from gptnas.training.data import dataset_source; print(json.dumps(dataset_source('cifar10')))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    source = json.loads(result.stdout.strip().splitlines()[-1])
    assert source["hub_id"] == "uoft-cs/cifar10" and source["revision"] == COMMIT and source["data_dir"] is None
    assert set(source["fingerprints"]) == {"train", "test"}

    splits.save_to_disk(str(tmp_path / "local"))
    local = dataset_source("cifar10", str(tmp_path / "local"))
    assert local["hub_id"] is None and local["revision"] is None and local["data_dir"] == str((tmp_path / "local").resolve())
    assert dataset_source("digits") == {"dataset": "digits", "hub_id": None, "revision": None, "data_dir": None,
                                        "fingerprints": None}
