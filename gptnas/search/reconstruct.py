"""GPT reconstruction (GPT-NAS): rewrite parts of candidates so they follow learned design rules.

Each layer of a candidate is selected with probability `rate` (`unit`
"layer", GPT-NAS), or each segment (block, stage, edge ...) is (`unit`
"segment"); every segment holding a selected layer, or selected itself, is
removed and the GPT writes a new one after the layers before it, under the
space's grammar. By layer, a segment of ten layers is rewritten far more often
than one of a single layer (at rate 0.4, 99 % against 40 %); by segment, the
rate is the share of the network's choices that is rewritten, in every space.
Segments are rewritten left to right, each conditioned on the already
rewritten prefix; with `candidates` > 1 one of several samples is kept: the
most likely rewrite, or (ranking "network") the one that makes the whole
network most likely, so that the segments after it, which a causal GPT does
not see while it writes, count too. A rewrite that breaks a global rule of the
space (too many strided blocks, say) is dropped and the old segment stays. Under cost limits
(`limits`: the search's --max_params / --max_flops, in a space with cost
bounds), a segment is written only with tokens after which the network, with
the segments that follow it as they are, can stay within every limit. Any
other hard limit is checked after the fact (`feasible`: a latency limit, or a
space without cost bounds): a rewrite outside it is dropped like one that breaks
the grammar, so the most likely rewrite within the limits is kept.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

from gptnas.errors import GptnasError
from gptnas.language.budget import Budget, CostBounds, Tail
from gptnas.language.tokens import is_layer


@dataclass
class ReconstructionStats:
    selected: int = 0  # segments chosen for rewriting
    rewritten: int = 0  # ... that the GPT replaced (possibly by the same segment)
    changed: int = 0  # candidates that came out different


def selected_segments(space, arch, rate: float, rng: random.Random, unit: str = "layer") -> list[int]:
    """Indices of the segments with a choice that hold a selected layer (`unit` "layer") or are selected
    themselves (`unit` "segment")."""
    chosen = []
    for index, segment in enumerate(space.segments(arch)):
        if unit == "segment":
            hit = segment.is_choice and rng.random() < rate
        else:
            hit = any(rng.random() < rate for token in segment.tokens if is_layer(token))
        if hit and segment.is_choice:
            chosen.append(index)
    return chosen


def reconstruct(gpt, space, archs: list, rate: float, rng: random.Random, *, seed: int,
                temperature: float = 1.0, top_k: int | None = None, candidates: int = 1, ranking: str = "likelihood",
                condition: list[str] | None = None, limits: list[tuple[CostBounds, int]] = (),
                feasible: Callable[[object], bool] | None = None, unit: str = "layer"):
    """The candidates with their selected segments rewritten by the GPT (sampled under the conditioning
    tokens `condition`, within `limits`: (cost bounds, cap) pairs, and kept only where `feasible`); and what
    happened.

    With several candidates per segment, `ranking` picks one: "likelihood", the rewrite the GPT finds
    most likely given the layers before it; "network", the rewrite whose whole network (under
    `condition`) the GPT finds most likely, the layers after it included; "gain", the network whose
    log-likelihood the online adaptation raised most over the GPT before adaptation (what the search
    learned, with the prior's own preferences divided out; likelihood breaks ties, so it is the rule
    until the first adaptation); "ratio", the network with the highest p(arch | best quality) / p(arch)
    (likelihood breaks ties)."""
    stats = ReconstructionStats()
    plans = [selected_segments(space, arch, rate, rng, unit) for arch in archs]
    stats.selected = sum(len(p) for p in plans)
    current = list(archs)
    generator = torch.Generator(device=gpt.device).manual_seed(seed)
    for round_ in range(max((len(p) for p in plans), default=0)):
        todo = [i for i, plan in enumerate(plans) if len(plan) > round_]
        rows, stops, budgets = [], [], []
        for i in todo:
            segments = space.segments(current[i])
            position = plans[i][round_]
            prefix = [space.tag] + [t for s in segments[:position] for t in s.tokens]
            tail = Tail(position + 1, tuple(s.payload for s in segments[position + 1 :]))  # payloads from the tag
            rows += [prefix] * candidates
            stops += [position + 2] * candidates
            budgets += [[Budget(bounds, 0, cap, tail) for bounds, cap in limits]] * candidates
        sampled = gpt.sample(space, rows, temperature, top_k, generator, stop_after=stops,
                             conditions=[condition or []] * len(rows), budgets=budgets if limits else None)
        options: dict[int, list] = {}
        for n, i in enumerate(todo):
            position = plans[i][round_]
            for s in sampled[n * candidates : (n + 1) * candidates]:
                payload = _segment_payload(space, s.state, position + 1)
                payloads = [seg.payload for seg in space.segments(current[i])]
                payloads[position] = payload
                try:
                    arch = space.assemble(payloads)
                except GptnasError:
                    continue
                if feasible is not None and not feasible(arch):
                    continue
                options.setdefault(i, []).append([s.log_prob, arch])
        if candidates > 1 and ranking in RANKERS:
            _rerank(options, RANKERS[ranking](gpt, space, condition or []))
        for i, choices in options.items():
            current[i] = max(choices, key=lambda o: o[0])[1]
            stats.rewritten += 1
    stats.changed = sum(a != b for a, b in zip(archs, current))
    return current, stats


RANKERS = {  # ranking -> (gpt, space, condition) -> a function of archs giving scores (None: keep the likelihood rule)
    "network": lambda gpt, space, condition: lambda archs: gpt.score_under(space, archs, condition),
    "gain": lambda gpt, space, condition: lambda archs: gpt.adaptation_gain(space, archs),
    "ratio": lambda gpt, space, condition: lambda archs: gpt.quality_ratio(space, archs),
}


def _rerank(options: dict[int, list], scores_of) -> None:
    """Replaces each option's rank by (score, log-likelihood)."""
    flat = [o for choices in options.values() for o in choices]
    scores = scores_of([arch for _, arch in flat])
    if scores is None:
        return
    for option, score in zip(flat, scores):
        option[0] = (score, option[0])


def _segment_payload(space, state, index: int):
    """Payload number `index` (space tag = 0) of a sampled row, stopped or complete."""
    payloads = state.threads[0].payloads
    if len(payloads) > index:
        return payloads[index]
    complete = space.grammar.finish(state)
    return complete[index]
