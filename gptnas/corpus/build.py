"""Build the architecture corpora from human-designed networks.

    python -m gptnas.corpus --out data

writes
    finetune_torchvision.jsonl   the 36 torchvision networks GPT-NAS fine-tunes on
    pretrain_timm.jsonl.gz       timm's CNNs, one record per distinct token sequence
    README.md                    the data card: sources, counts, token statistics, licences

Models are built on the meta device (no weights, no downloads) and written with
gptnas.language.trace. A model the language cannot write is skipped and counted,
never half-written. Every record then gets its quality and cost tokens from published
ImageNet-1k results (gptnas.corpus.quality). The build is deterministic: same library
versions, same bytes. Needs the corpus extra: pip install torch==2.14.1 torchvision==0.29.1 timm

    python -m gptnas.corpus --annotate_only --out data

redoes only the last step on the files already there (no tracing, no timm), in place.
"""

import argparse
import contextlib
import fnmatch
import logging
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from gptnas.corpus import quality
from gptnas.errors import GptnasError, message
from gptnas.files import read_jsonl, write_atomic, write_jsonl
from gptnas.language import tokens
from gptnas.language.trace import encode_module

log = logging.getLogger(__name__)

FINETUNE_FILE = "finetune_torchvision.jsonl"
PRETRAIN_FILE = "pretrain_timm.jsonl.gz"
MAX_TOKENS = 4096

# The handcrafted networks of GPT-NAS's fine-tuning set, by family.
TORCHVISION_FAMILIES = {
    "efficientnet": [f"efficientnet_b{i}" for i in range(8)],
    "googlenet": ["googlenet"],
    "regnet": [f"regnet_{kind}_{size}" for kind in ("x", "y")
               for size in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")],
    "resnet": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
    "resnext": ["resnext50_32x4d", "resnext101_32x8d"],
    "shufflenet": ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"],
    "wide_resnet": ["wide_resnet50_2", "wide_resnet101_2"],
}
TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False}}

# timm families, first match wins: specific patterns come before the general ones they overlap.
# Family names match the torchvision ones, so holding out "resnet" holds it out of both files.
TIMM_FAMILIES = (
    ("wide_resnet", ["wide_resnet*"]),
    ("resnext", ["resnext*"]),
    ("seresnext", ["seresnext*", "legacy_seresnext*"]),
    ("seresnet", ["seresnet*", "legacy_seresnet*"]),
    ("senet", ["senet*", "legacy_senet*"]),
    ("ecaresnet", ["ecaresnet*", "ecaresnext*"]),
    ("resnetrs", ["resnetrs*"]),
    ("resnetv2", ["resnetv2*"]),
    ("resnet", ["resnet*"]),
    ("regnetz", ["regnetz*"]),
    ("regnet", ["regnetx*", "regnety*", "regnetv*"]),
    ("efficientnetv2", ["efficientnetv2*", "tf_efficientnetv2*"]),
    ("efficientnet", ["efficientnet*", "tf_efficientnet*"]),
    ("mobilenet_edgetpu", ["mobilenet_edgetpu*"]),
    ("mobilenetv1", ["mobilenetv1*"]),
    ("mobilenetv2", ["mobilenetv2*"]),
    ("mobilenetv3", ["mobilenetv3*", "tf_mobilenetv3*"]),
    ("mobilenetv4", ["mobilenetv4*"]),
    ("mnasnet", ["mnasnet*"]),
    ("semnasnet", ["semnasnet*"]),
    ("spnasnet", ["spnasnet*"]),
    ("fbnet", ["fbnet*"]),
    ("mixnet", ["mixnet*", "tf_mixnet*"]),
    ("tinynet", ["tinynet*"]),
    ("ghostnet", ["ghostnet*"]),
    ("repghostnet", ["repghostnet*"]),
    ("lcnet", ["lcnet*"]),
    ("rexnet", ["rexnet*"]),
    ("hardcorenas", ["hardcorenas*"]),
    ("dla", ["dla*"]),
    ("densenet", ["densenet*"]),
    ("inception", ["inception_v3", "inception_v4", "inception_resnet_v2"]),
    ("res2net", ["res2net*", "res2next*"]),
    ("resnest", ["resnest*"]),
    ("cspnet", ["cspresnet*", "cspresnext*", "cspdarknet*", "cs3*", "cspnext*", "darknet*", "sedarknet*"]),
    ("dpn", ["dpn*"]),
    ("vgg", ["vgg*"]),
    ("xception", ["xception*", "legacy_xception"]),
    ("gernet", ["gernet*"]),
    ("repvgg", ["repvgg*"]),
    ("selecsls", ["selecsls*"]),
    ("skresnet", ["skresnet*", "skresnext*"]),
    ("hrnet", ["hrnet*"]),
    ("tresnet", ["tresnet*"]),
    ("nfnet", ["nf_*", "nfnet*", "dm_nfnet*", "eca_nfnet*"]),
    ("mobileone", ["mobileone*"]),
    ("hgnet", ["hgnet*"]),
    ("vovnet", ["vovnet*", "ese_vovnet*"]),
    ("starnet", ["starnet*"]),
)


@dataclass
class Skipped:
    """Why models were left out: reason -> model names."""

    reasons: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, reason: str) -> None:
        log.info("skipping %s: %s", name, reason)
        self.reasons.setdefault(reason, []).append(name)

    def count(self) -> int:
        return sum(len(names) for names in self.reasons.values())

    def table(self, examples: int = 4) -> str:
        """A markdown table of the reasons, the most frequent first, with up to `examples` names each."""
        if not self.reasons:
            return "Nothing was skipped."
        rows = ["| models | reason | examples |", "|---:|---|---|"]
        for reason, names in sorted(self.reasons.items(), key=lambda item: (-len(item[1]), item[0])):
            shown = ", ".join(names[:examples]) + (", ..." if len(names) > examples else "")
            rows.append(f"| {len(names)} | {reason.replace('|', '/')} | {shown} |")
        return "\n".join(rows)


def skip_reason(error: Exception) -> str:
    """The error message without node names and sizes, so that one cause counts once."""
    message = str(error).splitlines()[0] if str(error) else ""
    message = re.sub(r"\s*\((node|stuck at) [^)]*\)|\s*\[[^\]]*\]", "", message)
    return f"{type(error).__name__}: {message}"


@contextlib.contextmanager
def _parameters_on_meta():
    """Builders that compute with real tensors (torchvision's RegNet width rule) fail under
    torch.device("meta"); this moves only parameters and buffers there, as they are registered."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter_on_meta(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer_on_meta(module, name, tensor, persistent=True):
        register_buffer(module, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter_on_meta, buffer_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def build_on_meta(builder):
    try:
        with torch.device("meta"):
            return builder()
    except (NotImplementedError, RuntimeError) as error:
        log.debug("meta construction failed (%s), retrying with parameters moved to meta", error)
        with _parameters_on_meta():
            return builder()


def traced_record(name: str, source: str, family: str, model: nn.Module) -> dict:
    words = encode_module(model, source)
    return {
        "name": name,
        "source": source,
        "family": family,
        "text": " ".join(words),
        "n_tokens": len(words),
        "n_blocks": words.count(tokens.BLOCK),
        "params": sum(p.numel() for p in model.parameters()),
        "aliases": [],
    }


def torchvision_records() -> list[dict]:
    try:
        import torchvision
    except ImportError as error:
        raise GptnasError("torchvision is missing: pip install torch==2.14.1 torchvision==0.29.1 timm") from error
    records = []
    names = sorted((name, family) for family, members in TORCHVISION_FAMILIES.items() for name in members)
    for name, family in tqdm(names, desc="torchvision", disable=None):
        kwargs = {"weights": None, **TORCHVISION_KWARGS.get(name, {})}
        model = build_on_meta(lambda: torchvision.models.get_model(name, **kwargs))
        records.append(traced_record(name, "torchvision", family, model))  # no skipping: the set must be complete
    return records


def timm_family(name: str) -> str | None:
    for family, patterns in TIMM_FAMILIES:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return family
    return None


def timm_records(max_tokens: int) -> tuple[list[dict], Skipped]:
    try:
        import timm
    except ImportError as error:
        raise GptnasError("timm is missing: pip install torch==2.14.1 torchvision==0.29.1 timm") from error
    names = sorted({name for _, patterns in TIMM_FAMILIES for p in patterns for name in timm.list_models(p)})
    records, skipped, by_text = [], Skipped(), {}
    for name in tqdm(names, desc="timm", disable=None):
        try:
            model = build_on_meta(lambda: timm.create_model(name, pretrained=False))
            record = traced_record(name, "timm", timm_family(name), model)
        except Exception as error:  # noqa: BLE001 - any failure to build or trace skips just that model
            skipped.add(name, skip_reason(error))
            continue
        if record["n_tokens"] > max_tokens:
            skipped.add(name, f"longer than {max_tokens} tokens")
        elif record["text"] in by_text:  # names are sorted, so the first name of a duplicate stays
            by_text[record["text"]]["aliases"].append(name)
        else:
            by_text[record["text"]] = record
            records.append(record)
    return records, skipped


def _replace_section(card: str, heading: str, body: str) -> str:
    """The card with the body of its section `## heading` (up to the next heading) replaced."""
    start = card.find(f"\n## {heading}\n\n")
    if start < 0:
        raise GptnasError(f"the data card has no section '## {heading}'; rebuild it with `python -m gptnas.corpus`")
    start += len(f"\n## {heading}\n\n")
    end = card.find("\n## ", start - 1)  # an empty section ends at once
    return card[:start] + body + (card[end:] if end >= 0 else "")


def annotate_in_place(folder: Path, timm_results: Path) -> tuple[list[dict], list[dict]]:
    """Gives the corpus files in `folder` their quality and cost tokens again, and refreshes the data
    card's sections that depend on them; the rest of the card (from the tracing build) stays."""
    finetune_path, pretrain_path, card_path = folder / FINETUNE_FILE, folder / PRETRAIN_FILE, folder / "README.md"
    for path in (finetune_path, pretrain_path, card_path):
        if not path.is_file():
            raise GptnasError(f"{path} does not exist; build the corpus with `python -m gptnas.corpus --out {folder}`")
    finetune, pretrain = quality.annotate_corpora(read_jsonl(finetune_path), read_jsonl(pretrain_path),
                                                         timm_results)
    card = _replace_section(card_path.read_text(), "Quality and cost tokens",
                            quality.card_section(FINETUNE_FILE, finetune, PRETRAIN_FILE, pretrain))
    card = _replace_section(card, "Token statistics", _token_section(finetune, pretrain))
    write_jsonl(finetune, finetune_path)
    write_jsonl(pretrain, pretrain_path)
    write_atomic(card_path, card)
    return finetune, pretrain


def _token_stats(records: list[dict]) -> str:
    lengths = [r["n_tokens"] for r in records]
    vocab = {w for r in records for w in r["text"].split()}
    return (f"{len(records)} networks, {len(vocab)} distinct tokens, tokens per network: "
            f"mean {statistics.mean(lengths):.0f}, median {statistics.median(lengths):.0f}, "
            f"min {min(lengths)}, max {max(lengths)}; blocks per network: "
            f"mean {statistics.mean(r['n_blocks'] for r in records):.1f}")


def _token_section(finetune: list[dict], pretrain: list[dict]) -> str:
    vocab = {w for r in finetune + pretrain for w in r["text"].split()}
    return (f"- finetune: {_token_stats(finetune)}\n- pretrain: {_token_stats(pretrain)}\n"
            f"- both files: {len(vocab)} distinct tokens.\n")


def _family_table(finetune: list[dict], pretrain: list[dict]) -> str:
    fine, pre = Counter(r["family"] for r in finetune), Counter(r["family"] for r in pretrain)
    aliases = Counter()
    for r in pretrain:
        aliases[r["family"]] += len(r["aliases"])
    rows = ["| family | finetune (torchvision) | pretrain (timm) | timm aliases merged |", "|---|---:|---:|---:|"]
    for family in sorted(fine.keys() | pre.keys()):
        rows.append(f"| {family} | {fine[family]} | {pre[family]} | {aliases[family]} |")
    rows.append(f"| **total** | {len(finetune)} | {len(pretrain)} | {sum(aliases.values())} |")
    return "\n".join(rows)


def data_card(finetune: list[dict], pretrain: list[dict], skipped: Skipped, max_tokens: int) -> str:
    import timm
    import torchvision

    def body(record):  # the text without its conditioning tokens and space tag
        return " ".join(tokens.split_condition(record["text"].split())[1][1:])

    finetune_bodies = {body(r): r["name"] for r in finetune}
    overlap = sorted(f"{r['name']} = {finetune_bodies[body(r)]}" for r in pretrain if body(r) in finetune_bodies)
    n_aliases = sum(len(r["aliases"]) for r in pretrain)
    return f"""# Architecture corpora

Human-designed networks written in the gptnas architecture language
(`gptnas/language/tokens.py`), one JSON record per network:
`name`, `source` (torchvision or timm), `family` (hold out whole families with it),
`text` (space-separated tokens: the conditioning tokens, then `space:<source>` and the layers),
`n_tokens`, `n_blocks`, `params` (parameter count), `aliases` (other model names with the identical
token sequence), `top1`, `quality`, `quality_source`, `pretrain` (see "Quality and cost tokens").

| file | content |
|---|---|
| `{FINETUNE_FILE}` | the {len(finetune)} torchvision networks of GPT-NAS's fine-tuning set |
| `{PRETRAIN_FILE}` | {len(pretrain)} distinct timm CNNs for pretraining (gzip JSONL) |
| `cifar_designs.jsonl` | classic CIFAR designs written in the `cifar` space, with their published CIFAR accuracies and citations (`CIFAR_DESIGNS.md`; built by `python -m gptnas.corpus.cifar --out data`) |
| `cifar_pytorchcv.jsonl`, `imagenet_pytorchcv.jsonl` | pytorchcv's CIFAR-10, CIFAR-100 and SVHN networks under their dataset's quality token, and its ImageNet-1k networks timm lacks (`PYTORCHCV.md`; built by `python -m gptnas.corpus.pytorchcv --out data`) |
| `cifar_space_costs.jsonl` | cost-only uniform samples of the `cifar` space, up to 50 per cost bucket, no quality token and no accuracy: what each cost token means in the space's spelling; in no shipped training stage, since uniform samples teach the GPT to write uniform networks (benchmarks/RESULTS.md, c13; built by `python -m gptnas.corpus.space_costs --space cifar --out data`) |

Load with `datasets.load_dataset("json", data_files="data/{PRETRAIN_FILE}")`.

## Sources and licences

- torchvision {torchvision.__version__} (BSD-3-Clause), `torchvision.models.get_model(name, weights=None)`;
  GoogLeNet with `aux_logits=False, init_weights=False`.
- timm {timm.__version__} (Apache-2.0), `timm.create_model(name, pretrained=False)`.
- torch {torch.__version__.split("+")[0]}, models built on the meta device and traced with `torch.fx`.

Only architectures are used: no weights are downloaded or stored.

## Rules

- No NAS benchmark table enters these files, and no random search-space samples (those are
  `cifar_space_costs.jsonl`, which carries no accuracy): every record
  is a network a person designed and published; its only accuracy is the published ImageNet-1k
  result behind its quality token.
- timm models with identical token sequences are stored once, under the first name in sorted
  order; the others are listed in `aliases` ({n_aliases} aliases merged).
- Networks longer than {max_tokens} tokens are left out.
- A model is skipped, never partly written, when it uses a layer the language has no token for
  or its graph is not series-parallel (see below).
- {len(overlap)} timm records have, conditioning tokens and space tag aside, exactly the tokens of a
  fine-tuning network ({", ".join(overlap) if overlap else "none"}); hold out their families when that matters.

## Quality and cost tokens

{quality.card_section(FINETUNE_FILE, finetune, PRETRAIN_FILE, pretrain)}
## Counts per family

{_family_table(finetune, pretrain)}

## Token statistics

{_token_section(finetune, pretrain)}
## Skipped timm models

{skipped.count()} of {skipped.count() + len(pretrain) + n_aliases} timm candidates (the patterns in
`gptnas/corpus/build.py`, `TIMM_FAMILIES`) were skipped:

{skipped.table()}

## Rebuild

```
pip install torch==2.14.1 torchvision==0.29.1 timm=={timm.__version__}
python -m gptnas.corpus --out data
```

The build is deterministic: the same library versions give byte-identical files.
It reads timm's published results from `../shared/data/timm` (`--timm_results DIR`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gptnas.corpus",
        description="Build the architecture corpora (torchvision fine-tuning set, timm pretraining set) "
                    "and their data card. Needs torchvision and timm (the corpus extra).",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output directory (default: data)")
    parser.add_argument("--annotate_only", action="store_true",
                        help="only give the corpus files already in --out their quality and cost tokens again "
                             "(no tracing, needs no timm or torchvision)")
    parser.add_argument("--timm_results", type=Path, default=quality.TIMM_RESULTS_DIR,
                        help="folder with timm's results-imagenet.csv and model_metadata-in1k.csv "
                             "(default: ../shared/data/timm beside the repository)")
    parser.add_argument("--max_tokens", type=int, default=MAX_TOKENS,
                        help=f"leave out networks longer than this many tokens (default: {MAX_TOKENS})")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log debugging details")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.annotate_only:
            finetune, pretrain = annotate_in_place(args.out, args.timm_results)
            log.info("annotated %d torchvision and %d timm networks in %s: %d and %d with a quality token",
                     len(finetune), len(pretrain), args.out, *(sum(r["quality"] is not None for r in records)
                                                               for records in (finetune, pretrain)))
            return 0
        finetune = torchvision_records()
        pretrain, skipped = timm_records(args.max_tokens)
        quality.check_torchvision_pins()
        finetune, pretrain = quality.annotate_corpora(finetune, pretrain, args.timm_results)
        args.out.mkdir(parents=True, exist_ok=True)
        write_jsonl(finetune, args.out / FINETUNE_FILE)
        write_jsonl(pretrain, args.out / PRETRAIN_FILE)
        write_atomic(args.out / "README.md", data_card(finetune, pretrain, skipped, args.max_tokens))
    except GptnasError as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
    log.info("wrote %d torchvision and %d timm networks to %s (%d timm models skipped)",
             len(finetune), len(pretrain), args.out, skipped.count())
    return 0


if __name__ == "__main__":
    sys.exit(main())
