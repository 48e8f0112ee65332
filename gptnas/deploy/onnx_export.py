"""The exported network as ONNX, for deployment runtimes: `model.onnx` beside the safetensors, checked.

`export_onnx(folder)` rebuilds the network from the folder (`load_network`: config.json and the weights),
exports it with PyTorch's ONNX exporter (a dynamic batch dimension, input `images`, output `logits`), then
runs a batch of `CHECK_BATCH` random images through onnxruntime and through PyTorch: the export is kept only
when the largest absolute difference of the logits is at most `TOLERANCE`. config.json then names the file,
its opset, the difference measured and the onnxruntime version, and the model card lists it.

`onnx`, `onnxscript` and `onnxruntime` are an optional extra: `pip install 'gptnas[onnx]'`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from gptnas.deploy.export import CONFIG, ONNX, load_network, read_config, write_network_card
from gptnas.errors import GptnasError
from gptnas.files import atomic_path, write_json

TOLERANCE = 1e-4  # max abs difference of the logits, onnxruntime against PyTorch
CHECK_BATCH = 8
# The exporter's chatter ("torchvision is not installed", "Replaced initializer ..."), silenced while it runs.
QUIET_LOGGERS = ("torch.onnx", "onnx_ir", "onnxscript")


def check_onnx_runtime():
    """onnxruntime, once onnx, onnxscript and onnxruntime are known to be installed (else one-line GptnasError)."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise GptnasError("--export onnx needs onnx, onnxscript and onnxruntime: pip install 'gptnas[onnx]'") from None
    return onnxruntime


def export_onnx(folder: str | Path, seed: int = 0) -> dict[str, Any]:
    """Writes `folder`/model.onnx for the network exported in `folder`, checked with onnxruntime; returns what
    config.json now records of it. GptnasError when the runtime's logits differ by more than TOLERANCE."""
    runtime = check_onnx_runtime()
    folder = Path(folder)
    config = read_config(folder)
    model = load_network(folder)
    shape = (config.get("input_channels", 3), config["input_size"], config["input_size"])
    images = torch.rand(CHECK_BATCH, *shape, generator=torch.Generator().manual_seed(seed))
    with atomic_path(folder / ONNX) as tmp:
        opset = _export(model, images[:1], tmp)
        session = runtime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"images": images.numpy()})
        with torch.inference_mode():
            expected = model(images).numpy()
        difference = float(abs(logits - expected).max())
        if not difference <= TOLERANCE:
            raise GptnasError(f"the ONNX export of {folder} gives logits {difference:.2g} away from PyTorch's "
                              f"(at most {TOLERANCE:g} allowed); model.onnx was not written")
    record = {"file": ONNX, "opset": opset, "inputs": "images: (batch, " + ", ".join(map(str, shape)) + ")",
              "outputs": f"logits: (batch, {config['num_classes']})", "max_abs_difference": difference,
              "checked_batch": CHECK_BATCH, "onnxruntime": runtime.__version__}
    write_json(folder / CONFIG, {**config, "onnx": record})
    write_network_card(folder)
    return record


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> int:
    """Exports `model` to `path` with a dynamic batch dimension; returns the opset."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True)
            program.save(str(path))
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return max(op.version for op in program.model_proto.opset_import if op.domain in ("", "ai.onnx"))
