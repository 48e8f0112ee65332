"""Checks of what users hand the GPT (prefixes, conditions, architectures), each a one-line GptnasError."""

from __future__ import annotations

import numbers
from collections.abc import Collection

from gptnas.errors import GptnasError, quote
from gptnas.gpt.generate import walk
from gptnas.language.tokens import PARAM_TOKENS, QUALITY_LEVELS, cap_bucket, condition


def check_condition(quality, max_params, known: Collection[str] = PARAM_TOKENS) -> list[str]:
    """The conditioning tokens of `quality` (0..4) and of sampling under the cap `max_params`
    (`tokens.cap_bucket` among the tokens `known`); GptnasError for anything else."""
    if quality is not None and (not is_int(quality) or not 0 <= quality < QUALITY_LEVELS):
        raise GptnasError(f"quality must be an integer 0..{QUALITY_LEVELS - 1} (4: the best fifth), got {quote(quality)}")
    if max_params is not None and (not is_int(max_params) or max_params < 1):
        raise GptnasError(f"max_params must be a positive integer, got {quote(max_params)}")
    return condition(quality) + ([] if max_params is None else [cap_bucket(max_params, known)])


def check_reachable(space, prefixes: list[str], max_params: int) -> None:
    """GptnasError unless every prefix completes to a network of `space` with at most `max_params`
    parameters (a space with `param_bounds`)."""
    for prefix in dict.fromkeys(prefixes):
        lowest = space.param_bounds.of(space.grammar.start() if not prefix else walk(space, prefix.split()))[0]
        if lowest > max_params:
            where = f"space {space.name}" if not prefix else f"prefix {quote(prefix)} of space {space.name}"
            raise GptnasError(f"the smallest network of {where} has {lowest:,} parameters, more than "
                              f"max_params={max_params:,}; raise max_params")


def lower_cost(condition: list[str], steps: int, known: Collection[str]) -> list[str]:
    """`condition` with its cost token `steps` buckets lower among the tokens `known` (the lowest at most)."""
    if not steps or not condition or condition[-1] not in PARAM_TOKENS:
        return condition
    own = [t for t in PARAM_TOKENS if t in known]
    return condition[:-1] + [own[max(0, own.index(condition[-1]) - steps)]]


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_prefixes(prefixes) -> list[str]:
    """The prefixes as a list of token strings ("" for none); GptnasError for anything else."""
    if isinstance(prefixes, str):
        return [prefixes]
    try:
        prefixes = list(prefixes)
    except TypeError:
        raise GptnasError(
            f"prefixes must be a string of tokens or a list of them (\"\" for none), got {type(prefixes).__name__}"
        ) from None
    for i, prefix in enumerate(prefixes):
        if not isinstance(prefix, str):
            raise GptnasError(
                f"prefix {i} must be a string of tokens (\"\" for none), got {type(prefix).__name__}: "
                "give prefixes as a string or a list of strings"
            )
    return prefixes


def spellings(space, archs) -> list[list[str]]:
    """The tokens of each architecture; GptnasError naming the first that is not one of `space`.

    Encoding alone does not tell: some spaces spell a malformed object as some other network, so
    an architecture counts only if its spelling reads back as the same network (same key)."""
    if isinstance(archs, str):
        raise GptnasError(f"archs must be a list of architectures of space {space.name}, got one string")
    out = []
    for i, arch in enumerate(archs):
        try:
            text = space.encode(arch)
            same = space.key(space.decode(text)) == space.key(arch)
        except (GptnasError, TypeError, ValueError, IndexError, KeyError, AttributeError):
            same = False
        if not same:
            shown = repr(arch) if len(repr(arch)) <= 60 else repr(arch)[:57] + "..."
            raise GptnasError(f"architecture {i} ({shown}) is not an architecture of space {space.name}")
        out.append(text.split())
    return out

