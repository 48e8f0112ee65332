"""Write a real torch.nn.Module in the architecture language, by tracing it with torch.fx.

Symbolic tracing never runs a tensor, so models built on the meta device encode
just as well (and much faster) as real ones.

The traced graph is turned into tokens in three steps:
1. every node that carries image data becomes a layer (its tokens), a merge
   (add/cat/mul of two or more data values), a split (chunk/split along channels)
   or a pass-through (view, dropout, padding, a chunk of a split, a channel crop);
   anything else is an error, so no layer is ever dropped silently;
2. the data-flow graph is reduced to one edge by series and parallel reductions
   (a series-parallel decomposition). A parallel reduction writes
   `( branch | branch )merge`, branches in graph order of their first layer,
   empty branches (identities) last; a graph that does not reduce is not
   series-parallel and is refused;
3. `block` is inserted before the first token of every block module and the
   last Linear becomes `classifier`.

The rules must match the search spaces' own encodings token for token: a test
compares encode_module(space.build_model(arch)) with space.encode(arch).
"""

import logging
import operator
import sys
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from gptnas.errors import GptnasError, quote
from gptnas.language import tokens

log = logging.getLogger(__name__)

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

_ACTIVATION_MODULES = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.GELU: "gelu",
    nn.Hardswish: "hswish", nn.Hardsigmoid: "hsigmoid", nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh", nn.LeakyReLU: "lrelu", nn.ELU: "elu",
}
# timm's own activation classes, matched by name so that timm stays an optional dependency.
_TIMM_ACTIVATIONS = {
    "Swish": "silu", "SwishMe": "silu", "GELU": "gelu", "GELUTanh": "gelu",
    "HardSwish": "hswish", "HardSwishMe": "hswish", "HardSigmoid": "hsigmoid",
    "HardSigmoidMe": "hsigmoid", "Sigmoid": "sigmoid", "Tanh": "tanh",
}
# Regularisers, reshapes and explicit padding: no layer in the language (conv padding is ignored too).
_SKIPPED_MODULES = (nn.Identity, nn.Flatten, nn.modules.dropout._DropoutNd, nn.ZeroPad2d, nn.ConstantPad2d)
_SKIPPED_MODULE_NAMES = {"DropPath", "DropBlock2d", "StochasticDepth"}
# Modules fx cannot trace (control flow on the input size) that apply their children in order:
# timm's VGG head only pools up tiny inputs before its two convolutions.
_IN_ORDER_MODULE_NAMES = {"ConvMlp"}

_ACTIVATION_FUNCTIONS = {
    F.relu: "relu", F.relu_: "relu", torch.relu: "relu", torch.relu_: "relu",
    F.relu6: "relu6", F.silu: "silu", F.gelu: "gelu", F.hardswish: "hswish",
    F.hardsigmoid: "hsigmoid", torch.sigmoid: "sigmoid", torch.sigmoid_: "sigmoid",
    F.sigmoid: "sigmoid", torch.tanh: "tanh", torch.tanh_: "tanh", F.tanh: "tanh",
    F.leaky_relu: "lrelu", F.leaky_relu_: "lrelu", F.elu: "elu", F.elu_: "elu",
}
_ACTIVATION_METHODS = {
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh",
}
_MERGE_FUNCTIONS = {
    operator.add: tokens.MERGE_ADD, operator.iadd: tokens.MERGE_ADD, torch.add: tokens.MERGE_ADD,
    operator.mul: tokens.MERGE_MUL, operator.imul: tokens.MERGE_MUL, torch.mul: tokens.MERGE_MUL,
    torch.cat: tokens.MERGE_CAT, torch.concat: tokens.MERGE_CAT, torch.concatenate: tokens.MERGE_CAT,
}
_MERGE_METHODS = {"add": tokens.MERGE_ADD, "add_": tokens.MERGE_ADD, "mul": tokens.MERGE_MUL, "mul_": tokens.MERGE_MUL}
_PASS_FUNCTIONS = {torch.flatten, torch.reshape, F.dropout, F.pad}
_PASS_METHODS = {"view", "reshape", "flatten", "contiguous"}
# Ops whose result describes a tensor (its shape) rather than being image data.
_METADATA_FUNCTIONS = {getattr}
_METADATA_METHODS = {"size", "dim"}
_SPLIT_FUNCTIONS = {torch.chunk, torch.split}
_SPLIT_METHODS = {"chunk", "split"}
_CHANNEL_DIMS = (1, -3)
_SHUFFLE_FUNCTION_NAME = "channel_shuffle"


def encode_module(model: nn.Module, space_tag: str) -> list[str]:
    """The token sequence of `model`, starting with the space tag `space:{space_tag}`.

    Raises GptnasError naming the op when the model uses a layer the language
    cannot write, or when its graph is not series-parallel; torch.fx's TraceError
    when its forward branches on tensor values.
    """
    training = {m: m.training for m in model.modules()}
    model.eval()  # trace the inference graph: no auxiliary heads, no training-only branches
    try:
        graph = _Tracer().trace(model)
    finally:
        for m, mode in training.items():
            m.train(mode)
    nodes = _data_nodes(graph, model, _block_modules(model))
    body = _reduce(nodes)
    return [tokens.space_tag(space_tag), *_with_block_markers(body)]


class _Tracer(torch.fx.Tracer):
    """Stops at the layers the language names; traces through everything else."""

    def __init__(self):
        # torchvision's ShuffleNetV2 shuffles with a plain function; keep it a single node.
        shufflenet = sys.modules.get("torchvision.models.shufflenetv2")
        wrapped = (shufflenet.channel_shuffle,) if shufflenet is not None else ()
        super().__init__(autowrap_functions=wrapped)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_known_leaf(m) or super().is_leaf_module(m, module_qualified_name)


def _is_known_leaf(m: nn.Module) -> bool:
    return (
        isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
                       nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, *_SKIPPED_MODULES))
        or _activation_of(m) is not None
        or type(m).__name__ in _SKIPPED_MODULE_NAMES
        or type(m).__name__ in ("SelectAdaptivePool2d", "FastAdaptiveAvgPool")
        or _is_in_order(m)
    )


def _is_in_order(m: nn.Module) -> bool:
    return type(m).__module__.startswith("timm.") and type(m).__name__ in _IN_ORDER_MODULE_NAMES


def _activation_of(m: nn.Module) -> str | None:
    for cls in type(m).__mro__:
        if cls in _ACTIVATION_MODULES:
            return _ACTIVATION_MODULES[cls]
    if type(m).__module__.startswith("timm."):
        return _TIMM_ACTIVATIONS.get(type(m).__name__)
    return None


def _square(value, what: str, where: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise GptnasError(f"non-square {what} {tuple(value)} in {where} has no token")
    return value[0]


def _conv_tokens(m: nn.Conv2d) -> tuple[str, ...]:
    where = type(m).__name__
    stride, dilation = _square(m.stride, "stride", where), _square(m.dilation, "dilation", where)
    if m.groups == m.in_channels == m.out_channels:
        return tokens.dwconv(m.kernel_size, stride, dilation)
    if m.groups > 1:
        return tokens.gconv(m.kernel_size, m.out_channels, m.groups, stride, dilation)
    return tokens.conv(m.kernel_size, m.out_channels, stride, dilation)


def _global_pool(kind: str, output_size, what: str) -> tuple[str, ...]:
    if output_size not in (1, (1, 1), [1, 1]):
        raise GptnasError(f"{what} with output size {output_size} has no token (only global pooling)")
    return ("gap",) if kind == "avg" else ("gmp",)


def _module_tokens(m: nn.Module) -> tuple[str, ...]:
    """Tokens of a leaf module (Linear is handled by the caller)."""
    name = type(m).__name__
    if isinstance(m, nn.Conv2d):
        return _conv_tokens(m)
    if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)):
        norm = "bn" if isinstance(m, nn.modules.batchnorm._BatchNorm) else "ln" if isinstance(m, nn.LayerNorm) else "gn"
        # timm's norm-act layers (BatchNormAct2d, ...) carry their activation inside.
        act = getattr(m, "act", None)
        return (norm, *(_module_tokens(act) if isinstance(act, nn.Module) else ()))
    if (act := _activation_of(m)) is not None:
        return (act,)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = m.stride if m.stride is not None else m.kernel_size
        kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        return tokens.pool(kind, m.kernel_size, _square(stride, "stride", name))
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _global_pool("avg", m.output_size, name)
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return _global_pool("max", m.output_size, name)
    if name == "SelectAdaptivePool2d":  # timm's head pooling: pool_type '' means no pooling
        pool_type = m.pool_type
        if pool_type == "":
            return ()
        if pool_type not in ("avg", "max", "fast", "fastavg", "fastmax"):
            raise GptnasError(f"SelectAdaptivePool2d(pool_type={quote(pool_type)}) has no token")
        return ("gmp",) if pool_type.endswith("max") else ("gap",)
    if name == "FastAdaptiveAvgPool":
        return ("gap",)
    if isinstance(m, _SKIPPED_MODULES) or name in _SKIPPED_MODULE_NAMES:
        return ()
    if _is_in_order(m):
        return tuple(t for child in m.children() for t in _module_tokens(child))
    raise GptnasError(f"unsupported module {type(m).__module__}.{name}")


@dataclass(eq=False)
class _Node:
    """One data-carrying node of the traced graph."""

    index: int  # position in graph (execution) order
    name: str
    block: str | None  # qualified name of the block module it belongs to
    layer: tuple[str, ...] = ()
    merge: str | None = None  # )add )cat )mul when it merges two or more branches
    split: bool = False  # a channel split whose chunks are the branches
    linear: int | None = None  # out_features of a Linear: fc or classifier, decided once all are known
    inputs: list["_Node"] = field(default_factory=list)  # data inputs, with repetition


def _block_modules(root: nn.Module) -> set[str]:
    """Outermost non-container modules below the root with at least two Conv2d."""
    blocks = set()

    def visit(module, prefix):
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            n_convs = sum(isinstance(m, nn.Conv2d) for m in child.modules())
            if not isinstance(child, _CONTAINERS) and n_convs >= 2:
                blocks.add(path)
            elif n_convs >= 2:
                visit(child, path)

    visit(root, "")
    return blocks


def _owner(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return node.target
    stack = node.meta.get("nn_module_stack")
    return next(reversed(stack.values()))[0] if stack else ""


def _block_of(path: str, blocks: set[str]) -> str | None:
    parts = path.split(".") if path else []
    for i in range(1, len(parts) + 1):
        if (prefix := ".".join(parts[:i])) in blocks:
            return prefix
    return None


def _arg(node: torch.fx.Node, position: int, keyword: str, default=None):
    if keyword in node.kwargs:
        return node.kwargs[keyword]
    return node.args[position] if len(node.args) > position else default


def _flat_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """Input nodes in argument order, repeated when an input is used twice (x + x)."""
    found = []
    torch.fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _describe(node: torch.fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{node.op} {target!r} (node {node.name})"


def _classify(node: torch.fx.Node, n_data_inputs: int, modules: dict[str, nn.Module], out: _Node) -> None:
    """Fill in what a data node does; raise if the language has no token for it."""
    op, target = node.op, node.target
    merge = None
    if op == "call_module":
        m = modules[target]
        if isinstance(m, nn.Linear):
            out.linear = m.out_features
        else:
            out.layer = _module_tokens(m)
        return
    if op == "call_function":
        if target in _ACTIVATION_FUNCTIONS:
            out.layer = (_ACTIVATION_FUNCTIONS[target],)
            return
        if target in _PASS_FUNCTIONS:
            return
        if target is operator.getitem:
            _check_getitem(node, out)
            return
        if getattr(target, "__name__", None) == _SHUFFLE_FUNCTION_NAME:
            out.layer = ("shuffle",)
            return
        if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            kind = "avg" if target is F.adaptive_avg_pool2d else "max"
            out.layer = _global_pool(kind, _arg(node, 1, "output_size"), target.__name__)
            return
        if target in (F.max_pool2d, F.avg_pool2d):
            kernel = _arg(node, 1, "kernel_size")
            stride = _arg(node, 2, "stride") or kernel
            kind = "max" if target is F.max_pool2d else "avg"
            out.layer = tokens.pool(kind, kernel, _square(stride, "stride", target.__name__))
            return
        if target is torch.mean:
            out.layer = _mean_tokens(node)
            return
        if target in _SPLIT_FUNCTIONS:
            out.split = _check_split(node)
            return
        merge = _MERGE_FUNCTIONS.get(target)
    elif op == "call_method":
        if target in _ACTIVATION_METHODS:
            out.layer = (_ACTIVATION_METHODS[target],)
            return
        if target in _PASS_METHODS:
            return
        if target == "mean":
            out.layer = _mean_tokens(node)
            return
        if target in _SPLIT_METHODS:
            out.split = _check_split(node)
            return
        merge = _MERGE_METHODS.get(target)
    if merge is None:
        raise GptnasError(f"unsupported op {_describe(node)}")
    if merge == tokens.MERGE_CAT and _arg(node, 1, "dim", 0) not in _CHANNEL_DIMS:
        raise GptnasError(f"concatenation along dim {_arg(node, 1, 'dim', 0)} is not a channel concat ({_describe(node)})")
    if n_data_inputs >= 2:
        out.merge = merge
    elif merge != tokens.MERGE_CAT:  # cat of one tensor is the identity; x + const is a layer we cannot name
        raise GptnasError(f"unsupported op {_describe(node)} with a constant operand")


def _check_getitem(node: torch.fx.Node, out: _Node) -> None:
    """Picking a chunk of a split, or cropping channels (GhostNet), passes data on; other indexing is a layer."""
    if out.inputs[0].split:
        return
    index = node.args[1]
    parts = index if isinstance(index, tuple) else (index,)
    if all(p is Ellipsis or (isinstance(p, slice) and p.step in (None, 1)) for p in parts):
        return
    raise GptnasError(f"unsupported tensor indexing [{index}] ({_describe(node)})")


def _mean_tokens(node: torch.fx.Node) -> tuple[str, ...]:
    dims = _arg(node, 1, "dim")
    if dims is not None and set(dims if isinstance(dims, (tuple, list)) else (dims,)) in ({2, 3}, {-1, -2}):
        return ("gap",)
    raise GptnasError(f"mean over dims {dims} is not global pooling ({_describe(node)})")


def _check_split(node: torch.fx.Node) -> bool:
    dim = _arg(node, 2, "dim", 0)
    if dim not in _CHANNEL_DIMS:
        raise GptnasError(f"split along dim {dim} is not a channel split ({_describe(node)})")
    sizes = _arg(node, 1, "split_size_or_sections" if node.target is torch.split else "split_size")
    if node.target in ("split", torch.split) and isinstance(sizes, (list, tuple)):
        # timm's mixed convs give the remainder to the first chunk; anything further apart is not "equal".
        if max(sizes) - min(sizes) >= len(sizes):
            raise GptnasError(f"split into unequal chunks {list(sizes)} has no token ({_describe(node)})")
    return True


def _data_nodes(graph: torch.fx.Graph, model: nn.Module, blocks: set[str]) -> list[_Node]:
    """The nodes that carry image data from the input to the output, in graph order."""
    modules = dict(model.named_modules())
    data: dict[torch.fx.Node, _Node] = {}
    output = None
    for index, node in enumerate(graph.nodes):
        if node.op == "placeholder":
            data[node] = _Node(index, node.name, None)
            continue
        if node.op == "output":
            output = _Node(index, "output", None, inputs=[data[n] for n in _flat_inputs(node) if n in data])
            continue
        if node.op == "get_attr":
            continue  # parameters and buffers are constants
        if node.op == "call_function" and node.target in _METADATA_FUNCTIONS:
            continue
        if node.op == "call_method" and node.target in _METADATA_METHODS:
            continue
        inputs = [data[n] for n in _flat_inputs(node) if n in data]
        if not inputs:
            continue  # computed from shapes and constants only
        if node.op == "call_method" and node.target == "expand_as":
            inputs = inputs[:1]  # the second operand only lends its shape
        this = _Node(index, node.name, _block_of(_owner(node), blocks), inputs=inputs)
        _classify(node, len(inputs), modules, this)
        data[node] = this
    if output is None or len(output.inputs) != 1:
        raise GptnasError("the model must return exactly one tensor")
    sources = [n for fx_node, n in data.items() if fx_node.op == "placeholder"]
    if len(sources) != 1:
        raise GptnasError(f"the model must take exactly one input, got {len(sources)}")

    # Keep only what reaches the output: values computed and then ignored are not layers.
    live, stack = {output}, [output]
    while stack:
        for inp in stack.pop().inputs:
            if inp not in live:
                live.add(inp)
                stack.append(inp)
    dead = [n.name for n in data.values() if n not in live]
    if dead:
        log.debug("ignoring %d nodes whose values never reach the output: %s", len(dead), dead[:5])
    if sources[0] not in live:
        raise GptnasError("the model output does not depend on its input")
    nodes = [n for n in data.values() if n in live] + [output]

    linears = [n for n in nodes if n.linear is not None]
    for n in linears:
        n.layer = tokens.fc(n.linear)
    if linears:
        linears[-1].layer = ("classifier",)
    return nodes


@dataclass(eq=False)
class _Edge:
    """A reduced stretch of the graph: its tokens (with owning block) and first layer's position."""

    src: _Node
    dst: _Node
    seq: list[tuple[str, str | None]]
    first: int | None  # graph position of its first layer; None for an identity


def _reduce(nodes: list[_Node]) -> list[tuple[str, str | None]]:
    """Series-parallel reduction of the data graph to a single edge; its tokens in order."""
    source, sink = nodes[0], nodes[-1]
    ins: dict[_Node, list[_Edge]] = {n: [] for n in nodes}
    outs: dict[_Node, list[_Edge]] = {n: [] for n in nodes}
    for n in nodes:
        for inp in n.inputs:
            edge = _Edge(inp, n, [], None)
            ins[n].append(edge)
            outs[inp].append(edge)

    def add_edge(edge):
        outs[edge.src].append(edge)
        ins[edge.dst].append(edge)

    def drop_edge(edge):
        outs[edge.src].remove(edge)
        ins[edge.dst].remove(edge)

    def series(v) -> bool:
        """v between exactly one producer and one consumer: fold it into one edge."""
        if v in (source, sink) or v.merge or v.split or len(ins[v]) != 1 or len(outs[v]) != 1:
            return False
        a, b = ins[v][0], outs[v][0]
        drop_edge(a)
        drop_edge(b)
        seq = a.seq + [(t, v.block) for t in v.layer] + b.seq
        firsts = [f for f in (a.first, v.index if v.layer else None, b.first) if f is not None]
        add_edge(_Edge(a.src, b.dst, seq, min(firsts, default=None)))
        del ins[v], outs[v]
        return True

    def parallel(v) -> bool:
        """All of v's inputs come from one fork: write the branches and v's merge."""
        edges = list(ins[v])
        if not v.merge or len(edges) < 2 or len({e.src for e in edges}) != 1:
            return False
        u = edges[0].src
        if u.split and len(outs[u]) != len(edges):
            raise GptnasError(f"the chunks of split {u.name} do not all meet at {v.name}")
        ordered = sorted(edges, key=lambda e: (e.first is None, e.first if e.first is not None else 0))
        seq = [(tokens.SPLIT if u.split else tokens.FORK, v.block)]
        for i, e in enumerate(ordered):
            if i:
                seq.append((tokens.NEXT_BRANCH, v.block))
            seq.extend(e.seq)
        seq.append((v.merge, v.block))
        firsts = [e.first for e in edges if e.first is not None]
        for e in edges:
            drop_edge(e)
        add_edge(_Edge(u, v, seq, min(firsts, default=v.index)))
        v.merge = None  # v now just passes the merged value on
        u.split = False  # the split is written; u passes its input on
        return True

    pending = list(nodes)
    while pending:
        v = pending.pop()
        if v not in ins:
            continue
        neighbours = {e.src for e in ins[v]} | {e.dst for e in outs[v]}
        if parallel(v) or series(v):
            pending.extend(n for n in neighbours if n in ins)
            if v in ins:
                pending.append(v)

    if len(outs[source]) != 1 or outs[source][0].dst is not sink:
        stuck = min((n for n in ins if n.merge), key=lambda n: n.index, default=None)
        where = f" (stuck at {stuck.name}, whose inputs come from different forks)" if stuck else ""
        raise GptnasError(f"the network graph is not series-parallel{where}")
    return outs[source][0].seq


def _with_block_markers(seq: list[tuple[str, str | None]]) -> list[str]:
    out, current = [], None
    for token, block in seq:
        if block is not None and block != current:
            out.append(tokens.BLOCK)
        current = block
        out.append(token)
    return out
