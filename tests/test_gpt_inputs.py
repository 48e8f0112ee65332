"""ArchGPT's inputs: bad arguments, malformed architectures and a mismatched tokenizer are one-line errors."""

import json
import math
import random
import shutil

import pytest
from transformers import AutoTokenizer

from gptnas.errors import GptnasError
from gptnas.gpt.folder import default_model_dir, vocab_sha256
from gptnas.gpt.model import ArchGPT, new_model
from gptnas.spaces import get_space


@pytest.fixture(scope="module")
def gpt():
    return ArchGPT.from_pretrained(device="cpu")


def one_line_error(call, message):
    with pytest.raises(GptnasError) as error:
        call()
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value), str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be an integer >= 1, got 0"),
        ({"n": -2}, "n must be an integer >= 1, got -2"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
        ({"prefixes": None}, "prefixes must be a string of tokens or a list of them"),
        ({"prefixes": ["", None]}, "prefix 1 must be a string of tokens"),
        ({"prefixes": 3}, "prefixes must be a string of tokens or a list of them"),
        ({"temperature": math.nan}, "temperature must be a finite number >= 0 (0: greedy), got nan"),
        ({"temperature": math.inf}, "temperature must be a finite number >= 0 (0: greedy), got inf"),
        ({"temperature": -0.5}, "temperature must be a finite number >= 0 (0: greedy), got -0.5"),
        ({"top_k": 0}, "top_k must be an integer >= 1 (or None for no limit), got 0"),
        ({"top_k": -3}, "top_k must be an integer >= 1 (or None for no limit), got -3"),
    ],
)
def test_bad_generation_arguments_are_one_line_errors(gpt, kwargs, message):
    one_line_error(lambda: gpt.complete("nas-bench-201", **{"prefixes": [""], **kwargs}), message)


def test_the_low_level_sampler_checks_temperature_and_top_k_too(gpt):
    one_line_error(lambda: gpt.sample(get_space("nas-bench-201"), [[]], temperature=math.nan), "temperature must be")
    one_line_error(lambda: gpt.sample(get_space("nas-bench-201"), [[]], top_k=0), "top_k must be")


@pytest.mark.parametrize(
    "space, bad",
    [
        ("nas-bench-201", "not an architecture"),
        ("nas-bench-201", ("nor_conv_3x3", "none")),  # too few edges: once spelled as some other cell
        ("nas-bench-macro", "garbage"),  # once spelled as some network
        ("cifar", "space:cifar conv3x3"),
        ("cifar", None),
        ("channel-bench-resnet", 1234),
    ],
)
def test_scoring_a_malformed_architecture_names_it(gpt, space, bad):
    good = get_space(space).sample(random.Random(0))
    one_line_error(lambda: gpt.score(space, [good, bad]), f"architecture 1 ({bad!r}) is not an architecture of space {space}")


def test_scoring_accepts_an_architecture_in_another_sequence_type(gpt):
    arch = get_space("nas-bench-macro").sample(random.Random(1))
    assert gpt.score("nas-bench-macro", [list(arch)]) == gpt.score("nas-bench-macro", [arch])


def test_a_tokenizer_with_permuted_ids_is_refused(tmp_path):
    folder = tmp_path / "permuted"
    shutil.copytree(default_model_dir(), folder)
    tokenizer_file = folder / "tokenizer.json"
    spec = json.loads(tokenizer_file.read_text())
    vocab = spec["model"]["vocab"]
    vocab["conv3x3"], vocab["conv1x1"] = vocab["conv1x1"], vocab["conv3x3"]  # same size, other ids
    tokenizer_file.write_text(json.dumps(spec))
    one_line_error(lambda: ArchGPT.from_pretrained(folder, device="cpu"), "vocabulary is not the one the model was trained with")


def test_models_record_their_vocabulary_and_the_shipped_one_does_too(tmp_path):
    shipped = json.loads((default_model_dir() / "config.json").read_text())
    assert shipped["gptnas_vocab_sha256"] == vocab_sha256(AutoTokenizer.from_pretrained(default_model_dir()))
    tokenizer = AutoTokenizer.from_pretrained("tokenizer")
    ArchGPT(new_model(tokenizer, n_layer=1, n_head=1, n_embd=8), tokenizer, "cpu").save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["gptnas_vocab_sha256"] == vocab_sha256(tokenizer)
    assert ArchGPT.from_pretrained(tmp_path / "m", device="cpu").complete("nas-bench-201", "", n=1)[0]
