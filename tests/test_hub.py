"""Publishing and loading: Hub ids through an offline cache, plain HF classes, safetensors only;
what was loaded (model and image dataset) is recorded down to the Hub commit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COMMIT, offline_cache

from gptnas.errors import GptnasError
from gptnas.gpt.card import push_gpt
from gptnas.files import file_sha256
from gptnas.gpt.folder import default_model_dir
from gptnas.gpt.model import ArchGPT


def run_offline(cache, code):
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_hub_id_loads_from_the_offline_cache_with_and_without_gptnas(tmp_path):
    cache = offline_cache(tmp_path, "gptnas/archgpt-test", default_model_dir())
    done = run_offline(cache, (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "m = AutoModelForCausalLM.from_pretrained('gptnas/archgpt-test')\n"
        "t = AutoTokenizer.from_pretrained('gptnas/archgpt-test')\n"
        "import sys; assert 'gptnas' not in sys.modules\n"
        "ids = t('space:nas-bench-201 conv3x3 w16 bn', return_tensors='pt')\n"
        "assert 'token_type_ids' not in ids\n"
        "print(m(**ids).logits.shape[-1] == len(t))\n"
        "from gptnas import ArchGPT, GptnasError\n"  # the same folder through gptnas, in the same process
        "g = ArchGPT.from_pretrained('gptnas/archgpt-test', device='cpu')\n"
        "print(len(g.complete('nas-bench-macro', [''], n=3)[0]))\n"
        "print(g.source['name_or_path'], g.source['revision'], g.source['sha256'])\n"
        "try:\n"
        "    ArchGPT.from_pretrained('gptnas/other')\n"
        "except GptnasError as error:\n"
        "    print(error)\n"
    ))
    assert done.returncode == 0, done.stderr[-2000:]
    sha256 = file_sha256(default_model_dir() / "model.safetensors")
    plain, loaded, source, missing = done.stdout.split("\n")[:4]
    assert [plain, loaded, source] == ["True", "3", f"gptnas/archgpt-test {COMMIT} {sha256}"]
    assert "gptnas/other" in missing and "is not in the local Hugging Face cache" in missing


class FakeHubApi:
    """HfApi's create_repo / upload_folder without the network: the folder is listed and filtered exactly as
    upload_folder lists and filters it (huggingface_hub's filter_repo_objects, its default ignore patterns)."""

    def __init__(self):
        self.private, self.uploaded = {}, {}

    def create_repo(self, repo_id, *, exist_ok=False, private=None):
        assert exist_ok
        self.private[repo_id] = private

    def upload_folder(self, *, folder_path, repo_id, allow_patterns=None, ignore_patterns=None, commit_message=None):
        from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

        folder = Path(folder_path).resolve()
        files = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
        ignore = [*([ignore_patterns] if isinstance(ignore_patterns, str) else ignore_patterns or []),
                  *DEFAULT_IGNORE_PATTERNS]
        self.uploaded[repo_id] = set(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/x"})()


ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = [  # the tiny settings of tests/test_train_gpt.py, checkpointing every step as a long run would
    "--train_files", str(ROOT / "data/finetune_torchvision.jsonl"), "--eval_families", "googlenet",
    "--tokenizer_name", str(ROOT / "tokenizer"), "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
    "--block_size", "256", "--per_device_train_batch_size", "4", "--num_warmup_steps", "1", "--report_to", "none",
    "--max_train_steps", "2", "--checkpointing_steps", "1",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A pretraining run, and a LoRA fine-tune (merged too) of it loaded by its Hub id from an offline cache."""
    from huggingface_hub import constants

    from gptnas.config import parse_config
    from gptnas.gpt.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("runs")
    base, lora = tmp / "base", tmp / "lora"
    assert train(parse_config(TrainConfig, [*TINY_RUN, "--output_dir", str(base), "--hub_model_id", "org/archgpt-base"])) == 0
    cache = offline_cache(tmp, "org/archgpt-base", base)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        assert train(parse_config(TrainConfig, [
            *TINY_RUN, "--output_dir", str(lora), "--hub_model_id", "org/archgpt-lora",
            "--model_name_or_path", "org/archgpt-base", "--use_lora", "--merge", "--lora_r", "2",
        ])) == 0
    return base, lora


def test_push_uploads_the_model_adapter_merged_model_and_cards_but_no_checkpoint(runs):
    base, lora = runs
    model_files = {"README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                   "tokenizer_config.json"}
    expected = {
        base: model_files | {"metrics.json"},
        lora: {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "metrics.json", *(f"merged/{name}" for name in model_files)},
    }
    for folder, files in expected.items():
        assert (folder / "step_2" / "model.safetensors").is_file() and (folder / "step_2" / "trainer_state.json").is_file()
        api = FakeHubApi()
        url = push_gpt(folder, f"org/{folder.name}", api=api, private=True)
        assert url == f"https://huggingface.co/org/{folder.name}/commit/x" and api.private == {f"org/{folder.name}": True}
        uploaded = api.uploaded[f"org/{folder.name}"]
        assert not [f for f in uploaded if f.startswith(("step_", ".partial_step_"))], "a checkpoint would be uploaded"
        assert uploaded == files  # the model, tokenizer, card, adapter and merged model; no config or logs


def test_the_model_card_is_one_the_hub_reads_with_held_out_results_and_base_model(runs):
    from huggingface_hub import ModelCard

    base, lora = runs
    for folder, library, base_model, load in [
        (base, "transformers", None, 'gptnas.ArchGPT.from_pretrained("org/archgpt-base")'),
        (lora, "peft", "org/archgpt-base", 'gptnas.ArchGPT.from_pretrained("org/archgpt-base", adapter="org/archgpt-lora")'),
        (lora / "merged", "transformers", "org/archgpt-base",
         'AutoModelForCausalLM.from_pretrained("org/archgpt-lora", subfolder="merged")'),
    ]:
        card = ModelCard.load(folder / "README.md")
        data = card.data
        assert (data.library_name, data.base_model, data.license, data.pipeline_tag) == (
            library, base_model, "apache-2.0", "text-generation")
        assert "gptnas" in data.tags and not data.get("datasets")  # the corpus is local files, listed in the text
        metrics = json.loads(((lora if folder.name == "merged" else folder) / "metrics.json").read_text())
        results = {r.metric_type: r.metric_value for r in data.eval_results}
        assert results == {k: metrics[f"eval_{k}"] for k in ("loss", "perplexity", "top1_accuracy", "top5_accuracy")}
        assert {(r.task_type, r.dataset_type) for r in data.eval_results} == {("text-generation", "gptnas-held-out-families")}
        assert "googlenet" in data.eval_results[0].dataset_name
        index = data.to_dict()["model-index"]
        assert index[0]["results"][0]["metrics"][0] == {"type": "loss", "value": metrics["eval_loss"], "name": "held-out loss"}
        assert load in card.text and "AutoModelForCausalLM" in card.text and "ArchGPT.complete" in card.text
        assert "REPO" not in card.text and "finetune_torchvision.jsonl" in card.text and "## Training config" in card.text
    assert "`merged/` holds `org/archgpt-base` with this adapter merged" in (lora / "README.md").read_text()


def test_the_shipped_model_card_parses_with_its_held_out_results():
    from huggingface_hub import ModelCard

    card = ModelCard.load(default_model_dir() / "README.md")
    training = json.loads((default_model_dir() / "gptnas_training.json").read_text())
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    for stage, label in (("condition", "after conditioning"), ("cifar_scale", "after CIFAR-scale training")):
        assert results[f"held-out next-token top-1 ({label})"] == training[stage]["eval_top1_accuracy"]
    assert "data/cifar_pytorchcv.jsonl" in card.text and "pyramidnet" in card.text


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
