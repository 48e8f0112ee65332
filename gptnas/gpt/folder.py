"""A saved ArchGPT: finding its folder (a path, a Hub id through the Hugging Face cache, or the model shipped
in the package), checking it, and loading it: safetensors only, one-line errors, and the tokenizer it was
trained with.

A model remembers the vocabulary it was trained with: `config.json` holds
`gptnas_vocab_sha256` (see `vocab_sha256`), and a tokenizer whose tokens or ids
differ is refused, not silently mis-read.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from gptnas.errors import GptnasError, check_limit, one_line
from gptnas.files import file_sha256, read_json
from gptnas.hub import local_folder

GPT_FILES = ("config.json", "model.safetensors")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
UNSAFE_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")
VOCAB_KEY = "gptnas_vocab_sha256"  # in the model's config.json: the fingerprint of its tokenizer's vocabulary
# The largest GPT and adapter a folder may describe (each name with its transformers alias), checked before any
# weight is allocated: a few bytes of config.json could otherwise ask for terabytes. GPT-2 XL is 48 x 1600.
MAX_LAYERS, MAX_HEADS, MAX_WIDTH, MAX_INNER, MAX_POSITIONS, MAX_VOCAB = 64, 128, 8_192, 32_768, 65_536, 1_000_000
MAX_LORA_RANK = 1_024
GPT_LIMITS = {("n_layer", "num_hidden_layers"): MAX_LAYERS, ("n_head", "num_attention_heads"): MAX_HEADS,
              ("n_embd", "hidden_size"): MAX_WIDTH, ("n_inner",): MAX_INNER,
              ("n_positions", "max_position_embeddings", "n_ctx"): MAX_POSITIONS, ("vocab_size",): MAX_VOCAB}
ADAPTER_LIMITS = {("r",): MAX_LORA_RANK, ("lora_alpha",): 1_000_000}
SHIPPED_NAME = "gptnas/default_model"  # how `ArchGPT.source` names the model shipped in the package


def default_model_dir() -> Path:
    """The ArchGPT shipped inside the package."""
    return Path(str(resources.files("gptnas") / "default_model"))


def weights_sha256(name_or_path: str | Path | None = None, adapter: str | Path | None = None) -> str:
    """The sha256 of the weights a GPT (a folder or Hub id; None: the shipped model) loads, and of its LoRA
    adapter's after a "+" when it has one: what `ArchGPT.source` records, without loading anything."""
    model = file_sha256(gpt_folder(default_model_dir() if name_or_path is None else name_or_path) / GPT_FILES[1])
    if adapter is None:
        return model
    return joined_sha256(model, file_sha256(gpt_folder(adapter, adapter=True) / ADAPTER_FILES[1]))


def joined_sha256(model: str, adapter: str | None) -> str:
    """One fingerprint for a GPT's weights and its adapter's, as `weights_sha256` gives it."""
    return model if adapter is None else f"{model}+{adapter}"


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


def gpt_folder(name_or_path: str | Path, revision: str | None = None, adapter: bool = False) -> Path:
    """A local folder for a path or Hub id (Hub ids come through the Hugging Face cache)."""
    missing = f"no model folder at {name_or_path}: give a folder with {' and '.join(GPT_FILES)} or a Hub id 'org/name'"
    return local_folder(name_or_path, revision, ["*.json", "*.safetensors", "*.md", "*.txt"],
                        "adapter" if adapter else "model", missing)


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


@contextmanager
def quiet_peft():
    """peft asks each model it wraps for `is_gradient_checkpointing`, an alias transformers deprecates: a
    FutureWarning for peft's authors, which would otherwise stand in the middle of a search's console."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def check_folder(path: Path, files: tuple[str, ...]) -> None:
    unsafe = [f for f in UNSAFE_WEIGHTS if (path / f).exists()]
    missing = [f for f in files if not (path / f).exists()]
    if missing and unsafe:
        raise GptnasError(f"{path} holds {unsafe[0]}; gptnas loads safetensors only: re-save it with save_pretrained()")
    if missing:
        raise GptnasError(f"{path} is not a saved ArchGPT: {missing[0]} is missing")
    config = read_json(path / files[0])
    if not isinstance(config, dict):
        raise GptnasError(f"{path / files[0]} is corrupt (not a JSON object); save the model again")
    for names, limit in (ADAPTER_LIMITS if files == ADAPTER_FILES else GPT_LIMITS).items():
        for name in names:
            check_limit(f"{path / files[0]}: {name}", config.get(name), limit, low=0)


def merge_adapter(model, adapter_dir: Path):
    """The model with a LoRA adapter folded into its weights."""
    check_folder(adapter_dir, ADAPTER_FILES)
    try:
        with quiet_peft():
            return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise GptnasError(f"cannot apply the adapter in {adapter_dir}: {one_line(error)}") from None

