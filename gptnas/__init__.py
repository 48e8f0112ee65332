"""gptnas: neural architecture search guided by a generative architecture GPT."""

from gptnas.errors import GptnasError
from gptnas.spaces import get_space, space_names

__version__ = "0.1.0"


def build_model(space: str, key: str, num_classes: int = 10):
    """The `nn.Module` of an architecture given by its space and canonical key."""
    space_ = get_space(space)
    return space_.build_model(space_.from_key(key), num_classes=num_classes)


def load_network(name_or_path, revision: str | None = None):
    """The trained `nn.Module` (eval mode, CPU) of an exported network: the folder `evolve.py --retrain`
    writes (RUN_DIR/retrain) or a Hub id "org/name". Reads config.json and safetensors only, runs no code."""
    from gptnas.training.export import load_network as load

    return load(name_or_path, revision)


def __getattr__(name):
    # transformers is slow to import: load the GPT only when it is asked for
    if name == "ArchGPT":
        from gptnas.gpt.model import ArchGPT

        return ArchGPT
    raise AttributeError(f"module 'gptnas' has no attribute {name!r}")


__all__ = ["ArchGPT", "GptnasError", "build_model", "get_space", "load_network", "space_names"]
