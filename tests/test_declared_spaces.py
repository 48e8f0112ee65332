"""Spaces declared in YAML files: the declared `cifar` is the class, token for token; every mistake in a file is
one line naming its field; the example spaces are searched, retrained, exported and loaded end to end."""

import copy
import json
import random
from pathlib import Path

import pytest
import torch
from gptnas.errors import GptnasError
from gptnas.language.tokens import EOS
from gptnas.spaces import get_space, load_space
from gptnas.spaces.declared import Block, DeclaredArch, DeclaredSpace, Head

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILES = ROOT / "configs" / "spaces"
DECLARED_CIFAR = SPACE_FILES / "cifar-declared.yaml"
EXAMPLES = [SPACE_FILES / "mobile96.yaml", SPACE_FILES / "resnet20-widths.yaml"]
DECLARED_MACRO = SPACE_FILES / "nas-bench-macro-declared.yaml"
SAMPLES = 1000


def cifar_pairs(n: int, seed: int = 0):
    """(class architecture, the declared space's reading of its spelling) for n samples of the class."""
    cifar, declared, rng = get_space("cifar"), get_space(DECLARED_CIFAR), random.Random(seed)
    for _ in range(n):
        arch = cifar.sample(rng)
        yield arch, declared.decode(cifar.encode(arch))


def test_the_declared_cifar_spells_every_sample_of_the_class_the_same_and_allows_the_same_tokens():
    cifar, declared = get_space("cifar"), get_space(DECLARED_CIFAR)
    for arch, twin in cifar_pairs(SAMPLES):
        tokens = cifar.encode(arch).split()
        assert declared.encode(twin).split() == tokens
        ours, theirs = declared.start(), cifar.start()
        for token in tokens:
            assert declared.allowed(ours) == cifar.allowed(theirs)
            ours, theirs = declared.step(ours, token), cifar.step(theirs, token)
        assert declared.allowed(ours) == cifar.allowed(theirs) == {EOS}
    assert declared.vocabulary() == cifar.vocabulary()


def test_the_declared_cifar_prices_every_sample_as_the_class_does():
    """Costs of samples, and the parameter bounds of the whole grammar (benchmarks/declared_cifar.py checks
    1,000 samples and the bounds on multiply-accumulates too: 2 minutes)."""
    cifar, declared = get_space("cifar"), get_space(DECLARED_CIFAR)
    for arch, twin in cifar_pairs(SAMPLES // 10, seed=1):
        assert declared.cost(twin) == cifar.cost(arch)
    ours, theirs = declared.cost_bounds("params"), cifar.cost_bounds("params")
    assert ours.completion(ours.grammar.language.start_context()) == \
        theirs.completion(theirs.grammar.language.start_context())


def test_the_declared_cifar_builds_the_same_networks():
    cifar, declared = get_space("cifar"), get_space(DECLARED_CIFAR)
    for arch, twin in cifar_pairs(50, seed=2):
        torch.manual_seed(0)
        ours = declared.build_model(twin, num_classes=100)
        torch.manual_seed(0)
        theirs = cifar.build_model(arch, num_classes=100)
        assert repr(ours) == repr(theirs)
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def macro_twin(genes: tuple[int, ...]):
    """The declared NAS-Bench-Macro network of the class's (canonical) genes: each stage's first layer, then its
    inverted residuals (an identity after the first layer is no block)."""
    from gptnas.spaces.nas_bench_macro import STAGES

    kinds, blocks, start = {0: "conv_k1_none", 1: "mbconv_k3_e3_relu", 2: "mbconv_k5_e6_relu"}, [], 0
    for i, length in enumerate(STAGES):
        stage, start, width = genes[start:start + length], start + length, 64 * 2 ** i
        blocks += [Block(kinds[stage[0]], width, 2)] + [Block(kinds[g], width, 1) for g in stage[1:] if g]
    return DeclaredArch(32, tuple(blocks), Head(1280))


def mobilenet_twin(genes: tuple[int, ...]):
    """The declared Channel-Bench MobileNet network of the class's width digits (width 0: the input width)."""
    c, inner = get_space("channel-bench-mobilenet").channels(genes), "mbconv_k3_relu_h{}".format
    blocks = (Block(inner(c[1]), 0, 1), Block(inner(c[2]), 0, 1), Block(inner(c[3]), c[4], 2),
              Block(inner(c[5]), c[4], 1))
    return DeclaredArch(c[0], blocks, Head(c[6]))


def resnet_twin(genes: tuple[int, ...]):
    """The declared Channel-Bench ResNet network of the class's width digits (the strided pair: two blocks)."""
    c, inner = get_space("channel-bench-resnet").channels(genes), "resnet_basic_h{}".format
    blocks = (Block(inner(c[1]), 0, 1), Block(inner(c[2]), 0, 1), Block("conv_k3", c[3], 2), Block("conv_k3", c[4], 1),
              Block(inner(c[5]), 0, 1), Block(inner(c[6]), 0, 1))
    return DeclaredArch(c[0], blocks, Head(0))


def benchmark_twins(name: str) -> tuple[Path, list, object]:
    """(the file declaring the built-in benchmark space `name`, the class's architectures, the file's network of
    each); benchmarks/declared_spaces.py checks them all."""
    import itertools
    from gptnas.spaces.nas_bench_macro import canonical

    if name == "nas-bench-macro":
        return DECLARED_MACRO, sorted({canonical(g) for g in itertools.product(range(3), repeat=8)}), macro_twin
    twin = mobilenet_twin if name == "channel-bench-mobilenet" else resnet_twin
    return SPACE_FILES / f"{name}-declared.yaml", list(itertools.product((1, 2, 3, 4), repeat=7)), twin


@pytest.mark.parametrize("name, size", [("nas-bench-macro", 3969), ("channel-bench-mobilenet", 4 ** 7),
                                        ("channel-bench-resnet", 4 ** 7)])
def test_a_benchmark_space_declared_is_the_class_network_for_network(name, size):
    """Every architecture of the class is one network of the file (whose grammar holds as many), with the same
    costs, computing the same function given the same weights."""
    path, archs, twin = benchmark_twins(name)
    cls, declared, rng = get_space(name), get_space(path), random.Random(5)
    twins = {twin(g) for g in archs}
    assert len(archs) == len(twins) == size
    assert {declared.sample(rng) for _ in range(300)} <= twins  # every declared network is a class network
    for genes in rng.sample(archs, 100):
        assert declared.is_valid(twin(genes)) and declared.cost(twin(genes)) == cls.cost(genes)
    for genes in rng.sample(archs, 3):
        ours, theirs = declared.build_model(twin(genes)).eval(), cls.build_model(genes).eval()
        mine, others = list(ours.state_dict().values()), list(theirs.state_dict().values())
        assert [t.shape for t in mine] == [t.shape for t in others]
        ours.load_state_dict(dict(zip(ours.state_dict(), others)))
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_channel_bench_mobilenet_declared_is_spelled_as_the_class():
    path, archs, twin = benchmark_twins("channel-bench-mobilenet")
    cls, declared = get_space("channel-bench-mobilenet"), get_space(path)
    for genes in random.Random(6).sample(archs, 50):
        assert declared.encode(twin(genes)).split()[1:] == cls.encode(genes).split()[1:]  # all but the tag


DECLARED_BENCHMARKS = [SPACE_FILES / f"{name}-declared.yaml" for name in
                       ("nas-bench-macro", "channel-bench-mobilenet", "channel-bench-resnet")]


@pytest.mark.parametrize("path", [DECLARED_CIFAR, *DECLARED_BENCHMARKS, *EXAMPLES], ids=lambda p: p.stem)
def test_a_declared_space_is_a_space_like_the_others(path):
    """Round trips, operators, the exact grammar both ways, and networks that run at the declared size."""
    space, rng = get_space(path), random.Random(0)
    for _ in range(40):
        a, b = space.sample(rng), space.sample(rng)
        for arch in (a, space.mutate(a, rng), *space.crossover(a, b, rng)):
            assert space.is_valid(arch)
            text = space.encode(arch)
            assert text.split()[0] == space.tag
            assert space.decode(text) == arch and space.from_key(space.key(arch)) == arch
        state, tokens = space.start(), []  # a walk through what the grammar allows is an architecture
        while EOS not in (allowed := space.allowed(state)) or (len(allowed) > 1 and rng.random() < 0.9):
            tokens.append(rng.choice(sorted(allowed - {EOS})))
            state = space.step(state, tokens[-1])
        arch = space.decode(" ".join(tokens))
        assert space.decode(space.encode(arch)) == arch
    model = space.build_model(space.sample(rng), num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, space.input_size, space.input_size)).shape == (2, 7)


def test_the_spelling_is_the_layer_sequence_of_the_built_network():
    from gptnas.language.trace import encode_module

    for path in EXAMPLES:
        space = get_space(path)
        arch = space.mutate(space.sample(random.Random(3)), random.Random(4))
        assert encode_module(space.build_model(arch), space.tag.removeprefix("space:")) == space.encode(arch).split()


def test_samples_and_variations_stay_within_the_declared_limits():
    space, rng = get_space(SPACE_FILES / "mobile96.yaml"), random.Random(0)
    assert space.limits == {"flops": 5_000_000}
    archs = [space.sample(rng) for _ in range(100)]
    archs += [space.mutate(a, rng) for a in archs] + [c for a, b in zip(archs, archs[1:]) for c in space.crossover(a, b, rng)]
    assert max(space.cost(a)["flops"] for a in archs) <= 5_000_000


def test_a_space_travels_as_its_definition():
    """Worker processes, run directories and exported networks carry the definition, not the file."""
    import pickle

    space = get_space(SPACE_FILES / "resnet20-widths.yaml")
    assert space.reference["name"] == "resnet20-widths" and get_space(space.reference) is space
    assert pickle.loads(pickle.dumps(space)) is space


# ---------------------------------------------------------------- mistakes in a space file

GOOD = {"input": {"size": 32}, "stem": {"width": 16},
        "stages": [{"depth": [1, 2], "stride": 2, "width": [16, 32], "blocks": ["resnet_basic"]}]}


def broken(**changes):
    definition = copy.deepcopy(GOOD)
    stage = definition["stages"][0]
    for field, value in changes.items():
        target = stage if field.startswith("stage_") else definition
        target[field.removeprefix("stage_")] = value
    return definition


@pytest.mark.parametrize("changes, message", [
    (dict(stage_blocks=["transformer"]), "stages[0].blocks[0]: unknown block kind 'transformer'; valid: conv, "),
    (dict(stage_width=[]), "stages[0].width: an empty list chooses nothing"),
    (dict(stage_blocks=[{"mbconv": {"kernel": []}}]), "stages[0].blocks[0].mbconv.kernel: an empty list"),
    (dict(stage_depth=[3, 1]), "stages[0].depth: min 3 is greater than max 1"),
    (dict(stages=[GOOD["stages"][0]] * 6), "shrinks a 32x32 input below 1x1 (at most 5 fit)"),
    (dict(limits={"max_params": 1000}), "limits.max_params: 1,000 is below the smallest network of the space"),
    (dict(limits={"max_macs": 10}), "limits.max_macs: 10 is below the smallest network"),
    (dict(stage_blocks=[{"mbconv": {"kernal": 3}}]), "stages[0].blocks[0].mbconv.kernal: unknown option; valid: kernel"),
    (dict(stage_blocks=[{"mbconv": {"kernel": 4}}]), "stages[0].blocks[0].mbconv.kernel: 4 is not one of 3, 5, 7"),
    (dict(stage_blocks=["inception"]), "stages[0].blocks: no kind listed takes stride 2"),
    (dict(stage_first_blocks=["inception"]), "stages[0].first_blocks: no kind listed takes stride 2"),
    (dict(stage_first_blocks=[]), "stages[0].first_blocks: an empty list"),
    (dict(stage_width="same", stage_width_per_block=True), "stages[0].width_per_block: a stage of width same keeps"),
    (dict(stage_width="same", stage_blocks=["resnext_bottleneck"], stem={"width": 12}),
     "stages[0].blocks[0]: resnext_bottleneck needs widths that are multiples of 8 and at least 8, but the stage "
     "keeps its input width, which can be 12"),
    (dict(stage_blocks=[{"mbconv": {"expansion": 3, "hidden": 64}}]), "stages[0].blocks[0].mbconv: give expansion "
                                                                       "or hidden"),
    (dict(stage_blocks=[{"resnet_basic": {"hidden": [0]}}]), "stages[0].blocks[0].resnet_basic.hidden: a whole "
                                                              "number from 1"),
    (dict(stage_blocks=["resnext_bottleneck"], stage_width=[12]), "resnext_bottleneck needs widths that are "
                                                                   "multiples of 8"),
    (dict(stage_width=[36, 40]), "stages[0].width: width 40 and width 36 (stages[0].width) are both spelled w40"),
    (dict(stage_strides=[1, 2]), "give stride (the first block's) or strides"),
    (dict(stagez=[]), "stagez: unknown field; valid: name, tag, input"),
    (dict(name="cifar"), "name: 'cifar' is a built-in space"),
    (dict(input={"size": 32, "channels": 1}), "input.channels: only 3"),
    (dict(stage_depth=0), "stages[0].depth: a whole number from 1 to 64, got 0"),
])
def test_a_mistake_in_a_space_file_is_one_line_that_names_its_field(tmp_path, changes, message):
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps(broken(**changes)))  # JSON is YAML
    with pytest.raises(GptnasError) as error:
        load_space(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(str(path))


def test_per_block_strides_need_a_bound_and_a_missing_file_is_one_line(tmp_path):
    stage = {"depth": 3, "strides": [1, 2], "width": 16, "blocks": ["conv"]}
    with pytest.raises(GptnasError, match="max_downsamples: missing"):
        DeclaredSpace({**GOOD, "stages": [stage]}, "x.yaml")
    with pytest.raises(GptnasError, match="space file .*nope.yaml does not exist"):
        get_space(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- the GPT and a search in a declared space


@pytest.fixture(scope="module")
def gpt():
    from gptnas import ArchGPT

    return ArchGPT.from_pretrained()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("quality", [None, 4])
def test_the_shipped_gpt_writes_only_valid_networks_within_the_limits(gpt, path, quality):
    """benchmarks/declared_spaces.py draws 1,000 per space and condition."""
    space = get_space(path)
    archs = gpt.complete(space, n=100, seed=1, quality=quality)[0]
    assert all(space.is_valid(arch) for arch in archs)  # the grammar, and the limits at the declared size
    assert len({space.key(a) for a in archs}) > 10


def test_a_gpt_that_cannot_spell_a_space_is_refused_in_one_line(gpt):
    definition = {**get_space(EXAMPLES[1]).definition, "name": "mine", "tag": "mine"}
    with pytest.raises(GptnasError, match=r"space mine writes 1 token\(s\) this GPT never learned \(space:mine\)"):
        gpt.complete(definition)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Three classes of twenty 8x8 grey digits as PNG files (resized to each space's declared input)."""
    from sklearn.datasets import load_digits
    from PIL import Image

    data, root = load_digits(), tmp_path_factory.mktemp("tiny") / "folder"
    for label in range(3):
        (root / str(label)).mkdir(parents=True)
        for i, image in enumerate(data.images[data.target == label][:20]):
            Image.fromarray((image / 16 * 255).astype("uint8")).save(root / str(label) / f"{i}.png")
    return root


QUICK = ["--population", "2", "--generations", "1", "--epochs", "1", "--min_steps", "0", "--batch_size", "16",
         "--device", "cpu", "--workers", "1"]


@pytest.mark.parametrize("path, strategy", [(EXAMPLES[0], "gpt-ga"), (EXAMPLES[1], "ga")], ids=lambda v: str(v)[-12:])
def test_an_example_space_is_searched_retrained_exported_and_loaded_without_its_file(tmp_path, tiny_folder, path,
                                                                                    strategy):
    import evolve
    import gptnas

    mine = tmp_path / path.name
    mine.write_text(path.read_text())
    run = tmp_path / "run"
    assert evolve.main(["--space", str(mine), "--strategy", strategy, "--dataset", str(tiny_folder),
                        "--output_dir", str(run), *QUICK]) == 0
    space = get_space(mine)
    best = json.loads((run / "best.json").read_text())
    assert space.is_valid(space.from_key(best["key"])) and best["input_size"] == space.input_size
    assert f"gptnas.build_model('{run / 'space.yaml'}'" in best["build"]
    assert evolve.main(["--retrain", str(run), "--retrain_epochs", "1", "--device", "cpu"]) == 0
    mine.unlink()  # the run directory and the exported folder carry the space
    config = json.loads((run / "retrain" / "config.json").read_text())
    assert config["space"] == space.name and config["space_definition"] == space.definition
    assert config["search"]["space"] == space.name  # no local path in what gets published
    model = gptnas.load_network(run / "retrain")
    with torch.no_grad():
        assert model(torch.zeros(1, 3, space.input_size, space.input_size)).shape == (1, 3)


def test_a_resumed_run_refuses_a_space_file_changed_since_it_started(tmp_path, tiny_folder, capsys):
    import evolve

    mine = tmp_path / "mine.yaml"
    mine.write_text(EXAMPLES[1].read_text())
    run = tmp_path / "run"
    args = ["--space", str(mine), "--strategy", "ga", "--dataset", str(tiny_folder), "--output_dir", str(run), *QUICK]
    assert evolve.main(args) == 0
    mine.write_text(EXAMPLES[1].read_text().replace("[8, 12, 16, 24]", "[8, 16, 24]"))
    assert evolve.main(["--resume", str(run)]) == 2
    assert f"{mine} changed since the run in {run} started" in capsys.readouterr().err


def test_the_harness_compares_strategies_in_a_space_file_by_training_its_networks(tmp_path, tiny_folder, capsys):
    from gptnas.bench.__main__ import main

    study = tmp_path / "study.yaml"
    study.write_text("common: {population: 2, epochs: 1, min_steps: 0, batch_size: 16, device: cpu, image_size: 8}\n")
    out = tmp_path / "study"
    command = ["--spaces", str(EXAMPLES[1]), "--dataset", str(tiny_folder), "--strategies", "ga,random", "--seeds",
               "2", "--budget", "2", "--config", str(study), "--output_dir", str(out)]
    assert main(command) == 0
    report = (out / "report.md").read_text()
    section = report[report.index("### resnet20-widths:folder"):]
    assert "no table: every network was trained on" in section and "optimum" not in section
    assert "| ga | " in section and "| random | " in section and "acc @2" in section
    assert (out / "accuracy_resnet20-widths_folder.png").stat().st_size > 0 and not (out / "optimum.csv").exists()
    runs = (out / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 2 * 2 and all(row.startswith("resnet20-widths:folder,") for row in runs[1:])
    for run in (out / "runs").glob("*/*/seed_*"):
        assert load_space(run / "space.yaml").digest == get_space(EXAMPLES[1]).digest  # each run keeps its space
    capsys.readouterr()
    assert main(command) == 0  # finished runs are read back, not run again
    assert (out / "report.md").read_text() == report


def test_the_harness_says_what_to_add_when_a_space_without_a_table_has_no_dataset(capsys):
    from gptnas.bench.__main__ import main

    assert main(["--spaces", str(EXAMPLES[1])]) == 2
    assert "is no benchmark table" in capsys.readouterr().err
    assert main(["--dataset", "digits"]) == 2
    assert "name them" in capsys.readouterr().err


def test_odd_widths_train_on_a_cpu():
    """Augmented batches are NCHW-contiguous: on NHWC-strided inputs, oneDNN's CPU convolution backward
    corrupted the heap (an abort) on this network of 12-channel blocks."""
    from gptnas.evaluators import get_evaluator

    space = get_space(EXAMPLES[1])
    arch = space.from_key("stem16-" + "-".join(["resnet_basic/12/s1"] * 3 + ["resnet_basic/24/s2"] +
                                               ["resnet_basic/24/s1"] * 2 + ["resnet_basic/32/s2"] +
                                               ["resnet_basic/32/s1"] * 2))
    evaluator = get_evaluator("train", space, "digits", epochs=1, min_steps=0, batch_size=64, device="cpu", seed=0)
    assert evaluator.evaluate(space, arch).ok


def test_evolve_refuses_a_bad_space_file_in_one_line_and_writes_nothing(tmp_path, capsys):
    import evolve

    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {size: 32}\nstem: {width: 16}\nstages:\n  - {depth: [3, 1], width: 16, blocks: [conv]}\n")
    run = tmp_path / "run"
    assert evolve.main(["--space", str(bad), "--dataset", "digits", "--output_dir", str(run)]) == 2
    assert f"error: {bad}: stages[0].depth: min 3 is greater than max 1" in capsys.readouterr().err
    assert not run.exists()


def test_a_handed_definition_too_large_to_build_is_refused_in_one_line():
    """An exported network's config.json carries its space: a definition whose grammar would take minutes to
    build (or whose limits would take minutes to check) stops after a bounded number of steps."""
    widths = [8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]
    stage = {"depth": [1, 16], "width": widths, "width_per_block": True,
             "blocks": ["conv", "resnet_basic", "wide_basic", {"mbconv": {"kernel": [3, 5, 7], "expansion": [3, 6]}}]}
    big = {"input": {"size": 64}, "stem": {"width": 16}, "stages": [stage] * 16}
    with pytest.raises(GptnasError, match="its grammar takes more than 2,000,000 steps to build"):
        DeclaredSpace(copy.deepcopy(big), "big.yaml")
    wide = {**GOOD, "stages": [{**stage, "depth": [1, 4]}] * 3, "limits": {"max_params": 10**9}}
    with pytest.raises(GptnasError, match="limits: checking them prices .* blocks; at most 20,000"):
        DeclaredSpace(copy.deepcopy(wide), "wide.yaml")
