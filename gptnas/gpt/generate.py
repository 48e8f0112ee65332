"""Grammar-constrained sampling from a causal LM: every output is a valid architecture.

Batched and KV-cached: prefixes of different lengths are left-padded, and at
every step the logits of tokens the space's grammar does not allow are set to
-inf before sampling. Masks are cached per allowed-token set, so a step costs
one model call plus a dictionary look-up per sequence.

A condition (quality and cost tokens, gptnas/language/tokens.py) is a prompt:
it sits between `<bos>` and the architecture's tokens, and the grammar starts
after it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from gptnas.errors import GptnasError, quote
from gptnas.language.budget import Budget, allowed_within
from gptnas.language.tokens import BOS, EOS, PAD


class MaskCache:
    """Boolean vocabulary masks of allowed-token sets, built once per set."""

    def __init__(self, vocab: dict[str, int], device: torch.device):
        self.vocab = vocab
        self.device = device
        self._masks: dict[frozenset[str], torch.Tensor] = {}

    def __call__(self, allowed: frozenset[str]) -> torch.Tensor:
        mask = self._masks.get(allowed)
        if mask is None:
            missing = [t for t in allowed if t not in self.vocab]
            if missing:
                raise GptnasError(
                    f"the tokenizer lacks token {missing[0]!r} that the space needs; "
                    "use a tokenizer built with `python -m gptnas.corpus.tokenizer`"
                )
            mask = torch.zeros(len(self.vocab), dtype=torch.bool, device=self.device)
            mask[[self.vocab[t] for t in allowed]] = True
            self._masks[allowed] = mask
        return mask


def check_sampling(temperature, top_k) -> None:
    """GptnasError unless temperature is a finite number >= 0 (0: greedy) and top_k None or >= 1."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
        math.isfinite(temperature) and temperature >= 0
    ):
        raise GptnasError(f"temperature must be a finite number >= 0 (0: greedy), got {quote(temperature)}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise GptnasError(f"top_k must be an integer >= 1 (or None for no limit), got {quote(top_k)}")


def walk(space, tokens: list[str]):
    """The grammar state after `tokens`; GptnasError if the prefix is not in the space."""
    state = space.start()
    for position, token in enumerate(tokens):
        state = space.step(state, token)
        if state is None:
            raise GptnasError(f"prefix token {quote(token)} at position {position} is not allowed in space {space.name}")
    return state


@dataclass
class Sampled:
    tokens: list[str]  # the prefix and what was generated, without EOS
    state: object  # grammar state after `tokens` (after the next segment's first token, when stopped)
    log_prob: float  # of the generated tokens under the grammar-masked distribution


@torch.no_grad()
def sample(
    model,
    vocab: dict[str, int],
    space,
    prefixes: list[list[str]],
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    masks: MaskCache | None = None,
    stop_after: list[int] | None = None,
    conditions: list[list[str]] | None = None,
    budgets: list[list[Budget]] | None = None,
) -> list[Sampled]:
    """Completes each token prefix into a full architecture spelling (prefix included, no EOS).

    With `stop_after[row]` = k, a row stops once its k-th segment is complete (the model
    started the next one, or ended the architecture): one block regenerated in context.
    `conditions[row]` are conditioning tokens put before the row's prefix (not in the output).
    With `budgets[row]`, a list of `Budget`s (gptnas/language/budget.py), a row's tokens are further
    limited to those after which a network within each budget remains.
    """
    check_sampling(temperature, top_k)
    device = next(model.parameters()).device
    masks = masks or MaskCache(vocab, device)
    tokens_of = {i: t for t, i in vocab.items()}
    max_positions = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    states = start_states(space, prefixes)
    outputs = [list(p) for p in prefixes]
    log_probs = [0.0] * len(prefixes)

    prompts = prefixes if conditions is None else [c + p for c, p in zip(conditions, prefixes, strict=True)]
    input_ids, attention, positions = left_padded_prompts(vocab, prompts, device)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True)
    past, logits = out.cache, out.logits[:, -1, :]
    active = list(range(len(prefixes)))
    next_position = positions[:, -1] + 1
    while active:
        if int(next_position.max()) >= max_positions:
            raise GptnasError(f"an architecture outgrew the model's context of {max_positions} tokens")
        allowed = torch.stack([masks(allowed_within(states[row], space.allowed(states[row]), budgets[row])
                                     if budgets else space.allowed(states[row])) for row in active])
        choice, chosen_log_probs = choose(logits[active], allowed, temperature, top_k, generator)
        step_ids = torch.full((len(prefixes),), vocab[PAD], dtype=torch.long, device=device)
        step_ids[active] = choice
        still_active = []
        for row, token_id, lp in zip(active, choice.tolist(), chosen_log_probs):
            log_probs[row] += lp
            token = tokens_of[token_id]
            if token == EOS:
                continue
            states[row] = space.step(states[row], token)
            if stop_after is not None and all(len(t.payloads) >= stop_after[row] for t in states[row].threads):
                continue  # `token` opened the segment after the one asked for: left out (its state holds the payload)
            outputs[row].append(token)
            still_active.append(row)
        active = still_active
        if not active:
            break
        # Finished rows keep feeding padding that nothing attends to, so the batch stays rectangular.
        live = torch.zeros(len(prefixes), dtype=torch.long, device=device)
        live[active] = 1
        attention = torch.cat([attention, live[:, None]], dim=1)
        out = model(
            input_ids=step_ids[:, None],
            attention_mask=attention,
            position_ids=next_position[:, None],
            cache=past,
            use_cache=True,
        )
        past, logits = out.cache, out.logits[:, -1, :]
        next_position = next_position + 1
    return [Sampled(tokens, state, lp) for tokens, state, lp in zip(outputs, states, log_probs)]


def start_states(space, prefixes: list[list[str]]) -> list:
    """The grammar state after each prefix (each distinct prefix walked once)."""
    walked = {}
    for prefix in prefixes:
        if tuple(prefix) not in walked:
            walked[tuple(prefix)] = walk(space, prefix)
    return [walked[tuple(p)] for p in prefixes]


def left_padded_prompts(vocab: dict[str, int], prefixes: list[list[str]], device: torch.device):
    """(input_ids, attention_mask, position_ids) of `<bos> prefix`, left-padded so that every
    row's next token sits in the last column; positions count from each row's BOS."""
    width = 1 + max(len(p) for p in prefixes)
    input_ids = torch.full((len(prefixes), width), vocab[PAD], dtype=torch.long)
    attention = torch.zeros((len(prefixes), width), dtype=torch.long)
    for row, prefix in enumerate(prefixes):
        ids = [vocab[BOS]] + token_ids(vocab, prefix)
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    return input_ids, attention, positions


def choose(logits: torch.Tensor, allowed: torch.Tensor, temperature: float, top_k: int | None,
           generator: torch.Generator | None) -> tuple[torch.Tensor, list[float]]:
    """One masked sampling step: a token per row among the `allowed` ones (greedy at temperature 0),
    and its log-probability under the masked (tempered, top-k) distribution."""
    scores = logits.float().masked_fill(~allowed, float("-inf"))
    if temperature <= 0:
        choice = scores.argmax(-1)
    else:
        scores = scores / temperature
        if top_k:
            kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        choice = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
    chosen_log_probs = scores.log_softmax(-1).gather(1, choice[:, None]).squeeze(1).tolist()
    return choice, chosen_log_probs


def token_ids(vocab: dict[str, int], tokens: list[str]) -> list[int]:
    """The ids of `tokens`; GptnasError naming the first the tokenizer lacks (e.g. conditioning tokens
    given to a model trained before they existed)."""
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise GptnasError(f"the model's tokenizer has no token {quote(missing[0])}; use a model trained with it "
                          "(conditioning tokens need a GPT trained on the conditioned corpus)")
    return [vocab[t] for t in tokens]


@torch.no_grad()
def log_likelihood(model, vocab: dict[str, int], space, sequences: list[list[str]], constrained: bool = True,
                   conditions: list[list[str]] | None = None, batch_size: int = 64) -> list[float]:
    """Log-probability of each complete spelling (and its EOS) under the model, given its condition.

    With `constrained`, each step is renormalised over the tokens the grammar allows, i.e. the
    probability that constrained sampling produces it. `conditions[i]` (conditioning tokens) sit
    between `<bos>` and the spelling; they are given, not scored.
    """
    device = next(model.parameters()).device
    masks = MaskCache(vocab, device)
    conditions = conditions or [[] for _ in sequences]
    scores = []
    for start in range(0, len(sequences), batch_size):
        rows = list(zip(conditions[start : start + batch_size], sequences[start : start + batch_size], strict=True))
        scores += _batch_log_likelihood(model, vocab, space, rows, constrained, masks, device)
    return scores


def _batch_log_likelihood(model, vocab, space, rows, constrained, masks, device) -> list[float]:
    """`log_likelihood` of one right-padded batch of (condition, spelling) rows."""
    ids = [[vocab[BOS]] + token_ids(vocab, c + t) + [vocab[EOS]] for c, t in rows]
    width = max(len(i) for i in ids)
    input_ids = torch.full((len(ids), width), vocab[PAD], dtype=torch.long)
    for row, row_ids in enumerate(ids):
        input_ids[row, : len(row_ids)] = torch.tensor(row_ids)
    input_ids = input_ids.to(device)
    attention = (torch.arange(width)[None, :] < torch.tensor([len(i) for i in ids])[:, None]).long().to(device)
    logits = model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1]).logits.float()
    log_probs = logits.log_softmax(-1)
    scores = []
    for row, (condition, tokens) in enumerate(rows):
        first = len(condition)  # logits at position j predict token j + 1; the spelling starts after the condition
        targets = input_ids[row, first + 1 : first + len(tokens) + 2]
        step_logits = logits[row, first : first + len(tokens) + 1]
        if constrained:
            state, allowed = space.start(), []
            for token in tokens:
                allowed.append(masks(space.allowed(state)))
                state = space.step(state, token)
            allowed.append(masks(space.allowed(state)))
            step_log_probs = step_logits.masked_fill(~torch.stack(allowed), float("-inf")).log_softmax(-1)
        else:
            step_log_probs = log_probs[row, first : first + len(tokens) + 1]
        scores.append(float(step_log_probs.gather(1, targets[:, None]).sum()))
    return scores
