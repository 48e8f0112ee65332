"""Cost bounds of grammar states: sampling within a parameter window in one draw, reconstruction within limits."""

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import evolve

from gptnas.errors import GptnasError
from gptnas.gpt.model import ArchGPT, new_model
from gptnas.language import tokens as T
from gptnas.language.budget import Budget
from gptnas.search.config import EvolveConfig
from gptnas.search.executors import SerialExecutor
from gptnas.search.reconstruct import reconstruct
from gptnas.search.run import build_search
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


@pytest.mark.parametrize("input_size, num_classes", [(32, 10), (8, 10), (32, 100), (64, 7)])
def test_a_cifar_network_costs_the_sum_of_its_segments(space, input_size, num_classes):
    for arch in random_archs(space, n=8):
        payloads = (space.tag,) + tuple(segment.payload for segment in space.segments(arch))
        cost = space.cost(arch, num_classes, input_size)
        for metric in ("params", "flops"):
            assert space.cost_bounds(metric, input_size, num_classes).spent(payloads) == cost[metric]


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
    smallest = random_gpt.sample(space, [[]], budgets=[[Budget(space.param_bounds, 0, low)]])[0]
    assert space.params(space.decode(" ".join(smallest.tokens))) == low
    for floor, cap in ((200_000, 300_000), (750_000, 1_000_000), (3_000_000, 5_000_000)):
        drawn = random_gpt.sample(space, [[]] * 6, generator=torch.Generator().manual_seed(0),
                                  budgets=[[Budget(space.param_bounds, floor, cap)]] * 6)
        for sampled in drawn:
            assert floor <= space.params(space.decode(" ".join(sampled.tokens))) <= cap


@pytest.mark.parametrize("cap", [300_000, 1_000_000, 5_000_000, 20_000_000])
def test_sampling_under_a_cap_lands_within_a_quarter_below_the_cap_in_one_draw(space, random_gpt, cap):
    floor = math.ceil(0.75 * cap)
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
    window = [Budget(space.param_bounds, math.ceil(0.75 * cap), cap)]
    condition = [T.cap_bucket(cap, random_gpt.vocab)]
    drafts = random_gpt.sample(space, [[]] * 8, generator=torch.Generator().manual_seed(seed),
                               conditions=[condition] * 8, budgets=[window] * 8)
    drafts = [space.decode(" ".join(d.tokens)) for d in drafts]
    scores = random_gpt.score(space, drafts, max_params=cap)
    chosen = random_gpt.complete(space, [""], n=2, max_params=cap, seed=seed, drafts=4)[0]
    assert chosen == [drafts[max(range(k, k + 4), key=scores.__getitem__)] for k in (0, 4)]


def test_a_window_between_two_networks_keeps_the_cap(space, random_gpt):
    low, _ = space.param_bounds.of(space.start())
    drawn = random_gpt.sample(space, [[]] * 3, budgets=[[Budget(space.param_bounds, low + 1, low + 1)]] * 3)
    for sampled in drawn:  # nothing has exactly low + 1 parameters here: the floor gives way, the cap holds
        assert space.params(space.decode(" ".join(sampled.tokens))) <= low + 1


def test_a_cap_below_the_smallest_network_or_a_prefix_is_a_one_line_error(space, random_gpt):
    with pytest.raises(GptnasError, match="the smallest network of space cifar has 2,370 parameters, more than "
                                          "max_params=1,000; raise max_params"):
        random_gpt.complete(space, [""], max_params=1000)
    wide = " ".join(space.encode(random_archs(space, 1)[0]).split()[:3])  # the space tag and a stem
    with pytest.raises(GptnasError, match="the smallest network of prefix"):
        random_gpt.complete(space, [wide], max_params=2_000)


@pytest.mark.parametrize("name", [n for n in space_names() if n != "cifar"])
def test_spaces_whose_costs_do_not_add_up_have_no_bounds(name):
    assert get_space(name).param_bounds is None and get_space(name).cost_bounds("flops") is None


@pytest.mark.parametrize("metric, cap", [("flops", 5_120_000), ("params", 150_000)])
def test_reconstruction_under_a_limit_writes_segments_that_keep_the_network_within_it(space, random_gpt, metric, cap):
    """Each rewritten segment is followed by the rest of the network as it was: the limit holds for the whole."""
    bounds = space.cost_bounds(metric, 8, 10)
    cost = lambda arch: space.cost(arch, 10, 8)[metric]  # noqa: E731
    rng, archs = random.Random(2), []
    while len(archs) < 8:
        arch = space.sample(rng)
        if cost(arch) <= cap:
            archs.append(arch)
    free, _ = reconstruct(random_gpt, space, archs, 0.3, random.Random(1), seed=1)
    bounded, stats = reconstruct(random_gpt, space, archs, 0.3, random.Random(1), seed=1, limits=[(bounds, cap)])
    assert any(cost(arch) > cap for arch in free)  # a GPT that knows nothing breaks the limit unless held to it
    assert stats.changed >= 6 and all(cost(arch) <= cap for arch in bounded)


def test_a_gpt_ga_search_under_a_flops_limit_rewrites_within_it(tmp_path):
    """The search hands its limits, priced for its evaluator's images, to reconstruction."""
    out = tmp_path / "run"
    cap = 40_000_000  # MACs at 32x32, where the proxy scores digits
    assert evolve.main(["--space", "cifar", "--evaluator", "proxy", "--dataset", "digits", "--strategy", "gpt-ga",
                        "--population", "4", "--generations", "1", "--max_flops", str(cap), "--seed", "3",
                        "--output_dir", str(out)]) == 0
    log = json.loads((out / "reconstruction.json").read_text())
    # The uniform initial samples may start over the limit; a rewrite that leaves one over it is dropped (and
    # the limits then mutate the network), so not every network the GPT rewrote comes out changed.
    assert sum(entry["changed"] for entry in log) >= 1
    with open(out / "evaluations.csv", newline="") as f:
        assert all(int(row["flops"]) <= cap for row in csv.DictReader(f))


def test_gpt_ga_prices_its_limits_for_the_images_its_evaluator_reads(tmp_path):
    config = EvolveConfig.from_flags(dict(space="cifar", dataset="digits", strategy="gpt-ga", max_params=400_000,
                                          max_flops=6_000_000, output_dir=str(tmp_path)))
    search = build_search(config, tmp_path, SerialExecutor(), show_progress=False)
    size, classes = search.evaluator.input_size, search.evaluator.num_classes
    assert size == 8 and search.strategy.cost_limits() == [(search.space.cost_bounds("params", 8, classes), 400_000),
                                                           (search.space.cost_bounds("flops", 8, classes), 6_000_000)]
    search.executor.close()


def test_gpt_ga_samples_its_initial_population_within_the_parameter_cap(tmp_path):
    """--init gpt under --max_params: the GPT's own networks, each with 75-100 % of the cap, none repaired."""
    out, cap = tmp_path / "run", 1_000_000
    assert evolve.main(["--space", "cifar", "--evaluator", "proxy", "--dataset", "digits", "--strategy", "gpt-ga",
                        "--init", "gpt", "--no-initial_reconstruction", "--population", "4", "--generations", "0",
                        "--max_params", str(cap), "--output_dir", str(out)]) == 0
    with open(out / "evaluations.csv", newline="") as f:
        params = [int(row["params"]) for row in csv.DictReader(f)]
    assert len(params) == 4 and all(0.75 * cap <= p <= cap for p in params)
