"""Pretrain or LoRA-fine-tune the architecture GPT.

    accelerate launch train_gpt.py --config configs/pretrain.yaml
    accelerate launch train_gpt.py --config configs/finetune_lora.yaml --merge
    python train_gpt.py --config configs/pretrain.yaml --num_train_epochs 1    # flags override the YAML
    python train_gpt.py --config configs/pretrain.yaml --resume_from_checkpoint latest   # same settings only
    python train_gpt.py --config configs/pretrain.yaml --push_to_hub --hub_model_id org/archgpt [--hub_private_repo]

A multi-process run (accelerate launch --num_processes N) logs from its main process only.
--push_to_hub uploads the model (or adapter, and merged/) with its tokenizer, card and metrics.json;
checkpoints (step_*), train_config.yaml and the tracker logs stay local.

An --output_dir holds one run: one that already holds a model or a run is
refused unless --overwrite_output_dir (the old run's files are removed first)
or --resume_from_checkpoint (a checkpoint trained with other settings is refused;
num_train_epochs / max_train_steps may grow).

The loop has the shape (and flag names) of Hugging Face's
run_clm_no_trainer.py: Accelerator, gradient accumulation, warm-up + decay,
save_state checkpoints, --resume_from_checkpoint, trackers, save_pretrained,
--push_to_hub. One architecture per sequence; padding is out of the loss.
The settings are `gptnas.gpt.train.TrainConfig`; the loop is `gptnas.gpt.train.train`.
"""

from __future__ import annotations

import sys

from gptnas.config import parse_config
from gptnas.errors import GptnasError, message
from gptnas.gpt.train import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(TrainConfig, argv, __doc__)
        return train(config)
    except GptnasError as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
