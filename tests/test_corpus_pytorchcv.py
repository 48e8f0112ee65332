"""The CIFAR-scale corpus: pytorchcv's networks traced with their quality and cost tokens, and the
cost-only samples of the `cifar` space."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from gptnas.corpus import pytorchcv as pcv
from gptnas.corpus.build import Skipped
from gptnas.corpus.space_costs import cost_samples
from gptnas.language import tokens
from gptnas.spaces import get_space

DATA = Path(__file__).resolve().parents[1] / "data"


def shipped(name: str) -> list[dict]:
    return [json.loads(line) for line in open(DATA / name)]


@pytest.fixture(scope="module")
def metainfo():
    pytest.importorskip("pytorchcv", reason='pytorchcv is not installed (pip install -e ".[corpus]")')
    return pcv.metainfo()


def test_cifar_networks_trace_with_the_csvs_parameter_count_and_their_tokens(metainfo):
    rows, modules = metainfo
    wanted = {"resnet20_cifar10", "densenet40_k12_bc_cifar100", "wrn16_10_svhn", "nin_cifar10", "resnet56_cifar10"}
    records, skipped = pcv.cifar_records([r for r in rows if r["model_name"] in wanted], modules, pcv.MAX_TOKENS)
    assert skipped.count() == 0 and {r["name"] for r in records} == wanted
    csv_params = {r["model_name"]: int(r["net_weights"]) for r in rows}
    for r in records:
        words = r["text"].split()
        assert r["params"] == csv_params[r["name"]]
        assert words[1] == tokens.params_bucket(r["params"]) and words[2] == f"space:{r['dataset']}"
        assert words[3].startswith("conv") and "/s" not in words[3]  # a 32x32 stem keeps the resolution
    resnet20 = next(r for r in records if r["name"] == "resnet20_cifar10")
    assert resnet20["error"] == 5.97 and resnet20["family"] == "resnet" and "1512.03385" in resnet20["citation"]
    # the three CIFAR-10 networks ranked among themselves: resnet56 (4.52 %) above resnet20 (5.97 %) above NIN (7.43 %)
    levels = {r["name"]: r["quality"] for r in records if r["dataset"] == "cifar10"}
    assert levels["resnet56_cifar10"] > levels["resnet20_cifar10"] > levels["nin_cifar10"]


def test_a_family_the_language_cannot_write_is_left_out_with_its_reason(metainfo):
    rows, modules = metainfo
    skipped = Skipped()
    out = pcv.trace_rows([r for r in rows if r["model_name"] in ("diaresnet20_cifar10", "xdensenet40_2_k24_bc_cifar10")],
                         modules, lambda row: "cifar10", pcv.MAX_TOKENS, skipped)
    assert out == []
    assert sorted(skipped.reasons) == ["GptnasError: unsupported op call_function 'zeros_like'",
                                       "its spelling has other parameters than the CSV's count"]


def test_quality_is_the_quintile_within_a_dataset_and_cost_the_parameter_bucket():
    records = [{"name": f"n{i}", "dataset": d, "error": e, "weights_from": None, "params": 10**5 * (i + 1),
                "text": f"space:{d} conv3x3 w16"} for i, (d, e) in enumerate(
                    [("cifar10", 3.0), ("cifar10", 9.0), ("cifar10", 5.0), ("svhn", 9.0), ("svhn", 2.0), ("svhn", None)])]
    out = pcv.condition(records, lambda r: r["dataset"])
    # ranked within each dataset: CIFAR-10's three spread over q0..q4, SVHN's two take q1 and q3
    assert [r["quality"] for r in out] == [4, 0, 2, 1, 3, None]
    assert out[0]["text"] == "q4 p100k space:cifar10 conv3x3 w16"
    assert out[5]["text"] == "p750k space:svhn conv3x3 w16"  # no result: a cost token only


def test_the_shipped_cifar_corpus_holds_its_tokens():
    records = shipped(pcv.CIFAR_FILE)
    assert len(records) >= 150 and {r["dataset"] for r in records} == set(pcv.DATASETS)
    by_dataset = defaultdict(list)
    for r in records:
        if r["quality"] is not None:
            by_dataset[r["dataset"]].append(r)
    for members in by_dataset.values():
        levels = tokens.quality_levels([-r["error"] for r in members])
        assert [r["quality"] for r in members] == levels
    for r in records:
        condition, rest = tokens.split_condition(r["text"].split())
        assert condition == tokens.condition(r["quality"], r["params"]) and rest[0] == f"space:{r['dataset']}"
        assert r["n_tokens"] == len(r["text"].split()) <= pcv.MAX_TOKENS


def test_cost_samples_carry_their_bucket_and_no_quality():
    records = cost_samples("cifar", per_bucket=2, draws=40, seed=0)
    space = get_space("cifar")
    per_bucket = defaultdict(int)
    for r in records:
        words = r["text"].split()
        assert r["quality"] is None and words[0] == tokens.params_bucket(r["params"]) and words[1] == "space:cifar"
        assert space.cost(space.decode(" ".join(words[1:])))["params"] == r["params"]
        per_bucket[words[0]] += 1
    assert max(per_bucket.values()) <= 2
    assert records == cost_samples("cifar", per_bucket=2, draws=40, seed=0)  # deterministic


def test_the_shipped_cost_samples_span_the_space():
    records = shipped("cifar_space_costs.jsonl")
    buckets = {r["text"].split()[0] for r in records}
    assert {"p100k", "p1m", "p5.6m", "p18m"} <= buckets
    space = get_space("cifar")
    for r in random.Random(0).sample(records, 5):
        assert space.cost(space.decode(" ".join(r["text"].split()[1:])))["params"] == r["params"]
