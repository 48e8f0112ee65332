"""A trained network as a folder that stands on its own: weights, what they are, how well they do, a model card.

    model.safetensors   the weights (state dict of `space.build_model(arch, num_classes)`)
    config.json         format version, gptnas version, space, canonical key, encoding (the architecture
                        text), num_classes, input size and channels, the input standardisation, the dataset,
                        the results (test accuracy, params, FLOPs, latency), the training and search settings
    README.md           the model card (Hugging Face metadata with a model-index, usage, architecture)
    model.onnx          with `--export onnx` only: the network for ONNX runtimes, checked (onnx_export.py)

`load_network(folder or "org/name")` rebuilds the `nn.Module` from config.json and the safetensors
alone: nothing in the folder is executed, so a downloaded network is as safe to load as its numbers
are to read. `push_network` publishes the folder to the Hugging Face Hub.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gptnas.errors import GptnasError, check_limit, one_line, quote
from gptnas.files import atomic_path, read_json, write_atomic, write_json
from gptnas.hub import local_folder, push_folder
from gptnas.spaces import SearchSpace, get_space
from gptnas.spaces.base import count_macs, count_params
from gptnas.training.latency import measure_latency
from gptnas.version import __version__

log = logging.getLogger(__name__)

FORMAT = "gptnas-network"
FORMAT_VERSION = 1  # raise when config.json changes so that older gptnas cannot read it right
CONFIG, WEIGHTS, CARD, ONNX = "config.json", "model.safetensors", "README.md", "model.onnx"
EXPORTED = (WEIGHTS, CONFIG, CARD)  # the folder, whole (and ONNX once `--export onnx` wrote it)
HUB_PATTERNS = ["*.json", "*.safetensors", "*.md"]  # what a Hub download fetches: never code
LOCAL_SETTINGS = ("output_dir", "data_dir")  # paths on the machine that ran the search: not published
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841: a larger count in config.json is a mistake or an attack
LATENCY_REPEATS = 20


def export_network(
    folder: str | Path,
    model: nn.Module,
    *,
    space: SearchSpace,
    arch: Any,
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: list[float],
    std: list[float],
    dataset: dict[str, Any],
    test_accuracy: float,
    latency_batch_sizes: tuple[int, ...] = (1,),
    training: dict[str, Any] | None = None,
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes model.safetensors, config.json and README.md of a trained `model` into `folder`; returns config.json.

    `input_shape` is one image's (channels, height, width), `mean` / `std` the per-channel
    standardisation the network was trained with (pixels scaled to [0, 1] first), `dataset` at least
    {"name": ...} (and "hub_id", "revision" for a Hub dataset). Latency is measured where `model` is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ONNX).unlink(missing_ok=True)  # an ONNX file of earlier weights
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    channels, size, _ = input_shape
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gptnas_version": __version__,
        "space": space.name,
        **({} if space.reference == space.name else {"space_definition": space.reference}),  # loads anywhere
        "key": space.key(arch),
        "encoding": space.encode(arch),
        "num_classes": num_classes,
        "input_size": size,
        "input_channels": channels,
        "normalisation": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
        "dataset": dataset,
        "results": {
            "test_accuracy": test_accuracy,
            "params": count_params(model),
            "flops": count_macs(model, size, channels),  # multiply-accumulates of conv and linear layers
            **latency(model, input_shape, latency_batch_sizes),
        },
        "training": training or {},
        "search": {k: v for k, v in (search or {}).items() if k not in LOCAL_SETTINGS},
    }
    write_json(folder / CONFIG, config)
    write_network_card(folder)
    return config


def latency(model: nn.Module, input_shape: tuple[int, ...], batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """{"latency_ms": {"batch_size_N": ms, ...}, "latency_device": "..."} where `model` is."""
    device = next(model.parameters()).device
    times = {f"batch_size_{n}": round(measure_latency(model, input_shape, device, batch_size=n,
                                                      repeats=LATENCY_REPEATS), 4)
             for n in dict.fromkeys(batch_sizes)}
    where = (f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
             else f"{device.type} ({torch.get_num_threads()} threads)")
    return {"latency_ms": times, "latency_device": where}


# ---------------------------------------------------------------- loading


def load_network(name_or_path: str | Path, revision: str | None = None) -> nn.Module:
    """The trained `nn.Module` (eval mode, on the CPU) of an exported network: a folder, or a Hub id "org/name".

    Reads config.json and model.safetensors only; runs no code from the folder."""
    folder = network_folder(name_or_path, revision)
    config = read_config(folder)
    space = get_space(config.get("space_definition") or config["space"])
    if space.name != config["space"]:
        raise GptnasError(f"{folder / CONFIG}: space_definition names space {quote(space.name)}, not "
                          f"{quote(config['space'])}")
    try:
        arch = space.from_key(config["key"])
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise GptnasError(f"{folder / CONFIG}: key {quote(config['key'])} is not a {space.name} architecture "
                          f"({one_line(error)[:200]})") from None
    model = space.build_model(arch, num_classes=config["num_classes"])
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise GptnasError(f"{folder} has no {WEIGHTS}; copy the whole folder `evolve.py --retrain` wrote")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as error:
        raise GptnasError(f"{weights} cannot be read ({one_line(error)}); copy or download it again") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise GptnasError(
            f"{weights} does not fit the network config.json describes ({one_line(error)}); "
            f"the two files come from different exports"
        ) from None
    return model.eval()


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of an exported network, checked: a gptnas network in a format this gptnas reads."""
    path = Path(folder) / CONFIG
    try:
        config = read_json(path)
    except FileNotFoundError:
        raise GptnasError(f"{folder} has no {CONFIG}; is it a folder `evolve.py --retrain` wrote?") from None
    except OSError as error:
        raise GptnasError(f"{path} cannot be read ({one_line(error)}); copy or download it again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise GptnasError(f"{path} does not describe a gptnas network (no \"format\": \"{FORMAT}\"); "
                          f"an architecture GPT loads with gptnas.ArchGPT.from_pretrained")
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise GptnasError(f"{path} has format_version {quote(version)}; expected an integer from 1")
    if version > FORMAT_VERSION:
        raise GptnasError(f"{path} is format version {version}, newer than this gptnas reads ({FORMAT_VERSION}); "
                          f"upgrade gptnas (pip install -U gptnas)")
    types = {"space": str, "key": str, "num_classes": int}
    wrong = [name for name, kind in types.items()
             if not isinstance(config.get(name), kind) or isinstance(config.get(name), bool)]
    if wrong or config["num_classes"] < 1:
        raise GptnasError(f"{path} needs a space and key (text) and num_classes (a positive integer); "
                          f"check {', '.join(wrong) or 'num_classes'}")
    check_limit(f"{path}: num_classes", config["num_classes"], MAX_CLASSES)
    if not isinstance(config.get("space_definition", {}), dict):
        raise GptnasError(f"{path}: space_definition must be a mapping (a space file's content), got "
                          f"{quote(config['space_definition'])}")
    return config


def network_folder(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local folder for a path or Hub id (Hub ids come through the Hugging Face cache; json, safetensors
    and md files only)."""
    missing = f"no network folder at {name_or_path}: give a folder with {CONFIG} and {WEIGHTS} or a Hub id 'org/name'"
    return local_folder(name_or_path, revision, HUB_PATTERNS, "network", missing)


# ---------------------------------------------------------------- the model card and the Hub


def push_network(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                 api=None) -> str:
    """Publishes an exported network: its weights, config.json and a card naming `repo_id`, and nothing
    else of the folder (result.json and log.csv may hold local paths). The folder itself is not changed.

    `api` is a `huggingface_hub.HfApi`-like object; tests pass a fake one. Returns the commit URL."""
    folder = Path(folder)
    read_config(folder)  # refuse to publish what could not be loaded back
    if not (folder / WEIGHTS).is_file():
        raise GptnasError(f"{folder} has no {WEIGHTS}; retrain first: python evolve.py --retrain RUN_DIR")
    extra = [ONNX] if (folder / ONNX).is_file() and "onnx" in read_config(folder) else []
    with tempfile.TemporaryDirectory(prefix=".push-", dir=folder) as staged:
        for name in (WEIGHTS, CONFIG, *extra):
            try:
                os.link(folder / name, Path(staged) / name)  # same file system: no copy of the weights
            except OSError:  # a file system without hard links
                shutil.copy2(folder / name, Path(staged) / name)
        write_network_card(staged, repo_id)
        return push_folder(staged, repo_id, [*EXPORTED, *extra], "Upload network (gptnas)", token=token, api=api,
                           private=private)


def write_network_card(folder: str | Path, repo_id: str | None = None) -> Path:
    """README.md of the network in `folder`, from its config.json; the usage line names `repo_id` when given."""
    path = Path(folder) / CARD
    write_atomic(path, str(model_card(read_config(folder), repo_id)))
    return path


def model_card(config: dict[str, Any], repo_id: str | None = None):
    """A `huggingface_hub.ModelCard`: metadata (library, tags, dataset, model-index with the test accuracy)
    and a body with the results, usage, architecture, dataset and settings."""
    dataset, results = config.get("dataset") or {}, config.get("results") or {}
    name = dataset.get("name", "unknown")
    hub_id = dataset.get("hub_id")
    title = repo_id or f"gptnas {config['space']} network on {name}"
    data = ModelCardData(
        library_name="pytorch",
        tags=["gptnas", "neural-architecture-search", "image-classification", config["space"]],
        datasets=[hub_id] if hub_id else None,
        model_name=title,
        eval_results=[EvalResult(
            task_type="image-classification", dataset_type=hub_id or name, dataset_name=name,
            dataset_split="test", dataset_revision=dataset.get("revision"),
            metric_type="accuracy", metric_name="test accuracy (%)", metric_value=results["test_accuracy"],
        )] if "test_accuracy" in results else None,
    )
    body = _card_body(config, title, repo_id)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _card_body(config: dict[str, Any], title: str, repo_id: str | None) -> str:
    dataset, results = config.get("dataset") or {}, config.get("results") or {}
    size, channels, classes = config.get("input_size"), config.get("input_channels", 3), config["num_classes"]
    norm = config.get("normalisation") or {}
    latencies = results.get("latency_ms") or {}
    source = f'"{repo_id}"' if repo_id else '"path/to/this/folder"'
    hub_id = dataset.get("hub_id")
    if hub_id:
        at = f" at revision `{dataset['revision']}`" if dataset.get("revision") else ""
        data_line = f"[{hub_id}](https://huggingface.co/datasets/{hub_id}){at}"
    else:
        data_line = f"`{dataset.get('name', 'unknown')}` (not from the Hub: the built-in digits or a local copy)"
    table = [
        f"| test accuracy | {results['test_accuracy']:.2f} % |" if "test_accuracy" in results else None,
        f"| parameters | {results['params']:,} |" if "params" in results else None,
        f"| FLOPs (multiply-accumulates at {size}x{size}) | {results['flops']:,} |" if "flops" in results else None,
        *[f"| latency, batch {k.removeprefix('batch_size_')} | {v:.3f} ms |" for k, v in latencies.items()],
    ]
    lines = [
        f"# {title}",
        "",
        f"An image classifier ({classes} classes, {channels}x{size}x{size} inputs) whose architecture was found by",
        "gptnas: an evolutionary search in which a small GPT, trained on human-designed networks, rewrites",
        "parts of the candidates (after GPT-NAS, arXiv 2305.05351). The winner was trained from scratch and",
        "tested once on the test split.",
        "",
        "## Results",
        "",
        "| | |",
        "|---|---|",
        *[row for row in table if row],
        "",
    ]
    if latencies:
        where = results.get("latency_device", "the training device")
        lines += [f"Latency: median of {LATENCY_REPEATS} fp32 forward passes after a warm-up, on {where}.", ""]
    mean, std = norm.get("mean", [0.0] * channels), norm.get("std", [1.0] * channels)
    lines += [
        "## Usage",
        "",
        "```python",
        "import torch",
        "import gptnas",
        "",
        f"model = gptnas.load_network({source})  # config.json + safetensors; runs no code from the repo",
        f"images = torch.rand(4, {channels}, {size}, {size})  # pixels in [0, 1]",
        f"mean = torch.tensor({[round(m, 6) for m in mean]}).view(1, -1, 1, 1)  # the training set's",
        f"std = torch.tensor({[round(s, 6) for s in std]}).view(1, -1, 1, 1)",
        "with torch.inference_mode():",
        "    classes = model((images - mean) / std).argmax(1)",
        "```",
        "",
        *onnx_usage(config),
        "## Architecture",
        "",
        "In the gptnas architecture language, one token per layer:",
        "",
        "```text",
        config.get("encoding", "").replace(" block ", "\n  block "),
        "```",
        "",
        f"Search space `{config['space']}`, canonical key `{config['key']}`;",
        f"`gptnas.build_model({config['space']!r}, KEY, num_classes={classes})` builds it untrained.",
        "",
        "## Dataset",
        "",
        f"{data_line}: trained on its training split, tested on its test split.",
        "",
    ]
    for heading, settings in (("Training", config.get("training")), ("Search settings", config.get("search"))):
        if settings:
            lines += [f"## {heading}", "", "```yaml", yaml.safe_dump(settings, sort_keys=False).strip(), "```", ""]
    lines.append(f"gptnas {config.get('gptnas_version', '?')}, export format {config['format_version']}.")
    return "\n".join(lines) + "\n"


def onnx_usage(config: dict[str, Any]) -> list[str]:
    """The card's lines on model.onnx, when the folder has one."""
    onnx = config.get("onnx")
    if not isinstance(onnx, dict):
        return []
    return [
        "## ONNX",
        "",
        f"`{ONNX}` (opset {onnx.get('opset')}): input {onnx.get('inputs')}, standardised as above; output "
        f"{onnx.get('outputs')}. On a batch of {onnx.get('checked_batch')} images onnxruntime "
        f"{onnx.get('onnxruntime')} gave logits at most {onnx.get('max_abs_difference')} away from PyTorch's.",
        "",
        "```python",
        "import onnxruntime",
        "",
        f'session = onnxruntime.InferenceSession("{ONNX}")',
        'logits, = session.run(["logits"], {"images": ((images - mean) / std).numpy()})',
        "```",
        "",
    ]


__all__ = [
    "EXPORTED", "export_network", "load_network", "model_card", "push_network", "read_config", "write_network_card",
]
