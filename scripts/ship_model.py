"""Copies the ArchGPT of the last training stage into the package, with a card listing what each stage saw and scored.

    python scripts/ship_model.py runs/pretrain runs/finetune runs/condition runs/cifar_scale gptnas/default_model \
        [--held_out runs/cifar_scale/held_out.md]

A stage is named by its run folder (`pretrain`, `finetune`, `condition`, `cifar_scale`). Shipping only
the stages trained on top of an earlier shipped model, `--earlier` names that model's
gptnas_training.json, whose stages' held-out numbers the card keeps. `--held_out` is the
family-by-family table of `benchmarks/held_out.py` (the model shipped before against this one), put
into the card as it is.
"""

import argparse
import json
import shutil
from pathlib import Path

import yaml

from gptnas.gpt.card import write_model_card

# run folder name -> how the card names the model after that stage, in training order
STAGES = {"pretrain": "after pretraining", "finetune": "after LoRA fine-tuning", "condition": "after conditioning",
          "cifar_scale": "after CIFAR-scale training"}
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

# what each stage trains on, for the card
RECIPES = {
    "pretrain": "pretraining on the timm networks (`data/pretrain_timm.jsonl.gz`, configs/pretrain.yaml)",
    "finetune": "LoRA fine-tuning on the 36 torchvision networks of GPT-NAS (configs/finetune_lora.yaml), merged "
                "into the weights",
    "condition": "continued training on the conditioned corpus (configs/condition.yaml: each network under its "
                 "quality token q0..q4, the quintile of its published accuracy within its source, and its "
                 "parameter-count token)",
    "cifar_scale": "CIFAR-scale training (configs/cifar_scale.yaml): pytorchcv's CIFAR-10, CIFAR-100 and SVHN "
                   "networks under their dataset's quality token (`data/PYTORCHCV.md`), the classic CIFAR designs "
                   "and the ImageNet networks again, vocabulary extended",
}
NOTES = (
    "It has seen no benchmark table (`gptnas_tables_seen` in config.json is empty): NAS-Bench-Macro, "
    "Channel-Bench-Macro and NAS-Bench-201 results are only ever read by the search. The leave-space-out GPTs "
    "of `python -m gptnas.bench --gpt transfer` continue it on the tables of the other spaces "
    "(gptnas/gpt/transfer.py). What it knows of the benchmark spaces before and during a search is measured "
    "in benchmarks/RESULTS.md (`benchmarks/gpt_prior.py`, the study); README gives the current numbers.\n"
)


def held_out_metrics(results: dict[str, dict]) -> dict[str, float]:
    metrics = {}
    for stage, result in results.items():
        for key, label in (("eval_loss", "loss"), ("eval_perplexity", "perplexity"),
                           ("eval_top1_accuracy", "next-token top-1"), ("eval_top5_accuracy", "next-token top-5")):
            metrics[f"held-out {label} ({STAGES[stage]})"] = result[key]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="the run folders of the stages, in training order")
    parser.add_argument("target", type=Path)
    parser.add_argument("--earlier", type=Path, help="gptnas_training.json of the shipped model the first stage continued")
    parser.add_argument("--held_out", type=Path, help="benchmarks/held_out.py's table, before and after")
    args = parser.parse_args()
    unknown = [run.name for run in args.runs if run.name not in STAGES]
    if unknown:
        parser.error(f"unknown stage {unknown[0]}; the run folders are named {', '.join(STAGES)}")
    configs = {run.name: yaml.safe_load((run / "train_config.yaml").read_text()) for run in args.runs}
    results = json.loads(args.earlier.read_text()) if args.earlier else {}
    results = {stage: result for stage, result in results.items() if stage in STAGES and stage not in configs}
    results.update({run.name: json.loads((run / "metrics.json").read_text()) for run in args.runs})
    last = args.runs[-1]
    if args.target.exists():
        shutil.rmtree(args.target)
    args.target.mkdir(parents=True)
    for name in MODEL_FILES:
        if (last / name).exists():
            shutil.copy(last / name, args.target / name)
    stages = "; then ".join(RECIPES[stage] for stage in results)  # in training order, the earlier model's first
    notes = f"## How it was made\n\n`bash scripts/train_default_model.sh`: {stages}.\n\n{NOTES}"
    if args.held_out:
        notes += ("\n## Held-out families, family by family\n\n`python benchmarks/held_out.py`: next-token loss / "
                  "top-1 over the layer tokens of each held-out family, the model shipped before against this one "
                  "(the CIFAR-scale stage also holds out pyramidnet, a CIFAR family, so its summary numbers above "
                  "are over a larger set than the earlier stages').\n\n" + args.held_out.read_text())
    write_model_card(
        args.target, title="ArchGPT (gptnas default model)",
        corpus=sorted({f for config in configs.values() for f in config["train_files"]}),
        config=configs, metrics=held_out_metrics(results),
        held_out_families=configs[last.name]["eval_families"], notes=notes,
    )
    summary = {"eval_families": configs[last.name]["eval_families"], **results}
    (args.target / "gptnas_training.json").write_text(json.dumps(summary, indent=2))
    size = sum(p.stat().st_size for p in args.target.iterdir())
    print(f"shipped {args.target} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
