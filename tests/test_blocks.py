"""A block's count (parameters, multiply-accumulates, output side) is what its built module holds and computes."""

import pytest
import torch

from gptnas.spaces import block_kinds as K
from gptnas.spaces import blocks as B
from gptnas.spaces.base import count_macs, count_params
from gptnas.spaces.nas_bench_201 import _reduction


def variants():
    """Every kind of the library at its defaults, then with each option at each of its other values (and a
    hidden width where the option takes one)."""
    for name, spec in K.LIBRARY.items():
        yield name, {}
        for option, values in spec.options.items():
            for value in values[1:] if values != K.WIDTHS else (24,):
                yield name, {option: value}


def counted_and_built(layers: B.Layers, channels: int, side: int) -> tuple[B.Count, B.Count]:
    with torch.device("meta"):
        module = layers.build().eval()
        output = module(torch.zeros(1, channels, side, side))
    side_out = output.shape[-1] if output.dim() == 4 else 1  # a classifier's output: one value per class
    return layers.count(side), B.Count(side_out, count_params(module), count_macs(module, side, channels))


@pytest.mark.parametrize("name, options", list(variants()), ids=lambda v: str(v))
def test_every_kind_counts_what_its_module_holds_and_computes(name, options):
    kind = K.kind(name, **options)
    for cin, cout in ((16, 16), (24, 64), (64, 16)):
        for stride in kind.strides:
            for side in (3, 8, 15, 32) if kind.keeps_width else (1, 3, 8, 15, 32):  # a pooling halves 2 or more
                counted, built = counted_and_built(kind.build(cin, cout, stride), cin, side)
                assert counted == built, (name, options, cin, cout, stride, side)


@pytest.mark.parametrize("layers, channels, sides", [
    (B.loose(B.conv_bn_act(3, 48, 5, 2)), 3, (1, 2, 7, 32)),                         # a strided stem
    (B.loose(B.conv_bn_act(32, 64, 1), B.gap_classifier(64, 7)), 32, (1, 2, 7, 32)),  # a head with a conv
    (_reduction(16, 32), 16, (2, 8, 32)),       # NAS-Bench-201's, with its pooled shortcut (even sides only)
    (B.chain(B.bn_act_conv(16, 32, 3, 2), B.pool("avg", 3, 1)), 16, (1, 2, 7, 32)),
])
def test_stems_heads_and_other_layers_count_what_their_modules_hold_and_compute(layers, channels, sides):
    for side in sides:
        counted, built = counted_and_built(layers, channels, side)
        assert counted == built, side
