"""Online adaptation, the search's side: which evaluations the GPT learns from.

Only what the search itself evaluated is used (it has already been counted as
queries), so the GPT drifts towards what works in this space without ever
seeing a benchmark table. Two ways:
- `elite`: the best evaluations, weighted by fitness rank;
- `ranked` (online conditioning): every evaluation, good and bad, under the
  quality token of its rank among this run's evaluations, and once more with no
  token, so that p(arch | q4) / p(arch) tells the best fifth from the rest.
The training, saving and resuming of the adapter: `ArchGPT.adapt` (gptnas/gpt/lora.py).
"""

from __future__ import annotations

from pathlib import Path

from gptnas.language.tokens import quality, quality_levels


def elite(store, top: int) -> tuple[list[str], list[float]]:
    """Encodings of the `top` fittest successful evaluations and rank weights (mean 1)."""
    done = sorted(((e.fitness, enc) for _, _, enc, _, e in store.history() if e.ok), reverse=True)[:top]
    if not done:
        return [], []
    return [enc for _, enc in done], rank_weights(len(done))


def rank_weights(n: int) -> list[float]:
    """Weights of `n` examples, best first: linear in rank, mean 1."""
    return [2.0 * (n - i) / (n + 1) for i in range(n)]


def ranked(store) -> tuple[list[str], list[float]]:
    """Every successful evaluation twice: under the quality token of its fitness rank, and unconditioned."""
    done = [(e.fitness, enc) for _, _, enc, _, e in store.history() if e.ok]
    levels = quality_levels([fitness for fitness, _ in done])
    texts = [f"{quality(level)} {enc}" for level, (_, enc) in zip(levels, done)] + [enc for _, enc in done]
    return texts, [1.0] * len(texts)


def adapt(gpt, store, out_dir: Path, *, data: str, top: int, steps: int, lr: float, seed: int, batch_size: int) -> bool:
    """LoRA-adapts the GPT on the store's evaluations, `elite` or `ranked` (or reloads the adapter saved
    in `out_dir`). Returns False when there is nothing to learn from yet."""
    texts, weights = elite(store, top) if data == "elite" else ranked(store)
    return gpt.adapt(texts, weights, out_dir, steps=steps, lr=lr, seed=seed, batch_size=batch_size)
