"""Copies the ArchGPT taught the conditioning tokens into the package, with a card listing what it saw and scored.

    python scripts/ship_model.py runs/pretrain runs/finetune runs/condition gptnas/default_model
"""

import json
import shutil
import sys
from pathlib import Path

import yaml

from gptnas.gpt.card import write_model_card


def main(pretrain: str, finetune: str, condition: str, target: str) -> None:
    pretrain_dir, finetune_dir, condition_dir, target_dir = Path(pretrain), Path(finetune), Path(condition), Path(target)
    pre_cfg = yaml.safe_load((pretrain_dir / "train_config.yaml").read_text())
    fine_cfg = yaml.safe_load((finetune_dir / "train_config.yaml").read_text())
    cond_cfg = yaml.safe_load((condition_dir / "train_config.yaml").read_text())
    pre_metrics = json.loads((pretrain_dir / "metrics.json").read_text())
    fine_metrics = json.loads((finetune_dir / "metrics.json").read_text())
    cond_metrics = json.loads((condition_dir / "metrics.json").read_text())
    if target_dir.exists():
        shutil.rmtree(target_dir)
    target_dir.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if (condition_dir / name).exists():
            shutil.copy(condition_dir / name, target_dir / name)
    held_out = fine_cfg["eval_families"]
    metrics = {
        "held-out loss (after pretraining)": pre_metrics["eval_loss"],
        "held-out perplexity (after pretraining)": pre_metrics["eval_perplexity"],
        "held-out next-token top-1 (after pretraining)": pre_metrics["eval_top1_accuracy"],
        "held-out next-token top-5 (after pretraining)": pre_metrics["eval_top5_accuracy"],
        "held-out loss (after LoRA fine-tuning)": fine_metrics["eval_loss"],
        "held-out perplexity (after LoRA fine-tuning)": fine_metrics["eval_perplexity"],
        "held-out next-token top-1 (after LoRA fine-tuning)": fine_metrics["eval_top1_accuracy"],
        "held-out next-token top-5 (after LoRA fine-tuning)": fine_metrics["eval_top5_accuracy"],
        "held-out loss (shipped, after conditioning)": cond_metrics["eval_loss"],
        "held-out perplexity (shipped, after conditioning)": cond_metrics["eval_perplexity"],
        "held-out next-token top-1 (shipped, after conditioning)": cond_metrics["eval_top1_accuracy"],
        "held-out next-token top-5 (shipped, after conditioning)": cond_metrics["eval_top5_accuracy"],
    }
    notes = (
        "## How it was made\n\n"
        "`bash scripts/train_default_model.sh`: pretraining on `data/pretrain_timm.jsonl.gz` "
        "(configs/pretrain.yaml), then LoRA fine-tuning on the 36 torchvision networks of GPT-NAS "
        "(`data/finetune_torchvision.jsonl`, configs/finetune_lora.yaml), merged into the weights, then "
        "continued training on the conditioned corpus (configs/condition.yaml: timm, torchvision and the "
        "classic CIFAR designs, each network under its quality token q0..q4 (quintile of its published "
        "accuracy within its source; ImageNet-1k-only weights) and its parameter-count token). The shipped "
        "weights continued the model shipped before conditioning tokens existed (gptnas commit 22675de, "
        "vocabulary extended with `extend_vocabulary`); the script reproduces the recipe on today's corpus.\n\n"
        "It has seen no benchmark table (`gptnas_tables_seen` in config.json is empty): NAS-Bench-Macro, "
        "Channel-Bench-Macro and NAS-Bench-201 results are only ever read by the search. The "
        "leave-space-out GPTs of `python -m gptnas.bench --gpt transfer` continue it on the tables of the "
        "other spaces (gptnas/gpt/transfer.py).\n\n"
        "Quality conditioning learned from ImageNet results does not carry over to the benchmark spaces: "
        "log p(arch | q4) / p(arch) ranks their networks inversely (Kendall tau -0.11 to -0.35, "
        "benchmarks/RESULTS.md); use it on a space only after online conditioning on that space's own results.\n\n"
        "## In search (gptnas benchmark study, seeds 0-29, budget 200)\n\n"
        "gpt-ga with this model (gptnas/bench/study.yaml), mean reported test accuracy at 10 / 100 queries, against "
        "ga without the GPT: NAS-Bench-201 CIFAR-10 93.72 / 94.36 (ga 93.16 / 94.00), CIFAR-100 71.18 / 73.51 "
        "(69.95 / 72.07), both better than ga, regularized evolution and random search at every query count "
        "(paired one-sided Wilcoxon p < 0.01); NAS-Bench-Macro 92.04 / 92.63 (92.43 / 93.04) and Channel-Bench-Macro "
        "MobileNet 90.48 / 90.99 (91.36 / 91.76), worse than all three. Full report: benchmarks/report/report.md."
    )
    write_model_card(
        target_dir, title="ArchGPT (gptnas default model)",
        corpus=sorted(set(pre_cfg["train_files"] + fine_cfg["train_files"] + cond_cfg["train_files"])),
        config={"pretrain": pre_cfg, "finetune": fine_cfg, "condition": cond_cfg}, metrics=metrics,
        held_out_families=held_out, notes=notes,
    )
    (target_dir / "gptnas_training.json").write_text(json.dumps(
        {"eval_families": held_out, "pretrain": pre_metrics, "finetune": fine_metrics,
         "condition": {"config": "configs/condition.yaml", **cond_metrics}}, indent=2))
    size = sum(p.stat().st_size for p in target_dir.iterdir())
    print(f"shipped {target_dir} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(*sys.argv[1:5])
