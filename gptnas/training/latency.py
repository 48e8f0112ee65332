"""How long a network takes to classify a batch: one number, measured the same way everywhere.

The export of a retrained network reports it (batch 1 and the training batch size), and a
search can use it as an objective. The median of timed forward passes after a warm-up, under
`torch.inference_mode`, in eval mode; on CUDA every pass is bracketed by `torch.cuda.synchronize`
so the time is the GPU's, not the launch's. The precision is the model's own (fp32 unless the
caller runs it under `torch.autocast`, which applies here too).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device | None = None,
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 20,
) -> float:
    """Milliseconds one forward pass of a batch takes: the median of `repeats` timed passes after `warmup`.

    `input_shape` is one example's shape, e.g. (3, 32, 32); the batch is `batch_size` of them (zeros).
    `device`: where to run; None runs where the model's parameters are. A model elsewhere is moved
    there (`nn.Module.to` moves it in place). The model is timed in eval mode and left in the mode
    it came in."""
    if batch_size < 1 or warmup < 0 or repeats < 1:
        raise ValueError(f"need batch_size >= 1, warmup >= 0, repeats >= 1; got {batch_size}, {warmup}, {repeats}")
    parameter = next(model.parameters(), None)
    if device is None:
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    if parameter is not None and parameter.device != device:
        model.to(device)
    on_cuda = device.type == "cuda"
    inputs = torch.zeros(batch_size, *input_shape, device=device)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                if on_cuda:
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(inputs)
                if on_cuda:
                    torch.cuda.synchronize(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000 * statistics.median(times)


__all__ = ["measure_latency"]
