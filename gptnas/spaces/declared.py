"""A search space declared in a YAML file: a stem, stages of blocks from the block library, a head.

    name: mobile96               # optional (default: the file's name)
    tag: timm                    # optional: the corpus source the GPT reads these networks as
    input: {size: 96, channels: 3}
    stem: {kernel: 3, stride: 2, width: [16, 24]}
    stages:
      - depth: [1, 3]            # blocks in the stage: a number, or [min, max]
        stride: 2                # the first block's stride (the others keep the resolution)
        width: [24, 32]          # the stage's output width, chosen once (width_per_block: true, per block;
                                 # same: the blocks keep the width they get)
        blocks:                  # the kinds its blocks choose from, each with options fixed or searched
          - mbconv: {kernel: [3, 5], expansion: [3, 6], se: [false, true]}
          - resnet_basic
        first_blocks: [...]      # optional: the first block's kinds, when they differ
    head: {width: 1280}          # optional 1x1 conv before pooling and the classifier
    limits: {max_params: 2000000, max_macs: 5000000}

Everything else follows from it: the genes, the exact grammar (stage boundaries need no tokens of their
own: the grammar tracks every stage a block could belong to), the networks, their costs, sampling,
mutation and crossover. The file is checked when it is loaded, and a mistake names its field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from gptnas.config import load_yaml
from gptnas.errors import GptnasError, quote
from gptnas.language import tokens as T
from gptnas.spaces import block_kinds as K
from gptnas.spaces import blocks as B
from gptnas.spaces.base import SearchSpace, halved
from gptnas.spaces.space_file import Stage, read_definition

SPACE_FILE_SUFFIXES = (".yaml", ".yml")
SPACE_FILE = "space.yaml"  # a run directory's copy of the declared space it searches
MAX_PRICED = 20_000  # segments priced to check the limits at load (about a millisecond each)
MAX_GRAMMAR_STEPS = 2_000_000  # what building the grammar of a handed definition may cost (a few seconds)
MAX_SAMPLE_TRIES, MAX_EDIT_TRIES = 1000, 64


class Block(NamedTuple):
    kind: str  # a variant: a library kind with its options (`mbconv_k5_e6_se`)
    width: int  # output width; 0: the input width (pooling, a stage of width `same`)
    stride: int


class Head(NamedTuple):
    width: int  # the 1x1 conv's width before pooling; 0: pooling and the classifier only


@dataclass(frozen=True)
class DeclaredArch:
    stem: int
    blocks: tuple[Block, ...]
    head: Head


State = tuple[int, int, int]  # (stage, blocks written in it, its width once chosen, else 0)
_STEM, _DONE = "stem", "done"


class DeclaredSpace(SearchSpace):
    """A space from a definition (the mapping of a space file); `load_space(path)` reads one."""

    def __init__(self, definition: dict, where: str = "space"):
        spec = read_definition(definition, where)
        self.definition = {**definition, "name": spec["name"], "tag": spec["tag"]}  # the space, wherever it goes
        self.name, self.input_size, self._tag = spec["name"], spec["input_size"], spec["tag"]
        self.image_size = self.input_size  # images are resized to the declared input size
        self.stem_kernel, self.stem_stride, self.stem_widths = spec["stem"]
        self.stages: tuple[Stage, ...] = spec["stages"]
        self.variants: dict[str, K.Kind] = spec["variants"]
        self.head_widths: tuple[int, ...] = spec["head"]
        self.max_downsamples: int | None = spec["max_downsamples"]
        self.limits: dict[str, int] = spec["limits"]  # {"params": ..., "flops": ...}, those declared
        self.max_grammar_steps = MAX_GRAMMAR_STEPS
        self._costs: dict[tuple, int] = {}
        self._tokens: dict[tuple, tuple[str, ...]] = {}  # (input width, payload) -> its spelling
        self._option_sets: dict[Any, frozenset] = {}
        _check_spellings(self, where)
        _check_limits(self, where)

    @property
    def tag(self) -> str:
        return T.space_tag(self._tag)

    @property
    def reference(self) -> dict:
        return self.definition

    def __reduce__(self):  # pickled as its definition (worker processes build it again)
        return declared_space, (self.definition,)

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the definition: two spaces with the same digest are the same space."""
        return _key(self.definition, self.name)

    # ------------------------------------------------------------ validity

    def check(self, arch: DeclaredArch) -> None:
        """GptnasError saying where `arch` leaves the space's grammar (its limits are not checked here)."""
        if not isinstance(arch, DeclaredArch):
            raise GptnasError(f"a {self.name} architecture is a DeclaredArch, got {type(arch).__name__}")
        context = self._start()
        for i, payload in enumerate(self._payloads(arch)):
            if payload not in self._option_set(context):
                raise GptnasError(f"segment {i} ({_describe(payload)}) is not allowed there in space {self.name}")
            context = self._advance(context, payload)

    def within_limits(self, arch: DeclaredArch) -> bool:
        costs = self._summed_costs(arch, tuple(self.limits))
        return all(costs[metric] <= limit for metric, limit in self.limits.items())

    def is_valid(self, arch) -> bool:
        try:
            self.check(arch)
        except GptnasError:
            return False
        return self.within_limits(arch)

    # ------------------------------------------------------------ genes

    def sample(self, rng: random.Random) -> DeclaredArch:
        """Each stage's depth uniformly, its strided blocks (where blocks choose) at random places, each block's
        kind, then its stride and width uniformly; drawn again while over a limit."""
        for _ in range(MAX_SAMPLE_TRIES):
            arch = self._draw(rng)
            if self.within_limits(arch):
                return arch
        raise GptnasError(f"space {self.name}: no network within its limits in {MAX_SAMPLE_TRIES} samples; "
                          "raise limits.max_params / limits.max_macs or offer smaller widths")

    def _draw(self, rng: random.Random) -> DeclaredArch:
        depths = [rng.randint(s.min_depth, s.max_depth) for s in self.stages]
        chosen = [(i, n) for i, s in enumerate(self.stages) if s.strides and 2 in s.strides for n in range(depths[i])]
        room = len(chosen) if self.max_downsamples is None else self.max_downsamples - self._fixed_downsamples(depths)
        strided = set(rng.sample(chosen, rng.randint(0, max(0, min(room, len(chosen))))))
        stem, blocks = rng.choice(self.stem_widths), []
        for i, stage in enumerate(self.stages):
            shared = 0
            for n in range(depths[i]):
                stride = (2 if (i, n) in strided else 1) if stage.strides else (stage.stride if n == 0 else 1)
                block = self._random_block(rng, stage, stride, shared, first=n == 0)
                shared = shared or (0 if stage.width_per_block else block.width)
                blocks.append(block)
        return DeclaredArch(stem, tuple(blocks), Head(rng.choice(self.head_widths)))

    def _fixed_downsamples(self, depths: list[int]) -> int:
        return sum(s.stride == 2 for s, d in zip(self.stages, depths) if not s.strides and d)

    def _random_block(self, rng: random.Random, stage: Stage, stride: int, shared_width: int,
                      first: bool = False) -> Block:
        kind = rng.choice([k for k in stage.kinds_at(first) if stride in self.variants[k].strides])
        if self.variants[kind].keeps_width or not stage.widths:  # pooling, or a stage of width `same`
            return Block(kind, 0, stride)
        return Block(kind, shared_width or rng.choice(stage.widths), stride)

    def mutate(self, arch: DeclaredArch, rng: random.Random) -> DeclaredArch:
        """One random edit (a block redrawn, inserted or deleted, a stage's width, the stem or the head);
        retried until the child is valid, within the limits and new."""
        staged = self.staging(arch)
        for _ in range(MAX_EDIT_TRIES):
            stages = [list(blocks) for blocks in staged]
            stem, head = arch.stem, arch.head
            i = rng.randrange(len(stages))
            stage, blocks = self.stages[i], stages[i]
            n = rng.randrange(len(blocks))
            edit, anchor = rng.choice(("block", "block", "insert", "delete", "width", "stem", "head")), (i, n)
            if edit == "block":
                blocks[n] = self._random_block(rng, stage, _stride(rng, stage, blocks[n].stride), 0, first=n == 0)
            elif edit == "insert" and len(blocks) < stage.max_depth:
                blocks.insert(n + 1, self._random_block(rng, stage, _stride(rng, stage, 1), 0))
                anchor = (i, n + 1)
            elif edit == "delete" and len(blocks) > stage.min_depth:
                del blocks[n]
                anchor = None
            elif edit == "width":
                blocks[n] = blocks[n]._replace(width=rng.choice(stage.widths)) if blocks[n].width else blocks[n]
            elif edit == "stem":
                stem = rng.choice(self.stem_widths)
            elif edit == "head":
                head = Head(rng.choice(self.head_widths))
            child = self._joined(stem, stages, head, anchor)
            if child != arch and self.is_valid(child):
                return child
        return arch

    def crossover(self, a: DeclaredArch, b: DeclaredArch, rng: random.Random) -> tuple[DeclaredArch, DeclaredArch]:
        """Whole stages from one parent or the other (the stem and head go with the first stage and the
        last); retried until both children are valid and within the limits."""
        sa, sb = self.staging(a), self.staging(b)
        for _ in range(MAX_EDIT_TRIES):
            mask = [rng.random() < 0.5 for _ in self.stages]
            c1 = self._joined(a.stem if mask[0] else b.stem, [x if m else y for x, y, m in zip(sa, sb, mask)],
                              a.head if mask[-1] else b.head)
            c2 = self._joined(b.stem if mask[0] else a.stem, [y if m else x for x, y, m in zip(sa, sb, mask)],
                              b.head if mask[-1] else a.head)
            if self.is_valid(c1) and self.is_valid(c2):
                return c1, c2
        return a, b

    def _joined(self, stem: int, stages: list[list[Block]], head: Head, anchor: tuple[int, int] | None = None):
        """The architecture of stages of blocks; a stage that shares one width takes its blocks' width from the
        block at `anchor` (the one just edited) when it is in that stage, else from its first block."""
        blocks = []
        for i, (stage, staged) in enumerate(zip(self.stages, stages)):
            if not stage.width_per_block:
                sized = [b for b in staged if b.width]
                if sized:
                    anchored = anchor is not None and anchor[0] == i and staged[anchor[1]].width
                    width = staged[anchor[1]].width if anchored else sized[0].width
                    staged = [b._replace(width=width) if b.width else b for b in staged]
            blocks += staged
        return DeclaredArch(stem, tuple(blocks), head)

    def staging(self, arch: DeclaredArch) -> list[list[Block]]:
        """The blocks of `arch` per stage, each kept in the stage before it where the grammar allows (stage
        boundaries as late as they can be). Every reading of one block sequence builds the same network."""
        reading = self._stage_of(arch.blocks, 0, (0, 0, 0), 0, set())
        if reading is None:
            raise GptnasError(f"the blocks of this architecture do not fit the stages of space {self.name}")
        stages = [[] for _ in self.stages]
        for block, i in zip(arch.blocks, reading):
            stages[i].append(block)
        return stages

    def _stage_of(self, blocks: tuple[Block, ...], j: int, state: State, downs: int, dead: set) -> list[int] | None:
        """The stage of each of `blocks[j:]` read from `state` on (None if they cannot be read; `dead` holds
        the (j, state) already found so, which keeps the search linear)."""
        if j == len(blocks):
            i, n, _ = state
            return [] if i == len(self.stages) - 1 and n >= self.stages[i].min_depth else None
        if (j, state) in dead:
            return None
        for nxt in self._successors(state, downs, blocks[j]):
            rest = self._stage_of(blocks, j + 1, nxt, downs + (blocks[j].stride == 2), dead)
            if rest is not None:
                return [nxt[0], *rest]
        dead.add((j, state))
        return None

    def key(self, arch: DeclaredArch) -> str:
        parts = [f"stem{arch.stem}"]
        parts += [f"{b.kind}/s{b.stride}" if not b.width else f"{b.kind}/{b.width}/s{b.stride}" for b in arch.blocks]
        return "-".join(parts + ([f"head{arch.head.width}"] if arch.head.width else []))

    def from_key(self, key: str) -> DeclaredArch:
        example = "'stem32-mbconv_k3_e6/64/s2-maxpool/s2-...'"
        if not isinstance(key, str) or not key.startswith("stem"):
            raise GptnasError(f"a {self.name} key looks like {example}, got {quote(key)}")
        first, *parts = key.split("-")
        try:
            stem = int(first[len("stem"):])
            head = Head(int(parts.pop()[len("head"):])) if parts and parts[-1].startswith("head") else Head(0)
            blocks = []
            for part in parts:
                fields = part.split("/")
                if len(fields) not in (2, 3) or not fields[-1].startswith("s"):
                    raise ValueError(part)
                blocks.append(Block(fields[0], int(fields[1]) if len(fields) == 3 else 0, int(fields[-1][1:])))
        except ValueError:
            raise GptnasError(f"malformed {self.name} key {quote(key)}: {example}") from None
        arch = DeclaredArch(stem, tuple(blocks), head)
        self.check(arch)
        return arch

    # ------------------------------------------------------------ network

    def network(self, arch: DeclaredArch, num_classes: int = 10) -> B.Layers:
        self.check(arch)
        parts, cin = [], None
        for payload in self._payloads(arch):
            parts.append(self._layers(cin, payload, num_classes))
            cin = _width_after(cin, payload)
        return B.loose(*parts)

    def build_model(self, arch: DeclaredArch, num_classes: int = 10) -> nn.Module:
        return self.network(arch, num_classes).build()

    def _layers(self, cin: int | None, payload, num_classes: int = 10) -> B.Layers:
        if cin is None:
            return B.loose(B.conv_bn_act(3, payload, self.stem_kernel, self.stem_stride))
        if isinstance(payload, Head):
            if not payload.width:
                return B.loose(B.gap_classifier(cin, num_classes))
            return B.loose(B.conv_bn_act(cin, payload.width, 1), B.gap_classifier(payload.width, num_classes))
        return self.variants[payload.kind].build(cin, payload.width or cin, payload.stride)

    def _summed_costs(self, arch: DeclaredArch, metrics: tuple[str, ...]) -> dict[str, int]:
        totals = dict.fromkeys(metrics, 0)
        context = self._start()
        for payload in self._payloads(arch):
            for metric in metrics:
                totals[metric] += self._segment_cost(context, payload, metric, self.input_size, 10)
            context = self._advance(context, payload)
        return totals

    # ------------------------------------------------------------ spelling
    # A context is "stem", "done", or (input width, strided blocks so far, the stage states a block sequence
    # can be in), the states sorted so that a context prints the same in every process.

    def _start(self):
        return _STEM

    def _options(self, context) -> list:
        if context == _STEM:
            return list(self.stem_widths)
        if context == _DONE:
            return []
        _, downs, states = context
        options: dict = {}
        for i, n, width in states:
            stage = self.stages[i]
            if n < stage.max_depth:
                options.update(dict.fromkeys(self._stage_options(i, n, width, downs)))
            if n >= stage.min_depth and i + 1 < len(self.stages):
                options.update(dict.fromkeys(self._stage_options(i + 1, 0, 0, downs)))
            elif n >= stage.min_depth:
                options.update(dict.fromkeys(Head(w) for w in self.head_widths))
        return list(options)

    def _stage_options(self, i: int, n: int, width: int, downs: int) -> tuple[Block, ...]:
        room = self.max_downsamples is None or downs < self.max_downsamples
        return self._stage_menu(i, n == 0, width, room)[0]

    @functools.cache
    def _stage_menu(self, i: int, first: bool, width: int, room: bool) -> tuple[tuple[Block, ...], frozenset]:
        """The blocks stage `i` offers next (and as a set): at its first block or a later one, once its shared
        width is `width` (0: not chosen yet), with or without room for another strided block."""
        stage = self.stages[i]
        strides = stage.strides or ((stage.stride,) if first else (1,))
        strides = strides if room else tuple(s for s in strides if s == 1)
        widths = stage.widths if stage.width_per_block or not width else (width,)
        out = []
        for kind in stage.kinds_at(first):
            variant = self.variants[kind]
            for stride in strides:
                if stride in variant.strides:
                    kept = variant.keeps_width or not stage.widths  # pooling, or a stage of width `same`
                    out += [Block(kind, 0, stride)] if kept else [Block(kind, w, stride) for w in widths]
        return tuple(out), frozenset(out)

    def _offers(self, i: int, n: int, width: int, downs: int, block: Block) -> bool:
        room = self.max_downsamples is None or downs < self.max_downsamples
        return block in self._stage_menu(i, n == 0, width, room)[1]

    def _successors(self, state: State, downs: int, block: Block) -> list[State]:
        i, n, width = state
        out = []
        if n < self.stages[i].max_depth and self._offers(i, n, width, downs, block):
            out.append((i, n + 1, width or (0 if self.stages[i].width_per_block else block.width)))
        nxt = i + 1
        if n >= self.stages[i].min_depth and nxt < len(self.stages) and self._offers(nxt, 0, 0, downs, block):
            out.append((nxt, 1, 0 if self.stages[nxt].width_per_block else block.width))
        return out

    def _advance(self, context, payload):
        if context == _STEM:
            return (payload, 0, ((0, 0, 0),))
        if isinstance(payload, Head):
            return _DONE
        cin, downs, states = context
        after = sorted({s for state in states for s in self._successors(state, downs, payload)})
        return (payload.width or cin, downs + (payload.stride == 2), tuple(after))

    def _complete(self, context) -> bool:
        return context == _DONE

    def _trie_key(self, context):
        if context in (_STEM, _DONE):
            return context
        cin, downs, states = context
        room = self.max_downsamples is None or downs < self.max_downsamples
        return cin, room, tuple((i, n == 0, n < self.stages[i].max_depth, n >= self.stages[i].min_depth, w)
                                for i, n, w in states)

    def _context_weight(self, context) -> int:
        return 1 if context in (_STEM, _DONE) else len(context[2])  # advancing follows every stage state

    def _option_set(self, context) -> frozenset:
        key = self._trie_key(context)
        if key not in self._option_sets:
            self._option_sets[key] = frozenset(self._options(context))
        return self._option_sets[key]

    def _segment_tokens(self, context, payload):
        key = (None if context == _STEM else context[0], payload)
        if key not in self._tokens:
            self._tokens[key] = self._layers(*key).tokens
        return self._tokens[key]

    def _segment_cost(self, context, payload, metric, input_size, num_classes):
        cin = None if context == _STEM else context[0]
        side = None
        if metric != "params":
            halvings = 0 if context == _STEM else (self.stem_stride == 2) + context[1]
            side = halved(input_size, halvings)
        key = (cin, payload, side, num_classes)
        if key not in self._costs:
            count = self._layers(cin, payload, num_classes).count(side or 1)  # without building it (blocks.py)
            self._costs[key] = count.params if side is None else count.macs
        return self._costs[key]

    def _payloads(self, arch: DeclaredArch):
        return [arch.stem, *arch.blocks, arch.head]

    def _assemble(self, payloads):
        if len(payloads) < 2 or not isinstance(payloads[-1], Head) or not isinstance(payloads[0], int):
            raise GptnasError(f"a {self.name} network is a stem width, blocks, then the head")
        arch = DeclaredArch(payloads[0], tuple(payloads[1:-1]), payloads[-1])
        self.check(arch)
        return arch


def _stride(rng: random.Random, stage: Stage, current: int) -> int:
    return rng.choice(stage.strides) if stage.strides else current


def _width_after(cin: int | None, payload) -> int | None:
    if cin is None:
        return payload
    return payload.width or cin if isinstance(payload, Block) else cin


def _describe(payload) -> str:
    if isinstance(payload, Block):
        return f"{payload.kind} width {payload.width} stride {payload.stride}" if payload.width else \
            f"{payload.kind} stride {payload.stride}"
    return f"head width {payload.width}" if isinstance(payload, Head) else f"stem width {payload}"


def _check_spellings(space: DeclaredSpace, where: str) -> None:
    """Two widths that the architecture language spells alike, or two options of one place with the same
    spelling, would make one token sequence two networks: refused at load."""
    widths = {}
    for field, values in [("stem.width", space.stem_widths), ("head.width", space.head_widths)] + [
            (f"stages[{i}].width", s.widths) for i, s in enumerate(space.stages)]:
        for width in values:
            if not width:
                continue
            bucket = T.width(width)
            other = widths.setdefault(bucket, (width, field))
            if other[0] != width:
                raise GptnasError(f"{where}: {field}: width {width} and width {other[0]} ({other[1]}) are both "
                                  f"spelled {bucket}; widths must differ by a quarter octave or more")
    try:
        space.vocabulary()
    except ValueError as error:
        raise GptnasError(f"{where}: two options of one place are spelled alike ({error})") from None


def _check_limits(space: DeclaredSpace, where: str) -> None:
    """A limit below the cheapest network of the space is refused at load (pricing every segment the grammar
    can write: a space with too many of them is refused first)."""
    names = {"params": ("max_params", "parameters"), "flops": ("max_macs", "multiply-accumulates")}
    segments = sum(len(trie.payloads()) for trie in space.grammar.language.tries())
    if space.limits and segments > MAX_PRICED:
        raise GptnasError(f"{where}: limits: checking them prices {segments:,} blocks; at most {MAX_PRICED:,} "
                          "(declare fewer choices, or no limits)")
    for metric, limit in space.limits.items():
        bounds = space.cost_bounds(metric)
        lowest = bounds.completion(bounds.grammar.language.start_context())[0]
        if lowest > limit:
            field, unit = names[metric]
            raise GptnasError(f"{where}: limits.{field}: {limit:,} is below the smallest network of the space "
                              f"({int(lowest):,} {unit})")


# ---------------------------------------------------------------- loading


def is_space_file(name) -> bool:
    return isinstance(name, (str, Path)) and str(name).endswith(SPACE_FILE_SUFFIXES)


def load_space(path: str | Path) -> DeclaredSpace:
    """The space declared in the YAML file at `path` (read again on every call: an edited file is a new space)."""
    return declared_space(path)


_DECLARED: dict[str, DeclaredSpace] = {}


def declared_space(source: str | Path | dict) -> DeclaredSpace:
    """The space of a space file or of a definition; one shared instance per definition (with the name a
    file gives it), whether it comes from the file or from the space's own `definition`."""
    where = "space definition" if isinstance(source, dict) else str(source)
    definition = source if isinstance(source, dict) else load_yaml(source, "space file")
    key = _key(definition, Path(where).stem.lower())
    if key not in _DECLARED:
        space = DeclaredSpace(definition, where)
        _DECLARED[key] = _DECLARED.setdefault(_key(space.definition, space.name), space)
    return _DECLARED[key]


def _key(definition: dict, default_name: str) -> str:
    named = {"name": default_name, **definition}
    return hashlib.sha256(json.dumps(named, sort_keys=True, default=str).encode()).hexdigest()
