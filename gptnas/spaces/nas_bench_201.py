"""NAS-Bench-201 (Dong & Yang, ICLR 2020): one cell of 4 nodes and 6 edges, stacked 3 x 5.

Each edge is one of five ops; node i sums its edges from nodes j < i. Many of
the 15,625 cells are isomorphic (6,466 classes by the benchmark's own rule);
all cells of a class share a canonical form: the member with the most `none`
edges, then the smallest key. The benchmark trained every cell separately, so
isomorphic cells carry slightly different numbers; a search reads the
canonical cell's.

The spelling writes the cell once as a DAG (`cell node from{j} <op> ... endcell`)
followed by the fixed macro skeleton, in which `cell repeat5` stands for the
cell repeated. The network is the benchmark's TinyNetwork; its parameter count
matches the benchmark's formula exactly.
"""

from __future__ import annotations

import itertools
import random
import re
from functools import lru_cache

from torch import nn

from gptnas.errors import GptnasError, quote
from gptnas.language import tokens as T
from gptnas.spaces import blocks as B
from gptnas.spaces.base import SPACES, SearchSpace, mutate_gene, uniform_crossover

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), in key order
STAGE_WIDTHS = (16, 32, 64)
CELLS_PER_STAGE = 5
_KEY = re.compile(r"^\|([a-z_0-9]+)~0\|\+\|([a-z_0-9]+)~0\|([a-z_0-9]+)~1\|\+\|([a-z_0-9]+)~0\|([a-z_0-9]+)~1\|([a-z_0-9]+)~2\|$")


def op_tokens(op: str, channels: int) -> tuple[str, ...]:
    if op == "none":
        return ("zero",)
    if op == "skip_connect":
        return ("id",)
    if op == "avg_pool_3x3":
        return T.pool("avg", 3)
    kernel = 1 if op == "nor_conv_1x1" else 3
    return ("relu",) + T.conv(kernel, channels) + ("bn",)


def function_of(cell: tuple[str, ...]) -> str:
    """The cell's isomorphism class as a string, by NAS-Bench-201's own rule (its
    `Structure.to_unique_str(consider_zero=True)`): a `none` edge or an edge from a
    zero node contributes zero, a skip passes its input's string, node inputs are
    sorted. It yields the 6,466 unique cells the benchmark paper counts."""
    nodes = {0: "0"}
    for to in (1, 2, 3):
        terms = []
        for (t, j), op in zip(EDGES, cell):
            if t != to:
                continue
            if op == "none" or nodes[j] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[j])
            else:
                terms.append(f"({nodes[j]})@{op}")
        nodes[to] = "+".join(sorted(terms))
    return nodes[3]


def published_params(cell: tuple[str, ...]) -> int:
    """The benchmark's published parameter count of the cell's network with a 10-class classifier:
    0.073306 + 0.24304 n3x3 + 0.028 n1x1 million, n = edges with that convolution."""
    n3, n1 = cell.count("nor_conv_3x3"), cell.count("nor_conv_1x1")
    return 73_306 + 243_040 * n3 + 28_000 * n1


def key_of(cell: tuple[str, ...]) -> str:
    e = cell
    return f"|{e[0]}~0|+|{e[1]}~0|{e[2]}~1|+|{e[3]}~0|{e[4]}~1|{e[5]}~2|"


@lru_cache(maxsize=1)
def _canonical_table() -> dict[tuple[str, ...], tuple[str, ...]]:
    classes: dict[str, list[tuple[str, ...]]] = {}
    for cell in itertools.product(OPS, repeat=len(EDGES)):
        classes.setdefault(function_of(cell), []).append(cell)
    table = {}
    for members in classes.values():
        representative = min(members, key=lambda c: (-c.count("none"), key_of(c)))
        table.update(dict.fromkeys(members, representative))
    return table


def canonical(cell: tuple[str, ...]) -> tuple[str, ...]:
    return _canonical_table()[tuple(cell)]


# ---------------------------------------------------------------- network


class _Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def _op_module(op: str, channels: int) -> nn.Module:
    if op == "none":
        return _Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    kernel = 1 if op == "nor_conv_1x1" else 3
    return B.ConvBNAct(channels, channels, kernel, act="relu", act_first=True)


class Cell(nn.Module):
    def __init__(self, cell: tuple[str, ...], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(_op_module(op, channels) for op in cell)

    def forward(self, x):
        nodes = [x]
        for to in (1, 2, 3):
            node = None
            for (t, j), edge in zip(EDGES, self.edges):
                if t == to:
                    node = edge(nodes[j]) if node is None else node + edge(nodes[j])
            nodes.append(node)
        return nodes[3]


def _reduction(cin: int, cout: int) -> B.Layers:
    """The benchmark's residual reduction block between stages."""
    body = (
        B.conv_bn_act(cin, cout, 3, stride=2, act_first=True),
        B.conv_bn_act(cout, cout, 3, act_first=True),
    )
    shortcut = (
        B.plain(T.pool("avg", 2, stride=2)[0], lambda: nn.AvgPool2d(2, 2), B.pool_count(2, 2)),
        B.conv_bn_act(cin, cout, 1, act=None, norm=False),
    )
    return B.residual(body, shortcut)


@SPACES.register
class NasBench201(SearchSpace):
    name = "nas-bench-201"

    # ------------------------------------------------------------ genes

    def sample(self, rng: random.Random):
        return canonical(tuple(rng.choice(OPS) for _ in EDGES))

    def mutate(self, arch, rng: random.Random):
        """Changes one edge's op; retries while that leaves the cell's function unchanged."""
        return mutate_gene(arch, OPS, rng, canonical)

    def crossover(self, a, b, rng: random.Random):
        return uniform_crossover(a, b, rng, canonical)

    def key(self, arch) -> str:
        return key_of(canonical(tuple(arch)))

    def from_key(self, key: str):
        match = _KEY.match(key) if isinstance(key, str) else None
        if match is None:
            raise GptnasError(
                f"NAS-Bench-201 key must look like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', got {quote(key)}"
            )
        unknown = [op for op in match.groups() if op not in OPS]
        if unknown:
            raise GptnasError(f"unknown NAS-Bench-201 op {quote(unknown[0])} in key {quote(key)}; valid ops: {', '.join(OPS)}")
        return canonical(match.groups())

    # ------------------------------------------------------------ network

    def params(self, arch) -> int:
        return published_params(arch)

    def cost(self, arch, num_classes: int = 10, input_size: int | None = None) -> dict[str, int]:
        """For 10 classes at 32x32, exact and linear in the number of 3x3 / 1x1 convolution edges (tests
        check it against the built network); the parameter part is the benchmark's published formula."""
        if num_classes != 10 or input_size not in (None, self.input_size):
            return super().cost(arch, num_classes, input_size)
        n3, n1 = arch.count("nor_conv_3x3"), arch.count("nor_conv_1x1")
        return {"params": published_params(arch), "flops": 7_783_040 + 35_389_440 * n3 + 3_932_160 * n1}

    def build_model(self, arch, num_classes: int = 10) -> nn.Module:
        layers: list[nn.Module] = [B.conv_bn_act(3, STAGE_WIDTHS[0], 3, act=None).build()]
        for stage, width in enumerate(STAGE_WIDTHS):
            if stage:
                layers.append(_reduction(STAGE_WIDTHS[stage - 1], width).build())
            layers.extend(Cell(tuple(arch), width) for _ in range(CELLS_PER_STAGE))
        layers += [nn.BatchNorm2d(STAGE_WIDTHS[-1]), nn.ReLU(inplace=True)]
        layers.append(B.gap_classifier(STAGE_WIDTHS[-1], num_classes).build())
        return nn.Sequential(*layers)

    # ------------------------------------------------------------ spelling: one segment per edge, then the skeleton

    def _start(self):
        return 0

    def _options(self, edge: int):
        return list(OPS) if edge < len(EDGES) else (["skeleton"] if edge == len(EDGES) else [])

    def _segment_tokens(self, edge: int, payload):
        if edge == len(EDGES):
            return self._skeleton()
        to, source = EDGES[edge]
        head = ()
        if edge == 0:
            head = B.conv_bn_act(3, STAGE_WIDTHS[0], 3, act=None).tokens + ("cell",)
        if source == 0:
            head += ("node",)
        return head + (f"from{source}",) + op_tokens(payload, STAGE_WIDTHS[0])

    def _skeleton(self) -> tuple[str, ...]:
        tokens = ("endcell", f"repeat{CELLS_PER_STAGE}")
        for cin, cout in zip(STAGE_WIDTHS, STAGE_WIDTHS[1:]):
            tokens += _reduction(cin, cout).tokens + ("cell", f"repeat{CELLS_PER_STAGE}")
        return tokens + ("bn", "relu") + B.gap_classifier(STAGE_WIDTHS[-1], 10).tokens

    def _advance(self, edge: int, payload):
        return edge + 1

    def _complete(self, edge: int) -> bool:
        return edge == len(EDGES) + 1

    def _payloads(self, arch):
        return [*arch, "skeleton"]

    def _assemble(self, payloads):
        return canonical(tuple(payloads[: len(EDGES)]))
