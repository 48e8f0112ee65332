"""The shipped ArchGPT's numbers: training throughput, generation speed, held-out accuracy, validity.

    python benchmarks/gpt_numbers.py --out benchmarks/gpt_numbers.md

1. Throughput: train_gpt.py's loop (Accelerate) against a bare PyTorch loop on
   the same model, the same batches, the same optimiser, the same machine, in this one run.
2. Constrained generation of 1,000 complete `cifar` architectures: wall time,
   and its ratio to unconstrained `model.generate` of the same lengths.
3. Next-layer top-1 / top-5 accuracy and perplexity on held-out families.
4. Validity of 1,000 constrained samples per space.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from gptnas.config import from_dict, load_yaml
from gptnas.gpt import data
from gptnas.gpt.loss import held_out_metrics, weighted_lm_loss
from gptnas.gpt.folder import default_model_dir
from gptnas.gpt.model import ArchGPT, new_model
from gptnas.gpt.train import TrainConfig, parameter_groups, train
from gptnas.language.tokens import BOS, PAD
from gptnas.spaces import get_space, space_names


def throughput(config_path: str, steps: int) -> dict:
    """Tokens per second of train_gpt.py vs a bare loop: same model config, batches, optimiser."""
    settings = load_yaml(config_path)
    settings.update(max_train_steps=steps, report_to="none", checkpointing_steps=None, eval_families=[],
                    num_warmup_steps=1, eval_steps=None)
    with tempfile.TemporaryDirectory() as out:
        settings["output_dir"] = out
        config = from_dict(TrainConfig, settings)
        train(config)
        ours = json.loads((Path(out) / "metrics.json").read_text())["train_tokens_per_second"]

    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name)
    torch.manual_seed(config.seed)
    model = new_model(tokenizer, config.n_layer, config.n_head, config.n_embd, config.block_size, config.dropout)
    records = data.tokenize(data.load_records(config.train_files), tokenizer, config.block_size)
    batches = data.LengthGroupedBatches([len(x) for x in records["input_ids"]], config.per_device_train_batch_size, config.seed)
    loader = DataLoader(records, batch_sampler=batches, collate_fn=data.collate(tokenizer.pad_token_id))
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate)
    model.train()
    tokens, done, started = 0, 0, time.perf_counter()
    while done < steps:
        for batch in loader:
            tokens += int(batch["attention_mask"].sum())
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = weighted_lm_loss(logits, batch["labels"], batch["weight"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            if done >= steps:
                break
    bare = tokens / (time.perf_counter() - started)
    return {"train_gpt_tokens_per_s": ours, "bare_loop_tokens_per_s": bare, "ratio": ours / bare, "steps": steps}


def generation_speed(gpt: ArchGPT, n: int) -> dict:
    space = get_space("cifar")
    started = time.perf_counter()
    archs = gpt.complete(space, [""], n=n, seed=0)[0]
    constrained = time.perf_counter() - started
    lengths = [len(space.encode(a).split()) for a in archs]
    # Unconstrained generation of the same lengths: batches of equal length, EOS suppressed.
    started = time.perf_counter()
    by_length: dict[int, int] = {}
    for length in lengths:
        by_length[length] = by_length.get(length, 0) + 1
    bos = torch.tensor([[gpt.vocab[BOS]]], device=gpt.device)
    for length, count in by_length.items():
        for start in range(0, count, 256):
            rows = min(256, count - start)
            gpt.model.generate(
                bos.expand(rows, 1), do_sample=True, max_new_tokens=length + 1, min_new_tokens=length + 1,
                pad_token_id=gpt.vocab[PAD], eos_token_id=None,
            )
    unconstrained = time.perf_counter() - started
    return {"architectures": n, "constrained_s": constrained, "unconstrained_s": unconstrained,
            "ratio": constrained / unconstrained, "mean_tokens": sum(lengths) / n}


def held_out(gpt: ArchGPT, files: list[str], families: list[str]) -> dict:
    _, held = data.split_families(data.load_records(files), families)
    records = data.tokenize(held, gpt.tokenizer, gpt.model.config.n_positions)
    loader = DataLoader(records, batch_size=4, collate_fn=data.collate(gpt.tokenizer.pad_token_id))
    return {"families": families, "architectures": len(records), **held_out_metrics(gpt.model, loader)}


def validity(gpt: ArchGPT, n: int) -> dict:
    out = {}
    for name in space_names():
        space = get_space(name)
        archs = gpt.complete(space, [""], n=n, seed=1)[0]
        valid = sum(space.decode(space.encode(a)) == a and (name != "cifar" or space.is_valid(a)) for a in archs)
        out[name] = valid / n
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/pretrain.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", default="benchmarks/gpt_numbers.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    gpt = ArchGPT.from_pretrained(device="cpu" if not torch.cuda.is_available() else None)
    card = (default_model_dir() / "gptnas_training.json")
    families = json.loads(card.read_text())["eval_families"] if card.exists() else []
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "throughput": throughput(args.config, args.steps),
        "generation": generation_speed(gpt, args.samples),
        "held_out": held_out(gpt, ["data/pretrain_timm.jsonl.gz"], families),
        "validity": validity(gpt, args.samples),
    }
    text = ["# ArchGPT numbers", "", f"`python benchmarks/gpt_numbers.py` on {results['machine']}", "", "```json",
            json.dumps(results, indent=2), "```", ""]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
