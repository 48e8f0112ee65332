"""Building blocks shared by the search spaces: each written once, as layers and as tokens.

A `Layers` value holds a block's token spelling, a builder for its
`nn.Module`, so the spelling a space writes is the network it builds (tests
trace the built module and compare), and a count of what that module holds and
computes, so that a space prices a block without building it (tests count the
built module and compare). Modules are plain and fx-traceable: one conv per
`ConvBNAct`, branches merged by an explicit add / cat / mul.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn

from gptnas.language import tokens as T

ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": lambda inplace=True: nn.ReLU(inplace=inplace),
    "relu6": lambda inplace=True: nn.ReLU6(inplace=inplace),
    "silu": lambda inplace=True: nn.SiLU(inplace=inplace),
    "sigmoid": lambda inplace=True: nn.Sigmoid(),
}


class Count(NamedTuple):
    """What a piece of network holds and computes on one square input, as `count_params` and `count_macs`
    (gptnas/spaces/base.py) count its built module: parameters, multiply-accumulates of its conv and linear
    layers for one image, and the side of its output."""

    side: int
    params: int
    macs: int


Counter = Callable[[int], Count]  # the side of the input -> the count


@dataclass(frozen=True)
class Layers:
    """A piece of network: its tokens, how to build it, and how to count it without building it."""

    tokens: tuple[str, ...]
    build: Callable[[], nn.Module]
    count: Counter


# ---------------------------------------------------------------- modules


class ConvBNAct(nn.Module):
    """conv -> optional BN -> optional activation (or activation first, for pre-activation)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, act="relu", norm=True, act_first=False, bias=False):
        super().__init__()
        self.act_first = act_first
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if norm else None
        # An activation first works on the block's input, which other branches may share: not in place.
        self.act = ACTIVATIONS[act](inplace=not act_first) if act else None

    def forward(self, x):
        if self.act_first and self.act is not None:
            x = self.act(x)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if not self.act_first and self.act is not None:
            x = self.act(x)
        return x


class BNActConv(nn.Module):
    """Pre-activation: BN -> activation -> conv (Wide-ResNet)."""

    def __init__(self, cin, cout, kernel, stride=1, act="relu"):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.act = ACTIVATIONS[act]()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)

    def forward(self, x):
        return self.conv(self.act(self.bn(x)))


class Chain(nn.Module):
    """Layers in sequence (a block module, unlike nn.Sequential, which is only a container)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Residual(nn.Module):
    """body(x) + shortcut(x), then an optional activation; no shortcut module means identity."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, post_act: str | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.post_act = ACTIVATIONS[post_act]() if post_act else None

    def forward(self, x):
        out = self.body(x) + (x if self.shortcut is None else self.shortcut(x))
        if self.post_act is not None:
            out = self.post_act(out)
        return out


class SqueezeExcite(nn.Module):
    """Channel attention: x * sigmoid(conv(act(conv(gap(x)))))."""

    def __init__(self, channels, squeeze, act="relu"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = ACTIVATIONS[act]()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return self.gate(self.expand(self.act(self.reduce(self.pool(x))))) * x


class Concat(nn.Module):
    """Parallel branches on the same input, concatenated along channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], 1)


def channel_shuffle(x, groups: int = 2):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


torch.fx.wrap("channel_shuffle")


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (or two strided branches), concat, channel shuffle."""

    def __init__(self, branch1: nn.Module | None, branch2: nn.Module):
        super().__init__()
        self.branch1 = branch1
        self.branch2 = branch2

    def forward(self, x):
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


# ---------------------------------------------------------------- layer spellings


def conv_tokens(cin, cout, kernel, stride=1, groups=1) -> tuple[str, ...]:
    if groups == 1:
        return T.conv(kernel, cout, stride)
    if groups == cin == cout:
        return T.dwconv(kernel, stride)
    return T.gconv(kernel, cout, groups, stride)


def conv_bn_act(cin, cout, kernel, stride=1, groups=1, act="relu", norm=True, act_first=False, bias=False) -> Layers:
    conv = conv_tokens(cin, cout, kernel, stride, groups)
    tokens = ((act,) if act and act_first else ()) + conv + (("bn",) if norm else ()) + (
        (act,) if act and not act_first else ()
    )
    return Layers(tokens, lambda: ConvBNAct(cin, cout, kernel, stride, groups, act, norm, act_first, bias),
                  _conv_count(cin, cout, kernel, stride, groups, bias, 2 * cout if norm else 0))


def bn_act_conv(cin, cout, kernel, stride=1, act="relu") -> Layers:
    return Layers(("bn", act) + conv_tokens(cin, cout, kernel, stride), lambda: BNActConv(cin, cout, kernel, stride, act),
                  _conv_count(cin, cout, kernel, stride, 1, False, 2 * cin))


def chain(*parts: Layers) -> Layers:
    """Several layers as one block module (spelled with the `block` marker)."""
    return Layers(
        (T.BLOCK,) + sum((p.tokens for p in parts), ()),
        lambda: Chain(*(p.build() for p in parts)),
        _in_sequence(parts),
    )


def loose(*parts: Layers) -> Layers:
    """Layers outside any block (stems, heads, transitions)."""
    return Layers(sum((p.tokens for p in parts), ()), lambda: nn.Sequential(*(p.build() for p in parts)),
                  _in_sequence(parts))


def residual(body: tuple[Layers, ...], shortcut: tuple[Layers, ...] = (), post_act: str | None = None) -> Layers:
    tokens = (T.BLOCK,) + T.branches(
        T.MERGE_ADD, sum((p.tokens for p in body), ()), sum((p.tokens for p in shortcut), ())
    ) + ((post_act,) if post_act else ())
    return Layers(
        tokens,
        lambda: Residual(
            Chain(*(p.build() for p in body)),
            Chain(*(p.build() for p in shortcut)) if shortcut else None,
            post_act,
        ),
        _side_by_side(_in_sequence(body), _in_sequence(shortcut)),
    )


def squeeze_excite(channels, squeeze, act="relu") -> Layers:
    body = ("gap",) + T.conv(1, squeeze) + (act,) + T.conv(1, channels) + ("sigmoid",)
    weights = 2 * channels * squeeze  # two 1x1 convs with biases, on the 1x1 pooled map
    return Layers(T.branches(T.MERGE_MUL, body, ()), lambda: SqueezeExcite(channels, squeeze, act),
                  lambda side: Count(side, weights + squeeze + channels, weights))


def plain(token: str, module: Callable[[], nn.Module], count: Counter) -> Layers:
    return Layers((token,), module, count)


def pool(kind: str, kernel: int, stride: int) -> Layers:
    module = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    return Layers(T.pool(kind, kernel, stride), lambda: module(kernel, stride, padding=(kernel - 1) // 2),
                  pool_count(kernel, stride, (kernel - 1) // 2))


def pool_count(kernel: int, stride: int, padding: int = 0) -> Counter:
    return lambda side: Count((side + 2 * padding - kernel) // stride + 1, 0, 0)


def branches_cat(*branches: tuple[Layers, ...]) -> Layers:
    """A block of parallel branches on the same input, concatenated (Inception)."""
    bodies = [sum((p.tokens for p in branch), ()) for branch in branches]
    return Layers(
        (T.BLOCK,) + T.branches(T.MERGE_CAT, *bodies),
        lambda: Concat(*(Chain(*(p.build() for p in branch)) for branch in branches)),
        _side_by_side(*(_in_sequence(branch) for branch in branches)),
    )


def shuffle_unit(branch1: tuple[Layers, ...] | None, branch2: tuple[Layers, ...]) -> Layers:
    """ShuffleNetV2 unit: channel split (no branch1) or two branches, concat, shuffle."""
    body2 = sum((p.tokens for p in branch2), ())
    if branch1 is None:
        tokens = T.branches(T.MERGE_CAT, body2, (), split=True)
    else:
        tokens = T.branches(T.MERGE_CAT, sum((p.tokens for p in branch1), ()), body2)
    return Layers(
        (T.BLOCK,) + tokens + ("shuffle",),
        lambda: ShuffleUnit(
            None if branch1 is None else Chain(*(p.build() for p in branch1)),
            Chain(*(p.build() for p in branch2)),
        ),
        _side_by_side(_in_sequence(branch2), _in_sequence(branch1 or ())),
    )


def gap_classifier(cin: int, num_classes: int) -> Layers:
    return Layers(
        ("gap", "classifier"),
        lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)),
        lambda side: Count(1, cin * num_classes + num_classes, cin * num_classes),
    )


# ---------------------------------------------------------------- counts


def _conv_count(cin, cout, kernel, stride, groups, bias, other_params) -> Counter:
    """A convolution padded by kernel // 2, with `other_params` beside it (a normalisation's)."""
    weights = cout * (cin // groups) * kernel * kernel
    params = weights + (cout if bias else 0) + other_params

    def count(side: int) -> Count:
        out = (side + 2 * (kernel // 2) - kernel) // stride + 1
        return Count(out, params, out * out * weights)

    return count


def _in_sequence(parts: tuple[Layers, ...]) -> Counter:
    """Each part on the output of the one before (no part: the identity)."""

    def count(side: int) -> Count:
        params = macs = 0
        for part in parts:
            side, part_params, part_macs = part.count(side)
            params, macs = params + part_params, macs + part_macs
        return Count(side, params, macs)

    return count


def _side_by_side(first: Counter, *others: Counter) -> Counter:
    """Branches on the same input, merged: the output has the first branch's side."""

    def count(side: int) -> Count:
        counts = [first(side), *(other(side) for other in others)]
        return Count(counts[0].side, sum(c.params for c in counts), sum(c.macs for c in counts))

    return count


# ---------------------------------------------------------------- family blocks


def inverted_residual(
    cin, cout, stride, kernel, hidden, act="relu", se_squeeze: int | None = None, expand: bool = True
) -> Layers:
    """MobileNetV2 / EfficientNet MBConv: expand 1x1 (unless `expand` is off), depthwise kxk,
    optional squeeze-excitation, project 1x1; residual when the shape is kept."""
    parts = [conv_bn_act(cin, hidden, 1, act=act)] if expand else []
    parts.append(conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=act))
    if se_squeeze:
        parts.append(squeeze_excite(hidden, se_squeeze, act))
    parts.append(conv_bn_act(hidden, cout, 1, act=None))
    if stride == 1 and cin == cout:
        return residual(tuple(parts))
    return chain(*parts)


def projection(cin, cout, stride, norm=True) -> tuple[Layers, ...]:
    """The 1x1 shortcut of a residual block whose shape changes (empty when it does not)."""
    if stride == 1 and cin == cout:
        return ()
    return (conv_bn_act(cin, cout, 1, stride, act=None, norm=norm),)


def bottleneck(cin, cout, stride, mid, groups=1, se_squeeze: int | None = None) -> Layers:
    """ResNet / ResNeXt / RegNet bottleneck: 1x1, 3x3 (strided, grouped), optional SE, 1x1."""
    body = [conv_bn_act(cin, mid, 1), conv_bn_act(mid, mid, 3, stride, groups)]
    if se_squeeze:
        body.append(squeeze_excite(mid, se_squeeze, "relu"))
    body.append(conv_bn_act(mid, cout, 1, act=None))
    return residual(tuple(body), projection(cin, cout, stride), post_act="relu")
