"""The classic CIFAR designs: networks of the cifar space, conditioned on what their papers report, rebuilt byte
for byte."""

import json
from pathlib import Path

import pytest

from gptnas.corpus import cifar as corpus_cifar
from gptnas.language import tokens
from gptnas.spaces import get_space

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def shipped() -> list[dict]:
    return [json.loads(line) for line in (DATA / corpus_cifar.DESIGNS_FILE).read_text().splitlines()]


def _condition(record) -> tuple[list[str], list[str]]:
    return tokens.split_condition(record["text"].split())


def test_every_record_decodes_to_a_valid_cifar_network_of_its_parameter_count(shipped):
    space = get_space("cifar")
    assert len({r["name"] for r in shipped}) == len(shipped) >= 10
    for record in shipped:
        condition, spelling = _condition(record)
        arch = space.decode(" ".join(spelling))
        space.check(arch)
        assert space.encode(arch) == " ".join(spelling)
        assert space.cost(arch) == {"params": record["params"], "flops": record["flops"]}
        assert condition[-1] == tokens.params_bucket(record["params"])
        assert record["source"] == "cifar-papers" and record["citation"] and record["family"]


def test_quality_token_exactly_when_the_cifar10_accuracy_is_known(shipped):
    known = [r for r in shipped if r["cifar10_acc"] is not None]
    levels = tokens.quality_levels([r["cifar10_acc"] for r in known])
    expected = [tokens.condition(level, r["params"]) for r, level in zip(known, levels)]
    assert [_condition(r)[0] for r in known] == expected
    for record in shipped:
        if record["cifar10_acc"] is None:
            assert _condition(record)[0] == [tokens.params_bucket(record["params"])]
    best = max(known, key=lambda r: r["cifar10_acc"])
    assert _condition(best)[0][0] == tokens.BEST_QUALITY


def test_shipped_files_equal_a_fresh_build(tmp_path):
    assert corpus_cifar.main(["--out", str(tmp_path)]) == 0
    for name in (corpus_cifar.DESIGNS_FILE, corpus_cifar.CARD_FILE):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), (
            f"data/{name} is stale: python -m gptnas.corpus.cifar --out data")


def test_an_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert corpus_cifar.main(["--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
