"""gptnas: neural architecture search guided by a generative architecture GPT."""

from gptnas.deploy.export import load_network
from gptnas.errors import GptnasError
from gptnas.spaces import get_space, space_names
from gptnas.version import __version__


def build_model(space: str, key: str, num_classes: int = 10):
    """The `nn.Module` of an architecture given by its space (a name, or a space file) and canonical key."""
    space_ = get_space(space)
    return space_.build_model(space_.from_key(key), num_classes=num_classes)


def __getattr__(name):
    # Every import of a gptnas module runs this file first, in every worker process too, and transformers
    # takes seconds to import: the GPT is loaded only when `gptnas.ArchGPT` is asked for.
    if name == "ArchGPT":
        from gptnas.gpt.model import ArchGPT

        return ArchGPT
    raise AttributeError(f"module 'gptnas' has no attribute {name!r}")


__all__ = ["ArchGPT", "GptnasError", "__version__", "build_model", "get_space", "load_network", "space_names"]
