"""Zero-cost proxies: score an untrained network from one minibatch, in about a second.

- `synflow` (Tanaka et al. 2020, as used by Abdelfattah et al. 2021): batch norm
  removed, weights replaced by their absolute values, one all-ones input in
  double precision; the score is the sum over conv and linear weights of
  |theta * dR/dtheta| where R is the sum of the outputs. Needs no data.
- `naswot` (Mellor et al. 2021): the binary codes of every activation unit
  (output > 0) over a minibatch give the kernel K = C C^T + (1 - C)(1 - C)^T;
  the score is log |det K|, high when the network separates the inputs.

Both are "higher is better" scores, not accuracies: the fitness is the score
and test_accuracy is None. How well they rank architectures is measured by
benchmarks/proxy_correlation.py (docs/evaluators.md).

The minibatch is `batch_size` images of the dataset's training split (any dataset
gptnas/training/data.py reads: a bundled name, a Hub id, a local folder), or
N(0, 1) noise with `random_inputs` (implied by dataset "none" and by datasets
that have no loader here, such as imagenet16-120).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gptnas.errors import GptnasError, check_limit, quote
from gptnas.evaluators.base import (
    EVALUATORS,
    Evaluation,
    check_space,
    describe,
    diverged,
    failure,
    image_spec,
    safe_cost,
)
from gptnas.spaces import SearchSpace, get_space
from gptnas.training.data import (
    MAX_BATCH_SIZE,
    MAX_IMAGE_SIZE,
    DATASETS,
    ImageData,
    check_dataset,
    dataset_source,
    load_images,
    normalise,
)
from gptnas.training.device import free_accelerator_memory, resolve_device
from gptnas.training.loop import without_inplace_activations

log = logging.getLogger(__name__)

# Datasets with no loader here: noise inputs of the benchmark's shape (classes, resolution).
NOISE_ONLY = {"none": (10, None), "imagenet16-120": (120, 16)}
# Rectifier-like activations: output > 0 exactly when input > 0, so "output > 0" is each unit's code.
# (Sigmoid gates are left out: always positive, they carry no code.)
CODED_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.PReLU,
)


@dataclass(frozen=True)
class ProxySettings:
    proxy: str = "synflow"  # "synflow" or "naswot"
    batch_size: int = 64
    random_inputs: bool = False  # N(0, 1) inputs instead of a batch of the dataset
    seed: int = 0  # initialisation and the choice of the minibatch
    device: str | None = None  # None: cuda when available
    data_dir: str | None = None  # local copy of the dataset (no Hub download)
    dataset_revision: str | None = None  # Hub commit or tag of the dataset
    image_column: str | None = None  # None: image or img
    label_column: str | None = None  # None: label, labels or fine_label
    image_size: int | None = None  # None: the images' own side (the space's input size when they differ)
    costs: bool = True  # count params and FLOPs (off: zeros, for screening, where only the score counts)

    def __post_init__(self):
        if self.proxy not in PROXIES:
            raise GptnasError(f"unknown proxy {quote(self.proxy)}; valid: {', '.join(PROXIES)}")
        if self.batch_size < 2:
            raise GptnasError(f"batch_size must be >= 2, got {self.batch_size}")
        check_limit("batch_size", self.batch_size, MAX_BATCH_SIZE)
        check_limit("image_size", self.image_size, MAX_IMAGE_SIZE, low=1)


# ---------------------------------------------------------------- the scores


def synflow(model: nn.Module, inputs: torch.Tensor) -> float:
    """Sum of |theta * dR/dtheta| over conv and linear weights; R = sum of outputs for an
    all-ones input through the network with |weights| and no batch norm, in float64."""
    model = _without_batchnorm(model).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_()
    model.zero_grad(set_to_none=True)
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    model(ones).sum().backward()
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.grad is not None:
            total += (module.weight * module.weight.grad).abs().sum()
    return total.item()


def naswot(model: nn.Module, inputs: torch.Tensor) -> float:
    """log |det K| of the activation-code kernel over the minibatch (train-mode batch norm, as the reference)."""
    n = inputs.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=inputs.device)

    def add_codes(_module, _inputs, output):
        codes = (output.detach() > 0).flatten(1).float()
        ones = codes.sum(1)
        # C C^T + (1-C)(1-C)^T = units - |c_i| - |c_j| + 2 c_i.c_j: the count of agreeing units.
        agree = codes.shape[1] - ones[:, None] - ones[None, :] + 2 * (codes @ codes.T)
        kernel.add_(agree.double())

    handles = [m.register_forward_hook(add_codes) for m in model.modules() if isinstance(m, CODED_ACTIVATIONS)]
    try:
        with torch.no_grad():
            model.train()(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not handles:
        raise GptnasError("naswot needs activation modules to hook (ReLU, SiLU ...); this network has none")
    return torch.linalg.slogdet(kernel).logabsdet.item()


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor], float]] = {"synflow": synflow, "naswot": naswot}


def _without_batchnorm(model: nn.Module) -> nn.Module:
    """Replaces every batch-norm layer by an identity (the synflow reference runs the net without BN)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(module, name, nn.Identity())
    return model


# ---------------------------------------------------------------- the evaluator


@EVALUATORS.register
class ProxyEvaluator:
    """Scores each candidate with one zero-cost proxy on one minibatch."""

    name = "proxy"
    settings_type = ProxySettings

    def __init__(self, space: SearchSpace | str, dataset: str, settings: ProxySettings | None = None):
        check_dataset(dataset, also=tuple(NOISE_ONLY))
        self.space_ref = get_space(space).reference
        self.dataset = dataset
        self.settings = settings or ProxySettings()
        self._inputs: dict[str, torch.Tensor] = {}  # device -> minibatch; made on first use
        self._costs: dict[str, dict[str, int]] = {}  # key -> params/FLOPs (building even on meta takes a while)

    def __getstate__(self):
        return {**self.__dict__, "_inputs": {}, "_costs": {}}

    @property
    def uses_noise(self) -> bool:
        return self.settings.random_inputs or self.dataset in NOISE_ONLY

    @property
    def num_classes(self) -> int:
        """The dataset's class count (loads the data, once per process, unless the inputs are noise and the
        count is known without it)."""
        if self.dataset in NOISE_ONLY:
            return NOISE_ONLY[self.dataset][0]
        if self.uses_noise and self.dataset in DATASETS and self.settings.label_column is None:
            return DATASETS[self.dataset].num_classes
        return self.data().num_classes

    @property
    def input_size(self) -> int:
        size = NOISE_ONLY[self.dataset][1] if self.dataset in NOISE_ONLY else None
        return size or self.settings.image_size or get_space(self.space_ref).input_size

    @property
    def metric(self) -> str:
        return f"{self.settings.proxy} score"

    def source(self) -> dict:
        if self.uses_noise:
            return {"dataset": None, "inputs": "random normal, seeded"}
        return dataset_source(self.dataset, self.settings.data_dir, self.settings.dataset_revision)

    def input_spec(self) -> dict:
        return {"input_channels": 3, "normalisation": None} if self.uses_noise else image_spec(self.data())

    def prepare(self) -> None:
        self.inputs(resolve_device(self.settings.device))
        _ = self.num_classes  # with noise inputs, a dataset that is not bundled is still read for its class count

    def data(self) -> ImageData:
        """The whole dataset, loaded once per process (GptnasError when it cannot be had)."""
        s, space = self.settings, get_space(self.space_ref)
        return load_images(self.dataset, s.data_dir, space.input_size, revision=s.dataset_revision,
                           image_column=s.image_column, label_column=s.label_column,
                           image_size=s.image_size or space.image_size)

    def inputs(self, device: torch.device) -> torch.Tensor:
        """The minibatch every candidate is scored on (GptnasError when the data cannot be had)."""
        if str(device) not in self._inputs:
            generator = torch.Generator().manual_seed(self.settings.seed)
            size, batch = self.input_size, self.settings.batch_size
            if self.uses_noise:
                inputs = torch.randn((batch, 3, size, size), generator=generator)
            else:
                data = self.data()
                chosen = torch.randperm(len(data.train_labels), generator=generator)[:batch]
                inputs = normalise(data.train_images[chosen], *data.stats)
            self._inputs[str(device)] = inputs.to(device)
        return self._inputs[str(device)]

    def evaluate(self, space: SearchSpace | str, arch: Any) -> Evaluation:
        space = check_space(self.space_ref, space)
        device = resolve_device(self.settings.device)
        inputs = self.inputs(device)
        cost = self._cost(space, arch) if self.settings.costs else {"params": 0, "flops": 0}
        start = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):  # seeded init without resetting the caller's RNG
                torch.manual_seed(self.settings.seed)
                model = space.build_model(arch, self.num_classes)
            model = without_inplace_activations(model).to(device)
            score = PROXIES[self.settings.proxy](model, inputs)
            if math.isfinite(score):
                result = Evaluation(score, None, cost["params"], cost["flops"], time.perf_counter() - start)
            else:
                result = diverged(f"{self.settings.proxy} score is {score}", cost, time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 - a broken candidate must not stop the search
            result = failure(error, cost, time.perf_counter() - start)
        if result.status == "out_of_memory":
            free_accelerator_memory()
        log.debug("%s: %s %s = %.4g", describe(space, arch), result.status, self.settings.proxy, result.fitness)
        return result

    def _cost(self, space: SearchSpace, arch: Any) -> dict[str, int]:
        key = describe(space, arch)
        if key not in self._costs:
            self._costs[key] = safe_cost(space, arch, self.num_classes, self.input_size)
        return self._costs[key]

    def __repr__(self) -> str:
        return f"ProxyEvaluator({get_space(self.space_ref).name!r}, {self.dataset!r}, {self.settings})"
