"""Quality and cost tokens for the corpus networks, from published ImageNet-1k results.

Every corpus text opens with its conditioning tokens (`gptnas.language.tokens.condition`):
the quality token, the quintile of the network's ImageNet-1k top-1 among the networks of its
own file that have one, then the cost token, the bucket of its parameter count.

The rule, the same for both files:
- A network's top-1 is its best published ImageNet-1k top-1 among weights trained on
  ImageNet-1k images only, over its name and its aliases (they write the identical token
  sequence). Each set of weights counts once, at its own configured input size: an input size
  chosen with the design (EfficientNet's compound scaling) belongs to the design, while the
  second row timm publishes for some weights, at a larger test size, gains from the
  train/test resolution discrepancy alone and is dropped.
- Weights that saw other images (ImageNet-12k/21k, JFT, Instagram, YFCC, LAION, CLIP data,
  SSLD's extra images, a teacher trained on them) score higher than their design explains:
  they never set a quality. A network with only such results keeps `top1` and `pretrain` of
  the best of them for reference, and no quality token.
- timm: `results-imagenet.csv` of pytorch-image-models (one row per `architecture.tag`);
  the pretraining data is read from the tag and, for a bare `in1k` tag, from
  `model_metadata-in1k.csv`. torchvision: the weights metadata of torchvision (acc@1 of each
  weights enum; SWAG weights are pretrained on Instagram and left out), pinned below.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gptnas.errors import GptnasError
from gptnas.files import file_sha256
from gptnas.language import tokens

IN1K = "in1k"
TIMM_RESULTS_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "timm"  # ../shared beside the checkout
TIMM_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
TIMM_FILES = {  # the pinned copies (SOURCE.md beside them): other bytes would give other tokens
    "results-imagenet.csv": "30972bf7c7ab451bbd4480ec6116b13d0a84441c57bbc946896fd312264acfcd",
    "model_metadata-in1k.csv": "5e221773779c10edb5c6829f7fd52db3f69d8455020cc7e49607175ad4b2ecb7",
}

# Parts of a timm pretrained tag (split at "_") that name data beyond ImageNet-1k, and that data.
EXTRA_DATA = {
    "in12k": "in12k", "in21k": "in22k", "in22k": "in22k", "jft": "jft300m", "ig1b": "ig1b", "seer": "ig1b",
    "swag": "ig3.6b", "yfcc100m": "yfcc100m", "laion2b": "laion2b", "laiona": "laion", "clip": "clip",
    "openai": "clip", "webli": "webli", "m30m": "merged30m", "m38m": "merged38m", "ssld": "ssld", "6m": "ssld",
}
# Tags that name no data set but were distilled from a teacher that saw more.
TEACHER_DATA = {"goog_distilled_in1k": "in22k"}  # BiT students of an ImageNet-21k teacher (Beyer et al. 2022)
# model_metadata-in1k.csv values: ImageNet-1k images only (plain, adversarial, AdvProp, distilled), or the extra data.
METADATA_DATA = {"in1k": IN1K, "in1k-adv": IN1K, "in1k-ap": IN1K, "in1k-dist": IN1K, "in21k": "in22k",
                 "in21k-selfsl": "in22k", "jft300m-ns": "jft300m", "ig1b-wsl": "ig1b", "ig1b-swsl": "ig1b",
                 "yfc-semisl": "yfcc100m"}

TORCHVISION_VERSION = "0.29.1"


@dataclass(frozen=True)
class Result:
    """One published ImageNet-1k result of one set of weights."""

    weights: str  # timm: architecture.tag; torchvision: name.WEIGHTS
    top1: float
    img_size: int  # the evaluation size it was measured at
    pretrain: str  # in1k, or the extra data the weights saw

    @property
    def in1k_only(self) -> bool:
        return self.pretrain == IN1K


def _tv(name: str, weights: str, top1: float, img_size: int = 224) -> tuple[str, Result]:
    return name, Result(f"{name}.{weights}", top1, img_size, IN1K)


# The best ImageNet-1k-only weights of each fine-tuning network in torchvision 0.29.1 (its DEFAULT
# weights for all 36), from get_model_weights(name): meta["_metrics"]["ImageNet-1K"]["acc@1"] and the
# crop size of its transforms. `python -m gptnas.corpus` checks them against the installed torchvision.
TORCHVISION_RESULTS = dict([
    _tv("efficientnet_b0", "IMAGENET1K_V1", 77.692),
    _tv("efficientnet_b1", "IMAGENET1K_V2", 79.838, 240),
    _tv("efficientnet_b2", "IMAGENET1K_V1", 80.608, 288),
    _tv("efficientnet_b3", "IMAGENET1K_V1", 82.008, 300),
    _tv("efficientnet_b4", "IMAGENET1K_V1", 83.384, 380),
    _tv("efficientnet_b5", "IMAGENET1K_V1", 83.444, 456),
    _tv("efficientnet_b6", "IMAGENET1K_V1", 84.008, 528),
    _tv("efficientnet_b7", "IMAGENET1K_V1", 84.122, 600),
    _tv("googlenet", "IMAGENET1K_V1", 69.778),
    _tv("regnet_x_16gf", "IMAGENET1K_V2", 82.716),
    _tv("regnet_x_1_6gf", "IMAGENET1K_V2", 79.668),
    _tv("regnet_x_32gf", "IMAGENET1K_V2", 83.014),
    _tv("regnet_x_3_2gf", "IMAGENET1K_V2", 81.196),
    _tv("regnet_x_400mf", "IMAGENET1K_V2", 74.864),
    _tv("regnet_x_800mf", "IMAGENET1K_V2", 77.522),
    _tv("regnet_x_8gf", "IMAGENET1K_V2", 81.682),
    _tv("regnet_y_16gf", "IMAGENET1K_V2", 82.886),
    _tv("regnet_y_1_6gf", "IMAGENET1K_V2", 80.876),
    _tv("regnet_y_32gf", "IMAGENET1K_V2", 83.368),
    _tv("regnet_y_3_2gf", "IMAGENET1K_V2", 81.982),
    _tv("regnet_y_400mf", "IMAGENET1K_V2", 75.804),
    _tv("regnet_y_800mf", "IMAGENET1K_V2", 78.828),
    _tv("regnet_y_8gf", "IMAGENET1K_V2", 82.828),
    _tv("resnet101", "IMAGENET1K_V2", 81.886),
    _tv("resnet152", "IMAGENET1K_V2", 82.284),
    _tv("resnet18", "IMAGENET1K_V1", 69.758),
    _tv("resnet34", "IMAGENET1K_V1", 73.314),
    _tv("resnet50", "IMAGENET1K_V2", 80.858),
    _tv("resnext101_32x8d", "IMAGENET1K_V2", 82.834),
    _tv("resnext50_32x4d", "IMAGENET1K_V2", 81.198),
    _tv("shufflenet_v2_x0_5", "IMAGENET1K_V1", 60.552),
    _tv("shufflenet_v2_x1_0", "IMAGENET1K_V1", 69.362),
    _tv("shufflenet_v2_x1_5", "IMAGENET1K_V1", 72.996),
    _tv("shufflenet_v2_x2_0", "IMAGENET1K_V1", 76.23),
    _tv("wide_resnet101_2", "IMAGENET1K_V2", 82.51),
    _tv("wide_resnet50_2", "IMAGENET1K_V2", 81.602),
])


def torchvision_results_from_library(names: list[str]) -> dict[str, Result]:
    """The best ImageNet-1k-only weights of each network, read from the installed torchvision (offline)."""
    from torchvision.models import get_model_weights

    results = {}
    for name in names:
        candidates = [
            Result(f"{name}.{w.name}", w.meta["_metrics"]["ImageNet-1K"]["acc@1"], w.transforms.keywords["crop_size"],
                   IN1K)
            for w in get_model_weights(name) if "SWAG" not in w.name  # SWAG: pretrained on Instagram-3.6B
        ]
        results[name] = max(candidates, key=lambda r: (r.top1, r.weights))
    return results


def check_torchvision_pins() -> None:
    """Raises when the installed torchvision publishes other results than TORCHVISION_RESULTS."""
    live = torchvision_results_from_library(sorted(TORCHVISION_RESULTS))
    changed = sorted(name for name in live if live[name] != TORCHVISION_RESULTS[name])
    if changed:
        raise GptnasError(f"torchvision's weights metadata differs from TORCHVISION_RESULTS (gptnas/corpus/quality.py) for "
                          f"{', '.join(changed)}; update the pins (they were read from torchvision {TORCHVISION_VERSION})")


def tag_pretrain(tag: str, architecture_metadata: str | None) -> str:
    """The data a timm tag's weights saw: in1k, or the extra data it names (the first, in tag order)."""
    if tag in TEACHER_DATA:
        return TEACHER_DATA[tag]
    for part in tag.split("_"):
        if part in EXTRA_DATA:
            return EXTRA_DATA[part]
    if tag == IN1K and architecture_metadata is not None:  # a bare tag says nothing about the recipe
        return METADATA_DATA.get(architecture_metadata, architecture_metadata)
    return IN1K


def read_timm_results(folder: Path, check_pins: bool = True) -> dict[str, list[Result]]:
    """architecture -> its published results, from timm's results-imagenet.csv and model_metadata-in1k.csv."""
    folder = Path(folder)
    for name, sha256 in TIMM_FILES.items():
        path = folder / name
        if not path.is_file():
            raise GptnasError(f"{path} does not exist; point --timm_results at timm's published results "
                              f"(results/ of pytorch-image-models at {TIMM_COMMIT})")
        if check_pins and file_sha256(path) != sha256:
            raise GptnasError(f"{path} is not the pinned copy (sha256 {sha256}); the quality tokens would change")
    with open(folder / "model_metadata-in1k.csv", newline="") as f:
        metadata = {row["model"]: row["pretrain"] for row in csv.DictReader(f)}
    by_weights: dict[str, Result] = {}
    with open(folder / "results-imagenet.csv", newline="") as f:
        for row in csv.DictReader(f):
            architecture, _, tag = row["model"].partition(".")
            result = Result(row["model"], float(row["top1"]), int(row["img_size"]),
                            tag_pretrain(tag or IN1K, metadata.get(architecture)))
            if result.weights not in by_weights or result.img_size < by_weights[result.weights].img_size:
                by_weights[result.weights] = result  # a second row at timm's larger test size is dropped
    results: dict[str, list[Result]] = {}
    for weights, result in sorted(by_weights.items()):
        results.setdefault(weights.partition(".")[0], []).append(result)
    return results


def best_results(names: list[str], results: dict[str, list[Result]]) -> tuple[Result | None, Result | None]:
    """(the best ImageNet-1k-only result, the best with extra data) among the results of `names`."""
    found = [r for name in names for r in results.get(name, [])]
    best = {}
    for in1k_only in (True, False):
        candidates = [r for r in found if r.in1k_only == in1k_only]
        best[in1k_only] = max(candidates, key=lambda r: (r.top1, r.weights)) if candidates else None
    return best[True], best[False]


def _source_note(result: Result, source: str) -> str:
    where = "results-imagenet.csv" if source == "timm" else f"torchvision {TORCHVISION_VERSION} weights"
    return f"{result.weights} ({where}, {result.img_size} px)"


def annotate(records: list[dict], results: dict[str, list[Result]]) -> list[dict]:
    """The records of one source with `top1`, `quality`, `quality_source`, `pretrain` and conditioned
    texts. Quality levels are quintiles among the records that have an ImageNet-1k-only result.
    Records that are already annotated get the same annotation again."""
    chosen = []
    for record in records:
        names = [record["name"], *record.get("aliases", [])]
        in1k, extra = best_results(names, results)
        if in1k is not None:
            chosen.append((in1k, _source_note(in1k, record["source"])))
        elif extra is not None:
            note = _source_note(extra, record["source"])
            chosen.append((extra, f"none: only results with extra pretraining data, best {note}"))
        else:
            chosen.append((None, f"none: no published ImageNet-1k result for {', '.join(names)}"))
    scored = [i for i, (result, _) in enumerate(chosen) if result is not None and result.in1k_only]
    levels = dict(zip(scored, tokens.quality_levels([chosen[i][0].top1 for i in scored]))) if scored else {}
    out = []
    for i, (record, (result, note)) in enumerate(zip(records, chosen)):
        _, words = tokens.split_condition(record["text"].split())
        words = tokens.condition(levels.get(i), record.get("params")) + words
        out.append({**record, "text": " ".join(words), "n_tokens": len(words),
                    "top1": None if result is None else result.top1, "quality": levels.get(i),
                    "quality_source": note, "pretrain": None if result is None else result.pretrain})
    return out


def annotate_corpora(torchvision_records: list[dict], timm_records: list[dict],
                     timm_results: Path) -> tuple[list[dict], list[dict]]:
    """Both corpora annotated, each from its own source's results and ranked within itself."""
    torchvision = {name: [result] for name, result in TORCHVISION_RESULTS.items()}
    return annotate(torchvision_records, torchvision), annotate(timm_records, read_timm_results(timm_results))


def _counts_row(label: str, records: list[dict]) -> str:
    levels = Counter(r["quality"] for r in records)
    scored = [r["top1"] for r in records if r["quality"] is not None]
    extra_only = sum(1 for r in records if r["quality"] is None and r["top1"] is not None)
    per_level = " | ".join(str(levels[level]) for level in range(tokens.QUALITY_LEVELS))
    top1 = f"{min(scored):.1f}-{max(scored):.1f}" if scored else "-"
    return (f"| {label} | {len(records)} | {len(scored)} | {per_level} | {extra_only} | "
            f"{len(records) - len(scored) - extra_only} | {top1} |")


def _edges(records: list[dict]) -> str:
    """The lowest top-1 of each quality level, from q1 up."""
    lowest = {}
    for r in records:
        if r["quality"] is not None:
            lowest[r["quality"]] = min(lowest.get(r["quality"], r["top1"]), r["top1"])
    return ", ".join(f"q{level} from {lowest[level]:.1f}" for level in sorted(lowest) if level > 0)


def card_section(finetune_file: str, finetune: list[dict], pretrain_file: str, pretrain: list[dict]) -> str:
    """The data card's section on quality and cost tokens (without its heading)."""
    extra = Counter(r["pretrain"] for r in finetune + pretrain if r["quality"] is None and r["pretrain"])
    extra_list = ", ".join(f"{data} {n}" for data, n in sorted(extra.items())) or "none"
    buckets = Counter(tokens.params_bucket(r["params"]) for r in finetune + pretrain)
    buckets = ", ".join(f"{token} {buckets[token]}" for token in tokens.PARAM_TOKENS if buckets[token])
    return f"""Every text opens with conditioning tokens (`gptnas/language/tokens.py`), then `space:<source>`:
a quality token `q0`..`q4`, the quintile of the network's ImageNet-1k top-1 among the networks of
its own file that have one (`q4`: the best fifth), absent when unknown; then a cost token, the
bucket of `params` (eighth decades, named by the upper edge), always present. Fields:
`top1` (ImageNet-1k top-1, %), `quality` (0-4 or null), `quality_source` (the result behind it,
or why there is none), `pretrain` (the data the weights of that result saw).

- **Rule.** A network's top-1 is its best published ImageNet-1k top-1 among weights trained on
  ImageNet-1k images only, over its name and its `aliases` (they write the identical token
  sequence). Each set of weights counts once, at its own configured input size (timm's
  `img_size`, torchvision's crop size): an input size chosen with the design (EfficientNet's
  compound scaling) belongs to the design. `results-imagenet.csv` lists 290 of its 1,266 weights
  a second time at a larger test size (+0.8 top-1 on average, from the train/test resolution
  discrepancy, not the design): that row is dropped, so every weight stands at the size it was
  configured for.
- **Extra data.** Weights that saw other images (ImageNet-12k/21k, JFT, Instagram, YFCC, LAION,
  CLIP data, SSLD's extra images, or a teacher trained on them, as BiT's distilled ResNet-50) score
  higher than their design explains and never set a quality. The pretraining data is read from
  timm's tag (`..._in22k_ft_in1k`, `fb_swsl_ig1b_...`, `ns_jft_...`), and for a bare `in1k` tag
  from `model_metadata-in1k.csv`; distillation from an ImageNet-1k teacher counts as ImageNet-1k.
  A network with only such results keeps `top1` and `pretrain` of the best of them for reference
  and gets no quality token ({extra_list}).
- **timm** (`{pretrain_file}`): `results-imagenet.csv`, one row per `architecture.tag`,
  including timm's copies of torchvision weights (`.tv_in1k`, `.tv2_in1k`).
- **torchvision** (`{finetune_file}`): torchvision {TORCHVISION_VERSION}'s weights metadata,
  `get_model_weights(name)`, acc@1 of the best ImageNet-1k weights (the DEFAULT weights for all
  36; the SWAG weights of RegNetY-16/32GF are pretrained on Instagram and left out), pinned in
  `gptnas/corpus/quality.py` and checked against torchvision by the full build.
- Quintiles are taken within each file, over the records that have a quality; tied top-1 share
  their mean rank.

| file | records | with quality | q0 | q1 | q2 | q3 | q4 | extra data only | no result | top-1 |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
{_counts_row(f"`{finetune_file}`", finetune)}
{_counts_row(f"`{pretrain_file}`", pretrain)}

Level edges (top-1 %): torchvision {_edges(finetune)};
timm {_edges(pretrain)}.
Cost tokens used: {buckets}.

timm's results are from pytorch-image-models (Apache-2.0), folder `results/` at commit
`{TIMM_COMMIT}`:
{" and ".join(f"`{n}`" for n in TIMM_FILES)}, pinned by sha256 in `gptnas/corpus/quality.py`.
torchvision's metadata is BSD-3-Clause.

Re-annotate the files in place (no tracing, no timm needed; reads `../shared/data/timm`,
`--timm_results DIR` to point elsewhere); running it again gives identical bytes:

```
python -m gptnas.corpus --annotate_only --out data
```
"""

