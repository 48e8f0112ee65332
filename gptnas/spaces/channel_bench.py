"""Channel-Bench-Macro (Su et al. 2021): width search in fixed MobileNet and ResNet networks.

Seven layers, each with a width digit 1-4 (0.25, 0.5, 0.75, 1.0 of the layer's
maximum width); the networks are those of the benchmark's `model.py`. The
spelling has one segment per piece of network, holding the digits that piece
introduces, so every table key is one token sequence and back.
"""

from __future__ import annotations

import itertools
import random

from torch import nn

from gptnas.errors import GptnasError, quote
from gptnas.spaces import blocks as B
from gptnas.spaces.base import SPACES, SearchSpace, mutate_gene, uniform_crossover

DIGITS = (1, 2, 3, 4)
N_LAYERS = 7


class ChannelBench(SearchSpace):
    """Shared genes and spelling; subclasses give the maximum widths and the pieces."""

    max_widths: tuple[int, ...]
    # Which width digits each piece of the network (stem, blocks, head) introduces;
    # every piece introduces at least one.
    new_digits: tuple[tuple[int, ...], ...]

    def channels(self, arch) -> list[int]:
        return [round(d * m / 4) for d, m in zip(arch, self.max_widths)]

    def _pieces(self, channels: list[int], num_classes: int) -> list[B.Layers]:
        raise NotImplementedError

    # ------------------------------------------------------------ genes

    def sample(self, rng: random.Random):
        return tuple(rng.choice(DIGITS) for _ in range(N_LAYERS))

    def mutate(self, arch, rng: random.Random):
        return mutate_gene(arch, DIGITS, rng, tries=1)

    def crossover(self, a, b, rng: random.Random):
        return uniform_crossover(a, b, rng)

    def key(self, arch) -> str:
        return "".join(map(str, arch))

    def from_key(self, key: str):
        if not isinstance(key, str) or len(key) != N_LAYERS or any(c not in "1234" for c in key):
            raise GptnasError(f"{self.name} key must be 7 digits from 1-4 (e.g. '4444342'), got {quote(key)}")
        return tuple(int(c) for c in key)

    def build_model(self, arch, num_classes: int = 10) -> nn.Module:
        pieces = self._pieces(self.channels(arch), num_classes)
        return nn.Sequential(*(piece.build() for piece in pieces))

    # ------------------------------------------------------------ spelling: one segment per piece

    def _start(self):
        return ()

    def _options(self, context):
        if len(context) == N_LAYERS:
            return []
        return list(itertools.product(DIGITS, repeat=len(self.new_digits[self._piece(context)])))

    def _piece(self, context) -> int:
        """Index of the piece that comes after the digits in `context`."""
        count = 0
        for piece, digits in enumerate(self.new_digits):
            if count == len(context):
                return piece
            count += len(digits)
        raise AssertionError(context)

    def _segment_tokens(self, context, payload):
        digits = (context + payload + (4,) * N_LAYERS)[:N_LAYERS]  # pieces only read digits already set
        return self._pieces(self.channels(digits), 10)[self._piece(context)].tokens

    def _advance(self, context, payload):
        return context + payload

    def _complete(self, context) -> bool:
        return len(context) == N_LAYERS

    def _payloads(self, arch):
        return [tuple(arch[i] for i in digits) for digits in self.new_digits]

    def _assemble(self, payloads):
        return tuple(d for payload in payloads for d in payload)


@SPACES.register
class ChannelBenchMobileNet(ChannelBench):
    name = "channel-bench-mobilenet"
    max_widths = tuple(2 * w for w in (64, 384, 384, 384, 128, 768, 512))
    new_digits = ((0,), (1,), (2,), (3, 4), (5,), (6,))

    def _pieces(self, c, num_classes):
        def block(cin, hidden, cout, stride=1):
            return B.inverted_residual(cin, cout, stride, 3, hidden=hidden, act="relu")

        return [
            B.loose(B.conv_bn_act(3, c[0], 3, stride=2)),
            block(c[0], c[1], c[0]),
            block(c[0], c[2], c[0]),
            block(c[0], c[3], c[4], stride=2),
            block(c[4], c[5], c[4]),
            B.loose(B.conv_bn_act(c[4], c[6], 1), B.gap_classifier(c[6], num_classes)),
        ]


@SPACES.register
class ChannelBenchResNet(ChannelBench):
    name = "channel-bench-resnet"
    max_widths = tuple(2 * w for w in (128, 128, 128, 256, 256, 256, 256))
    new_digits = ((0,), (1,), (2,), (3, 4), (5,), (6,))

    def _pieces(self, c, num_classes):
        def block(channels, hidden):
            body = (B.conv_bn_act(channels, hidden, 3), B.conv_bn_act(hidden, channels, 3, act=None))
            return B.residual(body, post_act="relu")

        return [
            B.loose(B.conv_bn_act(3, c[0], 3, stride=2)),
            block(c[0], c[1]),
            block(c[0], c[2]),
            B.chain(B.conv_bn_act(c[0], c[3], 3, stride=2), B.conv_bn_act(c[3], c[4], 3)),
            block(c[4], c[5]),
            # The head introduces no digit, so it rides on the last block's segment.
            B.loose(block(c[4], c[6]), B.gap_classifier(c[4], num_classes)),
        ]
