"""Online adaptation: LoRA-fine-tune the GPT on the best architectures the search has evaluated.

Only what the search itself evaluated is used (it has already been counted as
queries), weighted by fitness rank, so the GPT drifts towards what works in
this space without ever seeing a benchmark table. Each adaptation trains a
fresh adapter on the base model and saves it in the run directory, where a
resumed run reloads it instead of training again, and where `train_gpt.py`'s
Hub flags can publish it.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from gptnas.gpt import training
from gptnas.gpt.data import collate

log = logging.getLogger(__name__)


def elite(store, top: int) -> tuple[list[str], list[float]]:
    """Encodings of the `top` fittest successful evaluations and rank weights (mean 1)."""
    done = sorted(((e.fitness, enc) for _, _, enc, _, e in store.history() if e.ok), reverse=True)[:top]
    if not done:
        return [], []
    n = len(done)
    weights = [2.0 * (n - i) / (n + 1) for i in range(n)]  # linear in rank, mean 1
    return [enc for _, enc in done], weights


def adapt(gpt, store, out_dir: Path, *, top: int, steps: int, lr: float, seed: int, rank: int = 8) -> bool:
    """Fine-tunes a LoRA adapter on the elite (or loads it from `out_dir`); the GPT then generates with it.

    Returns False when there is nothing to learn from yet."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if not hasattr(gpt, "base_model"):
        gpt.base_model = copy.deepcopy(gpt.model)  # adapters always start from the shipped weights
    base = copy.deepcopy(gpt.base_model)
    if (out_dir / "adapter_model.safetensors").exists():
        model = PeftModel.from_pretrained(base, out_dir)
        log.info("loaded the adapter of %s", out_dir)
    else:
        texts, weights = elite(store, top)
        if not texts:
            return False
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=["c_attn", "c_proj", "c_fc"],
                            task_type="CAUSAL_LM", fan_in_fan_out=True)
        model = get_peft_model(base, config)
        rows = [{"input_ids": gpt.tokenizer(t)["input_ids"] + [gpt.tokenizer.eos_token_id], "weight": w}
                for t, w in zip(texts, weights)]
        batch = {k: v.to(gpt.device) for k, v in collate(gpt.tokenizer.pad_token_id)(rows).items()}
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        model.train()
        for _ in range(steps):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = training.weighted_lm_loss(logits, batch["labels"], batch["weight"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        partial = out_dir.with_name(out_dir.name + ".partial")  # renamed when complete: a kill leaves no half adapter
        model.save_pretrained(partial, safe_serialization=True)
        partial.replace(out_dir)
        log.info("adapted the GPT on %d architectures (final loss %.3f); adapter in %s", len(texts), float(loss.detach()), out_dir)
    gpt.model = model.merge_and_unload().eval()
    return True
