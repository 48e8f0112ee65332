"""Search spaces, found by name (`get_space("cifar")`)."""

from __future__ import annotations

from pathlib import Path

from gptnas.config import load_yaml
from gptnas.errors import GptnasError
from gptnas.files import refuse_links
from gptnas.spaces.base import SPACES, SearchSpace
# Each module registers its spaces on import, in this order.
from gptnas.spaces.cifar import CifarSpace
from gptnas.spaces.nas_bench_macro import NasBenchMacro
from gptnas.spaces.channel_bench import ChannelBenchMobileNet, ChannelBenchResNet
from gptnas.spaces.nas_bench_201 import NasBench201
from gptnas.spaces.declared import SPACE_FILE, DeclaredSpace, declared_space, is_space_file, load_space

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


def run_space(setting: str, run_dir: Path) -> SearchSpace:
    """The space a run in `run_dir` searches: `setting` (a name or a space file), or, once the run has started
    with a space file, the copy kept in the run directory (refusing a space file that changed since)."""
    kept = run_dir / SPACE_FILE
    if not is_space_file(setting) or not kept.is_file():
        return get_space(setting)
    refuse_links(kept)
    space = get_space(load_yaml(kept, "space file"))
    if Path(setting).is_file() and get_space(setting).digest != space.digest:
        raise GptnasError(f"{setting} changed since the run in {run_dir} started (the run searches its copy, "
                          f"{kept}); restore the file or start a new run")
    return space


__all__ = ["ChannelBenchMobileNet", "ChannelBenchResNet", "CifarSpace", "DeclaredSpace", "NasBench201", "NasBenchMacro",
           "SearchSpace", "get_space", "load_space", "run_space", "space_names"]
