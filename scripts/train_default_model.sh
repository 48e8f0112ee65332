#!/usr/bin/env bash
# Reproduces the recipe of the ArchGPT shipped in gptnas/default_model (about 2 hours on 2 CPU cores).
#   bash scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf runs/pretrain runs/finetune runs/condition runs/cifar_scale runs/shipped_before
cp -r gptnas/default_model runs/shipped_before  # the model this recipe replaces, for the held-out comparison
accelerate launch --num_processes 1 train_gpt.py --config configs/pretrain.yaml
accelerate launch --num_processes 1 train_gpt.py --config configs/finetune_lora.yaml --merge
accelerate launch --num_processes 1 train_gpt.py --config configs/condition.yaml --model_name_or_path runs/finetune/merged
accelerate launch --num_processes 1 train_gpt.py --config configs/cifar_scale.yaml --model_name_or_path runs/condition
python benchmarks/held_out.py --gpt runs/shipped_before --gpt runs/cifar_scale > runs/cifar_scale/held_out.md
python scripts/ship_model.py runs/pretrain runs/finetune runs/condition runs/cifar_scale gptnas/default_model \
    --held_out runs/cifar_scale/held_out.md
