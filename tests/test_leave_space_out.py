"""Leave-space-out transfer: a GPT that searches a space never saw a table of that space."""

import json

import pytest

from gptnas.gpt import provenance, transfer
from gptnas.gpt.folder import load_pretrained
from gptnas.language.tokens import QUALITY_TOKENS, split_condition
from gptnas.spaces import get_space
from gptnas.tables import TABLES, TABLES_BY_SPACE


@pytest.mark.parametrize("space", sorted(TABLES_BY_SPACE))
def test_the_transfer_corpus_of_a_space_holds_no_table_of_it(space):
    tables = transfer.transfer_tables(space)
    assert not provenance.leaked(tables, space)
    assert all(provenance.table_space(name) != space for name in tables)


def test_every_table_belongs_to_exactly_one_space():
    for name in TABLES:
        assert sum(name in by_dataset.values() for by_dataset in TABLES_BY_SPACE.values()) == 1
    assert provenance.leaked(["nas-bench-201:cifar100", "nas-bench-macro"], "nas-bench-201") == ["nas-bench-201:cifar100"]


def test_table_records_carry_the_quality_of_their_rank_and_read_back(requires_table):
    requires_table("nas-bench-macro")
    records = transfer.table_records("nas-bench-macro")
    space = get_space("nas-bench-macro")
    assert {r["source"] for r in records} == {"table:nas-bench-macro"}
    counts = [sum(r["text"].startswith(q + " ") for r in records) for q in QUALITY_TOKENS]
    assert max(counts) - min(counts) <= len(records) // 100 + 5  # quintiles
    for record in records[:50]:
        condition, architecture = split_condition(record["text"].split())
        assert len(condition) == 1 and space.key(space.decode(" ".join(architecture))) == record["name"]


def test_a_trained_model_records_the_tables_it_saw(tmp_path):
    from gptnas.gpt.train import TrainConfig, train

    space = get_space("nas-bench-201")
    corpus = tmp_path / "corpus.jsonl"
    lines = [{"text": f"q{i % 5} " + space.encode(space.from_key(key)), "source": "table:nas-bench-201:cifar10"}
             for i, key in enumerate(["|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|none~2|",
                                      "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|none~2|"])]
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = TrainConfig(train_files=[str(corpus)], output_dir=str(tmp_path / "first"), max_train_steps=1,
                         num_warmup_steps=0, n_layer=1, n_head=1, n_embd=16, block_size=128, report_to="none")
    assert train(config) == 0
    model, _ = load_pretrained(tmp_path / "first")
    assert provenance.tables_seen(model) == ["nas-bench-201:cifar10"]
    assert provenance.leaked(provenance.tables_seen(model), "nas-bench-201")


def _model_that_saw(tmp_path, tables):
    import shutil

    from gptnas.gpt.folder import default_model_dir

    folder = tmp_path / "gpt"
    shutil.copytree(default_model_dir(), folder)
    config = json.loads((folder / "config.json").read_text())
    config[provenance.TABLES_KEY] = tables
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _gpt_settings(benchmarks, gpt, tmp_path):
    from gptnas.bench.harness import plan

    tasks = plan(benchmarks, ["gpt-ga", "ga"], 1, 20, {}, tmp_path / "study", gpt)
    return {task.benchmark.space: task.settings.get("gpt") for task in tasks if task.strategy == "gpt-ga"}


def test_every_benchmark_searches_with_a_gpt_that_never_saw_its_space(tmp_path):
    from gptnas.bench.harness import DEFAULT_BENCHMARKS, Benchmark

    benchmarks = [Benchmark.parse(name) for name in DEFAULT_BENCHMARKS]
    for space, gpt in _gpt_settings(benchmarks, None, tmp_path).items():
        assert not provenance.leaked(provenance.tables_seen_by(gpt), space), (space, gpt)


def test_the_harness_refuses_a_gpt_that_saw_a_table_of_the_searched_space(tmp_path):
    from gptnas.bench.harness import Benchmark
    from gptnas.errors import GptnasError

    folder = _model_that_saw(tmp_path, ["nas-bench-201:cifar100"])
    with pytest.raises(GptnasError, match="trained on the table nas-bench-201:cifar100"):
        _gpt_settings([Benchmark.parse("nas-bench-201:cifar10")], str(folder), tmp_path)
    assert _gpt_settings([Benchmark.parse("nas-bench-macro")], str(folder), tmp_path) == {"nas-bench-macro": str(folder)}


def test_transfer_gives_each_space_its_own_leave_space_out_gpt(tmp_path, monkeypatch):
    from gptnas.bench.harness import Benchmark

    built = {}

    def fake_model_for(space, base=None, root=None):  # building a real one takes minutes: the rule is what is tested
        built[space] = _model_that_saw(tmp_path / space, transfer.transfer_tables(space))
        return built[space]

    monkeypatch.setattr(transfer, "model_for", fake_model_for)
    benchmarks = [Benchmark.parse(name) for name in ("nas-bench-macro", "nas-bench-201:cifar10", "nas-bench-201:cifar100")]
    settings = _gpt_settings(benchmarks, "transfer", tmp_path)
    assert settings == {space: str(folder) for space, folder in built.items()}
    assert set(built) == {"nas-bench-macro", "nas-bench-201"}  # one model per space, shared by its datasets
