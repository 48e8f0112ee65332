"""The architecture GPT's loss: its weighted form, held-out metrics, and a full-batch fit.

Shared by the training loop (`gptnas.gpt.train`) and online adaptation (`gptnas.gpt.lora.adapt`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def weighted_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, padding (-100) excluded, each sequence's tokens weighted by `weight`."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    token_loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    token_weight = (labels != -100).float() * weight[:, None]
    return (token_loss * token_weight.flatten()).sum() / token_weight.sum().clamp(min=1e-8)


def fit_batch(model, batch: dict[str, torch.Tensor], steps: int, lr: float, batch_size: int | None = None) -> float:
    """`steps` AdamW updates of the trainable parameters on one weighted batch (or, when it holds more
    than `batch_size` rows, on a random minibatch of it per step, from torch's seeded generator);
    the last step's loss."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    rows = len(batch["input_ids"])
    for _ in range(steps):
        part = batch
        if batch_size is not None and rows > batch_size:
            chosen = torch.randperm(rows)[:batch_size]
            part = {k: v[chosen.to(v.device)] for k, v in batch.items()}
            width = int(part["attention_mask"].sum(1).max())  # drop the columns only padding fills
            part = {k: v[:, :width] if v.dim() == 2 else v for k, v in part.items()}
        logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
        loss = weighted_lm_loss(logits, part["labels"], part["weight"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return float(loss.detach())


@torch.no_grad()
def held_out_metrics(model, dataloader, accelerator=None) -> dict[str, float]:
    """Loss, perplexity and next-token top-1 / top-5 accuracy over every non-padding position."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top-1 hits, top-5 hits, tokens
    for batch in dataloader:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        valid = labels != -100
        token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        top5 = logits.topk(5, dim=-1).indices
        hits1 = (top5[..., 0] == labels) & valid
        hits5 = (top5 == labels[..., None]).any(-1) & valid
        # one row per sequence, so that the examples a multi-process loader repeats to fill its last batch
        # are dropped by gather_for_metrics instead of being counted twice
        rows = torch.stack([token_loss.double().sum(1), hits1.sum(1).double(), hits5.sum(1).double(),
                            valid.sum(1).double()], dim=1)
        if accelerator is not None:
            rows = accelerator.gather_for_metrics(rows)
        totals += rows.sum(0).cpu()
    model.train()
    loss_sum, hits1, hits5, count = totals.tolist()
    loss = loss_sum / max(count, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50)),
        "top1_accuracy": hits1 / max(count, 1),
        "top5_accuracy": hits5 / max(count, 1),
        "tokens": int(count),
    }
