"""ArchGPT: the architecture GPT, loaded from a folder, the Hub or the package itself.

What it wraps is a plain Hugging Face causal LM and tokenizer, so a published
model also loads with `AutoModelForCausalLM` / `AutoTokenizer` (and an adapter
with `peft.PeftModel`), with no code of ours and no `trust_remote_code`.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from gptnas.errors import GptnasError
from gptnas.gpt import generate
from gptnas.language.tokens import BOS, EOS, PAD

log = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "model.safetensors")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
UNSAFE_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")


def default_model_dir() -> Path:
    """The ArchGPT shipped inside the package."""
    return Path(str(resources.files("gptnas") / "default_model"))


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
    return GPT2LMHeadModel(config)


def resolve(name_or_path: str | Path, revision: str | None = None, adapter: bool = False) -> Path:
    """A local folder for a path or Hub id (Hub ids come through the Hugging Face cache)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise GptnasError(f"no model folder at {name}: give a folder with {' and '.join(MODEL_FILES)} or a Hub id 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.md", "*.txt"]
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise GptnasError(
            f"{'adapter' if adapter else 'model'} {name!r} is not in the local Hugging Face cache and the Hub "
            "cannot be reached (offline?); download it once online, or give a local folder"
        ) from None
    except HFValidationError:
        raise GptnasError(f"no model folder at {name}: give a folder with {' and '.join(MODEL_FILES)} or a Hub id 'org/name'") from None
    except RepositoryNotFoundError:
        raise GptnasError(f"no Hub repository {name!r} (or it is private: log in with `hf auth login`)") from None
    except (HfHubHTTPError, OSError) as error:
        raise GptnasError(f"could not fetch {name!r} from the Hub: {str(error).splitlines()[0]}") from None


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
    """A causal LM over the architecture language, with grammar-constrained generation."""

    def __init__(self, model, tokenizer, device: torch.device | str | None = None):
        vocab_size = model.get_input_embeddings().num_embeddings
        if len(tokenizer) != vocab_size:
            raise GptnasError(
                f"the tokenizer has {len(tokenizer)} tokens but the model expects {vocab_size}; "
                "load the tokenizer saved with this model"
            )
        self.model = model.to(device or default_device()).eval()
        self.tokenizer = tokenizer
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self._masks = generate.MaskCache(self.vocab, self.device)

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
        """Loads a folder or Hub id (the shipped default model when None), plus an optional LoRA adapter."""
        path = default_model_dir() if name_or_path is None else resolve(name_or_path, revision)
        check_folder(path, MODEL_FILES)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file (truncated safetensors, bad JSON ...)
            raise GptnasError(f"cannot load the model in {path}: {str(error).splitlines()[0]}") from None
        if adapter is not None:
            model = merge_adapter(model, resolve(adapter, adapter=True))
        return cls(model, tokenizer, device)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    # ------------------------------------------------------------ generation

    def complete(self, space, prefixes=("",), n: int = 1, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0, batch_size: int = 256) -> list[list]:
        """`n` architectures of `space` completing each prefix (an encoded-token string, possibly empty).

        Returns one list of `n` architectures per prefix; same seed, same output.
        """
        from gptnas.spaces import get_space

        space = get_space(space)
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        rows = [p.split() for p in prefixes for _ in range(n)]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        spelled: list[generate.Sampled] = []
        for start in range(0, len(rows), batch_size):
            spelled += self.sample(space, rows[start : start + batch_size], temperature, top_k, generator)
        archs = [space.decode(" ".join(s.tokens)) for s in spelled]
        return [archs[i : i + n] for i in range(0, len(archs), n)]

    def sample(self, space, rows: list[list[str]], temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, stop_after: list[int] | None = None) -> list[generate.Sampled]:
        """Low-level batched sampling from token prefixes (see `generate.sample`)."""
        return generate.sample(
            self.model, self.vocab, space, rows, temperature=temperature, top_k=top_k,
            generator=generator, masks=self._masks, stop_after=stop_after,
        )

    def score(self, space, archs, constrained: bool = True) -> list[float]:
        """Log-likelihood of each architecture's spelling (renormalised over the grammar by default)."""
        from gptnas.spaces import get_space

        space = get_space(space)
        sequences = [space.encode(a).split() for a in archs]
        return generate.log_likelihood(self.model, self.vocab, space, sequences, constrained)


def merge_adapter(model, adapter_dir: Path):
    """The model with a LoRA adapter folded into its weights."""
    from peft import PeftModel

    check_folder(adapter_dir, ADAPTER_FILES)
    try:
        return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise GptnasError(f"cannot apply the adapter in {adapter_dir}: {str(error).splitlines()[0]}") from None
