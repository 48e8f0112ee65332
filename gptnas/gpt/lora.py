"""LoRA for the architecture GPT: the adapter configuration that train_gpt.py and online adaptation share,
and online adaptation itself, which fine-tunes a fresh adapter on a search's own evaluations."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from gptnas.files import atomic_path
from gptnas.gpt import generate
from gptnas.gpt.data import collate
from gptnas.gpt.folder import ADAPTER_FILES, merge_adapter, quiet_peft
from gptnas.gpt.inputs import spellings
from gptnas.gpt.loss import fit_batch
from gptnas.spaces import get_space

log = logging.getLogger(__name__)

# The LoRA adapters gptnas trains: train_gpt.py's defaults, and online adaptation.
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.05
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")  # every attention and MLP projection of a GPT-2 block


def lora_config(rank: int = LORA_RANK, alpha: int = LORA_ALPHA, dropout: float = LORA_DROPOUT,
                targets=LORA_TARGETS):
    """A PEFT LoraConfig for the GPT's layers (GPT-2's Conv1D stores its weights transposed: fan_in_fan_out)."""
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                      task_type="CAUSAL_LM", fan_in_fan_out=True)


def adapt(gpt, texts: list[str], weights: list[float], out_dir: str | Path, *, steps: int, lr: float, seed: int,
          batch_size: int | None = None) -> bool:
    """Fine-tunes a fresh LoRA adapter on the weighted encodings `texts` (or loads the one saved in
    `out_dir`, so a resumed run does not train again); the GPT then generates with it merged.

    Every adapter starts from the weights the GPT had before its first adaptation. The adapter is
    saved in `out_dir` whole or not at all. Each step learns from all texts, or from a random
    `batch_size` of them when there are more. Returns False, changing nothing, when there is
    nothing to learn from: no texts and no saved adapter."""
    out_dir = Path(out_dir)
    saved = (out_dir / ADAPTER_FILES[1]).exists()
    if not saved and not texts:
        return False
    if gpt.pristine is None:
        gpt.pristine = copy.deepcopy(gpt.model)
    base = copy.deepcopy(gpt.pristine)
    if saved:
        gpt.model = merge_adapter(base, out_dir).eval()
        log.info("loaded the adapter of %s", out_dir)
        return True
    torch.manual_seed(seed)
    # No dropout (train_gpt.py's default has some): a few full-batch steps on the search's own
    # elite, nothing held out to generalise to; benchmarks/RESULTS.md was measured this way.
    with quiet_peft():
        model = get_peft_model(base, lora_config(dropout=0.0))
    rows = [{"input_ids": gpt.tokenizer(t)["input_ids"] + [gpt.tokenizer.eos_token_id], "weight": w}
            for t, w in zip(texts, weights)]
    batch = {k: v.to(gpt.device) for k, v in collate(gpt.tokenizer.pad_token_id)(rows).items()}
    loss = fit_batch(model, batch, steps, lr, batch_size)
    with atomic_path(out_dir) as partial:  # a kill leaves no half adapter for a resumed run to load
        model.save_pretrained(partial, safe_serialization=True)
    log.info("adapted the GPT on %d architectures (final loss %.3f); adapter in %s", len(texts), loss, out_dir)
    gpt.model = model.merge_and_unload().eval()
    return True


def adaptation_gain(gpt, space, archs) -> list[float] | None:
    """How much the adaptation raised each architecture's constrained log-likelihood (adapted minus
    pristine): what the search taught the GPT, its prior divided out. None before any adaptation."""
    if gpt.pristine is None:
        return None
    space = get_space(space)
    sequences = spellings(space, archs)
    adapted = generate.log_likelihood(gpt.model, gpt.vocab, space, sequences, True)
    before = generate.log_likelihood(gpt.pristine, gpt.vocab, space, sequences, True)
    return [now - then for now, then in zip(adapted, before)]
