"""GPT reconstruction: rewritten candidates stay valid networks of their space."""

import random

import pytest

from gptnas.gpt.model import ArchGPT
from gptnas.search.reconstruct import reconstruct, selected_segments
from gptnas.spaces import get_space


@pytest.fixture(scope="module")
def gpt():
    return ArchGPT.from_pretrained(device="cpu")


@pytest.mark.parametrize("candidates, ranking", [(1, "likelihood"), (3, "likelihood"), (3, "gain")])
def test_every_rewrite_is_a_valid_network_of_the_space(gpt, candidates, ranking):
    space = get_space("cifar")  # its global rules (at most 3 strided blocks ...) reject some rewrites
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(6)]
    out, stats = reconstruct(gpt, space, archs, 0.5, rng, seed=0, candidates=candidates, ranking=ranking)
    assert len(out) == len(archs) and stats.selected > 0 and stats.rewritten > 0
    for arch in out:
        assert space.decode(space.encode(arch)) == arch and space.is_valid(arch)


def test_the_rate_is_the_share_of_segments_rewritten_by_segment_and_far_more_by_layer():
    space = get_space("cifar")  # blocks of 1 to 19 layers
    archs = [space.sample(random.Random(seed)) for seed in range(200)]
    choices = sum(s.is_choice for arch in archs for s in space.segments(arch))
    share = {unit: sum(len(selected_segments(space, arch, 0.4, random.Random(i), unit)) for i, arch in enumerate(archs))
             / choices for unit in ("segment", "layer")}
    assert 0.36 < share["segment"] < 0.44 and share["layer"] > 0.9
    assert all(len(selected_segments(space, arch, 1.0, random.Random(0), "segment")) ==
               sum(s.is_choice for s in space.segments(arch)) for arch in archs[:5])


def test_gain_ranking_follows_the_likelihood_until_the_gpt_is_adapted(gpt):
    space = get_space("nas-bench-201")
    archs = [space.sample(random.Random(seed)) for seed in range(6)]
    runs = [reconstruct(gpt, space, archs, 0.5, random.Random(1), seed=3, candidates=3, ranking=ranking)[0]
            for ranking in ("likelihood", "gain")]
    assert runs[0] == runs[1]


def test_network_ranking_keeps_the_rewrite_that_makes_the_whole_network_likeliest(gpt):
    """Both rankings choose among the same samples where a network has one segment to rewrite; "network"
    scores them with the layers after the segment, so its choice is never less likely as a whole."""
    space = get_space("cifar")
    archs = [space.sample(random.Random(seed)) for seed in range(12)]
    plan_rng = random.Random(0)
    single = [len(selected_segments(space, arch, 0.01, plan_rng)) == 1 for arch in archs]
    runs = {ranking: reconstruct(gpt, space, archs, 0.01, random.Random(0), seed=2, candidates=4, ranking=ranking)[0]
            for ranking in ("likelihood", "network")}
    assert all(space.is_valid(arch) for arch in runs["network"])
    scores = {ranking: gpt.score(space, out) for ranking, out in runs.items()}
    pairs = [(n, p) for n, p, one in zip(scores["network"], scores["likelihood"], single) if one]
    assert len(pairs) >= 3 and all(n >= p - 1e-4 for n, p in pairs)
    assert any(n > p + 1e-4 for n, p in pairs)  # and the layers after the rewrite change the choice somewhere


def test_a_rewrite_outside_the_hard_limits_is_dropped_and_the_likeliest_within_them_kept(gpt):
    space = get_space("nas-bench-201")
    archs = [space.sample(random.Random(seed)) for seed in range(8)]
    free, _ = reconstruct(gpt, space, archs, 0.6, random.Random(2), seed=5, candidates=4)
    convs = lambda arch: sum(op == "nor_conv_3x3" for op in arch)  # noqa: E731  (a stand-in for a latency limit)
    within = lambda arch: convs(arch) <= 1  # noqa: E731
    held, stats = reconstruct(gpt, space, archs, 0.6, random.Random(2), seed=5, candidates=4, feasible=within)
    assert any(not within(a) and a != b for a, b in zip(free, archs))  # unheld, the GPT writes over the limit
    for before, after in zip(archs, held):
        assert after == before or within(after)  # a rewrite over the limit is never kept
    assert stats.changed > 0
    _, none = reconstruct(gpt, space, archs, 0.6, random.Random(2), seed=5, candidates=4, feasible=lambda a: False)
    assert none.rewritten == 0 and none.changed == 0
