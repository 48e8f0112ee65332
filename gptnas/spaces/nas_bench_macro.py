"""NAS-Bench-Macro (Su et al., CVPR 2021): 8 searchable layers, 3 choices each.

Stem 3x3 conv (32) -> stages of 2, 3, 3 layers (64, 128, 256 channels; each
stage's first layer has stride 2) -> 1x1 conv 1280 -> pool -> FC. Choices per
layer: 0 identity (a 1x1 conv + BN projection when the shape changes),
1 inverted residual t=3 k=3, 2 inverted residual t=6 k=5.

An identity inside a stage does the same wherever it sits, so an architecture
is canonical when each stage's identities come last; the table gives aliases
exactly the values of their canonical form. A segment of the spelling is a
whole stage, which makes the grammar produce canonical forms only.
"""

from __future__ import annotations

import itertools
import random

from torch import nn

from gptnas.errors import GptnasError, quote
from gptnas.spaces import blocks as B
from gptnas.spaces.base import SPACES, SearchSpace, mutate_gene, uniform_crossover

STAGES = (2, 3, 3)
STEM = 32
HEAD = 1280
CHOICES = 3
_STEM, _HEAD, _DONE = "stem", "head", "done"


def canonical_stage(stage: tuple[int, ...]) -> tuple[int, ...]:
    """Moves a stage's identities (after its strided first layer) to the end."""
    rest = [g for g in stage[1:] if g != 0]
    return (stage[0], *rest, *([0] * (len(stage) - 1 - len(rest))))


def canonical(genes: tuple[int, ...]) -> tuple[int, ...]:
    out, start = (), 0
    for length in STAGES:
        out += canonical_stage(tuple(genes[start : start + length]))
        start += length
    return out


def _layer(op: int, cin: int, cout: int, stride: int) -> B.Layers | None:
    if op == 0:
        projection = B.projection(cin, cout, stride)
        return projection[0] if projection else None
    expansion, kernel = (3, 3) if op == 1 else (6, 5)
    return B.inverted_residual(cin, cout, stride, kernel, hidden=cin * expansion, act="relu")


@SPACES.register
class NasBenchMacro(SearchSpace):
    name = "nas-bench-macro"

    # ------------------------------------------------------------ genes

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return canonical(tuple(rng.randrange(CHOICES) for _ in range(sum(STAGES))))

    def mutate(self, arch, rng: random.Random):
        """Changes one layer to another choice; retries when that only reorders identities."""
        return mutate_gene(arch, range(CHOICES), rng, canonical)

    def crossover(self, a, b, rng: random.Random):
        """Uniform crossover, stage-aligned genes."""
        return uniform_crossover(a, b, rng, canonical)

    def key(self, arch) -> str:
        return "".join(map(str, canonical(tuple(arch))))

    def from_key(self, key: str):
        if not isinstance(key, str) or len(key) != sum(STAGES) or any(c not in "012" for c in key):
            raise GptnasError(f"NAS-Bench-Macro key must be 8 digits from 0-2 (e.g. '22212220'), got {quote(key)}")
        return canonical(tuple(int(c) for c in key))

    # ------------------------------------------------------------ network

    def _parts(self, arch, num_classes: int = 10) -> list[B.Layers]:
        parts = [B.loose(B.conv_bn_act(3, STEM, 3))]
        genes, channels = iter(arch), STEM
        for length in STAGES:
            for i in range(length):
                cin, stride = channels, 2 if i == 0 else 1
                channels = channels * 2 if i == 0 else channels
                layer = _layer(next(genes), cin, channels, stride)
                if layer is not None:
                    parts.append(layer)
        parts.append(B.loose(B.conv_bn_act(channels, HEAD, 1), B.gap_classifier(HEAD, num_classes)))
        return parts

    def build_model(self, arch, num_classes: int = 10) -> nn.Module:
        return nn.Sequential(*(part.build() for part in self._parts(arch, num_classes)))

    # ------------------------------------------------------------ spelling: stem, stage, stage, stage, head

    def _start(self):
        return (_STEM, 0)

    def _options(self, context):
        kind, index = context
        if kind == "stage":
            length = STAGES[index]
            return sorted(
                {canonical_stage(stage) for stage in itertools.product(range(CHOICES), repeat=length)}
            )
        return [] if kind == _DONE else [kind]

    def _segment_tokens(self, context, payload):
        kind, index = context
        if kind == _STEM:
            return B.conv_bn_act(3, STEM, 3).tokens
        if kind == _HEAD:
            channels = STEM * 2 ** len(STAGES)
            return B.conv_bn_act(channels, HEAD, 1).tokens + B.gap_classifier(HEAD, 10).tokens
        cin = STEM * 2**index
        tokens = ()
        for i, op in enumerate(payload):
            layer = _layer(op, cin if i == 0 else cin * 2, cin * 2, 2 if i == 0 else 1)
            tokens += layer.tokens if layer is not None else ()
        return tokens

    def _advance(self, context, payload):
        kind, index = context
        if kind == _STEM:
            return ("stage", 0)
        if kind == "stage":
            return ("stage", index + 1) if index + 1 < len(STAGES) else (_HEAD, 0)
        return (_DONE, 0)

    def _complete(self, context) -> bool:
        return context[0] == _DONE

    def _payloads(self, arch):
        arch = canonical(tuple(arch))
        stages, start = [], 0
        for length in STAGES:
            stages.append(arch[start : start + length])
            start += length
        return [_STEM, *stages, _HEAD]

    def _assemble(self, payloads):
        return tuple(g for stage in payloads[1:-1] for g in stage)

