#!/usr/bin/env bash
# Reproduces the ArchGPT shipped in gptnas/default_model (about 30 minutes on 2 CPU cores).
#   bash scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf runs/pretrain runs/finetune
accelerate launch --num_processes 1 train_gpt.py --config configs/pretrain.yaml
accelerate launch --num_processes 1 train_gpt.py --config configs/finetune_lora.yaml --merge
python scripts/ship_model.py runs/pretrain runs/finetune gptnas/default_model
