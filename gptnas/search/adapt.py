"""Online adaptation, the search's side: which evaluations the GPT learns from.

Only what the search itself evaluated is used (it has already been counted as
queries), weighted by fitness rank, so the GPT drifts towards what works in
this space without ever seeing a benchmark table. The training, saving and
resuming of the adapter is the GPT's own (`ArchGPT.adapt`).
"""

from __future__ import annotations

from pathlib import Path


def elite(store, top: int) -> tuple[list[str], list[float]]:
    """Encodings of the `top` fittest successful evaluations and rank weights (mean 1)."""
    done = sorted(((e.fitness, enc) for _, _, enc, _, e in store.history() if e.ok), reverse=True)[:top]
    if not done:
        return [], []
    n = len(done)
    weights = [2.0 * (n - i) / (n + 1) for i in range(n)]  # linear in rank, mean 1
    return [enc for _, enc in done], weights


def adapt(gpt, store, out_dir: Path, *, top: int, steps: int, lr: float, seed: int) -> bool:
    """LoRA-adapts the GPT on the store's elite (or reloads the adapter saved in `out_dir`).

    Returns False when there is nothing to learn from yet."""
    texts, weights = elite(store, top)
    return gpt.adapt(texts, weights, out_dir, steps=steps, lr=lr, seed=seed)
