"""Copies the merged fine-tuned ArchGPT into the package, with a card listing what it saw and scored.

    python scripts/ship_model.py runs/pretrain runs/finetune gptnas/default_model
"""

import json
import shutil
import sys
from pathlib import Path

import yaml

from gptnas.gpt.hub import write_model_card


def main(pretrain: str, finetune: str, target: str) -> None:
    pretrain_dir, finetune_dir, target_dir = Path(pretrain), Path(finetune), Path(target)
    pre_cfg = yaml.safe_load((pretrain_dir / "train_config.yaml").read_text())
    fine_cfg = yaml.safe_load((finetune_dir / "train_config.yaml").read_text())
    pre_metrics = json.loads((pretrain_dir / "metrics.json").read_text())
    fine_metrics = json.loads((finetune_dir / "metrics.json").read_text())
    if target_dir.exists():
        shutil.rmtree(target_dir)
    target_dir.mkdir(parents=True)
    merged = finetune_dir / "merged"
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if (merged / name).exists():
            shutil.copy(merged / name, target_dir / name)
    held_out = fine_cfg["eval_families"]
    metrics = {
        "held-out loss (after pretraining)": pre_metrics["eval_loss"],
        "held-out perplexity (after pretraining)": pre_metrics["eval_perplexity"],
        "held-out next-token top-1 (after pretraining)": pre_metrics["eval_top1_accuracy"],
        "held-out next-token top-5 (after pretraining)": pre_metrics["eval_top5_accuracy"],
        "held-out loss (shipped, after LoRA fine-tuning)": fine_metrics["eval_loss"],
        "held-out perplexity (shipped)": fine_metrics["eval_perplexity"],
        "held-out next-token top-1 (shipped)": fine_metrics["eval_top1_accuracy"],
        "held-out next-token top-5 (shipped)": fine_metrics["eval_top5_accuracy"],
    }
    notes = (
        "## How it was made\n\n"
        "`bash scripts/train_default_model.sh`: pretraining on `data/pretrain_timm.jsonl.gz` "
        "(configs/pretrain.yaml), then LoRA fine-tuning on the 36 torchvision networks of GPT-NAS "
        "(`data/finetune_torchvision.jsonl`, configs/finetune_lora.yaml), merged into the weights.\n\n"
        "It has seen no benchmark accuracies and no search-space samples: NAS-Bench-Macro, "
        "Channel-Bench-Macro and NAS-Bench-201 results are only ever read by the search."
    )
    write_model_card(
        target_dir, title="ArchGPT (gptnas default model)",
        corpus=pre_cfg["train_files"] + fine_cfg["train_files"],
        config={"pretrain": pre_cfg, "finetune": fine_cfg}, metrics=metrics,
        held_out_families=held_out, notes=notes,
    )
    (target_dir / "gptnas_training.json").write_text(json.dumps(
        {"eval_families": held_out, "pretrain": pre_metrics, "finetune": fine_metrics}, indent=2))
    size = sum(p.stat().st_size for p in target_dir.iterdir())
    print(f"shipped {target_dir} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
