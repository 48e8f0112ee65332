"""Evaluators: table look-ups, short training on digits, zero-cost proxies, failure handling."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from gptnas.errors import GptnasError
from gptnas.evaluators import WORST_FITNESS, Evaluation, Evaluator, get_evaluator
from gptnas.spaces import get_space
from gptnas.spaces.cifar import Block, CifarArch
from gptnas.training.data import load_images, make_splits
from gptnas.training.loop import augment, lr_factor

NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
# Three strided blocks first keep the network cheap: most of it runs at 4x4.
TINY = CifarArch(16, (Block("resnet_basic", 16, 2),) * 3 + (Block("resnet_basic", 16, 1),) * 7)
TINY_TRAINING = dict(epochs=1, min_steps=0, max_train_examples=96, device="cpu")


def wide(width: int) -> CifarArch:
    return CifarArch(16, (Block("resnet_basic", width, 2),) * 3 + (Block("resnet_basic", width, 1),) * 7)


# ---------------------------------------------------------------- benchmark


def test_nas_bench_201_gives_validation_as_fitness_and_test_as_report(requires_table):
    requires_table("nas-bench-201:cifar10")
    space = get_space("nas-bench-201")
    result = get_evaluator("benchmark", space, "cifar10").evaluate(space, space.from_key(NB201_BEST))
    assert result.fitness == pytest.approx(91.6067, abs=1e-3)
    assert result.test_accuracy == pytest.approx(94.3733, abs=1e-3)
    assert result.params == 73306 + 243040 * 4 + 28000 * 1  # the benchmark's published formula
    assert result.seconds == 0 and result.status == "ok"


def test_nas_bench_201_cifar100_uses_its_own_table_and_classifier(requires_table):
    requires_table("nas-bench-201:cifar10")
    requires_table("nas-bench-201:cifar100")
    space = get_space("nas-bench-201")
    arch = space.from_key(NB201_BEST)
    c10 = get_evaluator("benchmark", space, "cifar10").evaluate(space, arch)
    c100 = get_evaluator("benchmark", space, "cifar100").evaluate(space, arch)
    assert c100.fitness < c10.fitness
    assert c100.params - c10.params == 64 * 90 + 90  # a 100-way instead of a 10-way classifier


def test_nas_bench_macro_alias_reads_the_canonical_value(requires_table):
    requires_table("nas-bench-macro")
    space = get_space("nas-bench-macro")
    evaluator = get_evaluator("benchmark", space, "cifar10")
    alias = evaluator.evaluate(space, (2, 2, 2, 1, 2, 2, 0, 2))  # '22212202', identity not at the stage end
    canonical = evaluator.evaluate(space, space.from_key("22212220"))
    assert alias == canonical
    assert alias.fitness == pytest.approx(93.1267, abs=1e-3)
    assert alias.test_accuracy == alias.fitness  # no validation split in this table


def test_channel_bench_reads_mean_accuracy_and_table_costs(requires_table):
    requires_table("channel-bench-mobilenet")
    space = get_space("channel-bench-mobilenet")
    result = get_evaluator("benchmark", space, "cifar10").evaluate(space, space.from_key("4444342"))
    assert result.fitness == result.test_accuracy == pytest.approx(91.8867, abs=1e-3)
    assert result.params > 0 and result.flops > 0


# ---------------------------------------------------------------- names and options


@pytest.mark.parametrize(
    "args, options, listed",
    [
        (("nope", "nas-bench-201", "cifar10"), {}, "benchmark, train, proxy"),
        (("benchmark", "nas-bench-201", "svhn"), {}, "cifar10, cifar100, imagenet16-120"),
        (("benchmark", "nas-bench-macro", "cifar100"), {}, "valid datasets: cifar10"),
        (("benchmark", "cifar", "cifar10"), {}, "nas-bench-macro"),
        (("train", "cifar", "mnist"), {}, "cifar10, cifar100, digits"),
        (("proxy", "cifar", "mnist"), {}, "none"),
        (("train", "cifar", "digits"), {"epoch": 3}, "epochs"),
        (("proxy", "cifar", "digits"), {"proxy": "snip"}, "synflow, naswot"),
    ],
)
def test_bad_names_raise_one_line_listing_the_valid_ones(args, options, listed):
    with pytest.raises(GptnasError) as error:
        get_evaluator(*args, **options)
    assert listed in str(error.value) and "\n" not in str(error.value)


def test_evaluation_round_trips_through_json():
    ok = Evaluation(91.5, 90.25, 1000, 2000, 3.5)
    failed = Evaluation(WORST_FITNESS, None, 0, 0, 0.1, "failed", "ValueError: bad")
    for evaluation in (ok, failed):
        assert Evaluation.from_dict(json.loads(json.dumps(evaluation.to_dict()))) == evaluation


# ---------------------------------------------------------------- training


def test_training_on_digits_scores_validation_and_is_deterministic():
    space = get_space("cifar")
    evaluator = get_evaluator("train", space, "digits", **TINY_TRAINING)
    assert isinstance(evaluator, Evaluator)
    first, second = evaluator.evaluate(space, TINY), evaluator.evaluate(space, TINY)
    assert first.status == "ok"
    assert 0 <= first.fitness <= 100 and 0 <= first.test_accuracy <= 100
    assert (first.fitness, first.test_accuracy) == (second.fitness, second.test_accuracy)
    assert first.params == space.cost(TINY)["params"]


def test_validation_split_comes_from_the_training_set():
    data = load_images("digits")
    splits = make_splits(data, val_fraction=0.1, seed=0)
    assert len(splits.val_labels) + len(splits.train_labels) == len(data.train_labels)
    assert len(splits.test_labels) == len(data.test_labels)
    assert splits.train_images.dtype == torch.uint8 and splits.train_images.shape[1:] == (3, 8, 8)  # digits stay 8x8


def test_exploding_training_is_diverged_not_an_exception():
    space = get_space("cifar")
    evaluator = get_evaluator("train", space, "digits", lr=1e30, batch_size=64, **TINY_TRAINING)
    result = evaluator.evaluate(space, TINY)
    assert result.status == "diverged" and result.fitness == WORST_FITNESS and result.reason


def test_unbuildable_candidate_is_failed_not_an_exception():
    space = get_space("cifar")
    too_many_strides = CifarArch(16, (Block("resnet_basic", 16, 2),) * 10)
    for name, options in (("train", TINY_TRAINING), ("proxy", {"device": "cpu"})):
        result = get_evaluator(name, space, "digits", **options).evaluate(space, too_many_strides)
        assert result.status == "failed" and result.fitness == WORST_FITNESS
        assert result.reason.startswith("GptnasError:") and "\n" not in result.reason


def test_learning_rate_warms_up_over_the_first_epoch_then_decays():
    factors = [lr_factor(step, 10, 60, "cosine") for step in range(60)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:])) and factors[-1] < 0.01


def test_augmentation_is_seeded_and_keeps_shape():
    images = torch.randn(8, 3, 32, 32)
    first = augment(images, torch.Generator().manual_seed(1))
    second = augment(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and torch.equal(first, second)
    assert not torch.equal(first, images)


def test_the_training_modules_import_on_their_own():
    # gptnas.evaluators imports gptnas.training: the training modules must not import it back at the top. Each is
    # imported first, with no gptnas module loaded (one process: torch and the rest stay imported).
    code = ("import importlib, sys\n"
            "for module in ('gptnas.training.loop', 'gptnas.training.data', 'gptnas.deploy.retrain'):\n"
            "    for name in [name for name in sys.modules if name.split('.')[0] == 'gptnas']:\n"
            "        del sys.modules[name]\n"
            "    importlib.import_module(module)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_cifar_loads_from_a_local_dataset_dict(tmp_path):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)

    def split(n):
        images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        return datasets.Dataset.from_dict({"img": images, "fine_label": [i % 100 for i in range(n)]})

    datasets.DatasetDict(train=split(20), test=split(5)).save_to_disk(tmp_path / "c100")
    data = load_images("cifar100", str(tmp_path / "c100"))
    assert data.train_images.shape == (20, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_labels.tolist() == [0, 1, 2, 3, 4] and data.num_classes == 100


def test_grayscale_arrays_of_another_size_are_resized(tmp_path):
    import datasets

    def split(n):
        return datasets.Dataset.from_dict({"image": [np.full((28, 28), 200, np.uint8)] * n, "label": [1] * n})

    datasets.DatasetDict(train=split(4), test=split(2)).save_to_disk(tmp_path / "gray")
    data = load_images("cifar10", str(tmp_path / "gray"))
    assert data.train_images.shape == (4, 3, 32, 32) and int(data.train_images.max()) == 200


def test_missing_data_dir_is_a_user_error():
    space = get_space("cifar")
    evaluator = get_evaluator("train", space, "cifar10", data_dir="/nonexistent/cifar10", device="cpu")
    with pytest.raises(GptnasError, match="data_dir"):
        evaluator.evaluate(space, TINY)


# ---------------------------------------------------------------- proxies


@pytest.mark.parametrize("proxy", ["synflow", "naswot"])
@pytest.mark.parametrize("dataset", ["digits", "none"])
def test_proxies_give_finite_scores(proxy, dataset):
    space = get_space("cifar")
    result = get_evaluator("proxy", space, dataset, proxy=proxy, device="cpu").evaluate(space, TINY)
    assert result.status == "ok" and np.isfinite(result.fitness) and result.fitness > 0
    assert result.test_accuracy is None


def test_synflow_ranks_a_wide_network_above_a_narrow_one():
    space = get_space("cifar")
    evaluator = get_evaluator("proxy", space, "none", proxy="synflow", device="cpu")
    assert evaluator.evaluate(space, wide(128)).fitness > 10 * evaluator.evaluate(space, wide(16)).fitness


def test_proxies_handle_cells_that_share_tensors():
    # Node 0 feeds two act-first 1x1 edges: with the space's in-place ReLUs, backward would fail.
    space = get_space("nas-bench-201")
    arch = space.from_key("|nor_conv_1x1~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    for proxy in ("synflow", "naswot"):
        evaluator = get_evaluator("proxy", space, "none", proxy=proxy, batch_size=8, device="cpu")
        assert evaluator.evaluate(space, arch).status == "ok"


def test_evaluating_does_not_reset_the_callers_random_state():
    space = get_space("cifar")
    evaluator = get_evaluator("proxy", space, "none", proxy="synflow", device="cpu")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluator.evaluate(space, TINY)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- workers


def test_evaluators_survive_pickling_without_their_data(requires_table):
    requires_table("nas-bench-201:cifar10")
    cifar, nb201 = get_space("cifar"), get_space("nas-bench-201")
    arch = nb201.from_key(NB201_BEST)
    benchmark = get_evaluator("benchmark", nb201, "cifar10")
    proxy = get_evaluator("proxy", cifar, "digits", proxy="naswot", device="cpu")
    train = get_evaluator("train", cifar, "digits", **TINY_TRAINING)
    before = benchmark.evaluate(nb201, arch), proxy.evaluate(cifar, TINY)
    train.splits(torch.device("cpu"))  # data loaded: it must not travel
    copies = [pickle.loads(pickle.dumps(e)) for e in (benchmark, proxy, train)]
    assert len(pickle.dumps(train)) < 10_000
    after = copies[0].evaluate(nb201, arch), copies[1].evaluate(cifar, TINY)
    assert [a.fitness for a in after] == [b.fitness for b in before]
    assert copies[2].settings == train.settings
