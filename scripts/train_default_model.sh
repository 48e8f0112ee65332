#!/usr/bin/env bash
# The recipe of the ArchGPT shipped in gptnas/default_model (about 80 minutes on 2 CPU cores).
#   bash scripts/train_default_model.sh
# The shipped weights were trained on the corpus as annotated at gptnas commit 96a4ea7 (quarter-decade cost
# tokens); today's files carry eighth-decade cost tokens, so the recipe gives a GPT with those instead
# (`git checkout 96a4ea7 -- data tokenizer` first to repeat the shipped one). The CIFAR-scale stage
# (configs/cifar_scale.yaml) is trained but not shipped: on tuning seeds it lost NAS-Bench-201
# (benchmarks/RESULTS.md, issue 24, c5). Add it as a fourth stage with
#   accelerate launch --num_processes 1 train_gpt.py --config configs/cifar_scale.yaml --model_name_or_path runs/condition
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf runs/pretrain runs/finetune runs/condition
accelerate launch --num_processes 1 train_gpt.py --config configs/pretrain.yaml
accelerate launch --num_processes 1 train_gpt.py --config configs/finetune_lora.yaml --merge
accelerate launch --num_processes 1 train_gpt.py --config configs/condition.yaml --model_name_or_path runs/finetune/merged
python scripts/ship_model.py runs/pretrain runs/finetune runs/condition gptnas/default_model
