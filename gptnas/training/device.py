"""Where networks train: the device asked for (CUDA when present), and what to do when it runs out."""

from __future__ import annotations

import gc

import torch

from gptnas.errors import GptnasError, quote


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise GptnasError(f"unknown device {quote(device)}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise GptnasError(f"device {quote(device)} asked for but CUDA is not available; use --device cpu")
    return resolved


# How PyTorch words running out of memory: CUDA's allocator, and the CPU's (Linux, then Windows).
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory: a GPU's, or the CPU's (a RuntimeError of PyTorch's
    CPU allocator, or Python's MemoryError)."""
    return isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and any(words in str(error) for words in OUT_OF_MEMORY)
    )


def free_accelerator_memory() -> None:
    """Call after the failed candidate's tensors are unreferenced (outside its `except` block)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
