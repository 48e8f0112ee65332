"""Reading a space file's definition (`gptnas/spaces/declared.py` builds the space): every field is checked,
and a mistake is a GptnasError that names its field, before anything is built."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from gptnas.errors import GptnasError, quote
from gptnas.spaces import block_kinds as K
from gptnas.spaces.base import SPACES

FIELDS = ("name", "tag", "input", "stem", "stages", "head", "limits", "max_downsamples")
MAX_DEPTH, MAX_STAGES, MAX_BLOCKS, MAX_WIDTH, MAX_INPUT = 64, 16, 256, 8192, 1024
MAX_CHOICES = 64  # values in one list of choices
MAX_OPTIONS = 4096  # ways to write one block of a stage (kinds with their options, times widths and strides)
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
SAME = "same"  # a stage's width: its blocks keep the width they get


@dataclass(frozen=True)
class Stage:
    min_depth: int
    max_depth: int
    stride: int  # the first block's; ignored when `strides` is set
    strides: tuple[int, ...] | None  # every block chooses its stride from these
    widths: tuple[int, ...]
    width_per_block: bool
    kinds: tuple[str, ...]  # variant names, in the file's order
    first_kinds: tuple[str, ...]  # the first block's (`first_blocks`; by default `kinds`)

    def kinds_at(self, first: bool) -> tuple[str, ...]:
        return self.first_kinds if first else self.kinds


def read_definition(definition, where: str) -> dict:
    """The checked parts of a definition: name, tag, input_size, stem (kernel, stride, widths), stages,
    variants (kind name -> Kind), head (widths; 0: none), limits and max_downsamples."""
    return _Parser(where).space(definition)


class _Parser:
    """Reads a definition field by field; every mistake is a GptnasError naming the field."""

    def __init__(self, where: str):
        self.where = where
        self.listed_at: list[dict[str, tuple]] = []  # per stage: variant -> (field, kind, width rule)

    def fail(self, field: str, problem: str):
        raise GptnasError(f"{self.where}: {field}: {problem}")

    def space(self, d: dict) -> dict:
        if not isinstance(d, dict):
            raise GptnasError(f"{self.where}: a space file is a mapping of {', '.join(FIELDS)}")
        unknown = [k for k in d if k not in FIELDS]
        if unknown:
            self.fail(str(unknown[0]), f"unknown field; valid: {', '.join(FIELDS)}")
        for required in ("input", "stem", "stages"):
            if required not in d:
                self.fail(required, "missing (the space needs input, stem and stages)")
        name = d.get("name", Path(self.where).stem.lower())
        if not isinstance(name, str) or not NAME.fullmatch(name):
            self.fail("name", f"lower-case letters, digits, '_', '.', '-', at most 64, got {quote(name)}")
        if name in SPACES.names():
            self.fail("name", f"{quote(name)} is a built-in space; choose another name")
        size = self.input(d["input"])
        tag = d.get("tag", "cifar" if size <= 64 else "timm")
        if not isinstance(tag, str) or not NAME.fullmatch(tag):
            self.fail("tag", f"a source name such as cifar, timm or torchvision, got {quote(tag)}")
        stages_d = d["stages"]
        if not isinstance(stages_d, list) or not stages_d:
            self.fail("stages", "a list of at least one stage")
        if len(stages_d) > MAX_STAGES:
            self.fail("stages", f"at most {MAX_STAGES} stages, got {len(stages_d)}")
        variants: dict[str, K.Kind] = {}
        stages = tuple(self.stage(s, f"stages[{i}]", variants) for i, s in enumerate(stages_d))
        if sum(s.max_depth for s in stages) > MAX_BLOCKS:
            self.fail("stages", f"up to {sum(s.max_depth for s in stages)} blocks in all; at most {MAX_BLOCKS}")
        spec = {"name": name, "tag": tag, "input_size": size, "stem": self.stem(d["stem"]), "stages": stages,
                "variants": variants, "head": self.head(d.get("head")), "limits": self.limits(d.get("limits")),
                "max_downsamples": self.count("max_downsamples", d.get("max_downsamples"), 0, 32, optional=True)}
        self.stride_plan(spec)
        self.kept_widths(spec)
        return spec

    def kept_widths(self, spec: dict) -> None:
        """A stage of width `same` builds its blocks at the width it gets: every kind must take each of them."""
        incoming = spec["stem"][2]
        for stage, listed in zip(spec["stages"], self.listed_at):
            pooling = any(spec["variants"][k].keeps_width for k in stage.kinds + stage.first_kinds)
            if stage.widths:
                incoming = stage.widths + (incoming if pooling else ())
                continue
            for where, kind, (smallest, divisor) in listed.values():
                for width in incoming:
                    if width < smallest or width % divisor:
                        self.fail(where, f"{kind} needs widths that are multiples of {divisor} and at least "
                                         f"{smallest}, but the stage keeps its input width, which can be {width}")

    def input(self, d) -> int:
        if not isinstance(d, dict) or set(d) - {"size", "channels"} or "size" not in d:
            self.fail("input", f"a mapping with size (and channels), e.g. {{size: 32, channels: 3}}, got {quote(d)}")
        size = self.count("input.size", d["size"], 4, MAX_INPUT)
        if d.get("channels", 3) != 3 or isinstance(d.get("channels"), bool):
            self.fail("input.channels", f"only 3: images are read as RGB (grayscale ones repeated), got "
                                        f"{quote(d.get('channels'))}")
        return size

    def stem(self, d) -> tuple[int, int, tuple[int, ...]]:
        if not isinstance(d, dict) or set(d) - {"kernel", "stride", "width"} or "width" not in d:
            self.fail("stem", f"a mapping with width (and kernel, stride), e.g. {{kernel: 3, width: 32}}, got {quote(d)}")
        kernel = self.choice("stem.kernel", d.get("kernel", 3), (1, 3, 5, 7))
        stride = self.choice("stem.stride", d.get("stride", 1), (1, 2))
        return kernel, stride, self.widths("stem.width", d["width"])

    def head(self, d) -> tuple[int, ...]:
        if d is None:
            return (0,)
        if not isinstance(d, dict) or set(d) - {"width"}:
            self.fail("head", f"a mapping with an optional width (a 1x1 conv before pooling), got {quote(d)}")
        return (0,) if d.get("width") is None else self.widths("head.width", d["width"])

    def limits(self, d) -> dict[str, int]:
        if d is None:
            return {}
        names = {"max_params": "params", "max_macs": "flops"}
        if not isinstance(d, dict) or set(d) - set(names):
            self.fail("limits", f"a mapping of max_params and/or max_macs, got {quote(d)}")
        out = {}
        for name, metric in names.items():
            if d.get(name) is not None:
                value = d[name]
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        pass
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                out[metric] = self.count(f"limits.{name}", value, 1, 10**15)
        return out

    def stage(self, d, field: str, variants: dict[str, K.Kind]) -> Stage:
        valid = ("depth", "stride", "strides", "width", "width_per_block", "blocks", "first_blocks")
        if not isinstance(d, dict):
            self.fail(field, f"a mapping of {', '.join(valid)}, got {quote(d)}")
        unknown = [k for k in d if k not in valid]
        if unknown:
            self.fail(f"{field}.{unknown[0]}", f"unknown field; valid: {', '.join(valid)}")
        for required in ("depth", "width", "blocks"):
            if required not in d:
                self.fail(f"{field}.{required}", "missing (a stage needs depth, width and blocks)")
        low, high = self.depth(f"{field}.depth", d["depth"])
        if "stride" in d and "strides" in d:
            self.fail(field, "give stride (the first block's) or strides (every block chooses), not both")
        stride = self.choice(f"{field}.stride", d.get("stride", 1), (1, 2))
        strides = None
        if "strides" in d:
            strides = tuple(self.choice(f"{field}.strides", s, (1, 2)) for s in self.listed(f"{field}.strides", d["strides"]))
            if len(set(strides)) != len(strides):
                self.fail(f"{field}.strides", f"a stride listed twice: {list(strides)}")
        widths = () if d["width"] == SAME else self.widths(f"{field}.width", d["width"])
        per_block = d.get("width_per_block", False)
        if not isinstance(per_block, bool):
            self.fail(f"{field}.width_per_block", f"true or false, got {quote(per_block)}")
        if per_block and not widths:
            self.fail(f"{field}.width_per_block", f"a stage of width {SAME} keeps its input width; no block chooses one")
        specs: dict[str, tuple] = {}  # variant name -> (where it is listed, its kind, the kind's width rule)
        kinds = self.blocks(f"{field}.blocks", d["blocks"], widths, variants, specs)
        first = self.blocks(f"{field}.first_blocks", d["first_blocks"], widths, variants, specs) \
            if "first_blocks" in d else kinds
        for name, listed in (("blocks", kinds), ("first_blocks", first)):
            options = len(listed) * max(1, len(widths)) * len(strides or (1,))
            if options > MAX_OPTIONS:
                self.fail(f"{field}.{name}", f"{options:,} ways to write one block (kinds and options, widths, "
                                             f"strides); at most {MAX_OPTIONS:,}")
        for s in strides or (stride,):
            listed = "first_blocks" if strides is None and "first_blocks" in d else "blocks"
            if not any(s in variants[k].strides for k in (first if strides is None else kinds + first)):
                self.fail(f"{field}.{listed}", f"no kind listed takes stride {s}, which the stage asks for")
        if strides is None and stride == 1 and high > 1 and not any(1 in variants[k].strides for k in kinds):
            self.fail(f"{field}.blocks", "no kind listed takes stride 1, which every block after the first has")
        self.listed_at.append(specs)
        return Stage(low, high, stride, strides, widths, per_block, kinds, first)

    def blocks(self, field: str, items, widths: tuple[int, ...], variants: dict[str, K.Kind],
               listed_at: dict[str, str]) -> tuple[str, ...]:
        names = []
        for j, item in enumerate(self.listed(field, items)):
            where = f"{field}[{j}]"
            if isinstance(item, dict) and len(item) == 1:
                kind, options = next(iter(item.items()))
            elif isinstance(item, str):
                kind, options = item, None
            else:
                self.fail(where, f"a kind (resnet_basic) or a kind with options ({{mbconv: {{kernel: [3, 5]}}}}), "
                                 f"got {quote(item)}")
            if kind not in K.LIBRARY:
                self.fail(where, f"unknown block kind {quote(kind)}; valid: {', '.join(K.LIBRARY)}")
            spec = K.LIBRARY[kind]
            options = self.options(f"{where}.{kind}", options or {}, spec)
            smallest, divisor = spec.width_rule
            for width in widths:
                if width < smallest or width % divisor:
                    self.fail(where, f"{kind} needs widths that are multiples of {divisor} and at least {smallest}, "
                                     f"but the stage offers {width}")
            for values in itertools.product(*options.values()):
                chosen = dict(zip(options, values))
                name = K.variant_name(kind, chosen)
                if name in names:
                    self.fail(where, f"{name} is listed twice in the stage")
                names.append(name)
                variants[name] = spec.make(**chosen)
                listed_at[name] = (where, kind, spec.width_rule)
        return tuple(names)

    def options(self, field: str, d, spec: K.KindSpec) -> dict[str, tuple]:
        if not isinstance(d, dict):
            self.fail(field, f"a mapping of options ({', '.join(spec.options) or 'none'}), got {quote(d)}")
        unknown = [k for k in d if k not in spec.options]
        if unknown:
            self.fail(f"{field}.{unknown[0]}", f"unknown option; valid: {', '.join(spec.options) or 'none'}")
        out = {}
        for option, allowed in spec.options.items():
            values = self.listed(f"{field}.{option}", d[option]) if option in d else [allowed[0]]
            if allowed is K.WIDTHS and option in d:
                out[option] = tuple(self.count(f"{field}.{option}", v, 1, MAX_WIDTH) for v in values)
            else:
                out[option] = tuple(self.choice(f"{field}.{option}", v, allowed) for v in values)
            if len(set(out[option])) != len(out[option]):
                self.fail(f"{field}.{option}", f"a value listed twice: {list(out[option])}")
        if "hidden" in d and "expansion" in d:
            self.fail(field, "give expansion or hidden (the inner width), not both")
        return out

    def depth(self, field: str, d) -> tuple[int, int]:
        if isinstance(d, list) and len(d) != 2:
            self.fail(field, f"a number of blocks or [min, max], got {quote(d)}")
        low, high = d if isinstance(d, list) else (d, d)
        low, high = self.count(field, low, 1, MAX_DEPTH), self.count(field, high, 1, MAX_DEPTH)
        if low > high:
            self.fail(field, f"min {low} is greater than max {high}")
        return low, high

    def widths(self, field: str, d) -> tuple[int, ...]:
        if isinstance(d, dict):
            if set(d) != {"base", "multipliers"}:
                self.fail(field, f"widths, or {{base: 64, multipliers: [0.5, 1.0]}}, got {quote(d)}")
            base = self.count(f"{field}.base", d["base"], 1, MAX_WIDTH)
            values = []
            for m in self.listed(f"{field}.multipliers", d["multipliers"]):
                if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m <= 64:
                    self.fail(f"{field}.multipliers", f"numbers above 0, got {quote(m)}")
                values.append(max(1, round(base * m)))
        else:
            values = [self.count(field, w, 1, MAX_WIDTH) for w in self.listed(field, d)]
        if len(set(values)) != len(values):
            self.fail(field, f"a width listed twice: {values}")
        return tuple(values)

    def stride_plan(self, spec: dict) -> None:
        fixed = (spec["stem"][1] == 2) + sum(s.stride == 2 for s in spec["stages"] if not s.strides)
        chosen = sum(s.max_depth for s in spec["stages"] if s.strides and 2 in s.strides)
        if chosen and spec["max_downsamples"] is None:
            self.fail("max_downsamples", "missing: stages whose blocks choose stride 2 need a bound on how many do")
        steps = fixed + min(chosen, spec["max_downsamples"] or 0)
        fit = int(math.log2(spec["input_size"]))
        if steps > fit:
            self.fail("stages", f"the stride plan halves the resolution up to {steps} times, which shrinks a "
                                f"{spec['input_size']}x{spec['input_size']} input below 1x1 (at most {fit} fit)")

    def listed(self, field: str, d) -> list:
        if not isinstance(d, list):
            return [d]
        if not d:
            self.fail(field, "an empty list chooses nothing")
        if len(d) > MAX_CHOICES:
            self.fail(field, f"at most {MAX_CHOICES} choices, got {len(d)}")
        return d

    def choice(self, field: str, value, allowed: tuple):
        if not any(type(value) is type(a) and value == a for a in allowed):
            self.fail(field, f"{quote(value)} is not one of {', '.join(map(str, allowed))}")
        return value

    def count(self, field: str, value, low: int, high: int, optional: bool = False):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(field, f"a whole number from {low:,} to {high:,}, got {quote(value)}")
        return value
