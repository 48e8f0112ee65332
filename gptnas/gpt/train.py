"""Training the architecture GPT: pretraining from scratch, or LoRA fine-tuning of a saved one.

`TrainConfig` is what `train_gpt.py` takes as YAML and flags; `train(config)`
runs it. The loop has the shape (and flag names) of Hugging Face's
run_clm_no_trainer.py: Accelerator, gradient accumulation, warm-up + decay,
save_state checkpoints, --resume_from_checkpoint, trackers, save_pretrained,
--push_to_hub. One architecture per sequence; padding is out of the loss.

One output_dir holds one run: a folder that already holds a model or a run is
refused unless --overwrite_output_dir (which clears the old run's files first)
or --resume_from_checkpoint (which continues it, and refuses a checkpoint whose
training config differs in anything that changes the result).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
import yaml
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from peft import get_peft_model
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_scheduler

from gptnas.config import parse_yaml, to_dict
from gptnas.errors import GptnasError, check_limit, one_line, quote
from gptnas.files import write_atomic
from gptnas.gpt import data, provenance
from gptnas.gpt.card import push_gpt, write_model_card
from gptnas.gpt.loss import held_out_metrics, weighted_lm_loss
from gptnas.gpt.folder import (
    ADAPTER_FILES,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_LORA_RANK,
    MAX_POSITIONS,
    MAX_WIDTH,
    check_folder,
    load_pretrained,
    quiet_peft,
    stamp_vocab,
)
from gptnas.gpt.lora import LORA_ALPHA, LORA_DROPOUT, LORA_RANK, LORA_TARGETS, lora_config
from gptnas.gpt.model import extend_vocabulary, new_model
from gptnas.hub import hub_id

logger = get_logger(__name__)  # in a multi-process run, logs from the main process only

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")

# Settings that do not change what is trained: a resumed run may change them. Everything else must match
# the checkpoint, except that a resumed run may train longer (GROWABLE).
BOOKKEEPING = ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "checkpointing_steps", "eval_steps",
               "report_to", "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo", "merge")
GROWABLE = ("num_train_epochs", "max_train_steps")
# The largest model and batches train_gpt.py builds: a saved GPT's limits (gptnas/gpt/folder.py), so that what it
# trains can be loaded again.
MODEL_LIMITS = {"n_layer": MAX_LAYERS, "n_head": MAX_HEADS, "n_embd": MAX_WIDTH, "block_size": MAX_POSITIONS,
                "lora_r": MAX_LORA_RANK, "per_device_train_batch_size": 65_536, "per_device_eval_batch_size": 65_536}
SECRET = ("hub_token",)  # never written to train_config.yaml, the model card or the trackers
# What a run writes into output_dir; RUN_MARKERS are the ones that show a folder already holds a run.
RUN_FILES = ("*.safetensors", "config.json", "generation_config.json", "adapter_config.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "README.md", "metrics.json",
             "gptnas_training.json", "train_config.yaml", "merged", "train_gpt", "step_*", ".partial_step_*")
RUN_MARKERS = ("model.safetensors", "adapter_model.safetensors", "train_config.yaml", "step_*")


@dataclass
class TrainConfig:
    # data
    train_files: list[str] = field(default_factory=lambda: ["data/pretrain_timm.jsonl.gz"], metadata={"help": "corpus JSONL files"})
    eval_files: list[str] | None = field(default=None, metadata={"help": "files to draw held-out families from (default: train_files)"})
    eval_families: list[str] = field(default_factory=list, metadata={"help": "families held out of training, evaluated on"})
    weight_column: str | None = field(default=None, metadata={"help": "per-architecture weight column (e.g. fitness from evolve.py)"})
    tokenizer_name: str = field(default="tokenizer", metadata={"help": "tokenizer folder (ignored when fine-tuning: the base model's is used)"})
    block_size: int = field(default=2048, metadata={"help": "context length; longer architectures are truncated"})
    # model
    model_name_or_path: str | None = field(default=None, metadata={"help": "base model folder or Hub id; none: train from scratch"})
    extend_vocabulary: bool = field(default=False, metadata={"help": "continue training the base model with the tokenizer "
                                    "in tokenizer_name (e.g. one with new conditioning tokens): shared tokens keep their "
                                    "embeddings, new ones start at the mean embedding"})
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    # LoRA
    use_lora: bool = field(default=False, metadata={"help": "fine-tune a LoRA adapter on the base model"})
    lora_r: int = LORA_RANK
    lora_alpha: int = LORA_ALPHA
    lora_dropout: float = LORA_DROPOUT
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    merge: bool = field(default=False, metadata={"help": "also write the base model with the adapter merged (output_dir/merged)"})
    # optimisation
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    num_train_epochs: int = 10
    max_train_steps: int | None = field(default=None, metadata={"help": "overrides num_train_epochs"})
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"
    num_warmup_steps: int = 100
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16"})
    seed: int = 0
    # bookkeeping
    output_dir: str = "runs/gpt"
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace the run in output_dir (its files are removed first)"})
    checkpointing_steps: str | None = field(default=None, metadata={"help": "save state every N steps, or 'epoch'"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "checkpoint folder, or 'latest'"})
    eval_steps: int | None = field(default=None, metadata={"help": "evaluate every N steps (default: every epoch)"})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard, wandb, all or none"})
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_token: str | None = None
    hub_private_repo: bool | None = field(default=None, metadata={"help": "create the Hub repository private (default: the account's default visibility)"})

    def validate(self) -> None:
        positive = ["block_size", "n_layer", "n_head", "n_embd", "per_device_train_batch_size",
                    "per_device_eval_batch_size", "num_train_epochs", "gradient_accumulation_steps", "lora_r",
                    "max_train_steps", "eval_steps"]
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise GptnasError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, limit in MODEL_LIMITS.items():
            check_limit(name, getattr(self, name), limit)
        if self.num_warmup_steps < 0:
            raise GptnasError(f"num_warmup_steps must be >= 0, got {self.num_warmup_steps}")
        if self.learning_rate <= 0 or not 0 <= self.dropout < 1:
            raise GptnasError("learning_rate must be > 0 and dropout in [0, 1)")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise GptnasError(f"unknown lr_scheduler_type {quote(self.lr_scheduler_type)}; valid: {', '.join(SCHEDULERS)}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise GptnasError(f"mixed_precision must be no, fp16 or bf16, got {quote(self.mixed_precision)}")
        if self.checkpointing_steps not in (None, "epoch") and not (
            str(self.checkpointing_steps).isdigit() and int(self.checkpointing_steps) > 0
        ):
            raise GptnasError(f"checkpointing_steps must be a number of steps or 'epoch', got {quote(self.checkpointing_steps)}")
        if self.extend_vocabulary and (self.use_lora or not self.model_name_or_path):
            raise GptnasError("extend_vocabulary continues a base model with full training: set model_name_or_path, not use_lora")
        if self.use_lora and not self.model_name_or_path:
            raise GptnasError("use_lora needs a base model: set model_name_or_path")
        if self.push_to_hub and not self.hub_model_id:
            raise GptnasError("push_to_hub needs hub_model_id (org/name)")
        if self.merge and not self.use_lora:
            raise GptnasError("merge only applies to LoRA fine-tuning (use_lora)")


@dataclass
class Run:
    """What the loop and the saving need, set up from a TrainConfig (model, optimizer ... prepared by Accelerate)."""

    output_dir: Path
    accelerator: Accelerator
    model: torch.nn.Module
    tokenizer: object
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    batches: data.LengthGroupedBatches  # the training batch sampler: its epoch orders the batches
    train_dataloader: DataLoader
    eval_dataloader: DataLoader | None
    updates_per_epoch: int
    max_train_steps: int
    num_epochs: int


def train(config: TrainConfig) -> int:
    """Trains as `config` says; the model (or adapter), tokenizer, card and metrics.json go to output_dir."""
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=config.report_to if config.report_to != "none" else None,
        project_dir=config.output_dir,
    )
    set_up_logging(accelerator)  # first: which process this is decides what it logs
    checkpoint, replace = plan_output_dir(config)
    run = set_up(config, accelerator, replace)
    completed_steps = resume(run, checkpoint)
    metrics, summary = train_loop(config, run, completed_steps)
    save(config, run, metrics, summary)
    return 0


def set_up_logging(accelerator: Accelerator) -> None:
    """As run_clm_no_trainer.py: our messages at INFO from the main process; the libraries' warnings from
    the local main process only (the others report errors)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S",
                        level=logging.INFO)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()


def public_config(config: TrainConfig) -> dict:
    """The config as written to train_config.yaml, the card and the trackers: secrets left out."""
    return {k: v for k, v in to_dict(config).items() if k not in SECRET}


def write_config(config: TrainConfig, folder: Path) -> None:
    write_atomic(folder / "train_config.yaml", yaml.safe_dump(public_config(config), sort_keys=False))


def held_run(folder: Path) -> list[str]:
    """The files and checkpoints in `folder` that show it already holds a model or a run."""
    return sorted(p.name for marker in RUN_MARKERS for p in folder.glob(marker)) if folder.is_dir() else []


def clear_run(folder: Path) -> None:
    """Removes what an earlier run wrote into `folder` (RUN_FILES); anything else is left alone."""
    for pattern in RUN_FILES:
        for path in folder.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def plan_output_dir(config: TrainConfig) -> tuple[Path | None, bool]:
    """(the checkpoint to resume from, whether to clear output_dir first), refusing what would mix two runs:
    a folder that holds a run without --overwrite_output_dir, or a checkpoint trained with another config."""
    output_dir = Path(config.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise GptnasError(f"output_dir {output_dir} is a file; give a folder")
    checkpoint = find_checkpoint(config)
    if checkpoint is not None:
        check_same_run(config, checkpoint)
        if checkpoint.resolve().parent == output_dir.resolve():
            return checkpoint, False  # continuing the run in its own folder
    elif config.resume_from_checkpoint == "latest" and (output_dir / "train_config.yaml").is_file():
        check_same_run(config, output_dir)  # killed before its first checkpoint: the same run starts again
        return None, False
    held = held_run(output_dir)
    if held and not config.overwrite_output_dir:
        raise GptnasError(
            f"output_dir {output_dir} already holds a run ({', '.join(held[:3])}); pass --overwrite_output_dir to "
            "replace it, --resume_from_checkpoint latest to continue it, or choose another output_dir"
        )
    return checkpoint, bool(held)


def set_up(config: TrainConfig, accelerator: Accelerator, replace: bool = False) -> Run:
    """Model, data, optimizer and schedule, in the order that fixes the random draws; with `replace`,
    the previous run's files are removed from output_dir first."""
    output_dir = Path(config.output_dir)
    with_tracking = config.report_to != "none"
    logger.info(accelerator.state, main_process_only=False)
    set_seed(config.seed)

    model, tokenizer = load_base(config)
    stamp_vocab(model, tokenizer)  # config.json records the vocabulary; a mismatched tokenizer is refused
    train_set, eval_set = load_datasets(config, tokenizer, accelerator)
    # Only now that the inputs are known good: a mistake leaves the folder (and the run it holds) as it was.
    if accelerator.is_main_process:
        if replace:
            logger.info("--overwrite_output_dir: removing the previous run from %s", output_dir)
            clear_run(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_config(config, output_dir)
    accelerator.wait_for_everyone()
    if config.use_lora:
        with quiet_peft():
            model = get_peft_model(model, lora_config(config.lora_r, config.lora_alpha, config.lora_dropout,
                                                      config.lora_target_modules))
        trainable, total = model.get_nb_trainable_parameters()
        logger.info("LoRA: %d trainable parameters of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    collate = data.collate(tokenizer.pad_token_id)
    batches = data.LengthGroupedBatches([len(x) for x in train_set["input_ids"]], config.per_device_train_batch_size, config.seed)
    train_dataloader = DataLoader(train_set, batch_sampler=batches, collate_fn=collate)
    eval_dataloader = None
    if eval_set is not None:
        eval_batches = data.LengthGroupedBatches([len(x) for x in eval_set["input_ids"]], config.per_device_eval_batch_size, 0)
        eval_dataloader = DataLoader(eval_set, batch_sampler=eval_batches, collate_fn=collate)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate)

    # The step arithmetic: a step is one optimizer update, an epoch one pass over the batches.
    updates_per_epoch = math.ceil(len(batches) / accelerator.num_processes / config.gradient_accumulation_steps)
    max_train_steps = config.max_train_steps
    if max_train_steps is None:
        max_train_steps = config.num_train_epochs * updates_per_epoch
    num_epochs = math.ceil(max_train_steps / updates_per_epoch)
    total_batch_size = config.per_device_train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps

    lr_scheduler = get_scheduler(
        config.lr_scheduler_type, optimizer=optimizer,
        num_warmup_steps=min(config.num_warmup_steps, max_train_steps // 2) * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(model, optimizer, train_dataloader, lr_scheduler)
    if eval_dataloader is not None:
        eval_dataloader = accelerator.prepare(eval_dataloader)
    if with_tracking:
        accelerator.init_trackers("train_gpt", {k: str(v) for k, v in public_config(config).items()})

    logger.info("***** Running training *****")
    logger.info("  Num examples = %d (held out: %d)", len(train_set), len(eval_set or []))
    logger.info("  Num epochs = %d", num_epochs)
    logger.info("  Instantaneous batch size per device = %d", config.per_device_train_batch_size)
    logger.info("  Total train batch size (w. parallel, distributed & accumulation) = %d", total_batch_size)
    logger.info("  Gradient accumulation steps = %d", config.gradient_accumulation_steps)
    logger.info("  Total optimization steps = %d", max_train_steps)
    return Run(output_dir, accelerator, model, tokenizer, optimizer, lr_scheduler, batches, train_dataloader, eval_dataloader,
               updates_per_epoch, max_train_steps, num_epochs)


def load_base(config: TrainConfig):
    """(model, tokenizer): a fresh GPT from config, or the base model and its own tokenizer."""
    if config.model_name_or_path is not None and not config.extend_vocabulary:
        return load_pretrained(config.model_name_or_path)
    if not Path(config.tokenizer_name).is_dir():
        raise GptnasError(f"tokenizer folder {config.tokenizer_name} does not exist; build it with `python -m gptnas.corpus.tokenizer`")
    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name)
    if config.extend_vocabulary:
        model, old_tokenizer = load_pretrained(config.model_name_or_path)
        return extend_vocabulary(model, old_tokenizer, tokenizer), tokenizer
    model = new_model(tokenizer, config.n_layer, config.n_head, config.n_embd, config.block_size, config.dropout)
    return model, tokenizer


def load_datasets(config: TrainConfig, tokenizer, accelerator: Accelerator):
    """(training set, held-out set or None), tokenized; the held-out families never reach training."""
    records = data.load_records(config.train_files)
    train_records, _ = data.split_families(records, config.eval_families)
    eval_pool = data.load_records(config.eval_files) if config.eval_files else records
    _, eval_records = data.split_families(eval_pool, config.eval_families)
    if len(train_records) == 0:
        raise GptnasError("no training architectures left after holding out eval_families")
    with accelerator.main_process_first():
        train_set = data.tokenize(train_records, tokenizer, config.block_size, config.weight_column)
        eval_set = data.tokenize(eval_records, tokenizer, config.block_size) if len(eval_records) else None
    return train_set, eval_set


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups by nanoGPT's rule: matrices and embeddings (dim >= 2) decay; biases and norm gains do not."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]


def checkpoint_step(path: Path) -> int:
    return int(json.loads((path / "trainer_state.json").read_text())["completed_steps"])


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (a folder is complete once its trainer_state.json exists)."""
    done = [p for p in output_dir.glob("step_*") if (p / "trainer_state.json").is_file()]
    return max(done, key=checkpoint_step, default=None)


def save_checkpoint(config: TrainConfig, accelerator: Accelerator, output_dir: Path, completed_steps: int) -> None:
    """save_state (and the training config, to check a resume against) into a temporary folder, renamed
    when complete: a kill leaves the previous one usable."""
    final = output_dir / f"step_{completed_steps}"
    partial = output_dir / f".partial_step_{completed_steps}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        write_config(config, partial)
        (partial / "trainer_state.json").write_text(json.dumps({"completed_steps": completed_steps}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    accelerator.wait_for_everyone()


def find_checkpoint(config: TrainConfig) -> Path | None:
    """The checkpoint --resume_from_checkpoint names (None: not resuming, or 'latest' found none yet)."""
    if not config.resume_from_checkpoint:
        return None
    output_dir = Path(config.output_dir)
    if config.resume_from_checkpoint == "latest":
        path = latest_checkpoint(output_dir) if output_dir.is_dir() else None
        if path is None:
            logger.info("no checkpoint in %s yet: starting from scratch", output_dir)
        return path
    path = Path(config.resume_from_checkpoint)
    if not (path / "trainer_state.json").is_file():
        raise GptnasError(f"{path} is not a complete checkpoint (no trainer_state.json); pick another or 'latest'")
    return path


def config_differences(saved: dict, config: TrainConfig) -> list[str]:
    """`key (saved -> now)` for each setting that changes the result; settings the saved config
    predates count at their defaults."""
    defaults = to_dict(TrainConfig())
    current = to_dict(config)
    both_capped = saved.get("max_train_steps") is not None and current["max_train_steps"] is not None
    differences = []
    for key, now in current.items():
        then = saved.get(key, defaults[key])
        if key in BOOKKEEPING or then == now:
            continue
        if key in GROWABLE and (
            (then is not None and now is not None and now > then) or (key == "num_train_epochs" and both_capped)
        ):
            continue  # training longer (epochs do not count once max_train_steps is set)
        differences.append(f"{key} ({then!r} -> {now!r})")
    return differences


def check_same_run(config: TrainConfig, folder: Path) -> None:
    """GptnasError unless the run saved in `folder` (a checkpoint, or a run folder) was trained with a config
    that gives the same result. A checkpoint that predates saving its config is checked against its run's."""
    saved_path = next((f / "train_config.yaml" for f in (folder, folder.parent) if (f / "train_config.yaml").is_file()), None)
    if saved_path is None:
        logger.warning("%s records no training config: cannot check that it was trained with this one", folder)
        return
    try:
        saved = parse_yaml(saved_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise GptnasError(f"{saved_path} is unreadable ({one_line(error)}); resume from another checkpoint") from None
    if not isinstance(saved, dict):
        raise GptnasError(f"{saved_path} is not a training config; resume from another checkpoint")
    differences = config_differences(saved, config)
    if differences:
        raise GptnasError(
            f"cannot resume from {folder}: it was trained with another config ({'; '.join(differences)}); "
            "resume with the same settings, or start a new run in another output_dir"
        )


def resume(run: Run, path: Path | None) -> int:
    """Loads the checkpoint `path` (see `find_checkpoint`); the steps it had completed (0 if none)."""
    if path is None:
        return 0
    try:
        run.accelerator.load_state(str(path))
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise GptnasError(f"checkpoint {path} is unreadable: {one_line(error)}") from None
    completed_steps = checkpoint_step(path)
    logger.info("resumed from %s at step %d", path, completed_steps)
    return completed_steps


def evaluate(config: TrainConfig, run: Run, completed_steps: int) -> dict[str, float]:
    """Held-out metrics, logged and sent to the trackers ({} without held-out families)."""
    if run.eval_dataloader is None:
        return {}
    metrics = held_out_metrics(run.model, run.eval_dataloader, run.accelerator)
    logger.info("step %d: %s", completed_steps, {k: round(v, 4) for k, v in metrics.items()})
    if config.report_to != "none":
        run.accelerator.log({f"eval_{k}": v for k, v in metrics.items()}, step=completed_steps)
    return metrics


def train_loop(config: TrainConfig, run: Run, completed_steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Trains from `completed_steps` to max_train_steps; (the last held-out metrics, the training summary)."""
    accelerator, model = run.accelerator, run.model
    with_tracking = config.report_to != "none"
    starting_epoch = completed_steps // run.updates_per_epoch
    resume_batches = (completed_steps % run.updates_per_epoch) * config.gradient_accumulation_steps
    checkpoint_every = int(config.checkpointing_steps) if str(config.checkpointing_steps).isdigit() else None
    progress = tqdm(range(run.max_train_steps), initial=completed_steps, disable=not accelerator.is_local_main_process, desc="train")
    metrics: dict[str, float] = {}
    last_loss = float("nan")
    train_tokens, train_started = 0, time.perf_counter()
    model.train()
    for epoch in range(starting_epoch, run.num_epochs):
        run.batches.set_epoch(epoch)
        loader = run.train_dataloader
        if epoch == starting_epoch and resume_batches:
            loader = accelerator.skip_first_batches(run.train_dataloader, resume_batches)
        for batch in loader:
            # Dropout noise is a function of the step, so a resumed run draws exactly the same.
            set_seed(config.seed * 1_000_003 + completed_steps)
            train_tokens += int(batch["attention_mask"].sum())
            with accelerator.accumulate(model):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = weighted_lm_loss(logits, batch["labels"], batch["weight"])
                accelerator.backward(loss)
                run.optimizer.step()
                run.lr_scheduler.step()
                run.optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            last_loss = float(accelerator.reduce(loss.detach(), reduction="mean"))
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.4f}")
            if with_tracking:
                accelerator.log({"train_loss": last_loss, "lr": run.lr_scheduler.get_last_lr()[0]}, step=completed_steps)
            if config.eval_steps and completed_steps % config.eval_steps == 0:
                metrics = evaluate(config, run, completed_steps)
            if checkpoint_every and completed_steps % checkpoint_every == 0:
                save_checkpoint(config, accelerator, run.output_dir, completed_steps)
            if completed_steps >= run.max_train_steps:
                break
        if config.checkpointing_steps == "epoch":
            save_checkpoint(config, accelerator, run.output_dir, completed_steps)
        if not config.eval_steps:
            metrics = evaluate(config, run, completed_steps)
        if completed_steps >= run.max_train_steps:
            break
    train_runtime = time.perf_counter() - train_started
    if config.eval_steps and completed_steps % config.eval_steps:
        metrics = evaluate(config, run, completed_steps)
    if with_tracking:
        accelerator.end_training()
    summary = {
        "train_loss": last_loss,
        "train_runtime": train_runtime,  # seconds in the training loop, this run (evaluation included)
        "train_tokens_per_second": train_tokens * accelerator.num_processes / train_runtime,
    }
    return metrics, summary


def record_tables_seen(model, train_files: list[str]) -> None:
    """The model's config lists every benchmark table it (or its base) was trained on, so that no search
    uses it on a space whose table it saw (gptnas/gpt/provenance.py)."""
    seen = sorted(set(provenance.tables_seen(model)) | provenance.corpus_tables(train_files))
    setattr(model.config, provenance.TABLES_KEY, seen)


def save(config: TrainConfig, run: Run, metrics: dict[str, float], summary: dict[str, float]) -> None:
    """metrics.json, the model (or adapter, and merged model) with its tokenizer and card; then the Hub."""
    accelerator, output_dir = run.accelerator, run.output_dir
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    final = {**summary, **{f"eval_{k}": v for k, v in metrics.items()}}
    (output_dir / "metrics.json").write_text(json.dumps(final, indent=2))
    unwrapped = accelerator.unwrap_model(run.model)
    record_tables_seen(unwrapped, config.train_files)
    unwrapped.save_pretrained(output_dir, safe_serialization=True)
    run.tokenizer.save_pretrained(output_dir)
    base_model = config.model_name_or_path if config.use_lora else None
    card = dict(corpus=config.train_files, config=public_config(config), metrics=metrics,
                held_out_families=config.eval_families, base_model=base_model, repo_id=config.hub_model_id)
    if config.merge:  # before the adapter's card, which points to it
        merged = output_dir / "merged"
        unwrapped.merge_and_unload().save_pretrained(merged, safe_serialization=True)
        run.tokenizer.save_pretrained(merged)
        write_model_card(merged, title="ArchGPT (LoRA merged)", subfolder="merged", **card)
    write_model_card(output_dir, title="ArchGPT LoRA adapter" if config.use_lora else "ArchGPT",
                         adapter=config.use_lora, **card)
    if config.use_lora:
        check_folder(output_dir, ADAPTER_FILES)
        if hub_id(base_model) is None:
            logger.warning("base_model left out of the card's metadata: %s is a local folder, not a Hub id", base_model)
    logger.info("saved to %s; final metrics %s", output_dir, final)
    if config.push_to_hub:
        push_gpt(output_dir, config.hub_model_id, token=config.hub_token, private=config.hub_private_repo)
