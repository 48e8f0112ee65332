"""Constrained generation: only valid architectures, reproducible, on any model."""

import pytest
import torch
from transformers import AutoTokenizer

from gptnas.errors import GptnasError
from gptnas.gpt.model import ArchGPT, new_model
from gptnas.spaces import get_space

SPACES = ["cifar", "nas-bench-macro", "channel-bench-mobilenet", "channel-bench-resnet", "nas-bench-201"]


@pytest.fixture(scope="module")
def gpt():
    """The shipped default model: what evolve.py uses."""
    return ArchGPT.from_pretrained(device="cpu")


@pytest.mark.parametrize("name", SPACES)
def test_every_sample_is_a_valid_architecture(gpt, name):
    space = get_space(name)
    samples = gpt.complete(space, ["", ""], n=16, seed=1)
    assert [len(s) for s in samples] == [16, 16]
    for arch in samples[0] + samples[1]:
        assert space.decode(space.encode(arch)) == arch
        if name == "cifar":
            assert space.is_valid(arch)


def test_same_seed_same_output_and_prefixes_are_kept(gpt):
    space = get_space("cifar")
    arch = space.sample(__import__("random").Random(0))
    prefix = " ".join(space.encode(arch).split()[:30])
    first = gpt.complete(space, [prefix, ""], n=4, temperature=0.8, top_k=20, seed=7)
    assert first == gpt.complete(space, [prefix, ""], n=4, temperature=0.8, top_k=20, seed=7)
    assert first != gpt.complete(space, [prefix, ""], n=4, temperature=0.8, top_k=20, seed=8)
    for completed in first[0]:
        assert space.encode(completed).startswith(prefix + " ")


def test_score_prefers_what_greedy_decoding_writes(gpt):
    space = get_space("nas-bench-201")
    greedy = gpt.complete(space, [""], n=1, temperature=0)[0][0]
    sampled = gpt.complete(space, [""], n=8, temperature=1.5, seed=3)[0]
    scores = gpt.score(space, [greedy, *sampled])
    assert all(s <= 0 for s in scores)
    assert scores[0] >= max(scores[1:]) - 1e-4 or greedy in sampled


def test_out_of_space_prefix_is_refused(gpt):
    with pytest.raises(GptnasError, match="prefix token 'space:cifar' at position 0 is not allowed"):
        gpt.complete("nas-bench-201", ["space:cifar conv3x3"])


def test_tokenizer_and_model_must_match():
    tokenizer = AutoTokenizer.from_pretrained("tokenizer")
    model = new_model(tokenizer, n_layer=1, n_head=1, n_embd=8)
    model.resize_token_embeddings(len(tokenizer) + 3)
    with pytest.raises(GptnasError, match="tokenizer has .* tokens but the model expects"):
        ArchGPT(model, tokenizer, "cpu")


def test_a_fresh_model_generates_valid_architectures_too():
    tokenizer = AutoTokenizer.from_pretrained("tokenizer")
    torch.manual_seed(0)
    gpt = ArchGPT(new_model(tokenizer, n_layer=1, n_head=1, n_embd=16), tokenizer, "cpu")
    for name in SPACES:
        space = get_space(name)
        for arch in gpt.complete(space, [""], n=8, seed=0)[0]:
            assert space.decode(space.encode(arch)) == arch
            if hasattr(space, "is_valid"):
                assert space.is_valid(arch)
