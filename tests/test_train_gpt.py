"""train_gpt.py and gptnas.gpt.train: pretraining, exact resume, LoRA + merge, model cards, bad input,
one run per output_dir."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from gptnas.config import parse_config
from gptnas.errors import GptnasError
from gptnas.files import file_sha256
from gptnas.gpt.model import ArchGPT
from gptnas.gpt.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--train_files", str(ROOT / "data/finetune_torchvision.jsonl"),
    "--eval_families", "googlenet",
    "--tokenizer_name", str(ROOT / "tokenizer"),
    "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "256",
    "--per_device_train_batch_size", "4", "--num_warmup_steps", "1", "--report_to", "none",
]


def run(*args):
    assert train(parse_config(TrainConfig, [*TINY, *map(str, args)])) == 0


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_accelerate_launch_writes_a_loadable_model_with_card_and_tensorboard_logs(tmp_path):
    out = tmp_path / "pretrain"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(ROOT / "train_gpt.py"), *TINY, "--max_train_steps", "3", "--output_dir", str(out),
               "--report_to", "tensorboard"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "***** Running training *****" in result.stderr and f"saved to {out}" in result.stderr
    gpt = ArchGPT.from_pretrained(out, device="cpu")
    assert gpt.complete("nas-bench-201", [""], n=2)[0][0]
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {r.metric_type for r in card.data.eval_results} >= {"top1_accuracy", "top5_accuracy"}
    assert "finetune_torchvision.jsonl" in card.text
    assert f'gptnas.ArchGPT.from_pretrained("{out.as_posix()}")' in card.text  # no Hub id: the folder
    assert list((out / "train_gpt").rglob("events.out.tfevents.*")), "no TensorBoard events written"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["eval_top1_accuracy"] <= metrics["eval_top5_accuracy"] <= 1


def test_a_two_process_run_logs_once(tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "train_gpt.py"), *TINY, "--max_train_steps", "2", "--output_dir", str(out)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout + result.stderr
    assert "[RANK 1] Distributed environment: DistributedType.MULTI_CPU" in log  # two processes trained
    assert log.count("***** Running training *****") == 1 and log.count(f"saved to {out}") == 1
    assert (out / "model.safetensors").is_file()
    # the held-out tokens are counted once, however the loader pads the last batch across processes
    single = tmp_path / "single"
    run("--max_train_steps", 2, "--output_dir", single)
    tokens = lambda d: json.loads((d / "metrics.json").read_text())["eval_tokens"]
    assert tokens(out) == tokens(single) > 0


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    run("--max_train_steps", 6, "--checkpointing_steps", 2, "--output_dir", tmp_path / "straight")
    # A run killed after its step-4 checkpoint leaves what this one leaves after removing the rest;
    # a half-written checkpoint beside it must be ignored.
    run("--max_train_steps", 6, "--checkpointing_steps", 2, "--output_dir", tmp_path / "killed")
    killed = tmp_path / "killed"
    shutil.rmtree(killed / "step_6")
    os.remove(killed / "model.safetensors")
    shutil.copytree(killed / "step_4", killed / ".partial_step_8")
    run("--max_train_steps", 6, "--checkpointing_steps", 2, "--output_dir", killed, "--resume_from_checkpoint", "latest")
    straight, resumed = weights(tmp_path / "straight"), weights(killed)
    assert all((straight[k] == resumed[k]).all() for k in straight)
    loss = lambda d: json.loads((d / "metrics.json").read_text())["train_loss"]
    assert loss(tmp_path / "straight") == loss(killed)


def test_lora_finetune_and_merge_load_with_plain_peft(tmp_path):
    base = tmp_path / "base"
    run("--max_train_steps", 2, "--output_dir", base)
    out = tmp_path / "lora"
    run("--max_train_steps", 2, "--output_dir", out, "--model_name_or_path", base, "--use_lora", "--merge",
        "--lora_r", 2, "--learning_rate", 0.05)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    # A local base is named in the text; only a Hub id may be the card's base_model (the Hub refuses others).
    assert card.data.library_name == "peft" and card.data.base_model is None
    assert f"This is a LoRA adapter for `{base}`." in card.text
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out).merge_and_unload()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    for (name, a), b in zip(plain.state_dict().items(), merged.state_dict().values()):
        assert (a - b).abs().max() < 1e-6, name
    adapted = ArchGPT.from_pretrained(base, adapter=out, device="cpu")
    assert adapted.complete("cifar", [""], n=1)[0]
    assert adapted.source == {
        "name_or_path": str(base), "revision": None, "sha256": file_sha256(base / "model.safetensors"),
        "adapter": str(out), "adapter_revision": None, "adapter_sha256": file_sha256(out / "adapter_model.safetensors"),
    }


def test_an_output_dir_holding_a_run_is_refused_unless_overwritten_and_then_cleared(tmp_path):
    out = tmp_path / "run"
    run("--max_train_steps", 2, "--checkpointing_steps", 1, "--output_dir", out)
    before = file_sha256(out / "model.safetensors")
    with pytest.raises(GptnasError) as error:
        run("--max_train_steps", 1, "--learning_rate", 0.01, "--output_dir", out)
    assert len(str(error.value).splitlines()) == 1
    assert f"output_dir {out} already holds a run" in str(error.value) and "--overwrite_output_dir" in str(error.value)
    assert file_sha256(out / "model.safetensors") == before
    (out / "gptnas_training.json").write_text("{}")  # what scripts/ship_model.py adds
    (out / "notes.txt").write_text("mine")  # not a run's file: kept
    run("--max_train_steps", 1, "--learning_rate", 0.01, "--output_dir", out, "--overwrite_output_dir",
        "--hub_token", "hf_secret_token")
    assert not list(out.glob("step_*")) and not (out / "gptnas_training.json").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert file_sha256(out / "model.safetensors") != before
    assert yaml.safe_load((out / "train_config.yaml").read_text())["learning_rate"] == 0.01
    for name in ("train_config.yaml", "README.md", "config.json"):
        assert "hf_secret_token" not in (out / name).read_text(), f"the Hub token leaked into {name}"


def test_resume_refuses_a_checkpoint_trained_with_another_config_but_may_train_longer(tmp_path):
    out = tmp_path / "run"
    run("--max_train_steps", 2, "--checkpointing_steps", 1, "--output_dir", out)
    assert yaml.safe_load((out / "step_2" / "train_config.yaml").read_text())["max_train_steps"] == 2
    for args, keys in [
        (["--learning_rate", 0.01, "--seed", 3], ["learning_rate (0.001 -> 0.01)", "seed (0 -> 3)"]),
        (["--max_train_steps", 1], ["max_train_steps (2 -> 1)"]),
        (["--lora_r", 4, "--n_embd", 32, "--train_files", ROOT / "tests/data/other.jsonl"],
         ["lora_r", "n_embd", "train_files"]),
    ]:
        with pytest.raises(GptnasError) as error:
            run("--max_train_steps", 2, "--checkpointing_steps", 1, "--output_dir", out,
                "--resume_from_checkpoint", "latest", *args)
        message = str(error.value)
        assert len(message.splitlines()) == 1 and f"cannot resume from {out / 'step_2'}" in message
        assert all(key in message for key in keys), message
    # A named checkpoint is checked too, and bookkeeping may change: a longer run into another folder.
    with pytest.raises(GptnasError, match=r"learning_rate \(0.001 -> 0.5\)"):
        run("--max_train_steps", 3, "--output_dir", tmp_path / "other", "--resume_from_checkpoint", out / "step_1",
            "--learning_rate", 0.5)
    run("--max_train_steps", 3, "--checkpointing_steps", 2, "--eval_steps", 1, "--output_dir", tmp_path / "other",
        "--resume_from_checkpoint", out / "step_1")
    assert (tmp_path / "other" / "step_2" / "trainer_state.json").is_file()


def test_an_empty_or_textless_corpus_is_one_line_error_naming_the_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    gzipped = tmp_path / "empty.jsonl.gz"
    gzipped.write_bytes(gzip.compress(b"\n"))
    textless = tmp_path / "textless.jsonl"
    textless.write_text('{"text": null, "family": "a"}\n{"text": "  ", "family": "b"}\n')
    for corpus, message in [(empty, "is empty"), (gzipped, "is empty"), (textless, "has no usable records")]:
        with pytest.raises(GptnasError) as error:
            run("--max_train_steps", 1, "--output_dir", tmp_path / "x", "--train_files", corpus)
        assert len(str(error.value).splitlines()) == 1 and f"corpus file {corpus} {message}" in str(error.value)
    assert not (tmp_path / "x" / "model.safetensors").exists() and not (tmp_path / "x" / "train_config.yaml").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume_from_checkpoint", "nowhere"], "nowhere is not a complete checkpoint"),
        (["--model_name_or_path", "missing_dir/"], "no model folder at missing_dir/"),
        (["--train_files", "missing.jsonl"], "corpus file missing.jsonl does not exist"),
        (["--mixed_precision", "fp8"], "mixed_precision must be no, fp16 or bf16"),
        (["--max_train_steps", "0"], "max_train_steps must be at least 1, got 0"),
        (["--max_train_steps", "-3"], "max_train_steps must be at least 1, got -3"),
        (["--checkpointing_steps", "0"], "checkpointing_steps must be a number of steps or 'epoch'"),
        (["--eval_steps", "0"], "eval_steps must be at least 1, got 0"),
        (["--num_warmup_steps", "-1"], "num_warmup_steps must be >= 0"),
    ],
)
def test_bad_input_is_one_gptnas_error(tmp_path, args, message):
    with pytest.raises(GptnasError) as error:
        train(parse_config(TrainConfig, [*TINY, "--output_dir", str(tmp_path / "x"), "--max_train_steps", "1", *args]))
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value)


def test_the_command_line_prints_a_mistake_as_one_line_and_exits_2(tmp_path):
    command = [sys.executable, str(ROOT / "train_gpt.py"), *TINY, "--output_dir", str(tmp_path / "x"), "--mixed_precision", "fp8"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: mixed_precision must be no, fp16 or bf16, got 'fp8'"]
