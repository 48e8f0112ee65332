"""Search spaces, found by name (`get_space("cifar")`)."""

from __future__ import annotations

from gptnas.spaces.base import SPACES, SearchSpace
from gptnas.spaces.cifar import CifarSpace  # noqa: F401 - each module registers its spaces, in this order
from gptnas.spaces.nas_bench_macro import NasBenchMacro  # noqa: F401
from gptnas.spaces.channel_bench import ChannelBenchMobileNet, ChannelBenchResNet  # noqa: F401
from gptnas.spaces.nas_bench_201 import NasBench201  # noqa: F401

_INSTANCES: dict[str, SearchSpace] = {}


def space_names() -> list[str]:
    return SPACES.names()


def get_space(name: str | SearchSpace) -> SearchSpace:
    """The search space called `name` (spaces are immutable, so one shared instance each)."""
    if isinstance(name, SearchSpace):
        return name
    if name not in _INSTANCES:
        _INSTANCES[name] = SPACES.get(name)()
    return _INSTANCES[name]


__all__ = ["SearchSpace", "get_space", "space_names"]
