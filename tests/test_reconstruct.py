"""GPT reconstruction: rewritten candidates stay valid networks of their space."""

import random

import pytest

from gptnas.gpt.model import ArchGPT
from gptnas.search.reconstruct import reconstruct
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


def test_gain_ranking_follows_the_likelihood_until_the_gpt_is_adapted(gpt):
    space = get_space("nas-bench-201")
    archs = [space.sample(random.Random(seed)) for seed in range(6)]
    runs = [reconstruct(gpt, space, archs, 0.5, random.Random(1), seed=3, candidates=3, ranking=ranking)[0]
            for ranking in ("likelihood", "gain")]
    assert runs[0] == runs[1]


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
