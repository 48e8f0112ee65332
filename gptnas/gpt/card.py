"""Model cards of architecture GPTs, and what of a GPT folder is published (through gptnas/hub.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from gptnas.hub import hub_id, push_folder

log = logging.getLogger(__name__)

# What a run folder publishes: the model (or adapter) with its tokenizer, card and metrics, and the merged
# model under merged/. Whole names, not wildcards: huggingface_hub matches with fnmatch, where `*` also
# matches `/`, so "*.safetensors" would publish the checkpoints (step_*/model.safetensors) too.
PUBLISHED_FILES = ("README.md", "config.json", "generation_config.json", "model.safetensors",
               "model.safetensors.index.json", "model-?????-of-?????.safetensors",  # sharded weights
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
PUBLISHED_PATTERNS = [*PUBLISHED_FILES, "adapter_config.json", "adapter_model.safetensors", "metrics.json",
                      "gptnas_training.json", *(f"merged/{name}" for name in PUBLISHED_FILES)]

TAGS = ["gptnas", "neural-architecture-search", "gpt2", "architecture-language"]
# Held-out metrics (the keys of gptnas.gpt.loss.held_out_metrics) as model-index results; any other key is
# reported under its own name. The token count is the size of the evaluation, not a result.
METRIC_NAMES = {"loss": "held-out loss", "perplexity": "held-out perplexity",
                "top1_accuracy": "next-token top-1 accuracy", "top5_accuracy": "next-token top-5 accuracy"}
NOT_RESULTS = ("tokens",)


def write_model_card(
    folder: str | Path,
    *,
    title: str,
    corpus: list[str],
    config: dict,
    metrics: dict[str, float] | None,
    held_out_families: list[str],
    base_model: str | None = None,
    adapter: bool = False,
    repo_id: str | None = None,
    subfolder: str | None = None,
    notes: str = "",
) -> Path:
    """README.md that the Hub reads (huggingface_hub `ModelCard`): metadata, the held-out metrics as
    model-index results, how to load it, what it learned from and how it was trained.

    `base_model`: the model fine-tuned (the base of an `adapter`, or of a merged model), as it was loaded;
    only a Hub id goes into the metadata. `repo_id` / `subfolder`: where the folder is published, for the
    usage snippet (the folder's path when unknown)."""
    if adapter and not base_model:
        raise ValueError("an adapter's card needs its base_model")
    folder = Path(folder)
    results = eval_results(metrics or {}, held_out_families)
    data = ModelCardData(
        library_name="peft" if adapter else "transformers",
        base_model=hub_id(base_model),
        license="apache-2.0",
        pipeline_tag="text-generation",
        tags=[*TAGS, "lora"] if base_model else TAGS,
        model_name=(repo_id.split("/")[-1] if repo_id else title) if results else None,
        eval_results=results or None,
    )
    lines = [f"# {title}", ""]
    lines += [
        "A GPT over the gptnas architecture language: each sequence is one network written layer by",
        "layer (`conv3x3/s2 w64 bn relu block ( ... | )add ...`). It predicts the next layer from the",
        "layers before it and is used to rewrite parts of candidate networks in an evolutionary search.",
        "",
    ]
    if adapter:
        lines += [f"This is a LoRA adapter for `{base_model}`.", ""]
    elif base_model:
        lines += [f"This is `{base_model}` with a LoRA adapter merged into its weights.", ""]
    lines += usage(folder, repo_id, subfolder, base_model, adapter)
    lines += [
        "## Training corpus",
        "",
        *[f"- `{c}`" for c in corpus],
        "",
        "What each file holds is in the data cards beside it (`data/README.md`, `data/PYTORCHCV.md` for gptnas's",
        "own corpus). `gptnas_tables_seen` in config.json names every benchmark table the GPT was trained on.",
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
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = folder / "README.md"
    card.save(path)
    return path


def eval_results(metrics: dict[str, float], held_out_families: list[str]) -> list:
    """The held-out metrics as model-index results (none without held-out families)."""
    if not held_out_families:
        return []
    return [
        EvalResult(
            task_type="text-generation", task_name="Architecture language modelling",
            dataset_type="gptnas-held-out-families",
            dataset_name=f"held-out architecture families ({', '.join(held_out_families)})",
            metric_type=key, metric_name=METRIC_NAMES.get(key, key), metric_value=float(value),
        )
        for key, value in metrics.items() if key not in NOT_RESULTS
    ]


def usage(folder: Path, repo_id: str | None, subfolder: str | None, base_model: str | None, adapter: bool) -> list[str]:
    """The card's loading snippet, with gptnas and with plain transformers (or peft)."""
    quote = json.dumps  # a Python string literal in double quotes
    where, base = quote(repo_id or folder.as_posix()), quote(base_model)
    plain_where = f"{where}, subfolder={quote(subfolder)}" if repo_id and subfolder else where
    if adapter or (repo_id and subfolder and base_model):
        # ArchGPT loads a model folder or repository: a merged model inside a repository loads as base + adapter,
        # which ArchGPT merges on load (the same weights).
        gptnas_load = f"gptnas.ArchGPT.from_pretrained({base}, adapter={where})"
    else:
        gptnas_load = f"gptnas.ArchGPT.from_pretrained({where})"
    if adapter:
        plain = [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({base}), {where})",
            f"tokenizer = AutoTokenizer.from_pretrained({where})",
        ]
    else:
        plain = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"model = AutoModelForCausalLM.from_pretrained({plain_where})",
            f"tokenizer = AutoTokenizer.from_pretrained({plain_where})",
        ]
    lines = [
        "## Usage",
        "",
        "```python",
        "import gptnas",
        f"gpt = {gptnas_load}",
        'archs = gpt.complete("nas-bench-201", [""], n=8, seed=0)  # 8 valid NAS-Bench-201 cells',
        "",
        *plain,
        "```",
        "",
        "`model.generate()` samples each token from the whole vocabulary, so it can write sequences that are",
        "not valid architectures of any search space. `ArchGPT.complete` masks every step to the grammar of",
        "the search space and only returns valid architectures.",
        "",
    ]
    if adapter and (folder / "merged" / "model.safetensors").is_file():
        lines += [
            f"`merged/` holds `{base_model}` with this adapter merged into its weights; it loads with",
            f'`AutoModelForCausalLM.from_pretrained({where}, subfolder="merged")`.' if repo_id else
            f"`AutoModelForCausalLM.from_pretrained({quote((folder / 'merged').as_posix())})`.",
            "",
        ]
    return lines


def push_gpt(folder: str | Path, repo_id: str, token: str | None = None, api=None, private: bool | None = None) -> str:
    """Uploads the model, tokenizer, adapter, merged model and card of `folder` (PUBLISHED_PATTERNS;
    checkpoints and logs stay local). `private`: None keeps the account's default visibility."""
    return push_folder(folder, repo_id, PUBLISHED_PATTERNS, "Upload architecture GPT (gptnas)", token=token,
                       api=api, private=private)
