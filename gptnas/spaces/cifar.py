"""The GPT-NAS macro space for 32x32 inputs (CIFAR-10 / CIFAR-100).

A network is a 3x3 stem, 10-20 blocks and a pooled linear classifier. Each
block gene is (kind, width, stride): one of 15 kinds from the seven
handcrafted families GPT-NAS draws on, an output width from `WIDTHS`, and
stride 1 or 2 (at most `MAX_DOWNSAMPLES` strided blocks, so the last feature
map is at least 4x4). Pooling blocks always halve the resolution and keep the
width; Inception blocks keep the resolution, as in GoogLeNet.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from gptnas.errors import GptnasError, quote
from gptnas.spaces import block_kinds as K
from gptnas.spaces import blocks as B
from gptnas.spaces.base import SPACES, SearchSpace, halved

WIDTHS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
STEM_WIDTHS = (16, 24, 32, 48, 64)
MIN_BLOCKS, MAX_BLOCKS, MAX_DOWNSAMPLES = 10, 20, 3


KINDS: dict[str, K.Kind] = {
    "resnet_basic": K.kind("resnet_basic"),
    "resnet_bottleneck": K.kind("resnet_bottleneck"),
    "resnext_bottleneck": K.kind("resnext_bottleneck"),
    "wide_basic": K.kind("wide_basic"),
    "mbconv_k3_e3": K.kind("mbconv", kernel=3, expansion=3),
    "mbconv_k3_e6": K.kind("mbconv", kernel=3, expansion=6),
    "mbconv_k5_e6": K.kind("mbconv", kernel=5, expansion=6),
    "mbconv_se_k3_e6": K.kind("mbconv", kernel=3, expansion=6, se=True),
    "mbconv_se_k5_e6": K.kind("mbconv", kernel=5, expansion=6, se=True),
    "inception": K.kind("inception"),
    "regnet_x": K.kind("regnet_x"),
    "regnet_y": K.kind("regnet_y"),
    "shufflenet_v2": K.kind("shufflenet_v2"),
    "maxpool": K.kind("maxpool"),
    "avgpool": K.kind("avgpool"),
}


class Block(NamedTuple):
    kind: str
    width: int  # output width; 0 for pooling, which keeps its input width
    stride: int


@dataclass(frozen=True)
class CifarArch:
    stem: int
    blocks: tuple[Block, ...]

    def widths(self) -> list[int]:
        """Input width of every block, then the final width."""
        widths = [self.stem]
        for block in self.blocks:
            widths.append(widths[-1] if KINDS[block.kind].keeps_width else block.width)
        return widths


_STEM, _DONE, _HEAD = "stem", "done", "head"


@SPACES.register
class CifarSpace(SearchSpace):
    name = "cifar"

    # ------------------------------------------------------------ validity

    def check(self, arch: CifarArch) -> None:
        """GptnasError saying what is wrong with `arch`, if anything."""
        if arch.stem not in STEM_WIDTHS:
            raise GptnasError(f"stem width {arch.stem} is not one of {STEM_WIDTHS}")
        if not MIN_BLOCKS <= len(arch.blocks) <= MAX_BLOCKS:
            raise GptnasError(f"a cifar network has {MIN_BLOCKS}-{MAX_BLOCKS} blocks, got {len(arch.blocks)}")
        for i, block in enumerate(arch.blocks):
            kind = KINDS.get(block.kind)
            if kind is None:
                raise GptnasError(f"block {i}: unknown kind {quote(block.kind)}; valid: {', '.join(KINDS)}")
            if block.stride not in kind.strides:
                raise GptnasError(f"block {i}: {block.kind} takes stride {kind.strides}, got {block.stride}")
            if kind.keeps_width and block.width != 0:
                raise GptnasError(f"block {i}: {block.kind} keeps its input width; give width 0")
            if not kind.keeps_width and block.width not in WIDTHS:
                raise GptnasError(f"block {i}: width {block.width} is not one of {WIDTHS}")
        downsamples = sum(b.stride == 2 for b in arch.blocks)
        if downsamples > MAX_DOWNSAMPLES:
            raise GptnasError(f"at most {MAX_DOWNSAMPLES} strided blocks fit a 32x32 input, got {downsamples}")

    def is_valid(self, arch: CifarArch) -> bool:
        try:
            self.check(arch)
        except GptnasError:
            return False
        return True

    # ------------------------------------------------------------ genes

    def _random_block(self, rng: random.Random, cin: int, stride: int) -> Block:
        kind = rng.choice([k for k, spec in KINDS.items() if stride in spec.strides])
        if KINDS[kind].keeps_width:
            return Block(kind, 0, stride)
        # Widths drift: mostly kept, sometimes one step up or down, more often up when striding.
        i = WIDTHS.index(min(WIDTHS, key=lambda w: abs(w - cin)))
        step = rng.choice((-1, 0, 0, 1, 1, 1) if stride == 2 else (-1, 0, 0, 0, 1))
        return Block(kind, WIDTHS[min(max(i + step, 0), len(WIDTHS) - 1)], stride)

    def sample(self, rng: random.Random) -> CifarArch:
        n = rng.randint(MIN_BLOCKS, MAX_BLOCKS)
        strided = set(rng.sample(range(n), rng.randint(1, MAX_DOWNSAMPLES)))
        stem = rng.choice(STEM_WIDTHS)
        blocks, width = [], stem
        for i in range(n):
            block = self._random_block(rng, width, 2 if i in strided else 1)
            blocks.append(block)
            width = width if KINDS[block.kind].keeps_width else block.width
        return CifarArch(stem, tuple(blocks))

    def mutate(self, arch: CifarArch, rng: random.Random) -> CifarArch:
        """One random edit (kind, width, stride, insert, delete or stem); retried until valid and new."""
        for _ in range(64):
            blocks = list(arch.blocks)
            stem = arch.stem
            i = rng.randrange(len(blocks))
            cin = arch.widths()[i]
            edit = rng.choice(("kind", "width", "stride", "insert", "delete", "stem"))
            if edit == "kind":
                blocks[i] = self._random_block(rng, cin, blocks[i].stride)._replace(
                    width=blocks[i].width or rng.choice(WIDTHS)
                )
                if KINDS[blocks[i].kind].keeps_width:
                    blocks[i] = blocks[i]._replace(width=0)
            elif edit == "width" and blocks[i].width:
                blocks[i] = blocks[i]._replace(width=rng.choice(WIDTHS))
            elif edit == "stride":
                blocks[i] = self._random_block(rng, cin, 3 - blocks[i].stride)
            elif edit == "insert":
                blocks.insert(i, self._random_block(rng, cin, rng.choice((1, 1, 1, 2))))
            elif edit == "delete":
                del blocks[i]
            elif edit == "stem":
                stem = rng.choice(STEM_WIDTHS)
            child = CifarArch(stem, tuple(blocks))
            if child != arch and self.is_valid(child):
                return child
        return arch

    def crossover(self, a: CifarArch, b: CifarArch, rng: random.Random) -> tuple[CifarArch, CifarArch]:
        """One-point crossover of the block lists, at cut points that keep both children valid."""
        for _ in range(64):
            i, j = rng.randint(1, len(a.blocks) - 1), rng.randint(1, len(b.blocks) - 1)
            c1 = CifarArch(a.stem, a.blocks[:i] + b.blocks[j:])
            c2 = CifarArch(b.stem, b.blocks[:j] + a.blocks[i:])
            if self.is_valid(c1) and self.is_valid(c2):
                return c1, c2
        return a, b

    def key(self, arch: CifarArch) -> str:
        parts = [f"stem{arch.stem}"]
        for block in arch.blocks:
            parts.append(f"{block.kind}/s{block.stride}" if not block.width else f"{block.kind}/{block.width}/s{block.stride}")
        return "-".join(parts)

    def from_key(self, key: str) -> CifarArch:
        if not isinstance(key, str) or not key.startswith("stem"):
            raise GptnasError(f"a cifar key looks like 'stem32-resnet_basic/64/s1-maxpool/s2-...', got {quote(key)}")
        head, *parts = key.split("-")
        try:
            stem = int(head[len("stem"):])
            blocks = []
            for part in parts:
                fields = part.split("/")
                kind, stride = fields[0], int(fields[-1].removeprefix("s"))
                width = int(fields[1]) if len(fields) == 3 else 0
                if len(fields) not in (2, 3):
                    raise ValueError(part)
                blocks.append(Block(kind, width, stride))
        except ValueError:
            raise GptnasError(f"malformed cifar key {quote(key)}: blocks are 'kind/width/sSTRIDE' or 'pool/s2'") from None
        arch = CifarArch(stem, tuple(blocks))
        self.check(arch)
        return arch

    # ------------------------------------------------------------ network

    def _parts(self, arch: CifarArch, num_classes: int) -> list[B.Layers]:
        widths = arch.widths()
        parts = [B.loose(B.conv_bn_act(3, arch.stem, 3))]
        for block, cin, cout in zip(arch.blocks, widths, widths[1:]):
            parts.append(KINDS[block.kind].build(cin, cout, block.stride))
        parts.append(B.loose(B.gap_classifier(widths[-1], num_classes)))
        return parts

    def network(self, arch: CifarArch, num_classes: int = 10) -> B.Layers:
        self.check(arch)
        return B.loose(*self._parts(arch, num_classes))

    def build_model(self, arch: CifarArch, num_classes: int = 10) -> nn.Module:
        return self.network(arch, num_classes).build()

    # ------------------------------------------------------------ spelling: stem, blocks, head
    # Context: (input width, blocks so far, strided blocks so far).

    def _start(self):
        return _STEM

    def _trie_key(self, context):
        if context in (_STEM, _DONE):
            return context
        cin, n, downsamples = context
        return cin, n < MAX_BLOCKS, downsamples < MAX_DOWNSAMPLES, n >= MIN_BLOCKS

    def _options(self, context):
        if context == _STEM:
            return list(STEM_WIDTHS)
        if context == _DONE:
            return []
        cin, n, downsamples = context
        options = []
        if n < MAX_BLOCKS:
            for kind, spec in KINDS.items():
                for stride in spec.strides:
                    if stride == 2 and downsamples >= MAX_DOWNSAMPLES:
                        continue
                    for width in (0,) if spec.keeps_width else WIDTHS:
                        options.append(Block(kind, width, stride))
        if n >= MIN_BLOCKS:
            options.append(_HEAD)
        return options

    def _segment_tokens(self, context, payload):
        return _segment_layers(_input_width(context), payload).tokens

    def _segment_cost(self, context, payload, metric, input_size, num_classes):
        side = None if metric == "params" else halved(input_size, 0 if context == _STEM else context[2])
        return _segment_cost(_input_width(context), payload, side, num_classes if payload == _HEAD else None)

    def _advance(self, context, payload):
        if context == _STEM:
            return (payload, 0, 0)
        if payload == _HEAD:
            return _DONE
        cin, n, downsamples = context
        return (payload.width or cin, n + 1, downsamples + (payload.stride == 2))

    def _complete(self, context) -> bool:
        return context == _DONE

    def _payloads(self, arch: CifarArch):
        return [arch.stem, *arch.blocks, _HEAD]

    def _assemble(self, payloads):
        if payloads[-1] != _HEAD or _HEAD in payloads[1:-1] or payloads[0] not in STEM_WIDTHS:
            raise GptnasError("a cifar network is a stem width, blocks, then the head")
        arch = CifarArch(payloads[0], tuple(payloads[1:-1]))
        self.check(arch)  # segments spliced together may break a global limit (strided blocks)
        return arch


def _input_width(context) -> int | None:
    """The width a segment takes in; None for the stem (it reads the image)."""
    return None if context == _STEM else context[0]


def _segment_layers(cin: int | None, payload, num_classes: int = 10) -> B.Layers:
    """The layers of a stem (cin None), a block or the head."""
    if cin is None:
        return B.conv_bn_act(3, payload, 3)
    if payload == _HEAD:
        return B.gap_classifier(cin, num_classes)
    return KINDS[payload.kind].build(cin, payload.width or cin, payload.stride)


@functools.cache
def _segment_cost(cin: int | None, payload, side: int | None, num_classes: int | None) -> int:
    """Parameters (side None) or multiply-accumulates on a side x side input of one segment: the network's
    are their sums, as stem, blocks and head run in sequence (`num_classes` None but for the head). Counted
    from the segment's layers, without building them (blocks.py)."""
    count = _segment_layers(cin, payload, num_classes or 10).count(side or 1)
    return count.params if side is None else count.macs
