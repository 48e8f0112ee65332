"""ArchGPT: the architecture GPT, its weights and generation.

What it wraps is a plain Hugging Face causal LM and tokenizer, so a published
model also loads with `AutoModelForCausalLM` / `AutoTokenizer` (and an adapter
with `peft.PeftModel`), with no code of ours and no `trust_remote_code`. It
generates under a space's grammar and scores. Where its folder comes from and how
it is checked: gptnas/gpt/folder.py; online LoRA adaptation: gptnas/gpt/lora.py;
the checks of what users hand it: gptnas/gpt/inputs.py.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gptnas.errors import GptnasError, check_limit, quote
from gptnas.files import file_sha256
from gptnas.gpt import generate
from gptnas.gpt.folder import (
    ADAPTER_FILES,
    GPT_FILES,
    SHIPPED_NAME,
    check_vocab,
    default_model_dir,
    gpt_folder,
    joined_sha256,
    load_pretrained,
    merge_adapter,
    snapshot_revision,
    stamp_vocab,
)
from gptnas.gpt import lora
from gptnas.gpt.inputs import check_condition, check_prefixes, check_reachable, is_int, lower_cost, spellings
from gptnas.language.budget import Budget
from gptnas.language.tokens import BOS, EOS, PAD, QUALITY_LEVELS
from gptnas.spaces import get_space

log = logging.getLogger(__name__)

MAX_COMPLETIONS = 100_000  # architectures one complete() call draws: each is held in memory until it returns
MAX_REDRAWS = 20  # rounds of drawing again the samples above max_params
DRAFTS = 4  # drafts per sample under max_params in a space with parameter bounds, the likeliest kept
FLOOR_SHARE = 0.75  # ... each with at least this share of max_params (one cost bucket, x1.33, below it)
MAX_DRAFTS = 1_000


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def new_model(tokenizer, n_layer=4, n_head=4, n_embd=128, n_positions=2048, dropout=0.1) -> GPT2LMHeadModel:
    """A GPT-2-style causal LM sized for the architecture language (GPT-NAS: 4 layers, 4 heads)."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
    )
    model = GPT2LMHeadModel(config)
    stamp_vocab(model, tokenizer)
    return model


def extend_vocabulary(model, old_tokenizer, new_tokenizer):
    """`model` re-indexed for `new_tokenizer`: each token both vocabularies share keeps its embedding
    (and, tied to it, its output row); tokens only the new one are drawn around the mean embedding with
    the old embeddings' spread per dimension (seeded), so that new tokens start distinct."""
    old_vocab, new_vocab = old_tokenizer.get_vocab(), new_tokenizer.get_vocab()
    old = model.get_input_embeddings().weight.detach()
    noise = torch.randn(len(new_vocab), old.shape[1], generator=torch.Generator().manual_seed(0))
    rows = old.mean(0, keepdim=True) + noise * old.std(0, keepdim=True)
    shared = [(new_id, old_vocab[token]) for token, new_id in new_vocab.items() if token in old_vocab]
    new_ids, old_ids = zip(*shared)
    rows[list(new_ids)] = old[list(old_ids)]
    model.resize_token_embeddings(len(new_vocab), mean_resizing=False)
    model.get_input_embeddings().weight.data.copy_(rows)
    model.tie_weights()
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.config, key, new_vocab[getattr(old_tokenizer, key.removesuffix("_id"))])
    model.config.vocab_size = len(new_vocab)
    stamp_vocab(model, new_tokenizer)
    log.info("extended the vocabulary from %d to %d tokens (%d shared)", len(old_vocab), len(new_vocab), len(shared))
    return model


class ArchGPT:
    """A causal LM over the architecture language, with grammar-constrained generation.

    `source` says which weights these are, for a run to record (None when built from objects):
    `{"name_or_path", "revision", "sha256", "adapter", "adapter_revision", "adapter_sha256"}`.
    `revision` is the Hub commit a Hub id resolved to (None for a local folder, and for the model
    shipped in the package, named "gptnas/default_model"); `sha256` is that of the model.safetensors
    loaded (`adapter_sha256`: of adapter_model.safetensors); the adapter keys are None without one.
    """

    def __init__(self, model, tokenizer, device: torch.device | str | None = None, source: dict | None = None):
        check_vocab(model, tokenizer)
        self.model = model.to(device or default_device()).eval()
        self.tokenizer = tokenizer
        self.source = source
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self._masks = generate.MaskCache(self.vocab, self.device)
        self.pristine = None  # the weights before the first LoRA adaptation (gptnas/gpt/lora.py), once adapted

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def weights_sha256(self) -> str | None:
        """The fingerprint of the weights loaded, as `gptnas.gpt.folder.weights_sha256` gives it for a folder;
        None when built from objects."""
        return None if self.source is None else joined_sha256(self.source["sha256"], self.source["adapter_sha256"])

    # ------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        adapter: str | Path | None = None,
        revision: str | None = None,
        device: torch.device | str | None = None,
    ) -> "ArchGPT":
        """Loads a folder or Hub id (the shipped default model when None), plus an optional LoRA adapter;
        `source` records what was loaded (Hub ids pinned to the commit they resolved to)."""
        path = gpt_folder(default_model_dir() if name_or_path is None else name_or_path, revision)
        model, tokenizer = load_pretrained(path)
        shipped = path.resolve() == default_model_dir().resolve()
        source = {
            "name_or_path": SHIPPED_NAME if shipped else str(name_or_path),
            "revision": None if shipped else snapshot_revision(path),
            "sha256": file_sha256(path / GPT_FILES[1]),
            "adapter": None, "adapter_revision": None, "adapter_sha256": None,
        }
        if adapter is not None:
            adapter_path = gpt_folder(adapter, adapter=True)
            model = merge_adapter(model, adapter_path)
            source.update(adapter=str(adapter), adapter_revision=snapshot_revision(adapter_path),
                          adapter_sha256=file_sha256(adapter_path / ADAPTER_FILES[1]))
        return cls(model, tokenizer, device, source)

    def save_pretrained(self, path: str | Path) -> None:
        stamp_vocab(self.model, self.tokenizer)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def check_space(self, space) -> None:
        """GptnasError naming the tokens of `space` (its tag, its layers) that this GPT's tokenizer lacks: it
        could not write every network of the space."""
        space = get_space(space)
        missing = sorted((space.vocabulary() | {space.tag}) - set(self.vocab))
        if missing:
            raise GptnasError(f"space {space.name} writes {len(missing)} token(s) this GPT never learned "
                              f"({', '.join(missing[:5])}); give the space a tag, widths and kernels the GPT knows "
                              "(README, 'Your own search space'), or search it with --strategy ga")

    # ------------------------------------------------------------ generation

    def complete(self, space, prefixes=("",), n: int = 1, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0, batch_size: int = 256, quality: int | None = None,
                 max_params: int | None = None, drafts: int = DRAFTS) -> list[list]:
        """`n` architectures of `space` completing each prefix (an encoded-token string, possibly empty).

        `quality` (0..4, 4: the best fifth) and `max_params` condition the GPT (gptnas/language/tokens.py).
        With `max_params`, in a space whose parameters add up over its segments (`space.param_bounds`:
        cifar) each sample is written in one go with between 75 % of the cap and the cap: the likeliest of
        `drafts` such drafts (see `_draw_within`). In the other spaces,
        samples above the cap are drawn again, each time under the next lower cost token.
        Returns one list of `n` architectures per prefix; same seed, same output.
        """
        space = get_space(space)
        self.check_space(space)
        prefixes = check_prefixes(prefixes)
        for name, value in (("n", n), ("batch_size", batch_size), ("drafts", drafts)):
            if not is_int(value) or value < 1:
                raise GptnasError(f"{name} must be an integer >= 1, got {quote(value)}")
        check_limit("n", n, MAX_COMPLETIONS)
        check_limit("n times the number of prefixes", n * len(prefixes), MAX_COMPLETIONS)
        check_limit("drafts", drafts, MAX_DRAFTS)
        condition = check_condition(quality, max_params, self.vocab)
        generate.check_sampling(temperature, top_k)
        rows = [p.split() for p in prefixes for _ in range(n)]
        sampling = dict(temperature=temperature, top_k=top_k, batch_size=batch_size,
                        generator=torch.Generator(device=self.device).manual_seed(seed))
        if max_params is not None and space.param_bounds is not None:
            check_reachable(space, prefixes, max_params)
            archs = self._draw_within(space, rows, condition, max_params, drafts, **sampling)
        else:
            archs = self._draw_under(space, rows, condition, max_params, **sampling)
        return [archs[i : i + n] for i in range(0, len(archs), n)]

    def _draw_within(self, space, rows, condition, max_params, drafts, *, batch_size, **sampling) -> list:
        """One architecture per row with between FLOOR_SHARE of `max_params` and `max_params` parameters:
        of `drafts` drafts written within that window, the one the GPT finds likeliest without the window,
        which the window bent least (a GPT that knows large networks best is otherwise pushed, near the end,
        into whatever still fits)."""
        budget = [Budget(space.param_bounds, math.ceil(FLOOR_SHARE * max_params), max_params)]
        per_batch = max(1, batch_size // drafts)
        archs = []
        for start in range(0, len(rows), per_batch):
            batch = [row for row in rows[start : start + per_batch] for _ in range(drafts)]
            drawn = self.sample(space, batch, conditions=[condition] * len(batch), budgets=[budget] * len(batch),
                                **sampling)
            scores = generate.log_likelihood(self.model, self.vocab, space, [d.tokens for d in drawn],
                                             conditions=[condition] * len(batch))
            for first in range(0, len(drawn), drafts):
                best = max(range(first, first + drafts), key=scores.__getitem__)
                archs.append(space.decode(" ".join(drawn[best].tokens)))
        return archs

    def _draw_under(self, space, rows, condition, max_params, *, batch_size, **sampling) -> list:
        """One architecture per row, drawn again (under the next lower cost token each round) while it has more
        than `max_params` parameters."""
        archs: list = [None] * len(rows)
        todo = list(range(len(rows)))
        for redraw in range(MAX_REDRAWS):
            lowered = lower_cost(condition, redraw, self.vocab)
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                drawn = self.sample(space, [rows[i] for i in batch], conditions=[lowered] * len(batch), **sampling)
                for i, s in zip(batch, drawn):
                    archs[i] = space.decode(" ".join(s.tokens))
            todo = [i for i in todo if max_params is not None and space.params(archs[i]) > max_params]
            if not todo:
                return archs
        raise GptnasError(f"{len(todo)} of {len(rows)} samples stayed above max_params={max_params} after "
                          f"{MAX_REDRAWS} draws; raise max_params (space {space.name})")

    def sample(self, space, rows: list[list[str]], temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, stop_after: list[int] | None = None,
               conditions: list[list[str]] | None = None,
               budgets: list[list[Budget]] | None = None) -> list[generate.Sampled]:
        """Low-level batched sampling from token prefixes, each under its condition and cost budgets
        (see `generate.sample`), and under the space's own limits (a declared space's)."""
        space = get_space(space)
        limits = [Budget(space.cost_bounds(metric), 0, cap) for metric, cap in space.limits.items()]
        if limits:
            budgets = [row + limits for row in budgets] if budgets else [limits] * len(rows)
        return generate.sample(
            self.model, self.vocab, space, rows, temperature=temperature, top_k=top_k, generator=generator,
            masks=self._masks, stop_after=stop_after, conditions=conditions, budgets=budgets,
        )

    def score(self, space, archs, constrained: bool = True, quality: int | None = None,
              max_params: int | None = None) -> list[float]:
        """Log-likelihood of each architecture's spelling (renormalised over the grammar by default), under
        the condition `quality` / `max_params`; GptnasError naming the first that is not one of `space`."""
        return self.score_under(space, archs, check_condition(quality, max_params, self.vocab), constrained)

    def score_under(self, space, archs, condition: list[str], constrained: bool = True) -> list[float]:
        """`score` under the conditioning tokens `condition`, as sampling puts them in the prompt."""
        space = get_space(space)
        sequences = spellings(space, archs)
        return generate.log_likelihood(self.model, self.vocab, space, sequences, constrained,
                                       conditions=[condition] * len(sequences))

    def quality_ratio(self, space, archs) -> list[float]:
        """log p(arch | best quality) - log p(arch): how much more likely the best-quality condition
        makes each architecture. With a GPT that learned quality, it ranks without evaluating."""
        best = self.score(space, archs, quality=QUALITY_LEVELS - 1)
        plain = self.score(space, archs)
        return [b - p for b, p in zip(best, plain)]

    def adapt(self, texts: list[str], weights: list[float], out_dir: str | Path, *, steps: int, lr: float, seed: int,
              batch_size: int | None = None) -> bool:
        """Online LoRA adaptation on the weighted encodings `texts` (see `gptnas.gpt.lora.adapt`)."""
        return lora.adapt(self, texts, weights, out_dir, steps=steps, lr=lr, seed=seed, batch_size=batch_size)

    def adaptation_gain(self, space, archs) -> list[float] | None:
        """How much the adaptation raised each architecture's log-likelihood (see `gptnas.gpt.lora`)."""
        return lora.adaptation_gain(self, space, archs)
