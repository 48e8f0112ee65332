"""Search spaces: genes, spelling and networks agree, for every space."""

import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptnas.errors import GptnasError
from gptnas.language.tokens import EOS
from gptnas.spaces import get_space, space_names
from gptnas.spaces.base import count_macs, count_params

BUILT_IN = ["cifar", "nas-bench-macro", "channel-bench-mobilenet", "channel-bench-resnet", "nas-bench-201"]
DECLARED = [str(Path(__file__).resolve().parents[1] / "configs" / "spaces" / f"{name}.yaml")  # the same laws hold
            for name in ("cifar-declared", "mobile96", "resnet20-widths", "nas-bench-macro-declared",  # for space files
                         "channel-bench-mobilenet-declared", "channel-bench-resnet-declared")]
SPACES = BUILT_IN + DECLARED
seeds = st.integers(0, 2**32 - 1)
quick = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_registry_lists_every_space():
    assert set(BUILT_IN) <= set(space_names())
    with pytest.raises(GptnasError, match="unknown search space 'cifar10'.*valid: .*nas-bench-201"):
        get_space("cifar10")


def random_walk(space, rng):
    """A complete token sequence chosen token by token among what the grammar allows."""
    state, tokens = space.start(), []
    while True:
        token = rng.choice(sorted(space.allowed(state)))
        if token == EOS:
            return tokens
        tokens.append(token)
        state = space.step(state, token)


@pytest.mark.parametrize("name", SPACES)
@quick
@given(seed=seeds)
def test_round_trip_and_operators(name, seed):
    space, rng = get_space(name), random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    children = [a, b, space.mutate(a, rng), *space.crossover(a, b, rng)]
    for arch in children:
        text = space.encode(arch)
        assert text.split()[0] == space.tag
        assert space.decode(text) == arch
        assert space.from_key(space.key(arch)) == arch


@pytest.mark.parametrize("name", SPACES)
@quick
@given(seed=seeds)
def test_grammar_accepts_every_encoding(name, seed):
    space, rng = get_space(name), random.Random(seed)
    tokens = space.encode(space.mutate(space.sample(rng), rng)).split()
    state = space.start()
    for token in tokens:
        assert token in space.allowed(state)
        assert EOS not in space.allowed(state)
        state = space.step(state, token)
    assert space.allowed(state) == {EOS}
    assert space.allowed_next(tokens) == {EOS}
    assert space.allowed_next(tokens[:3]) == space.allowed(_walk(space, tokens[:3]))


def _walk(space, tokens):
    state = space.start()
    for token in tokens:
        state = space.step(state, token)
    return state


@pytest.mark.parametrize("name", SPACES)
@quick
@given(seed=seeds)
def test_an_architecture_is_a_sequence_of_named_choices_that_spell_it_back(name, seed):
    space, rng, offered = get_space(name), random.Random(seed), {}

    def pick(choice, options, _):
        assert offered.setdefault(choice, options) == options  # a choice's name fixes what it offers
        return rng.choice(options)

    archs = [space.choose(pick) for _ in range(3)]
    for arch in archs:
        assert space.decode(space.encode(arch)) == arch
        given = [segment.payload for segment in space.segments(arch)]
        assert space.choose(lambda choice, options, i: given[i]) == arch


@pytest.mark.parametrize("name", SPACES)
@quick
@given(seed=seeds)
def test_every_sequence_the_grammar_allows_is_an_architecture(name, seed):
    space = get_space(name)
    arch = space.decode(" ".join(random_walk(space, random.Random(seed))))
    assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=3, deadline=None)
@given(seed=seeds)
def test_networks_run_a_forward_pass(name, seed):
    space, rng = get_space(name), random.Random(seed)
    a = space.sample(rng)
    b = space.decode(" ".join(random_walk(space, rng)))
    for arch in (a, space.mutate(a, rng), *space.crossover(a, b, rng)):
        model = space.build_model(arch, num_classes=100).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("name", SPACES)
def test_a_cost_is_what_the_built_network_holds_and_computes(name):
    """`cost` (counted from the space's layers where it writes them, never built) at the space's input and
    others, odd sides included, and for other class counts: what the network built on the meta device holds."""
    space, rng = get_space(name), random.Random(0)
    sides = (None, 8, 16, 24) if name == "nas-bench-201" else (None, 8, 13, 28)  # its pooled shortcut: even sides
    for arch in [space.sample(rng) for _ in range(3)]:
        for num_classes, input_size in zip((10, 100, 7, 10), sides):
            with torch.device("meta"):
                model = space.build_model(arch, num_classes)
            built = {"params": count_params(model), "flops": count_macs(model, input_size or space.input_size)}
            assert space.cost(arch, num_classes, input_size) == built, (space.key(arch), num_classes, input_size)
        assert space.params(arch) == space.cost(arch)["params"]


@pytest.mark.parametrize("name", ["nas-bench-201", "nas-bench-macro", "channel-bench-resnet"])
def test_networks_train_and_leave_shared_inputs_alone(name):
    """Backward works (no in-place op on a tensor another branch reads) and the input is untouched."""
    space = get_space(name)
    arch = space.sample(random.Random(0)) if name != "nas-bench-201" else space.from_key(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    model = space.build_model(arch)
    x = torch.randn(2, 3, 32, 32)
    before = x.clone()
    model(x).sum().backward()
    assert torch.equal(x, before)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_vocabularies_are_small_and_shared():
    vocab = set().union(*(get_space(n).vocabulary() for n in SPACES))
    assert len(vocab) < 2000
    # the common layer words are spelled the same in every space
    for word in ("bn", "relu", "gap", "classifier", "block", "(", ")add"):
        assert sum(word in get_space(n).vocabulary() for n in SPACES) >= 3, word


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("nas-bench-macro", "space:nas-bench-macro conv3x3 w32 bn relu conv9x9", "'conv9x9' at position 5"),
        ("nas-bench-macro", "space:nas-bench-macro conv3x3 w32 bn conv1x1", "'conv1x1' at position 4 is not allowed"),
        ("nas-bench-macro", "space:nas-bench-macro conv3x3 w32 bn gelu", "unknown token 'gelu' at position 4"),
        ("nas-bench-macro", "space:nas-bench-macro conv3x3 w32 bn relu", "incomplete after 5 tokens"),
        ("nas-bench-macro", "space:cifar conv3x3 w32 bn relu", "tagged 'space:cifar'"),
        ("cifar", "", "incomplete after 0 tokens"),
        ("nas-bench-201", "space:nas-bench-201 conv3x3 w16 bn cell node from0 sepconv", "'sepconv' at position 7"),
    ],
)
def test_malformed_strings_name_the_token_and_position(name, text, message):
    with pytest.raises(GptnasError, match=message):
        get_space(name).decode(text)


@pytest.mark.parametrize(
    "name, key, message",
    [
        ("nas-bench-macro", "0201210", "8 digits"),
        ("nas-bench-macro", "02012103", "8 digits"),
        ("channel-bench-mobilenet", "4432215", "7 digits from 1-4"),
        ("nas-bench-201", "|nor_conv_3x3~0|+|none~0|", "must look like"),
        ("nas-bench-201", "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NAS-Bench-201 op 'conv_5x5'"),
        ("cifar", "stem32-resnet_basic/64/s1", "10-20 blocks"),
        ("cifar", "stem32-" + "-".join(["transformer/64/s1"] * 10), "unknown kind 'transformer'"),
        ("cifar", "stem32-" + "-".join(["resnet_basic/64/s2"] * 10), "at most 3 strided blocks"),
    ],
)
def test_bad_keys_get_one_line_errors(name, key, message):
    with pytest.raises(GptnasError, match=message) as error:
        get_space(name).from_key(key)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["cifar", "nas-bench-macro", "channel-bench-mobilenet", "channel-bench-resnet"])
@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_spelling_is_the_layer_sequence_of_the_built_network(name, seed):
    """Tracing the nn.Module a space builds gives back the space's own spelling, token for token."""
    from gptnas.language.trace import encode_module

    space = get_space(name)
    arch = space.mutate(space.sample(random.Random(seed)), random.Random(seed + 1))
    assert encode_module(space.build_model(arch), name) == space.encode(arch).split()
