"""The block kinds a space may be made of, by name, each with its options.

A kind with its options fixed is a `Kind`: a builder (input width, output width, stride) -> `Layers`, the
strides it takes, and whether it keeps its input width (pooling). The `cifar` space uses a fixed set of
them; a space file (`gptnas/spaces/declared.py`) names kinds and searches their options.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from gptnas.spaces import blocks as B


class Kind(NamedTuple):
    build: Callable[[int, int, int], B.Layers]  # (in width, out width, stride) -> layers
    strides: tuple[int, ...]
    keeps_width: bool = False  # pooling: no width gene, the output width is the input width


class KindSpec(NamedTuple):
    """A kind of the library: its options (name -> allowed values, the first the default) and how to make it.
    An option allowed `WIDTHS` takes widths (whole numbers); its default 0 leaves it unset."""

    make: Callable[..., Kind]  # options -> Kind
    options: dict[str, tuple]
    width_rule: tuple[int, int] = (1, 1)  # (smallest width, the widths' divisor) it can be built at
    doc: str = ""


WIDTHS = (0,)  # the allowed values of an option that takes any width (`hidden`)


def _mbconv(kernel: int, expansion: int, se: bool, act: str, hidden: int) -> Kind:
    def build(cin, cout, stride):
        squeeze = max(1, cin // 4) if se else None  # EfficientNet's squeeze width
        return B.inverted_residual(cin, cout, stride, kernel, hidden=hidden or cin * expansion, act=act,
                                   se_squeeze=squeeze, expand=bool(hidden) or expansion != 1)

    return Kind(build, (1, 2))


def _conv(kernel: int, act: str) -> Kind:
    act = None if act == "none" else act  # conv and BN alone: a projection
    return Kind(lambda cin, cout, stride: B.chain(B.conv_bn_act(cin, cout, kernel, stride, act=act)), (1, 2))


def _resnet_basic(hidden: int) -> Kind:
    def build(cin, cout, stride):
        inner = hidden or cout
        body = (B.conv_bn_act(cin, inner, 3, stride), B.conv_bn_act(inner, cout, 3, act=None))
        return B.residual(body, B.projection(cin, cout, stride), post_act="relu")

    return Kind(build, (1, 2))


def _wide_basic(cin, cout, stride):
    body = (B.bn_act_conv(cin, cout, 3, stride), B.bn_act_conv(cout, cout, 3))
    return B.residual(body, B.projection(cin, cout, stride, norm=False))


def _inception(cin, cout, stride):
    branch, reduce = cout // 4, max(1, cout // 8)
    return B.branches_cat(
        (B.conv_bn_act(cin, branch, 1),),
        (B.conv_bn_act(cin, reduce, 1), B.conv_bn_act(reduce, branch, 3)),
        (B.conv_bn_act(cin, reduce, 1), B.conv_bn_act(reduce, branch, 5)),
        (B.pool("max", 3, 1), B.conv_bn_act(cin, branch, 1)),
    )


def _shuffle(cin, cout, stride):
    half = cout // 2
    if stride == 1 and cin == cout:
        branch2 = (
            B.conv_bn_act(half, half, 1),
            B.conv_bn_act(half, half, 3, groups=half, act=None),
            B.conv_bn_act(half, half, 1),
        )
        return B.shuffle_unit(None, branch2)
    branch1 = (B.conv_bn_act(cin, cin, 3, stride, groups=cin, act=None), B.conv_bn_act(cin, half, 1))
    branch2 = (
        B.conv_bn_act(cin, half, 1),
        B.conv_bn_act(half, half, 3, stride, groups=half, act=None),
        B.conv_bn_act(half, half, 1),
    )
    return B.shuffle_unit(branch1, branch2)


def _fixed(build: Callable[[int, int, int], B.Layers], strides=(1, 2), keeps_width=False) -> Callable[..., Kind]:
    return lambda: Kind(build, strides, keeps_width)


def _pool(kind: str) -> Callable[..., Kind]:
    return _fixed(lambda cin, cout, stride: B.pool(kind, 2, 2), (2,), keeps_width=True)


LIBRARY: dict[str, KindSpec] = {
    "conv": KindSpec(_conv, {"kernel": (3, 1, 5, 7), "act": ("relu", "relu6", "silu", "none")},
                     doc="conv, BN, activation (none: conv and BN, a projection)"),
    "resnet_basic": KindSpec(_resnet_basic, {"hidden": WIDTHS}, doc="ResNet basic block (two 3x3 convs; hidden: the "
                             "first conv's width, by default the output width)"),
    "resnet_bottleneck": KindSpec(_fixed(lambda i, o, s: B.bottleneck(i, o, s, mid=o // 4)), {}, (4, 1),
                                  "ResNet bottleneck (1x1, 3x3, 1x1; inner width a quarter)"),
    "resnext_bottleneck": KindSpec(_fixed(lambda i, o, s: B.bottleneck(i, o, s, mid=o // 2, groups=o // 8)), {},
                                   (8, 8), "ResNeXt bottleneck (inner width half, 8-channel groups)"),
    "wide_basic": KindSpec(_fixed(_wide_basic), {}, doc="Wide-ResNet pre-activation basic block"),
    "mbconv": KindSpec(_mbconv, {"kernel": (3, 5, 7), "expansion": (6, 1, 2, 3, 4, 5, 7, 8), "se": (False, True),
                                 "act": ("silu", "relu", "relu6"), "hidden": WIDTHS},
                       doc="MobileNetV2 / EfficientNet inverted residual (hidden: the inner width, instead of the "
                           "input width times the expansion)"),
    "inception": KindSpec(_fixed(_inception, (1,)), {}, (4, 4), "Inception block (stride 1)"),
    "regnet_x": KindSpec(_fixed(lambda i, o, s: B.bottleneck(i, o, s, mid=o, groups=o // 8)), {}, (8, 8),
                         "RegNetX bottleneck (8-channel groups)"),
    "regnet_y": KindSpec(_fixed(lambda i, o, s: B.bottleneck(i, o, s, mid=o, groups=o // 8,
                                                             se_squeeze=max(1, round(i / 4)))), {}, (8, 8),
                         "RegNetY bottleneck (RegNetX with squeeze-excitation)"),
    "shufflenet_v2": KindSpec(_fixed(_shuffle), {}, (2, 2), "ShuffleNetV2 unit"),
    "maxpool": KindSpec(_pool("max"), {}, doc="2x2 max pooling, stride 2, keeps the width"),
    "avgpool": KindSpec(_pool("avg"), {}, doc="2x2 average pooling, stride 2, keeps the width"),
}


def kind(name: str, **options: Any) -> Kind:
    """The library's kind `name` with `options` (the others at their defaults)."""
    spec = LIBRARY[name]
    return spec.make(**({k: values[0] for k, values in spec.options.items()} | options))


def variant_name(name: str, options: dict[str, Any]) -> str:
    """How a key names a kind with its options: mbconv_k5_e6_se_relu (defaults of act and se left out)."""
    spec, parts = LIBRARY[name], [name]
    for option, value in options.items():
        default = spec.options[option][0]
        if option == "kernel":
            parts.append(f"k{value}")
        elif option == "expansion":
            parts += [] if options.get("hidden") else [f"e{value}"]  # a hidden width replaces the expansion
        elif option == "se":
            parts += ["se"] if value else []
        elif option == "hidden":
            parts += [f"h{value}"] if value else []
        elif value != default:
            parts.append(str(value))
    return "_".join(parts)
