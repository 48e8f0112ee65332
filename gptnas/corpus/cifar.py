"""Classic CIFAR networks written in the `cifar` space, with the accuracies their papers report.

    python -m gptnas.corpus.cifar --out data

writes
    cifar_designs.jsonl   one record per design: its text in the `cifar` space behind its condition
                          tokens (`q3 p1m space:cifar ...`), parameters, MACs, published CIFAR-10 /
                          CIFAR-100 accuracy and citation, and how it differs from the published network
    CIFAR_DESIGNS.md      the data card: the same designs as a table, and the designs left out

The GPT's other corpora are ImageNet networks; these teach it how the space itself spells good
32x32 networks (a 3x3 stem, no early pooling, three stages). Each design is the nearest network the
space can write: where that is not the published network, `note` says what differs, and a design
the space cannot come close to is left out (`LEFT_OUT`) rather than replaced by another network.

Accuracies are test accuracies, 100 minus the test error of the cited table; none is estimated.
The quality token is the quintile of CIFAR-10 accuracy among the designs that have one
(`tokens.quality_levels`); the cost token is the bucket of the space's own parameter count.
The build is deterministic: the same torch gives the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NamedTuple

from gptnas.errors import GptnasError, message
from gptnas.files import write_atomic, write_jsonl
from gptnas.language import tokens
from gptnas.spaces import get_space
from gptnas.spaces.cifar import Block, CifarArch

log = logging.getLogger(__name__)

DESIGNS_FILE = "cifar_designs.jsonl"
CARD_FILE = "CIFAR_DESIGNS.md"
SOURCE = "cifar-papers"


class Design(NamedTuple):
    name: str
    family: str  # the family names of the other corpora, so holding out "resnet" holds it out everywhere
    arch: CifarArch
    citation: str
    cifar10_error: float | None  # test error (%) as the cited table gives it; None: not reported there
    cifar100_error: float | None
    note: str  # how the space's network differs from the published one


def _net(stem: int, *stages: tuple[str, int, int, int]) -> CifarArch:
    """A stem width, then stages of (kind, width, blocks, stride); a stage's first block has its stride."""
    blocks = []
    for kind, width, n, stride in stages:
        blocks += [Block(kind, width, stride if i == 0 else 1) for i in range(n)]
    return CifarArch(stem, tuple(blocks))


def _cifar_resnet(kind: str, blocks: tuple[int, int, int], widths: tuple[int, int, int]) -> CifarArch:
    """He et al.'s CIFAR layout, which WRN keeps: a 3x3 stem of 16, three stages on 32, 16 and 8 pixels."""
    return _net(16, *((kind, w, n, s) for w, n, s in zip(widths, blocks, (1, 2, 2))))


HE_2016 = "He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition, CVPR 2016"
WRN_2016 = ("Zagoruyko, Komodakis: Wide Residual Networks, BMVC 2016 (arXiv:1605.07146v4), "
            "Table 4 (ZCA preprocessing, median of 5 runs)")
MOBILENETV2 = ("Sandler, Howard, Zhu, Zhmoginov, Chen: MobileNetV2: Inverted Residuals and Linear Bottlenecks, "
               "CVPR 2018, Table 2 (ImageNet design); CIFAR variant as in kuangliu/pytorch-cifar models/mobilenetv2.py")
SHUFFLENETV2 = ("Ma, Zhang, Zheng, Sun: ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, "
                "ECCV 2018, Table 5 (ImageNet design, {}); CIFAR variant as in kuangliu/pytorch-cifar "
                "models/shufflenetv2.py")

OPTION_A = ("The paper's shortcuts at the two stage changes are parameter-free (option A, zero-padded identity); "
            "the space's `resnet_basic` uses a 1x1 conv + BN projection there (+2.8k parameters). "
            "The paper reports no CIFAR-100 result.")
WRN_DIFFERENCES = ("The space's stem is conv-BN-ReLU where WRN's is a bare conv (its first block normalises), "
                   "its projection shortcuts read the block input rather than the pre-activated one, and its head "
                   "has no final BN-ReLU before pooling. No dropout (the cited numbers are without dropout).")
WRN_TABLE_5 = " Table 5 (mean/std preprocessing) reports {:.2f} / {:.2f} for the same network."
SAME_BLOCKS = "Block for block the published network. "
NO_CIFAR_RESULT = " The cited papers report no CIFAR result for this network, so the record carries no quality token."
NO_HEAD_CONV = "the final 1x1 conv to {} is left out (the space's head is pooling and a linear layer)."

DESIGNS: tuple[Design, ...] = (
    Design("resnet20", "resnet", _cifar_resnet("resnet_basic", (4, 3, 3), (16, 32, 64)), HE_2016 + ", Table 6",
           8.75, None,
           "ResNet-20 has 9 blocks (3 per stage) and the space needs at least 10: this network has a fourth "
           "16-wide block in stage 1 (+4.7k parameters, 2 more layers). " + OPTION_A),
    Design("resnet32", "resnet", _cifar_resnet("resnet_basic", (5, 5, 5), (16, 32, 64)), HE_2016 + ", Table 6",
           7.51, None, SAME_BLOCKS + OPTION_A),
    Design("resnet44", "resnet", _cifar_resnet("resnet_basic", (6, 7, 7), (16, 32, 64)), HE_2016 + ", Table 6",
           7.17, None,
           "ResNet-44 has 21 blocks (7 per stage) and the space holds at most 20: this network has 6 blocks "
           "in stage 1 (-4.7k parameters, 2 fewer layers). " + OPTION_A),
    Design("wrn_40_1", "wide_resnet", _cifar_resnet("wide_basic", (6, 6, 6), (16, 32, 64)), WRN_2016, 6.85, 30.89,
           SAME_BLOCKS + "(k=1: a 40-layer pre-activation ResNet.) " + WRN_DIFFERENCES),
    Design("wrn_40_2", "wide_resnet", _cifar_resnet("wide_basic", (6, 6, 6), (32, 64, 128)), WRN_2016, 5.33, 26.04,
           SAME_BLOCKS + WRN_DIFFERENCES),
    Design("wrn_40_4", "wide_resnet", _cifar_resnet("wide_basic", (6, 6, 6), (64, 128, 256)), WRN_2016, 4.97, 22.89,
           SAME_BLOCKS + WRN_DIFFERENCES + WRN_TABLE_5.format(100 - 4.53, 100 - 21.18)),
    Design("wrn_40_8", "wide_resnet", _cifar_resnet("wide_basic", (6, 6, 6), (128, 256, 512)), WRN_2016, 4.66, None,
           SAME_BLOCKS + WRN_DIFFERENCES + " The table gives no CIFAR-100 result for WRN-40-8."),
    Design("wrn_22_8", "wide_resnet", _cifar_resnet("wide_basic", (4, 3, 3), (128, 256, 512)), WRN_2016, 4.38, 21.22,
           "WRN-22-8 has 9 blocks (3 per stage) and the space needs at least 10: this network has a fourth "
           "128-wide block in stage 1 (+0.3M parameters, 2 more layers). " + WRN_DIFFERENCES),
    Design("wrn_28_10", "wide_resnet", _cifar_resnet("wide_basic", (4, 4, 4), (192, 384, 512)), WRN_2016, 4.17, 20.50,
           "WRN-28-10's widths 160, 320, 640 are not widths of the space: its nearest ones are 192, 384 and 512 "
           "(640 is above the largest), so this network has 30.9M parameters where the paper's has 36.5M. "
           + WRN_DIFFERENCES + WRN_TABLE_5.format(100 - 4.00, 100 - 19.25)),
    Design("resnet34_cifar", "resnet",
           _net(64, ("resnet_basic", 64, 3, 1), ("resnet_basic", 128, 4, 2), ("resnet_basic", 256, 6, 2),
                ("resnet_basic", 512, 3, 2)),
           HE_2016 + ", Table 1 (ImageNet ResNet-34); CIFAR stem as in kuangliu/pytorch-cifar models/resnet.py",
           None, None,
           "Block for block the common CIFAR variant: a 3x3 stride-1 stem of 64 and no max-pool, then ImageNet "
           "ResNet-34's 3, 4, 6, 3 basic blocks of 64 to 512 with projection shortcuts." + NO_CIFAR_RESULT),
    Design("mobilenetv2_cifar", "mobilenetv2",
           _net(32, ("mbconv_k3_e3", 16, 1, 1), ("mbconv_k3_e6", 24, 2, 1), ("mbconv_k3_e6", 32, 3, 2),
                ("mbconv_k3_e6", 64, 4, 2), ("mbconv_k3_e6", 96, 3, 1), ("mbconv_k3_e6", 192, 3, 2),
                ("mbconv_k3_e6", 384, 1, 1)),
           MOBILENETV2, None, None,
           "The 17 inverted-residual blocks of the CIFAR variant (stride-1 stem of 32, first two stages at "
           "stride 1), with these differences: the space's MBConv blocks use SiLU where MobileNetV2 uses ReLU6; "
           "the first block expands 3x (the space's smallest expansion) where the paper's does not expand; widths "
           "160 and 320 become the space's nearest, 192 and 384; " + NO_HEAD_CONV.format(1280) + NO_CIFAR_RESULT),
    Design("shufflenet_v2_x0_5_cifar", "shufflenet",
           _net(24, ("shufflenet_v2", 48, 4, 2), ("shufflenet_v2", 96, 8, 2), ("shufflenet_v2", 192, 4, 2)),
           SHUFFLENETV2.format("0.5x"), None, None,
           "The 4, 8, 4 units of ShuffleNetV2 0.5x (widths 48, 96, 192) after a stride-1 3x3 stem of 24 without "
           "max-pool, as in the CIFAR variant; " + NO_HEAD_CONV.format(1024) + NO_CIFAR_RESULT),
    Design("shufflenet_v2_x1_0_cifar", "shufflenet",
           _net(24, ("shufflenet_v2", 128, 4, 2), ("shufflenet_v2", 256, 8, 2), ("shufflenet_v2", 512, 4, 2)),
           SHUFFLENETV2.format("1x"), None, None,
           "The 4, 8, 4 units of ShuffleNetV2 1x after a stride-1 3x3 stem of 24 without max-pool, as in the CIFAR "
           "variant; widths 116, 232, 464 become the space's nearest, 128, 256, 512; "
           + NO_HEAD_CONV.format(1024) + NO_CIFAR_RESULT),
)

# Classic CIFAR designs the space cannot come close to, and why.
LEFT_OUT: dict[str, str] = {
    "ResNet-56, ResNet-110, ResNet-1202 (He et al. 2016)": (
        "27, 54 and 600 blocks; the space holds at most 20 (its nearest network is the 20-block resnet44)."),
    "Pre-activation ResNet-110 / ResNet-164 / ResNet-1001 (He et al. 2016b)": (
        "54 basic or bottleneck blocks and more, over the 20-block limit. Pre-activation itself is expressible: "
        "`wide_basic` is a pre-activation basic block and wrn_40_1 is a 40-layer pre-activation ResNet."),
    "WRN-16-4, WRN-16-8, WRN-16-10": (
        "6 blocks; the space needs at least 10, and four more blocks make another network (WRN-24-k)."),
    "WRN-22-10, WRN-28-12": (
        "last stages 640 and 768 wide, above the space's largest width (512), on top of WRN-22's missing block; "
        "WRN-28-12 written with the nearest widths is exactly the wrn_28_10 network."),
    "WRN-40-10 (dropout)": "its last stage is 640 wide and its only number is a best single run with dropout.",
    "WRN-52-1": "24 blocks, over the 20-block limit.",
    "ResNeXt-29 8x64d / 16x64d (Xie et al. 2017)": (
        "9 blocks (the space needs 10) of widths 256, 512, 1024 (1024 is above 512), and its bottleneck is not a "
        "block of the space: an inner width of twice the output in 8 or 16 groups of 64 channels, where "
        "`resnext_bottleneck` has an inner width of half the output in groups of 4 channels."),
    "DenseNet-BC, k=12, L=100 (Huang et al. 2017)": (
        "dense connectivity: every layer of a dense block reads the concatenation of all earlier ones, and "
        "transitions are a 1x1 conv plus average pooling; no block of the space concatenates its input with its "
        "output or is a lone 1x1 conv."),
    "PyramidNet (Han et al. 2017)": (
        "every published CIFAR PyramidNet has 110 to 272 layers (54+ blocks, over 20), its width grows "
        "additively at every block (off the space's 11 widths) and its shortcuts are zero-padded identities."),
    "VGG-16, CIFAR variant": (
        "plain conv-BN-ReLU layers are not a block of the space (every block is residual or branched), and VGG "
        "pools 4 or 5 times where the space allows 3 strided blocks."),
    "ResNet-18, CIFAR variant": "8 blocks; the space needs at least 10 (ResNet-34's CIFAR variant is in).",
    "ResNet-50 / ResNeXt / SE-ResNet CIFAR variants with bottlenecks": (
        "their last stages are 1024 or 2048 wide, above the space's largest width (512)."),
}


def _accuracy(error: float | None) -> float | None:
    return None if error is None else round(100 - error, 2)


def records(designs: tuple[Design, ...] = DESIGNS) -> list[dict]:
    """One record per design, condition tokens in front of the space's spelling."""
    space = get_space("cifar")
    known = [d for d in designs if d.cifar10_error is not None]
    levels = dict(zip((d.name for d in known), tokens.quality_levels([_accuracy(d.cifar10_error) for d in known])))
    out = []
    for design in designs:
        cost = space.cost(design.arch)
        spelling = space.encode(design.arch)
        text = " ".join([*tokens.condition(levels.get(design.name), cost["params"]), spelling])
        _, rest = tokens.split_condition(text.split())
        if space.key(space.decode(" ".join(rest))) != space.key(design.arch):
            raise AssertionError(f"{design.name}: the text does not decode back to the design")
        out.append({
            "name": design.name,
            "source": SOURCE,
            "family": design.family,
            "text": text,
            "params": cost["params"],
            "flops": cost["flops"],
            "cifar10_acc": _accuracy(design.cifar10_error),
            "cifar100_acc": _accuracy(design.cifar100_error),
            "citation": design.citation,
            "note": design.note,
        })
    return out


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def data_card(records: list[dict]) -> str:
    space = get_space("cifar")
    rows = []
    for r in records:
        condition, spelling = tokens.split_condition(r["text"].split())
        blocks = len(space.decode(" ".join(spelling)).blocks)
        rows.append(f"| {r['name']} | {blocks} | {r['params'] / 1e6:.2f}M "
                    f"| {r['flops'] / 1e6:.0f}M | {_cell(r['cifar10_acc'])} | {_cell(r['cifar100_acc'])} "
                    f"| `{' '.join(condition)}` | {r['citation']} |")
    notes = "\n".join(f"- **{r['name']}**: {r['note']}" for r in records)
    left_out = "\n".join(f"| {name} | {why} |" for name, why in LEFT_OUT.items())
    n_known = sum(r["cifar10_acc"] is not None for r in records)
    return f"""## Classic CIFAR designs (`{DESIGNS_FILE}`)

{len(records)} networks designed for 32x32 inputs, written in the `cifar` search space itself, so the GPT
learns how that space spells good CIFAR networks. One JSON record per network: `name`, `source`
("{SOURCE}"), `family`, `text`, `params`, `flops`, `cifar10_acc`, `cifar100_acc`, `citation`, `note`.

- `text` is the space's encoding behind its condition tokens: the quality token `q0`..`q4` is the quintile of
  the network's CIFAR-10 accuracy among the {n_known} designs that have one (no quality token when the paper
  reports no CIFAR-10 result); the cost token is the bucket of the space's own parameter count. The text
  after the condition tokens decodes (`space.decode`) to the design.
- `params` and `flops` are the space's own count for the network it builds (10 classes; FLOPs are
  multiply-accumulates of conv and linear layers at 32x32, the NAS-benchmark convention).
- Accuracies are test accuracies, 100 minus the test error in the cited table; `null` where that table
  gives none. Nothing is estimated. The WRN numbers all come from one table (Table 4, ZCA whitening, median
  of 5 runs) so that they rank under one protocol; Table 5's mean/std numbers for WRN-40-4 and WRN-28-10 are
  in their notes. Numbers from different papers used different training recipes.
- Where the space cannot write the published network exactly, the record is the nearest network it can
  write and `note` says what differs; the accuracy is still the published network's.

| design | blocks | params | FLOPs | CIFAR-10 | CIFAR-100 | condition | source |
|---|---:|---:|---:|---:|---:|---|---|
{chr(10).join(rows)}

### How each network differs from the published one

{notes}

### Left out: what the space cannot express

| design | why |
|---|---|
{left_out}

Rebuild: `python -m gptnas.corpus.cifar --out data` (deterministic: the same torch gives the same bytes).
"""


def build(out: Path) -> list[dict]:
    """Write the designs and their data card to `out`; returns the records."""
    out.mkdir(parents=True, exist_ok=True)
    result = records()
    write_jsonl(result, out / DESIGNS_FILE)
    write_atomic(out / CARD_FILE, data_card(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gptnas.corpus.cifar",
        description="Write the classic CIFAR designs in the cifar space, with their published accuracies, "
                    f"to OUT/{DESIGNS_FILE} and their data card to OUT/{CARD_FILE}.",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output directory (default: data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = build(args.out)
    except (GptnasError, OSError) as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
    log.info("wrote %d cifar designs (%d with a CIFAR-10 accuracy) to %s", len(result),
             sum(r["cifar10_acc"] is not None for r in result), args.out / DESIGNS_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
