"""Quality and cost tokens of the corpus: the rule on tiny tables written here, and the shipped files."""

import shutil
from collections import Counter
from pathlib import Path

import pytest

from gptnas.corpus import build as corpus
from gptnas.corpus.quality import TIMM_RESULTS_DIR, annotate, read_timm_results
from gptnas.errors import GptnasError
from gptnas.files import read_jsonl
from gptnas.language import tokens

DATA = Path(__file__).resolve().parent.parent / "data"
SHIPPED = (DATA / corpus.FINETUNE_FILE, DATA / corpus.PRETRAIN_FILE)

RESULTS = """model,img_size,top1,top1_err,top5,top5_err,param_count,crop_pct,interpolation
big.fb_in22k_ft_in1k,224,88.0,12.0,98.0,2.0,1.0,1.0,bicubic
plain.in1k,224,70.0,30.0,90.0,10.0,1.0,1.0,bicubic
plain.ra_in1k,288,76.0,24.0,90.0,10.0,1.0,1.0,bicubic
plain.ra_in1k,224,75.0,25.0,90.0,10.0,1.0,1.0,bicubic
alias.a1_in1k,224,77.0,23.0,90.0,10.0,1.0,1.0,bicubic
old.in1k,224,85.0,15.0,90.0,10.0,1.0,1.0,bicubic
small.in1k,224,60.0,40.0,90.0,10.0,1.0,1.0,bicubic
"""
METADATA = "model,pretrain\nold,jft300m-ns\nplain,in1k\n"


def record(name, params=1_000_000, aliases=(), text="space:timm conv3x3 w8 classifier"):
    return {"name": name, "source": "timm", "text": text, "n_tokens": len(text.split()), "params": params,
            "aliases": list(aliases)}


@pytest.fixture
def results(tmp_path):
    (tmp_path / "results-imagenet.csv").write_text(RESULTS)
    (tmp_path / "model_metadata-in1k.csv").write_text(METADATA)
    return read_timm_results(tmp_path, check_pins=False)


def test_quality_comes_from_the_best_imagenet_1k_only_result_over_name_and_aliases(results):
    plain, aliased, small = annotate([record("plain"), record("other", aliases=["alias"]), record("small")], results)
    # plain: the ra weights at their configured 224 px beat the plain ones; the 288 px test-size row is dropped
    assert (plain["top1"], plain["pretrain"], plain["quality_source"]) == (
        75.0, "in1k", "plain.ra_in1k (results-imagenet.csv, 224 px)")
    assert aliased["top1"] == 77.0 and small["quality"] < plain["quality"] < aliased["quality"]
    assert aliased["text"].split()[:3] == [tokens.quality(aliased["quality"]), "p1m", "space:timm"]


def test_weights_trained_with_extra_data_set_no_quality(results):
    in22k, jft = annotate([record("big", params=300_000_000), record("old")], results)
    assert in22k["quality"] is None and in22k["top1"] == 88.0 and in22k["pretrain"] == "in22k"
    assert in22k["quality_source"].startswith("none: only results with extra pretraining data")
    assert in22k["text"].split()[:2] == ["p316m", "space:timm"]  # a cost token, no quality token
    assert jft["quality"] is None and jft["pretrain"] == "jft300m"  # a bare `in1k` tag: the metadata decides


def test_a_record_without_a_result_gets_a_cost_token_and_no_quality_token(results):
    [unknown] = annotate([record("unpublished", params=5_000)], results)
    assert (unknown["top1"], unknown["quality"], unknown["pretrain"]) == (None, None, None)
    assert unknown["quality_source"] == "none: no published ImageNet-1k result for unpublished"
    assert unknown["text"] == "p10k space:timm conv3x3 w8 classifier" and unknown["n_tokens"] == 5


def test_annotating_again_changes_nothing_and_replaces_stale_condition_tokens(results):
    records = [record("plain"), record("small"), record("unpublished", text="q4 p1g space:timm conv3x3 w8 classifier")]
    once = annotate(records, results)
    assert annotate(once, results) == once
    assert once[2]["text"] == "p1m space:timm conv3x3 w8 classifier"


def test_results_that_are_not_the_pinned_copy_are_refused(tmp_path):
    (tmp_path / "results-imagenet.csv").write_text(RESULTS)
    (tmp_path / "model_metadata-in1k.csv").write_text(METADATA)
    with pytest.raises(GptnasError, match="is not the pinned copy"):
        read_timm_results(tmp_path)


def test_a_missing_results_folder_is_a_one_line_error(tmp_path, capsys):
    for name in SHIPPED:
        shutil.copy(name, tmp_path)
    shutil.copy(DATA / "README.md", tmp_path)
    assert corpus.main(["--annotate_only", "--out", str(tmp_path), "--timm_results", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "results-imagenet.csv does not exist" in error


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_texts_open_with_their_condition_tokens_then_the_space_tag(path):
    for r in read_jsonl(path):
        condition, rest = tokens.split_condition(r["text"].split())
        assert condition == tokens.condition(r["quality"], r["params"]), r["name"]
        assert rest[0] == f"space:{r['source']}" and r["n_tokens"] == len(condition) + len(rest)
        assert (r["quality"] is None) == (r["pretrain"] != "in1k"), r["name"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_quality_levels_of_each_shipped_file_are_about_even(path):
    levels = Counter(r["quality"] for r in read_jsonl(path) if r["quality"] is not None)
    assert sorted(levels) == list(range(tokens.QUALITY_LEVELS))
    assert all(0.15 <= n / levels.total() <= 0.25 for n in levels.values()), levels


def test_annotating_the_shipped_files_again_gives_the_same_bytes(tmp_path):
    if not (TIMM_RESULTS_DIR / "results-imagenet.csv").is_file():
        pytest.skip(f"timm's published results are not in {TIMM_RESULTS_DIR}")
    names = [p.name for p in SHIPPED] + ["README.md"]
    for name in names:
        shutil.copy(DATA / name, tmp_path)
    assert corpus.main(["--annotate_only", "--out", str(tmp_path)]) == 0
    for name in names:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
