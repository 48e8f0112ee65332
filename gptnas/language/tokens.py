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

Conditioning tokens (optional, in this order, before the space tag)
    q0 .. q4                      quality: the quintile of the network's accuracy among the networks of
                                  its own source (q4: the best fifth); absent when the quality is unknown
    p10k p13k ... p750m p1g       cost: the parameter-count bucket, named by its upper edge (eighth
                                  decades: 10k, 13k, 18k, 24k, 32k, 42k, 56k, 75k, 100k, ...); p10k holds
                                  everything up to 10k, p1g everything above 750m
    A conditioned sequence reads `q4 p1m space:cifar ...`: what follows is a network of that quality
    and size. Generation under a condition feeds these tokens as a prompt; the grammar starts after them.
    Sampling under a parameter cap uses `cap_bucket`: a bucket whose networks lie within a third
    below the cap, so a sample is neither far below the cap nor often above it.
"""

import functools
import math
from bisect import bisect_left, bisect_right
from collections.abc import Collection

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
SPECIAL_TOKENS = (BOS, EOS, PAD, UNK)

BLOCK = "block"
FORK, SPLIT, NEXT_BRANCH = "(", "(split", "|"
MERGE_ADD, MERGE_CAT, MERGE_MUL = ")add", ")cat", ")mul"

ACTIVATIONS = ("relu", "relu6", "silu", "gelu", "hswish", "hsigmoid", "sigmoid", "tanh", "lrelu", "elu")


QUALITY_LEVELS = 5
QUALITY_TOKENS = tuple(f"q{level}" for level in range(QUALITY_LEVELS))
BEST_QUALITY = QUALITY_TOKENS[-1]
# Upper edges of the parameter-count buckets: eighth decades (x1.33) from 10k to 1G.
PARAM_STEPS_PER_DECADE = 8
PARAM_EDGES = tuple(round(10 ** (4 + k / PARAM_STEPS_PER_DECADE)) for k in range(5 * PARAM_STEPS_PER_DECADE + 1))


def _si(count: int) -> str:
    """10000 -> 10k, 17783 -> 18k, 1778279 -> 1.8m: two significant digits, at least the integer part."""
    for unit, scale in (("g", 10**9), ("m", 10**6), ("k", 10**3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}".rstrip("0").rstrip(".") + unit if value < 10 else f"{round(value)}{unit}"
    return str(count)


PARAM_TOKENS = tuple(f"p{_si(edge)}" for edge in PARAM_EDGES)
CONDITION_TOKENS = QUALITY_TOKENS + PARAM_TOKENS


def quality(level: int) -> str:
    """The quality token of a level (0: worst fifth ... 4: best fifth)."""
    if not 0 <= level < QUALITY_LEVELS:
        raise ValueError(f"quality level must be 0..{QUALITY_LEVELS - 1}, got {level}")
    return QUALITY_TOKENS[level]


def quality_levels(scores: list[float]) -> list[int]:
    """Each score's quintile among `scores` (higher is better), from its rank; tied scores share
    their mean rank, so the levels of a source are as even as its ties allow."""
    n, order = len(scores), sorted(scores)
    mean_ranks = [(bisect_left(order, s) + bisect_right(order, s) - 1) / 2 for s in scores]
    return [min(QUALITY_LEVELS - 1, int((rank + 0.5) * QUALITY_LEVELS / n)) for rank in mean_ranks]


def params_bucket(count: int) -> str:
    """The cost token of a parameter count: the bucket whose upper edge is the first at or above it."""
    for edge, token in zip(PARAM_EDGES, PARAM_TOKENS):
        if count <= edge:
            return token
    return PARAM_TOKENS[-1]


def cap_bucket(cap: int, known: Collection[str] = PARAM_TOKENS) -> str:
    """The cost token to sample under a parameter cap. When the cap lies in the upper half of its
    bucket (log scale), that bucket: most of its networks fit under the cap. Otherwise the bucket
    below, all of whose networks fit. Either way a network of the chosen bucket lies at most one
    bucket width (x1.33) below the cap, or above it with a chance under one half. A GPT trained on
    fewer cost tokens (`known`) gets the largest of its own at or below that one."""
    index = PARAM_TOKENS.index(params_bucket(cap))
    if index > 0:
        lower, upper = PARAM_EDGES[index - 1], PARAM_EDGES[index]
        index -= math.log(cap / lower) < math.log(upper / lower) / 2
    return next((t for t in reversed(PARAM_TOKENS[: index + 1]) if t in known), PARAM_TOKENS[index])


def condition(quality_level: int | None = None, params: int | None = None) -> list[str]:
    """The conditioning prefix: a quality token and/or a cost token, in that order (either may be None)."""
    out = [] if quality_level is None else [quality(quality_level)]
    return out + ([] if params is None else [params_bucket(params)])


def split_condition(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(the leading conditioning tokens, the rest)."""
    n = 0
    while n < len(tokens) and tokens[n] in CONDITION_TOKENS:
        n += 1
    return tokens[:n], tokens[n:]


def space_tag(space_name: str) -> str:
    return f"space:{space_name}"


@functools.cache  # a pure function of one int, on the path of every token a grammar builds
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


@functools.cache
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
    if token in _MARKERS or token in SPECIAL_TOKENS or token in CONDITION_TOKENS or token.startswith("space:"):
        return False
    if token[0] in "wg" and token[1:].isdigit():  # width, groups
        return False
    return not (token.startswith(("from", "repeat")) and token[-1].isdigit())
