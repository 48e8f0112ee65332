"""Parameter bounds of grammar states, and sampling within a parameter window in one draw."""

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from gptnas.errors import GptnasError
from gptnas.gpt.model import ArchGPT, new_model
from gptnas.language import tokens as T
from gptnas.spaces import get_space, space_names


@pytest.fixture(scope="module")
def space():
    return get_space("cifar")


@pytest.fixture(scope="module")
def random_gpt():
    """A GPT that knows nothing (random weights, every cost token): the window alone keeps its samples in budget."""
    tokenizer = AutoTokenizer.from_pretrained(Path(__file__).parents[1] / "tokenizer")
    torch.manual_seed(0)
    return ArchGPT(new_model(tokenizer, n_layer=1, n_head=1, n_embd=16), tokenizer, "cpu")


def random_archs(space, n=12, seed=0):
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


def test_a_cifar_network_has_the_parameters_of_its_segments_summed(space):
    for arch in random_archs(space):
        payloads = (space.tag,) + tuple(segment.payload for segment in space.segments(arch))
        assert space.param_bounds.spent(payloads) == space.params(arch)


def test_every_prefix_of_a_network_is_bounded_around_its_parameters(space):
    bounds = space.param_bounds
    for arch in random_archs(space, n=6, seed=1):
        params, state = space.params(arch), space.start()
        for token in space.encode(arch).split():
            state = space.step(state, token)
            low, high = bounds.of(state)
            assert low <= params <= high


def test_the_bounds_are_reached_and_a_window_holds_every_sample(space, random_gpt):
    low, high = space.param_bounds.of(space.start())
    assert 0 < low < 5_000 and high > 50_000_000  # a 10-block network of pools; 20 blocks at width 512
    smallest = random_gpt.sample(space, [[]], budgets=[(0, low)])[0]
    assert space.params(space.decode(" ".join(smallest.tokens))) == low
    for floor, cap in ((200_000, 300_000), (750_000, 1_000_000), (3_000_000, 5_000_000)):
        drawn = random_gpt.sample(space, [[]] * 6, generator=torch.Generator().manual_seed(0),
                                  budgets=[(floor, cap)] * 6)
        for sampled in drawn:
            assert floor <= space.params(space.decode(" ".join(sampled.tokens))) <= cap


@pytest.mark.parametrize("cap", [300_000, 1_000_000, 5_000_000, 20_000_000])
def test_sampling_under_a_cap_lands_in_the_bucket_below_the_cap_in_one_draw(space, random_gpt, cap):
    floor = T.bucket_floor(T.cap_bucket(cap))
    assert cap / floor < 1.6  # the window: at most one and a half eighth-decade buckets below the cap
    calls = []
    sample = random_gpt.sample
    random_gpt.sample = lambda *args, **kwargs: calls.append(1) or sample(*args, **kwargs)
    try:
        archs = random_gpt.complete(space, [""], n=4, max_params=cap, seed=1)[0]
    finally:
        random_gpt.sample = sample
    assert len(calls) == 1  # every draft in one batch, none drawn again
    for arch in archs:
        assert space.is_valid(arch) and floor <= space.params(arch) <= cap


def test_each_sample_under_a_cap_is_the_likeliest_of_its_drafts(space, random_gpt):
    cap, seed = 1_000_000, 5
    window = (T.bucket_floor(T.cap_bucket(cap)), cap)
    condition = [T.cap_bucket(cap, random_gpt.vocab)]
    drafts = random_gpt.sample(space, [[]] * 8, generator=torch.Generator().manual_seed(seed),
                               conditions=[condition] * 8, budgets=[window] * 8)
    drafts = [space.decode(" ".join(d.tokens)) for d in drafts]
    scores = random_gpt.score(space, drafts, max_params=cap)
    chosen = random_gpt.complete(space, [""], n=2, max_params=cap, seed=seed, drafts=4)[0]
    assert chosen == [drafts[max(range(k, k + 4), key=scores.__getitem__)] for k in (0, 4)]


def test_a_window_between_two_networks_keeps_the_cap(space, random_gpt):
    low, _ = space.param_bounds.of(space.start())
    drawn = random_gpt.sample(space, [[]] * 3, budgets=[(low + 1, low + 1)] * 3)
    for sampled in drawn:  # nothing has exactly low + 1 parameters here: the floor gives way, the cap holds
        assert space.params(space.decode(" ".join(sampled.tokens))) <= low + 1


def test_a_cap_below_the_smallest_network_or_a_prefix_is_a_one_line_error(space, random_gpt):
    with pytest.raises(GptnasError, match="the smallest network of space cifar has 2,370 parameters, more than "
                                          "max_params=1,000; raise max_params"):
        random_gpt.complete(space, [""], max_params=1000)
    wide = " ".join(space.encode(random_archs(space, 1)[0]).split()[:3])  # the space tag and a stem
    with pytest.raises(GptnasError, match="the smallest network of prefix"):
        random_gpt.complete(space, [wide], max_params=2_000)


def test_a_bucket_floor_is_one_above_the_edge_below():
    assert T.bucket_floor("p10k") == 0
    assert T.bucket_floor("p1m") == T.PARAM_EDGES[T.PARAM_TOKENS.index("p750k")] + 1
    assert T.params_bucket(T.bucket_floor("p1m")) == "p1m"


@pytest.mark.parametrize("name", [n for n in space_names() if n != "cifar"])
def test_spaces_whose_parameters_do_not_add_up_have_no_bounds(name):
    assert get_space(name).param_bounds is None
