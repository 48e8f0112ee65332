"""Model cards and Hub publishing for architecture GPTs."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from gptnas.errors import GptnasError, one_line

log = logging.getLogger(__name__)

PUBLISHED_PATTERNS = ["*.json", "*.safetensors", "README.md", "*.txt", "merged/*"]


def write_model_card(
    folder: str | Path,
    *,
    title: str,
    corpus: list[str],
    config: dict,
    metrics: dict[str, float] | None,
    held_out_families: list[str],
    base_model: str | None = None,
    notes: str = "",
) -> Path:
    """README.md with Hugging Face YAML metadata, what the model learned from, and its held-out numbers."""
    metadata = {
        "library_name": "peft" if base_model else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["gptnas", "neural-architecture-search", "gpt2", "architecture-language"],
        "license": "apache-2.0",
    }
    if base_model:
        metadata["base_model"] = base_model
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "", f"# {title}", ""]
    lines += [
        "A GPT over the gptnas architecture language: each sequence is one network written layer by",
        "layer (`conv3x3/s2 w64 bn relu block ( ... | )add ...`). It predicts the next layer from the",
        "layers before it and is used to rewrite parts of candidate networks in an evolutionary search.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(REPO)  # or gptnas.ArchGPT.from_pretrained(REPO)",
        "tokenizer = AutoTokenizer.from_pretrained(REPO)",
        "```",
        "",
        "## Training corpus",
        "",
        *[f"- `{c}`" for c in corpus],
        "",
        "Human-designed networks only (torchvision / timm definitions walked with torch.fx);",
        "no benchmark accuracies and no search-space samples.",
        "",
    ]
    if metrics:
        lines += [
            f"## Held-out evaluation (families never trained on: {', '.join(held_out_families) or 'none'})",
            "",
            "| metric | value |",
            "|---|---|",
            *[f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()],
            "",
        ]
    if notes:
        lines += [notes, ""]
    lines += ["## Training config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(), "```", ""]
    path = Path(folder) / "README.md"
    path.write_text("\n".join(lines))
    return path


def push_folder(folder: str | Path, repo_id: str, token: str | None = None, api=None, private: bool = False) -> str:
    """Uploads the model, tokenizer, adapter and card of `folder` (checkpoints stay local).

    `api` is a `huggingface_hub.HfApi`-like object; tests pass a fake one.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True, private=private)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, allow_patterns=PUBLISHED_PATTERNS,
            commit_message="Upload architecture GPT (gptnas)",
        )
    except OSError as error:  # requests / httpx errors derive from OSError
        raise GptnasError(f"could not push to the Hub repository {repo_id!r}: {one_line(error)}") from None
    log.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", repo_id))
