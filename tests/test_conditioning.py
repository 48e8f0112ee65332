"""Conditioning tokens: the language, the tokenizer, conditioned generation and scoring, online conditioning."""

import math
import random

import pytest
from transformers import AutoTokenizer

from gptnas.errors import GptnasError
from gptnas.gpt.folder import default_model_dir
from gptnas.gpt.inputs import lower_cost
from gptnas.gpt.model import ArchGPT, new_model
from gptnas.language import tokens as T
from gptnas.corpus.tokenizer import build_tokenizer, space_words
from gptnas.search.adapt import ranked
from gptnas.spaces import get_space, space_names


def test_quality_levels_are_even_quintiles_with_ties_sharing_their_mean_rank():
    assert T.quality_levels(list(range(10))) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert T.quality_levels([7.0, 7.0, 7.0, 1.0]) == [3, 3, 3, 0]
    assert T.quality_levels([1.0, 2.0, 3.0]) == [0, 2, 4]
    rng = random.Random(0)
    levels = T.quality_levels([rng.random() for _ in range(1000)])
    assert all(190 <= levels.count(level) <= 210 for level in range(5))


def test_parameter_buckets_are_monotone_and_named_by_their_upper_edge():
    assert T.params_bucket(1_000_000) == "p1m" and T.params_bucket(1_000_001) == "p1.3m"
    assert T.params_bucket(1) == "p10k" and T.params_bucket(10**12) == "p1g"
    assert len(set(T.PARAM_TOKENS)) == len(T.PARAM_TOKENS) == 41
    buckets = [T.PARAM_TOKENS.index(T.params_bucket(10 ** (e / 10))) for e in range(30, 100)]
    assert buckets == sorted(buckets)


@pytest.mark.parametrize("cap", [5_000, 10_001, 300_000, 1_000_000, 1_100_000, 5_000_000, 20_000_000, 10**10])
def test_a_cap_prompts_a_bucket_within_one_step_below_it_whose_networks_mostly_fit(cap):
    index = T.PARAM_TOKENS.index(T.cap_bucket(cap))
    lower = T.PARAM_EDGES[index - 1] if index else 0
    upper = T.PARAM_EDGES[index]
    assert lower < cap and upper >= cap / 1.34 or index == len(T.PARAM_EDGES) - 1
    if upper > cap and lower:  # the cap's own bucket: at least half of it (log scale) lies under the cap
        assert math.log(cap / lower) >= math.log(upper / lower) / 2


def test_a_redraw_lowers_the_cost_token_one_bucket_at_a_time():
    assert lower_cost(["q4", "p1m"], 0, T.PARAM_TOKENS) == ["q4", "p1m"]
    assert lower_cost(["q4", "p1m"], 2, T.PARAM_TOKENS) == ["q4", "p562k"]
    assert lower_cost(["p13k"], 5, T.PARAM_TOKENS) == ["p10k"]  # never below the lowest
    assert lower_cost(["q4"], 3, T.PARAM_TOKENS) == ["q4"]  # no cost token, nothing to lower
    assert lower_cost(["p1m"], 1, T.PARAM_TOKENS[::2]) == ["p562k"]  # among the GPT's own tokens


def test_a_gpt_with_fewer_cost_tokens_is_prompted_with_the_largest_of_its_own_under_the_cap():
    quarter_decades = T.PARAM_TOKENS[::2]  # the cost tokens of GPTs trained before eighth decades
    assert T.cap_bucket(1_200_000) == "p1.3m" and T.cap_bucket(1_200_000, quarter_decades) == "p1m"
    assert T.cap_bucket(5_000_000, quarter_decades) == T.cap_bucket(5_000_000) == "p5.6m"


def test_a_condition_reads_back_and_holds_no_layer():
    prefix = T.condition(4, 3_000_000)
    assert prefix == ["q4", "p3.2m"]
    assert T.split_condition(prefix + ["space:cifar", "conv3x3"]) == (prefix, ["space:cifar", "conv3x3"])
    assert T.condition(None, None) == [] and T.condition(None, 500) == ["p10k"]
    assert not any(T.is_layer(t) for t in T.CONDITION_TOKENS)
    with pytest.raises(ValueError):
        T.quality(5)


@pytest.mark.parametrize("folder", ["tokenizer", str(default_model_dir())])
def test_shipped_tokenizers_hold_every_conditioning_token(folder):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) <= 2000
    text = "q4 p1m " + get_space("cifar").encode(get_space("cifar").sample(random.Random(0)))
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]


@pytest.fixture(scope="module")
def gpt():
    return ArchGPT.from_pretrained(device="cpu")


@pytest.mark.parametrize("space", space_names())
def test_generation_under_the_best_quality_is_always_valid(gpt, space):
    space = get_space(space)
    for arch in gpt.complete(space, [""], n=8, quality=4, seed=3)[0]:
        assert space.key(space.decode(space.encode(arch))) == space.key(arch)


@pytest.mark.parametrize("cap", [300_000, 1_000_000, 5_000_000, 20_000_000])
def test_generation_under_every_cap_is_valid_and_within_a_quarter_below_the_cap(gpt, cap):
    space = get_space("cifar")
    floor = math.ceil(0.75 * cap)
    for arch in gpt.complete(space, [""], n=6, quality=4, max_params=cap, seed=0)[0]:
        assert space.is_valid(arch) and floor <= space.params(arch) <= cap


def test_a_cap_no_sample_meets_is_a_one_line_error(gpt, monkeypatch):
    """In a space without parameter bounds, samples above the cap are drawn again, a limited number of times."""
    from gptnas.gpt import model

    monkeypatch.setattr(model, "MAX_REDRAWS", 2)
    with pytest.raises(GptnasError, match="stayed above max_params=1000 after 2 draws; raise max_params"):
        gpt.complete("nas-bench-macro", [""], n=2, max_params=1000)


def test_conditioned_scores_and_the_quality_ratio(gpt):
    space = get_space("nas-bench-201")
    archs = [space.sample(random.Random(i)) for i in range(4)]
    best, plain = gpt.score(space, archs, quality=4), gpt.score(space, archs)
    assert best != plain  # the condition changes the likelihood
    assert gpt.quality_ratio(space, archs) == pytest.approx([b - p for b, p in zip(best, plain)])


@pytest.mark.parametrize("kwargs, message", [
    ({"quality": 5}, "quality must be an integer 0..4"),
    ({"quality": "best"}, "quality must be an integer 0..4"),
    ({"max_params": 0}, "max_params must be a positive integer"),
    ({"drafts": 0}, "drafts must be an integer >= 1"),
    ({"drafts": 10**6}, "drafts must be at most 1,000"),
])
def test_bad_conditions_are_one_line_errors(gpt, kwargs, message):
    with pytest.raises(GptnasError, match=message):
        gpt.complete("nas-bench-201", [""], n=1, **kwargs)


def test_a_model_without_conditioning_tokens_says_so():
    tokenizer = build_tokenizer(space_words())
    old = ArchGPT(new_model(tokenizer, n_layer=1, n_head=1, n_embd=16), tokenizer, device="cpu")
    with pytest.raises(GptnasError, match="has no token 'q4'"):
        old.complete("nas-bench-201", [""], n=1, quality=4)


class _Evaluation:
    def __init__(self, fitness, ok=True):
        self.fitness, self.ok = fitness, ok


class _Store:
    def __init__(self, rows):
        self.rows = rows

    def history(self):
        return self.rows


def test_online_conditioning_learns_from_every_evaluation_under_its_rank():
    rows = [(0, f"k{i}", f"space:x a{i}", None, _Evaluation(float(i))) for i in range(10)]
    rows.append((0, "bad", "space:x broken", None, _Evaluation(0.0, ok=False)))
    texts, weights = ranked(_Store(rows))
    assert len(texts) == 20 and weights == [1.0] * 20  # each success twice: under its quality token, and plain
    assert texts[0] == "q0 space:x a0" and texts[9] == "q4 space:x a9" and texts[10] == "space:x a0"
    assert not any("broken" in t for t in texts)
