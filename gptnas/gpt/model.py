"""ArchGPT: the architecture GPT, loaded from a folder, the Hub or the package itself.

What it wraps is a plain Hugging Face causal LM and tokenizer, so a published
model also loads with `AutoModelForCausalLM` / `AutoTokenizer` (and an adapter
with `peft.PeftModel`), with no code of ours and no `trust_remote_code`. It
generates under a space's grammar, scores, and adapts itself online with LoRA.

A model remembers the vocabulary it was trained with: `config.json` holds
`gptnas_vocab_sha256` (see `vocab_sha256`), and a tokenizer whose tokens or ids
differ is refused, not silently mis-read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import numbers
import re
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
)
from transformers.utils import logging as transformers_logging

from gptnas.errors import GptnasError, one_line
from gptnas.files import atomic_path, file_sha256
from gptnas.gpt import generate
from gptnas.gpt.data import collate
from gptnas.gpt.loss import fit_batch
from gptnas.hub import local_folder
from gptnas.language.tokens import BOS, EOS, PAD, QUALITY_LEVELS, condition
from gptnas.spaces import get_space

log = logging.getLogger(__name__)

GPT_FILES = ("config.json", "model.safetensors")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
UNSAFE_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")

# The LoRA adapters gptnas trains: train_gpt.py's defaults, and online adaptation.
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.05
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")  # every attention and MLP projection of a GPT-2 block

VOCAB_KEY = "gptnas_vocab_sha256"  # in the model's config.json: the fingerprint of its tokenizer's vocabulary
SHIPPED_NAME = "gptnas/default_model"
MAX_REDRAWS = 20  # rounds of drawing again the samples above max_params  # how `ArchGPT.source` names the model shipped in the package


def default_model_dir() -> Path:
    """The ArchGPT shipped inside the package."""
    return Path(str(resources.files("gptnas") / "default_model"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def vocab_sha256(tokenizer) -> str:
    """The fingerprint of a tokenizer's vocabulary: sha256 of its (token, id) pairs, sorted, as JSON."""
    pairs = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()


def stamp_vocab(model, tokenizer) -> None:
    """Records the tokenizer's fingerprint in the model's config, so save_pretrained writes it to config.json."""
    setattr(model.config, VOCAB_KEY, vocab_sha256(tokenizer))


def check_vocab(model, tokenizer) -> None:
    """GptnasError unless `tokenizer` is the one `model` was trained with: same size and, when the
    model's config records a fingerprint, the same tokens at the same ids."""
    vocab_size = model.get_input_embeddings().num_embeddings
    if len(tokenizer) != vocab_size:
        raise GptnasError(
            f"the tokenizer has {len(tokenizer)} tokens but the model expects {vocab_size}; "
            "load the tokenizer saved with this model"
        )
    expected = getattr(model.config, VOCAB_KEY, None)
    if expected and expected != vocab_sha256(tokenizer):
        raise GptnasError(
            "the tokenizer's vocabulary is not the one the model was trained with (different tokens or ids, "
            f"{VOCAB_KEY} {vocab_sha256(tokenizer)[:12]} instead of {expected[:12]}); load the tokenizer saved with this model"
        )




def snapshot_revision(path: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot (`.../snapshots/<commit>`); None for any other folder."""
    if path.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", path.name):
        return path.name
    return None


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


def gpt_folder(name_or_path: str | Path, revision: str | None = None, adapter: bool = False) -> Path:
    """A local folder for a path or Hub id (Hub ids come through the Hugging Face cache)."""
    missing = f"no model folder at {name_or_path}: give a folder with {' and '.join(GPT_FILES)} or a Hub id 'org/name'"
    return local_folder(name_or_path, revision, ["*.json", "*.safetensors", "*.md", "*.txt"],
                        "adapter" if adapter else "model", missing)


def lora_config(rank: int = LORA_RANK, alpha: int = LORA_ALPHA, dropout: float = LORA_DROPOUT,
                targets=LORA_TARGETS):
    """A PEFT LoraConfig for the GPT's layers (GPT-2's Conv1D stores its weights transposed: fan_in_fan_out)."""
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                      task_type="CAUSAL_LM", fan_in_fan_out=True)


def load_pretrained(name_or_path: str | Path, revision: str | None = None):
    """(model, tokenizer) of a saved ArchGPT folder or Hub id; safetensors only, one-line errors;
    the tokenizer must be the one the model was trained with (`check_vocab`)."""
    path = gpt_folder(name_or_path, revision)
    check_folder(path, GPT_FILES)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file (truncated safetensors, bad JSON ...)
        raise GptnasError(f"cannot load the model in {path}: {one_line(error)}") from None
    check_vocab(model, tokenizer)
    return model, tokenizer


@contextmanager
def quiet_transformers():
    """No "Loading weights" bar in a search's console: the model is small and loads in a blink."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def check_folder(path: Path, files: tuple[str, ...]) -> None:
    unsafe = [f for f in UNSAFE_WEIGHTS if (path / f).exists()]
    missing = [f for f in files if not (path / f).exists()]
    if missing and unsafe:
        raise GptnasError(f"{path} holds {unsafe[0]}; gptnas loads safetensors only: re-save it with save_pretrained()")
    if missing:
        raise GptnasError(f"{path} is not a saved ArchGPT: {missing[0]} is missing")
    try:
        json.loads((path / files[0]).read_text())
    except json.JSONDecodeError:
        raise GptnasError(f"{path / files[0]} is corrupt (not JSON); save the model again") from None


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
        self._pristine = None  # the weights before the first adaptation: every adapter starts from them

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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

    # ------------------------------------------------------------ generation

    def complete(self, space, prefixes=("",), n: int = 1, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0, batch_size: int = 256, quality: int | None = None,
                 max_params: int | None = None) -> list[list]:
        """`n` architectures of `space` completing each prefix (an encoded-token string, possibly empty).

        `quality` (0..4, 4: the best fifth) and `max_params` condition the GPT (gptnas/language/tokens.py);
        with `max_params`, samples above it are drawn again, so none exceeds it.
        Returns one list of `n` architectures per prefix; same seed, same output.
        """
        space = get_space(space)
        prefixes = check_prefixes(prefixes)
        for name, value in (("n", n), ("batch_size", batch_size)):
            if not is_int(value) or value < 1:
                raise GptnasError(f"{name} must be an integer >= 1, got {value!r}")
        condition = check_condition(quality, max_params)
        generate.check_sampling(temperature, top_k)
        rows = [p.split() for p in prefixes for _ in range(n)]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        archs: list = [None] * len(rows)
        todo = list(range(len(rows)))
        for _ in range(MAX_REDRAWS):
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                drawn = self.sample(space, [rows[i] for i in batch], temperature, top_k, generator,
                                    conditions=[condition] * len(batch))
                for i, s in zip(batch, drawn):
                    archs[i] = space.decode(" ".join(s.tokens))
            todo = [i for i in todo if max_params is not None and space.cost(archs[i])["params"] > max_params]
            if not todo:
                return [archs[i : i + n] for i in range(0, len(archs), n)]
        raise GptnasError(f"{len(todo)} of {len(rows)} samples stayed above max_params={max_params} after "
                          f"{MAX_REDRAWS} draws; raise max_params (space {space.name})")

    def sample(self, space, rows: list[list[str]], temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, stop_after: list[int] | None = None,
               conditions: list[list[str]] | None = None) -> list[generate.Sampled]:
        """Low-level batched sampling from token prefixes, each under its condition (see `generate.sample`)."""
        return generate.sample(
            self.model, self.vocab, space, rows, temperature=temperature, top_k=top_k,
            generator=generator, masks=self._masks, stop_after=stop_after, conditions=conditions,
        )

    def score(self, space, archs, constrained: bool = True, quality: int | None = None,
              max_params: int | None = None) -> list[float]:
        """Log-likelihood of each architecture's spelling (renormalised over the grammar by default), under
        the condition `quality` / `max_params`; GptnasError naming the first that is not one of `space`."""
        space = get_space(space)
        sequences = spellings(space, archs)
        condition = check_condition(quality, max_params)
        return generate.log_likelihood(self.model, self.vocab, space, sequences, constrained,
                                       conditions=[condition] * len(sequences))

    def quality_ratio(self, space, archs) -> list[float]:
        """log p(arch | best quality) - log p(arch): how much more likely the best-quality condition
        makes each architecture. With a GPT that learned quality, it ranks without evaluating."""
        best = self.score(space, archs, quality=QUALITY_LEVELS - 1)
        plain = self.score(space, archs)
        return [b - p for b, p in zip(best, plain)]

    # ------------------------------------------------------------ online adaptation

    def adapt(self, texts: list[str], weights: list[float], out_dir: str | Path, *, steps: int, lr: float, seed: int,
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
        if self._pristine is None:
            self._pristine = copy.deepcopy(self.model)
        base = copy.deepcopy(self._pristine)
        if saved:
            self.model = merge_adapter(base, out_dir).eval()
            log.info("loaded the adapter of %s", out_dir)
            return True
        torch.manual_seed(seed)
        # No dropout (train_gpt.py's default has some): a few full-batch steps on the search's own
        # elite, nothing held out to generalise to; benchmarks/RESULTS.md was measured this way.
        model = get_peft_model(base, lora_config(dropout=0.0))
        rows = [{"input_ids": self.tokenizer(t)["input_ids"] + [self.tokenizer.eos_token_id], "weight": w}
                for t, w in zip(texts, weights)]
        batch = {k: v.to(self.device) for k, v in collate(self.tokenizer.pad_token_id)(rows).items()}
        loss = fit_batch(model, batch, steps, lr, batch_size)
        with atomic_path(out_dir) as partial:  # a kill leaves no half adapter for a resumed run to load
            model.save_pretrained(partial, safe_serialization=True)
        log.info("adapted the GPT on %d architectures (final loss %.3f); adapter in %s", len(texts), loss, out_dir)
        self.model = model.merge_and_unload().eval()
        return True

    def adaptation_gain(self, space, archs) -> list[float] | None:
        """How much the adaptation raised each architecture's constrained log-likelihood (adapted minus
        pristine): what the search taught the GPT, its prior divided out. None before any adaptation."""
        if self._pristine is None:
            return None
        space = get_space(space)
        sequences = spellings(space, archs)
        adapted = generate.log_likelihood(self.model, self.vocab, space, sequences, True)
        before = generate.log_likelihood(self._pristine, self.vocab, space, sequences, True)
        return [now - then for now, then in zip(adapted, before)]


def check_condition(quality, max_params) -> list[str]:
    """The conditioning tokens of `quality` (0..4) and `max_params`; GptnasError for anything else."""
    if quality is not None and (not is_int(quality) or not 0 <= quality < QUALITY_LEVELS):
        raise GptnasError(f"quality must be an integer 0..{QUALITY_LEVELS - 1} (4: the best fifth), got {quality!r}")
    if max_params is not None and (not is_int(max_params) or max_params < 1):
        raise GptnasError(f"max_params must be a positive integer, got {max_params!r}")
    return condition(quality, max_params)


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_prefixes(prefixes) -> list[str]:
    """The prefixes as a list of token strings ("" for none); GptnasError for anything else."""
    if isinstance(prefixes, str):
        return [prefixes]
    try:
        prefixes = list(prefixes)
    except TypeError:
        raise GptnasError(
            f"prefixes must be a string of tokens or a list of them (\"\" for none), got {type(prefixes).__name__}"
        ) from None
    for i, prefix in enumerate(prefixes):
        if not isinstance(prefix, str):
            raise GptnasError(
                f"prefix {i} must be a string of tokens (\"\" for none), got {type(prefix).__name__}: "
                "give prefixes as a string or a list of strings"
            )
    return prefixes


def spellings(space, archs) -> list[list[str]]:
    """The tokens of each architecture; GptnasError naming the first that is not one of `space`.

    Encoding alone does not tell: some spaces spell a malformed object as some other network, so
    an architecture counts only if its spelling reads back as the same network (same key)."""
    if isinstance(archs, str):
        raise GptnasError(f"archs must be a list of architectures of space {space.name}, got one string")
    out = []
    for i, arch in enumerate(archs):
        try:
            text = space.encode(arch)
            same = space.key(space.decode(text)) == space.key(arch)
        except (GptnasError, TypeError, ValueError, IndexError, KeyError, AttributeError):
            same = False
        if not same:
            shown = repr(arch) if len(repr(arch)) <= 60 else repr(arch)[:57] + "..."
            raise GptnasError(f"architecture {i} ({shown}) is not an architecture of space {space.name}")
        out.append(text.split())
    return out


def merge_adapter(model, adapter_dir: Path):
    """The model with a LoRA adapter folded into its weights."""
    check_folder(adapter_dir, ADAPTER_FILES)
    try:
        return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise GptnasError(f"cannot apply the adapter in {adapter_dir}: {one_line(error)}") from None
