"""Search spaces, found by name (`get_space("cifar")`)."""

from __future__ import annotations

from pathlib import Path

from gptnas.spaces.base import SPACES, SearchSpace
# Each module registers its spaces on import, in this order.
from gptnas.spaces.cifar import CifarSpace
from gptnas.spaces.nas_bench_macro import NasBenchMacro
from gptnas.spaces.channel_bench import ChannelBenchMobileNet, ChannelBenchResNet
from gptnas.spaces.nas_bench_201 import NasBench201
from gptnas.spaces.declared import DeclaredSpace, declared_space, is_space_file, load_space

_INSTANCES: dict[str, SearchSpace] = {}


def space_names() -> list[str]:
    return SPACES.names()


def get_space(name: str | Path | dict | SearchSpace) -> SearchSpace:
    """The search space called `name`; or declared in the YAML file at path `name` (`*.yaml`), or by the
    mapping `name` (a space file's content). Spaces are immutable, so one shared instance each."""
    if isinstance(name, SearchSpace):
        return name
    if isinstance(name, dict) or is_space_file(name):
        return declared_space(name)
    if name not in _INSTANCES:
        _INSTANCES[name] = SPACES.get(name)()
    return _INSTANCES[name]


__all__ = ["ChannelBenchMobileNet", "ChannelBenchResNet", "CifarSpace", "DeclaredSpace", "NasBench201", "NasBenchMacro", "SearchSpace",
           "get_space", "load_space", "space_names"]
