"""Publishing and loading: Hub ids through an offline cache, plain HF classes, safetensors only."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gptnas.errors import GptnasError
from gptnas.gpt import hub
from gptnas.gpt.model import ArchGPT, default_model_dir

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
    ))
    assert ours.returncode == 0 and ours.stdout.strip() == "3", ours.stderr[-2000:]
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
