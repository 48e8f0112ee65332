"""Search spaces, found by name (`get_space("cifar")`)."""

from __future__ import annotations

from gptnas.errors import GptnasError
from gptnas.spaces.base import SearchSpace
from gptnas.spaces.channel_bench import ChannelBenchMobileNet, ChannelBenchResNet
from gptnas.spaces.cifar import CifarSpace
from gptnas.spaces.nas_bench_201 import NasBench201
from gptnas.spaces.nas_bench_macro import NasBenchMacro

_REGISTRY: dict[str, type[SearchSpace]] = {
    space.name: space for space in (CifarSpace, NasBenchMacro, ChannelBenchMobileNet, ChannelBenchResNet, NasBench201)
}
_INSTANCES: dict[str, SearchSpace] = {}


def space_names() -> list[str]:
    return list(_REGISTRY)


def get_space(name: str | SearchSpace) -> SearchSpace:
    """The search space called `name` (spaces are immutable, so one shared instance each)."""
    if isinstance(name, SearchSpace):
        return name
    if name not in _REGISTRY:
        raise GptnasError(f"unknown search space {name!r}; valid: {', '.join(_REGISTRY)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


__all__ = ["SearchSpace", "get_space", "space_names"]
