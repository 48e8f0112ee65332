"""pytorchcv's published CIFAR-10, CIFAR-100 and SVHN networks, and the ImageNet-1k ones timm lacks.

    pip install -e ".[corpus]"
    python -m gptnas.corpus.pytorchcv --out data

writes
    cifar_pytorchcv.jsonl      one record per network and dataset, traced at 32x32:
                               `q3 p1m space:cifar10 conv3x3 w16 ...`
    imagenet_pytorchcv.jsonl   pytorchcv's ImageNet-1k networks whose spelling no record of
                               pretrain_timm.jsonl.gz or finetune_torchvision.jsonl has (224x224)
    PYTORCHCV.md               the data card: sources, papers, counts, tokens, what was left out

pytorchcv (MIT) lists every network it publishes weights for in `model_metainfos.csv`, with its
parameter count and the test error of those weights. The error is pytorchcv's own measurement of
its weights: top-1 on CIFAR and SVHN, top-5 on ImageNet-1k (the only ImageNet metric the file has).
Models are built on the meta device and written with gptnas.language.trace, like the timm corpus;
the traced parameter count must equal the file's, or the build stops. A network the language
cannot write, or longer than the corpus limit, is left out and counted with its reason.

Tokens: the space tag names the dataset (`space:cifar10`, `space:cifar100`, `space:svhn`; ImageNet
rows `space:pytorchcv`), so a quality token is read within one dataset: the quintile of the
network's accuracy among that dataset's networks with a result (`tokens.quality_levels`). The
cost token is the bucket of the parameter count. ImageNet weights that pytorchcv ported from
another repository (the CSV's `remark`) were trained by a recipe this file does not state: they
keep their error and get no quality token.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib
import logging
import statistics
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from gptnas.corpus.build import (FINETUNE_FILE, MAX_TOKENS, PRETRAIN_FILE, Skipped, build_on_meta, skip_reason,
                                 traced_record)
from gptnas.errors import GptnasError
from gptnas.files import read_jsonl, write_atomic, write_jsonl
from gptnas.language import tokens

log = logging.getLogger(__name__)

CIFAR_FILE = "cifar_pytorchcv.jsonl"
IMAGENET_FILE = "imagenet_pytorchcv.jsonl"
CARD_FILE = "PYTORCHCV.md"
PYTORCHCV_VERSION = "0.0.74"
DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}  # model-name suffix -> name
IMAGENET_TAG = "pytorchcv"

# pytorchcv's module names where the other corpora name the family differently, so that holding out
# a family holds it out of every file.
FAMILY_NAMES = {"wrn": "wide_resnet", "wrn1bit": "wide_resnet", "mobilenet": "mobilenetv1",
                "inceptionv3": "inception", "inceptionv4": "inception", "inceptionresnetv2": "inception"}

# The paper of each CIFAR family (pytorchcv's CSV gives none for its CIFAR rows).
PAPERS = {
    "nin": "Lin, Chen, Yan: Network In Network, ICLR 2014 (arXiv 1312.4400)",
    "resnet": "He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition, CVPR 2016 (arXiv 1512.03385)",
    "preresnet": "He, Zhang, Ren, Sun: Identity Mappings in Deep Residual Networks, ECCV 2016 (arXiv 1603.05027)",
    "resnext": "Xie, Girshick, Dollar, Tu, He: Aggregated Residual Transformations for Deep Neural Networks, "
               "CVPR 2017 (arXiv 1611.05431)",
    "seresnet": "Hu, Shen, Sun: Squeeze-and-Excitation Networks, CVPR 2018 (arXiv 1709.01507)",
    "sepreresnet": "Hu, Shen, Sun: Squeeze-and-Excitation Networks, CVPR 2018 (arXiv 1709.01507)",
    "pyramidnet": "Han, Kim, Kim: Deep Pyramidal Residual Networks, CVPR 2017 (arXiv 1610.02915)",
    "densenet": "Huang, Liu, van der Maaten, Weinberger: Densely Connected Convolutional Networks, CVPR 2017 "
                "(arXiv 1608.06993)",
    "xdensenet": "Prabhu, Varma, Namboodiri: Deep Expander Networks, ECCV 2018 (arXiv 1711.08757)",
    "wide_resnet": "Zagoruyko, Komodakis: Wide Residual Networks, BMVC 2016 (arXiv 1605.07146)",
    "ror": "Zhang, Sun, Han, Yuan, Ding, Zhang: Residual Networks of Residual Networks: Multilevel Residual "
           "Networks, TCSVT 2017 (arXiv 1608.02908)",
    "rir": "Targ, Almeida, Lyman: Resnet in Resnet: Generalizing Residual Architectures (arXiv 1603.08029)",
    "shakeshakeresnet": "Gastaldi: Shake-Shake regularization (arXiv 1705.07485)",
    "diaresnet": "Huang, Liang, Wu, Chen, Lin: DIANet: Dense-and-Implicit Attention Network, AAAI 2020 "
                 "(arXiv 1905.10671)",
    "diapreresnet": "Huang, Liang, Wu, Chen, Lin: DIANet: Dense-and-Implicit Attention Network, AAAI 2020 "
                    "(arXiv 1905.10671)",
}


def metainfo() -> tuple[list[dict], dict]:
    """(the rows of pytorchcv's model_metainfos.csv, model name -> the module that defines it);
    GptnasError without pytorchcv."""
    try:
        import pytorchcv
    except ImportError:
        raise GptnasError(f'pytorchcv is missing: pip install -e ".[corpus]" (pytorchcv=={PYTORCHCV_VERSION})') from None
    if pytorchcv.__version__ != PYTORCHCV_VERSION:
        raise GptnasError(f"pytorchcv {pytorchcv.__version__} is installed; the corpus is built from "
                          f"{PYTORCHCV_VERSION}: pip install pytorchcv=={PYTORCHCV_VERSION}")
    root = Path(pytorchcv.__file__).parent
    with open(root / "models" / "common" / "model_metainfos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # model_provider.py imports every model module, one of which needs torchvision; read which module
    # defines each model from its import statements instead, and import only the modules used.
    provider = ast.parse((root / "model_provider.py").read_text())
    modules = {alias.name: f"pytorchcv.{node.module}" for node in ast.walk(provider)
               if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module for alias in node.names}
    return rows, modules


def builder(name: str, modules: dict):
    """pytorchcv's function that builds the model `name`."""
    return getattr(importlib.import_module(modules[name]), name)


def family(build) -> str:
    """The family of a pytorchcv model function: its module's name, in the other corpora's spelling."""
    name = build.__module__.rpartition(".")[2].removesuffix("_cifar")
    return FAMILY_NAMES.get(name, name)


def error_percent(value: str) -> float | None:
    """The CSV's error ("0597": 5.97 %), None where it has none ("NA")."""
    return None if value == "NA" else int(value) / 100


def trace(row: dict, modules: dict, tag: str) -> dict:
    """One CSV row as a corpus record (without conditioning tokens)."""
    name = row["model_name"]
    build = builder(name, modules)
    model = build_on_meta(lambda: build(pretrained=False))
    return {**traced_record(name, tag, family(build), model), "source": "pytorchcv"}


def trace_rows(rows: list[dict], modules: dict, tag_of, max_tokens: int, skipped: Skipped) -> list[dict]:
    """The rows that trace, are at most `max_tokens` long and have the CSV's parameter count (a
    network whose spelling has other parameters is not the network the CSV describes)."""
    records = []
    for row in tqdm(rows, desc="pytorchcv", disable=None):
        try:
            record = trace(row, modules, tag_of(row))
        except Exception as error:  # noqa: BLE001 - any failure to build or trace skips just that model
            skipped.add(row["model_name"], skip_reason(error))
            continue
        if record["n_tokens"] > max_tokens:
            skipped.add(row["model_name"], f"longer than {max_tokens} tokens")
            continue
        if row["net_weights"] != "NA" and record["params"] != int(row["net_weights"]):
            skipped.add(row["model_name"], "its spelling has other parameters than the CSV's count")
            continue
        record["error"] = error_percent(row["error_value"])
        record["weights_from"] = None if row["remark"] == "NA" else row["remark"]
        records.append(record)
    return records


def condition(records: list[dict], group_of) -> list[dict]:
    """Gives each record its quality token (quintile of accuracy within its group, among records
    with an error of pytorchcv's own weights) and its cost token."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r["error"] is not None and r["weights_from"] is None:
            groups.setdefault(group_of(r), []).append(i)
    levels = {}
    for members in groups.values():
        levels.update(zip(members, tokens.quality_levels([-records[i]["error"] for i in members])))
    out = []
    for i, r in enumerate(records):
        words = tokens.condition(levels.get(i), r["params"]) + r["text"].split()
        out.append({**r, "text": " ".join(words), "n_tokens": len(words), "quality": levels.get(i)})
    return out


def cifar_records(rows: list[dict], modules: dict, max_tokens: int) -> tuple[list[dict], Skipped]:
    """Every CIFAR-10, CIFAR-100 and SVHN network of the CSV, each under its dataset's space tag."""
    skipped = Skipped()
    wanted = [r for r in rows if r["test_dataset"] == "cf"]
    records = trace_rows(wanted, modules, lambda row: row["model_name"].rpartition("_")[2], max_tokens, skipped)
    for r in records:
        r["dataset"] = r["name"].rpartition("_")[2]
        r["citation"] = PAPERS.get(r["family"], "")
    return condition(records, lambda r: r["dataset"]), skipped


def _body(text: str) -> str:
    """A text without its conditioning tokens and space tag."""
    return " ".join(tokens.split_condition(text.split())[1][1:])


def imagenet_records(rows: list[dict], modules: dict, max_tokens: int, folder: Path) -> tuple[list[dict], Skipped]:
    """pytorchcv's ImageNet-1k networks whose spelling is not already in the timm or torchvision file."""
    covered = {_body(r["text"]) for name in (PRETRAIN_FILE, FINETUNE_FILE) for r in read_jsonl(folder / name)}
    skipped = Skipped()
    wanted = [r for r in rows if r["test_dataset"] == "in1k"]
    records, by_body = [], {}
    for record in trace_rows(wanted, modules, lambda row: IMAGENET_TAG, max_tokens, skipped):
        body = _body(record["text"])
        if body in covered:
            skipped.add(record["name"], "spelled exactly as a timm or torchvision record")
        elif body in by_body:  # rows are in CSV order, so the first name of a duplicate stays
            by_body[body]["aliases"].append(record["name"])
        else:
            by_body[body] = record
            records.append(record)
    for r in records:
        r["citation"] = next((f"arXiv {row['arxiv_paper']}" for row in wanted
                              if row["model_name"] == r["name"] and row["arxiv_paper"] != "NA"), "")
    return condition(records, lambda r: IMAGENET_TAG), skipped


def _dataset_table(records: list[dict]) -> str:
    rows = ["| dataset (space tag) | networks | with quality | q0 | q1 | q2 | q3 | q4 | accuracy | params |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for dataset in sorted({r["dataset"] for r in records}, key=list(DATASETS).index):
        mine = [r for r in records if r["dataset"] == dataset]
        levels = Counter(r["quality"] for r in mine)
        accuracy = [100 - r["error"] for r in mine if r["error"] is not None]
        rows.append(f"| {DATASETS[dataset]} (`space:{dataset}`) | {len(mine)} | {len(accuracy)} | "
                    + " | ".join(str(levels[q]) for q in range(tokens.QUALITY_LEVELS))
                    + f" | {min(accuracy):.2f}-{max(accuracy):.2f} % | "
                      f"{min(r['params'] for r in mine) / 1e6:.2f}-{max(r['params'] for r in mine) / 1e6:.1f} M |")
    return "\n".join(rows)


def _family_rows(records: list[dict]) -> str:
    counts = Counter(r["family"] for r in records)
    rows = ["| family | records | paper |", "|---|---:|---|"]
    rows += [f"| {name} | {n} | {PAPERS.get(name, '')} |" for name, n in sorted(counts.items())]
    return "\n".join(rows)


def data_card(cifar: list[dict], cifar_skipped: Skipped, imagenet: list[dict], imagenet_skipped: Skipped,
              max_tokens: int) -> str:
    import torch

    lengths = [r["n_tokens"] for r in cifar]
    imagenet_scored = sum(r["quality"] is not None for r in imagenet)
    return f"""# pytorchcv corpus: networks designed and trained for 32x32 images

Built by `python -m gptnas.corpus.pytorchcv --out data` (needs `pip install -e ".[corpus]"`) from
pytorchcv {PYTORCHCV_VERSION} (MIT licence, Oleg Semery, https://github.com/osmr/imgclsmob), its
`pytorchcv/models/common/model_metainfos.csv`: model name, parameter count and the test error of
the weights pytorchcv publishes, measured by pytorchcv. Models are built without weights on the meta
device (torch {torch.__version__.split("+")[0]}) and traced with `gptnas.language.trace`. The build is
deterministic: the same library versions give the same bytes.

Records: `name` (pytorchcv's model name), `source` (pytorchcv), `family`, `dataset`, `text`,
`n_tokens`, `n_blocks`, `params` (traced, equal to the CSV's or the build stops), `error` (test
error %, null where the CSV has none), `quality` (0-4 or null), `weights_from` (the repository
pytorchcv ported the weights from, null for its own), `citation`, `aliases`.

## `{CIFAR_FILE}`: CIFAR-10, CIFAR-100 and SVHN

One record per network and dataset; the text opens with the quality token (the quintile of
accuracy among that dataset's networks with an error in the CSV), the cost token (the bucket of
the parameter count) and the dataset as space tag: `q4 p1.8m space:cifar10 conv3x3 w16 bn ...`.
The three datasets share most architectures (the classifier's width is not written), so a network
can carry three quality tokens, one per dataset. {len(cifar)} records, tokens per network: median
{statistics.median(lengths):.0f}, max {max(lengths)}.

{_dataset_table(cifar)}

{_family_rows(cifar)}

Left out ({cifar_skipped.count()} of {cifar_skipped.count() + len(cifar)} CSV rows):

{cifar_skipped.table(examples=8)}

- `zeros_like`: DIA-ResNet's attention is one LSTM shared by all blocks of a stage, a recurrence the
  language (series-parallel, feed-forward) cannot write; the 1-bit and 32-bit WRN-20-10 of McDonnell
  (Training wide residual networks for deployment using a single bit for each weight, ICLR 2018) pad their shortcut with zero channels (`cat(x, zeros_like(x))`), which has no token.
- `mul with a constant operand`: Shake-Shake scales its two branches by a constant at inference;
  the language has no scaling token, and adding one would also change timm's NFNets (46 networks
  skipped for the same reason in the ImageNet corpus), a rebuild of that corpus left for later.
- `not series-parallel`: ResNet in ResNet's two interleaved streams cross inside each block.
- Other parameters than the CSV's: X-DenseNet's expander convolutions keep a fixed sparse mask of
  their weights; the language writes dense convolutions, so the spelling would be another network.
- Networks longer than {max_tokens} tokens (1001 and 1202 layers) are left out as in the timm corpus.

## `{IMAGENET_FILE}`: ImageNet-1k networks timm does not have

pytorchcv's ImageNet-1k networks whose token sequence (conditioning tokens and space tag aside)
is in neither `{PRETRAIN_FILE}` nor `{FINETUNE_FILE}`, under `space:{IMAGENET_TAG}`; networks with
identical spelling are stored once (`aliases`). {len(imagenet)} records, {imagenet_scored} with a
quality token: the quintile of top-5 error (the CSV's only ImageNet metric) among the weights
pytorchcv trained itself; weights it ported from another repository keep their error and get none.

Left out ({imagenet_skipped.count()} CSV rows):

{imagenet_skipped.table(examples=8)}

No NAS benchmark table and no search-space sample is in these files: every record is a network
a person designed and pytorchcv trained.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gptnas.corpus.pytorchcv",
        description="Build the pytorchcv corpus (CIFAR-10/100 and SVHN networks, ImageNet-1k networks timm "
                    "lacks) and its data card. Needs pytorchcv (the corpus extra).")
    parser.add_argument("--out", type=Path, default=Path("data"),
                        help="output directory, holding the timm and torchvision files (default: data)")
    parser.add_argument("--max_tokens", type=int, default=MAX_TOKENS,
                        help=f"leave out networks longer than this many tokens (default: {MAX_TOKENS})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rows, modules = metainfo()
        cifar, cifar_skipped = cifar_records(rows, modules, args.max_tokens)
        imagenet, imagenet_skipped = imagenet_records(rows, modules, args.max_tokens, args.out)
        write_jsonl(cifar, args.out / CIFAR_FILE)
        write_jsonl(imagenet, args.out / IMAGENET_FILE)
        write_atomic(args.out / CARD_FILE, data_card(cifar, cifar_skipped, imagenet, imagenet_skipped,
                                                     args.max_tokens))
    except GptnasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    log.info("wrote %d CIFAR/SVHN and %d ImageNet records to %s", len(cifar), len(imagenet), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
