"""The token vocabulary of the architecture language.

A network is written as the sequence of its layers, one token per layer, with a
few structure markers (GPT-NAS / ArcText style). Every space and every
real-world network in the corpus uses these same constructors, so the
vocabulary stays small and shared.

Layer tokens
    conv{kh}x{kw}[/s{s}][/d{d}]  dense convolution, followed by its width token
    gconv{kh}x{kw}[...]           grouped convolution, followed by width and group tokens
    dwconv{kh}x{kw}[...]          depthwise convolution (output width = input width)
    w{c}                          output width, bucketed (exact up to 8, then quarter octaves)
    g{n}                          number of groups of the preceding gconv (power of two)
    bn ln gn                      normalisation
    relu relu6 silu gelu hswish hsigmoid sigmoid tanh lrelu elu
    maxpool{k}x{k}[/s{s}]  avgpool{k}x{k}[/s{s}]  gap  gmp
    fc                            fully connected, followed by its width token
    classifier                    the final fully connected layer (width = number of classes)
    shuffle                       channel shuffle
    zero id                       an edge that outputs zeros / passes its input (cells)

Structure markers
    block                         a block starts (a torchvision/timm block module, a block gene)
    (  (split                     branches start: each gets the input / an equal channel chunk
    |                             the next branch starts (an empty branch is the identity)
    )add )cat )mul                branches end and merge
    cell node from{j} endcell     a cell DAG: node i sums its edges from earlier nodes j
    repeat{n}                     the cell just written repeats n times
"""

import math

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
SPECIAL_TOKENS = (BOS, EOS, PAD, UNK)

BLOCK = "block"
FORK, SPLIT, NEXT_BRANCH = "(", "(split", "|"
MERGE_ADD, MERGE_CAT, MERGE_MUL = ")add", ")cat", ")mul"

ACTIVATIONS = ("relu", "relu6", "silu", "gelu", "hswish", "hsigmoid", "sigmoid", "tanh", "lrelu", "elu")


def space_tag(space_name: str) -> str:
    return f"space:{space_name}"


def width_bucket(channels: int) -> int:
    """The channel count's bucket: exact up to 8, then the nearest (in log scale) of
    4, 5, 6 or 7 times a power of two, i.e. quarter-octave steps at the widths
    networks actually use (..., 64, 80, 96, 112, 128, 160, ...)."""
    if channels < 1:
        raise ValueError(f"channel count must be positive, got {channels}")
    if channels <= 8:
        return channels
    scale = 2 ** (channels.bit_length() - 3)  # channels / scale lies in [4, 8)
    candidates = [k * scale for k in (4, 5, 6, 7, 8)]
    return min(candidates, key=lambda c: abs(math.log(channels / c)))


def width(channels: int) -> str:
    """The width token of a channel count."""
    return f"w{width_bucket(channels)}"


def groups(n: int) -> str:
    return f"g{2 ** round(math.log2(n))}"


def _suffix(stride: int = 1, dilation: int = 1) -> str:
    return (f"/s{stride}" if stride != 1 else "") + (f"/d{dilation}" if dilation != 1 else "")


def _kernel(kernel) -> str:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return f"{kh}x{kw}"


def conv(kernel, out_channels: int, stride: int = 1, dilation: int = 1) -> tuple[str, ...]:
    return (f"conv{_kernel(kernel)}{_suffix(stride, dilation)}", width(out_channels))


def gconv(kernel, out_channels: int, n_groups: int, stride: int = 1, dilation: int = 1) -> tuple[str, ...]:
    return (f"gconv{_kernel(kernel)}{_suffix(stride, dilation)}", width(out_channels), groups(n_groups))


def dwconv(kernel, stride: int = 1, dilation: int = 1) -> tuple[str, ...]:
    return (f"dwconv{_kernel(kernel)}{_suffix(stride, dilation)}",)


def pool(kind: str, kernel, stride: int = 1) -> tuple[str, ...]:
    assert kind in ("max", "avg"), kind
    return (f"{kind}pool{_kernel(kernel)}{_suffix(stride)}",)


def fc(out_features: int) -> tuple[str, ...]:
    return ("fc", width(out_features))


def branches(merge: str, *bodies, split: bool = False) -> tuple[str, ...]:
    """Parallel branches merged by `merge` (one of )add )cat )mul); an empty body is the identity."""
    out = [SPLIT if split else FORK]
    for i, body in enumerate(bodies):
        if i:
            out.append(NEXT_BRANCH)
        out.extend(body)
    out.append(merge)
    return tuple(out)


_MARKERS = {BLOCK, FORK, SPLIT, NEXT_BRANCH, MERGE_ADD, MERGE_CAT, MERGE_MUL, "cell", "node", "endcell"}


def is_layer(token: str) -> bool:
    """True for tokens that are layers (conv, bn, relu, pools, ...), not properties or markers."""
    if token in _MARKERS or token in SPECIAL_TOKENS or token.startswith("space:"):
        return False
    if token[0] in "wg" and token[1:].isdigit():  # width, groups
        return False
    return not (token.startswith(("from", "repeat")) and token[-1].isdigit())
