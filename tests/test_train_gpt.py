"""train_gpt.py and gptnas.gpt.train: pretraining, exact resume, LoRA + merge, model cards, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from gptnas.config import parse_config
from gptnas.errors import GptnasError
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
    gpt = ArchGPT.from_pretrained(out, device="cpu")
    assert gpt.complete("nas-bench-201", [""], n=2)[0][0]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\n")
    assert "top1_accuracy" in card and "finetune_torchvision.jsonl" in card
    assert list((out / "train_gpt").rglob("events.out.tfevents.*")), "no TensorBoard events written"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["eval_top1_accuracy"] <= metrics["eval_top5_accuracy"] <= 1


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
    assert "base_model:" in (out / "README.md").read_text()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out).merge_and_unload()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    for (name, a), b in zip(plain.state_dict().items(), merged.state_dict().values()):
        assert (a - b).abs().max() < 1e-6, name
    adapted = ArchGPT.from_pretrained(base, adapter=out, device="cpu")
    assert adapted.complete("cifar", [""], n=1)[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume_from_checkpoint", "nowhere"], "nowhere is not a complete checkpoint"),
        (["--model_name_or_path", "missing_dir/"], "no model folder at missing_dir/"),
        (["--train_files", "missing.jsonl"], "corpus file missing.jsonl does not exist"),
        (["--mixed_precision", "fp8"], "mixed_precision must be no, fp16 or bf16"),
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
