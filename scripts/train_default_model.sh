#!/usr/bin/env bash
# Reproduces the recipe of the ArchGPT shipped in gptnas/default_model (about 80 minutes on 2 CPU cores).
#   bash scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf runs/pretrain runs/finetune runs/condition
accelerate launch --num_processes 1 train_gpt.py --config configs/pretrain.yaml
accelerate launch --num_processes 1 train_gpt.py --config configs/finetune_lora.yaml --merge
accelerate launch --num_processes 1 train_gpt.py --config configs/condition.yaml --model_name_or_path runs/finetune/merged
python scripts/ship_model.py runs/pretrain runs/finetune runs/condition gptnas/default_model
