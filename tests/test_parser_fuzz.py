"""The architecture-string parser on hostile input: whatever it is handed, it decodes or raises
GptnasError (one line, shown to the user), never anything else."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptnas.errors import GptnasError
from gptnas.spaces import get_space, space_names

VOCABULARY = sorted(json.loads((Path(__file__).parents[1] / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"])
WORDS = st.one_of(st.sampled_from(VOCABULARY), st.text(min_size=1, max_size=12).filter(lambda w: not w.isspace()))


def decodes_or_refuses(space, text: str) -> None:
    try:
        arch = space.decode(text)
    except GptnasError as error:
        assert "\n" not in str(error)
        return
    assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("name", space_names())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(WORDS, max_size=60))
def test_random_token_strings_decode_or_raise_gptnas_error(name, words):
    decodes_or_refuses(get_space(name), " ".join(words))


@pytest.mark.parametrize("name", space_names())
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), edits=st.lists(st.tuples(st.sampled_from("dir"), st.integers(0, 10**6),
                                                                  st.sampled_from(VOCABULARY)), min_size=1, max_size=4))
def test_valid_strings_with_tokens_deleted_inserted_or_replaced_decode_or_raise_gptnas_error(name, seed, edits):
    """Near misses (a valid architecture with a few tokens changed) reach deep into the grammar."""
    space = get_space(name)
    tokens = space.encode(space.sample(random.Random(seed))).split()
    for kind, where, token in edits:
        i = where % (len(tokens) + (kind == "i"))
        if kind == "d" and tokens:
            del tokens[i % len(tokens)]
        elif kind == "i":
            tokens.insert(i, token)
        elif tokens:
            tokens[i % len(tokens)] = token
    decodes_or_refuses(space, " ".join(tokens))


@pytest.mark.parametrize("name", space_names())
@settings(max_examples=100, deadline=None)
@given(key=st.text(max_size=80))
def test_random_keys_are_refused_with_gptnas_error(name, key):
    space = get_space(name)
    try:
        arch = space.from_key(key)
    except GptnasError:
        return
    assert space.key(arch) == space.key(space.from_key(space.key(arch)))
