"""The protocol every search space implements, and what they share.

A space describes its architectures three ways that must agree: as genes
(the `arch` value its operators work on), as tokens (the layer-level language
the GPT reads and writes) and as an `nn.Module`. Subclasses define the genes,
the segments of their spelling (`_options`, `_segment_tokens`, `_advance`) and
the network; encoding, decoding and the exact grammar follow from those.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from functools import cached_property
from types import MappingProxyType
from typing import Any, Callable, Hashable, Mapping, NamedTuple

import torch
from torch import nn

from gptnas.errors import GptnasError, quote
from gptnas.language import tokens as T
from gptnas.language.budget import CostBounds
from gptnas.language.grammar import Grammar, GrammarState, Trie
from gptnas.registry import Registry
from gptnas.spaces import blocks as B

_TAG = "<tag>"  # the context before the space tag

SPACES: Registry = Registry("search space")  # every space class registers itself: @SPACES.register


class SearchSpace(ABC):
    """Genes, tokens and networks of one search space."""

    name: str
    input_size: int = 32  # square input resolution the networks are built for
    limits: Mapping[str, int] = MappingProxyType({})  # hard limits on "params" / "flops" (a declared space's)
    image_size: int | None = None  # the side images are resized to (unless --image_size); None: the data's own
    max_grammar_steps: int | None = None  # a grammar that takes more steps to walk is refused (a declared space's)

    # ------------------------------------------------------------ genes

    @abstractmethod
    def sample(self, rng: random.Random) -> Any:
        """A random architecture."""

    @abstractmethod
    def mutate(self, arch: Any, rng: random.Random) -> Any:
        """A new architecture that differs from `arch` in a few genes."""

    @abstractmethod
    def crossover(self, a: Any, b: Any, rng: random.Random) -> tuple[Any, Any]:
        """Two children mixing the genes of `a` and `b`."""

    @abstractmethod
    def key(self, arch: Any) -> str:
        """Canonical key: equal for architectures that compute the same network."""

    @abstractmethod
    def from_key(self, key: str) -> Any:
        """The (canonical) architecture of a key; GptnasError for a malformed key."""

    @abstractmethod
    def build_model(self, arch: Any, num_classes: int = 10) -> nn.Module:
        """The network of `arch`, freshly initialised."""

    # ------------------------------------------------------------ spelling (for subclasses)

    @abstractmethod
    def _start(self) -> Hashable:
        """Context at the first segment after the space tag."""

    @abstractmethod
    def _options(self, context: Hashable) -> list[Any]:
        """Payloads (gene values) of the segments that may come next."""

    @abstractmethod
    def _segment_tokens(self, context: Hashable, payload: Any) -> tuple[str, ...]:
        """Spelling of one segment."""

    @abstractmethod
    def _advance(self, context: Hashable, payload: Any) -> Hashable:
        """Context after a segment."""

    @abstractmethod
    def _complete(self, context: Hashable) -> bool:
        """True when the architecture may end in this context."""

    @abstractmethod
    def _payloads(self, arch: Any) -> list[Any]:
        """The segment payloads that spell `arch`."""

    @abstractmethod
    def _assemble(self, payloads: list[Any]) -> Any:
        """The architecture of parsed segment payloads."""

    def _trie_key(self, context: Hashable) -> Hashable:
        """Contexts with equal trie keys share a segment trie (override to save memory)."""
        return context

    def _context_weight(self, context: Hashable) -> int:
        """How many steps reading one segment in `context` counts for against `max_grammar_steps`."""
        return 1

    def _segment_cost(self, context: Hashable, payload: Any, metric: str, input_size: int, num_classes: int) -> int:
        """The parameters (`metric` "params") or multiply-accumulates ("flops", on `input_size` images) of one
        segment. Only for spaces whose networks' costs are the sums over their segments (`cost_bounds` then
        keeps sampling within a budget); the others do not override it."""
        raise NotImplementedError

    # ------------------------------------------------------------ language

    @property
    def tag(self) -> str:
        return T.space_tag(self.name)

    @property
    def reference(self) -> str | dict:
        """What `get_space` takes to give this space back, in another process or from a record: its name (a
        declared space: its definition)."""
        return self.name

    @cached_property
    def grammar(self) -> Grammar:
        language = _SpaceLanguage(self)
        return Grammar(language, self.name, _vocabulary(language, self.max_grammar_steps))

    def encode(self, arch: Any) -> str:
        tokens = [self.tag]
        context = self._start()
        for payload in self._payloads(arch):
            tokens.extend(self._segment_tokens(context, payload))
            context = self._advance(context, payload)
        return " ".join(tokens)

    def decode(self, text: str) -> Any:
        if not isinstance(text, str):
            raise GptnasError(f"an encoded architecture must be a string of tokens, got {type(text).__name__}")
        tokens = text.split()
        if tokens and tokens[0] != self.tag and tokens[0].startswith("space:"):
            raise GptnasError(f"architecture is tagged {quote(tokens[0])} but space {quote(self.name)} expects {quote(self.tag)}")
        payloads = self.grammar.parse(tokens)
        return self._assemble(list(payloads[1:]))

    def segments(self, arch: Any) -> list[Segment]:
        """The segments of the spelling after the space tag: the units (stem, blocks, stages,
        edges, head ...) that reconstruction regenerates one at a time."""
        out, context = [], self._start()
        for payload in self._payloads(arch):
            tokens = self._segment_tokens(context, payload)
            out.append(Segment(payload, tokens, _has_choice(self.grammar.trie(context))))
            context = self._advance(context, payload)
        return out

    def assemble(self, payloads: list[Any]) -> Any:
        """The architecture of segment payloads (e.g. after one was replaced); GptnasError if invalid."""
        return self._assemble(list(payloads))

    def choose(self, pick: Callable[[str, list[Any], int], Any]) -> Any:
        """The architecture made segment by segment, from the stem to the head: where the grammar offers more
        than one option, `pick(name, options, i)` chooses the i-th segment; `name` is its position and context,
        the same wherever the same choice is offered. The space as a sequence of categorical choices, each
        depending on those before it (for define-by-run optimisers such as Optuna's)."""
        context, payloads = self._start(), []
        while not self._complete(context):
            options = self._options(context)
            i = len(payloads)
            payloads.append(options[0] if len(options) == 1 else pick(f"{i}|{context!r}", options, i))
            context = self._advance(context, payloads[-1])
        return self.assemble(payloads)

    def allowed_next(self, prefix_tokens) -> set[str]:
        """Exactly the tokens that may follow `prefix_tokens` (EOS when it is complete)."""
        if isinstance(prefix_tokens, str):
            prefix_tokens = prefix_tokens.split()
        return set(self.grammar.allowed_next(list(prefix_tokens)))

    def start(self) -> GrammarState:
        """Incremental grammar for generation: start(), step(state, token), allowed(state)."""
        return self.grammar.start()

    def step(self, state: GrammarState, token: str) -> GrammarState | None:
        return self.grammar.step(state, token)

    def allowed(self, state: GrammarState) -> frozenset[str]:
        return self.grammar.allowed(state)

    def vocabulary(self) -> frozenset[str]:
        """Every token this space can write."""
        return self.grammar.vocabulary

    @property
    def param_bounds(self) -> CostBounds | None:
        """`cost_bounds("params")`: parameter bounds, as `params` counts them (10 classes)."""
        return self.cost_bounds("params")

    def cost_bounds(self, metric: str, input_size: int | None = None, num_classes: int = 10) -> CostBounds | None:
        """Bounds of the cost (params or flops, on networks for `input_size` images and `num_classes` classes)
        of what a grammar state can still become (gptnas/language/budget.py); None for a space whose costs do
        not add up over its segments."""
        if type(self)._segment_cost is SearchSpace._segment_cost:
            return None
        key = (metric, input_size or self.input_size, num_classes)
        if key not in self._cost_bounds:
            self._cost_bounds[key] = CostBounds(self.grammar, lambda context, payload: 0 if context == _TAG else
                                                self._segment_cost(context, payload, *key))
        return self._cost_bounds[key]

    @cached_property
    def _cost_bounds(self) -> dict[tuple, CostBounds]:
        return {}

    # ------------------------------------------------------------ cost

    def within_limits(self, arch: Any) -> bool:
        """True when `arch` keeps the space's own `limits` (counted at `input_size`)."""
        return not self.limits or all(self.cost(arch)[metric] <= cap for metric, cap in self.limits.items())

    def network(self, arch: Any, num_classes: int = 10) -> B.Layers | None:
        """The network `build_model` builds, as layers that count what they hold and compute without being
        built (blocks.py); None for a space whose networks are not written that way."""
        return None

    def params(self, arch: Any) -> int:
        """`cost(arch)["params"]`, without counting multiply-accumulates where they take a forward pass."""
        if (network := self.network(arch)) is not None:
            return network.count(self.input_size).params
        with torch.device("meta"):
            return count_params(self.build_model(arch))

    def cost(self, arch: Any, num_classes: int = 10, input_size: int | None = None) -> dict[str, int]:
        """Parameters and multiply-accumulates of one forward pass on a single input of `input_size` (the
        space's by default), for `num_classes` classes: counted from `network` where the space writes one,
        else from the network built on the meta device."""
        input_size = input_size or self.input_size
        if (network := self.network(arch, num_classes)) is not None:
            count = network.count(input_size)
            return {"params": count.params, "flops": count.macs}
        with torch.device("meta"):
            model = self.build_model(arch, num_classes)
        return {"params": count_params(model), "flops": count_macs(model, input_size)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Segment(NamedTuple):
    payload: Any  # the genes it spells
    tokens: tuple[str, ...]
    is_choice: bool  # False when the grammar allows nothing else here (a fixed stem or head)


def _has_choice(trie: Trie) -> bool:
    node = trie
    while not node.terminal:
        if len(node.children) != 1:
            return True
        node = next(iter(node.children.values()))
    return bool(node.children)


class _SpaceLanguage:
    """Adapts a space to the grammar: the space tag, then the space's own segments."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self._tries: dict[Hashable, Trie] = {}

    def start_context(self) -> Hashable:
        return _TAG

    def segments(self, context: Hashable) -> Trie:
        if context == _TAG:
            trie = Trie()
            trie.add((self.space.tag,), _TAG)
            return trie
        key = self.space._trie_key(context)
        trie = self._tries.get(key)
        if trie is None:
            trie = Trie()
            for payload in self.space._options(context):
                trie.add(self.space._segment_tokens(context, payload), payload)
            self._tries[key] = trie
        return trie

    def advance(self, context: Hashable, payload: Any) -> Hashable:
        return self.space._start() if context == _TAG else self.space._advance(context, payload)

    def tries(self) -> list[Trie]:
        """The segment tries built so far, one per trie key."""
        return list(self._tries.values())

    def is_complete(self, context: Hashable) -> bool:
        return context != _TAG and self.space._complete(context)


def _vocabulary(language: _SpaceLanguage, max_steps: int | None = None) -> frozenset[str]:
    """Every token of the grammar, from a walk through all its contexts; GptnasError once the walk has taken
    more than `max_steps` steps (a segment read in a context is one)."""
    seen, frontier, words, steps = set(), [language.start_context()], set(), 0
    read: dict[int, tuple[Trie, list]] = {}  # contexts share tries: each is read once (and kept, so ids stay its)
    while frontier:
        context = frontier.pop()
        if context in seen:
            continue
        seen.add(context)
        trie = language.segments(context)
        if id(trie) not in read:
            read[id(trie)] = (trie, trie.payloads())
            words.update(trie.tokens())
        payloads = read[id(trie)][1]
        steps += len(payloads) * language.space._context_weight(context)
        if max_steps is not None and steps > max_steps:
            raise GptnasError(f"space {language.space.name}: its grammar takes more than {max_steps:,} steps to "
                              "build; declare fewer stages, blocks or choices")
        frontier.extend(language.advance(context, payload) for payload in payloads)
    return frozenset(words)


# ---------------------------------------------------------------- variation of fixed-length genomes


def identity(genes: tuple) -> tuple:
    return genes


def mutate_gene(genes: tuple, options, rng: random.Random, canonical=identity, tries: int = 32) -> tuple:
    """One gene changed to another of `options`; redrawn (up to `tries` times) while the change only
    gives another spelling of the same network (the same `canonical` form)."""
    for _ in range(tries):
        child = list(genes)
        i = rng.randrange(len(child))
        child[i] = rng.choice([option for option in options if option != child[i]])
        child = canonical(tuple(child))
        if child != genes:
            return child
    return genes


def uniform_crossover(a: tuple, b: tuple, rng: random.Random, canonical=identity) -> tuple[tuple, tuple]:
    """Each gene from one parent or the other with even odds; the second child gets the rest."""
    mask = [rng.random() < 0.5 for _ in a]
    first = tuple(x if m else y for x, y, m in zip(a, b, mask))
    second = tuple(y if m else x for x, y, m in zip(a, b, mask))
    return canonical(first), canonical(second)


def halved(side: int, times: int) -> int:
    """A feature map's side after `times` stride-2 steps: exact when each halving is (32, 8 ...); else within
    a pixel, as a strided convolution rounds up where a pooling rounds down."""
    for _ in range(times):
        side = -(-side // 2)
    return side


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Layers that keep their input's shape and do no multiply-accumulate that NAS benchmarks count.
SHAPE_KEEPING = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Hardswish,
                 nn.Hardsigmoid, nn.Identity, nn.Dropout)


def count_macs(model: nn.Module, input_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of conv and linear layers (the FLOPs convention of NAS benchmarks)."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return 0  # no convolution or linear layer (a pooling)
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    handles, skipped = [], []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, SHAPE_KEEPING) and "forward" not in vars(module):
            module.forward = _same  # counts nothing, and is slow on the meta device (batch norm the slowest)
            skipped.append(module)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, input_size, input_size, device=parameter.device))
    finally:
        for handle in handles:
            handle.remove()
        for module in skipped:
            del module.forward
    return total


def _same(x):
    return x
