"""Segment costs on disk: priced once per machine, the numbers that pricing gives, and a broken store is a miss."""

import logging

from gptnas.spaces import cifar
from gptnas.spaces.cost_store import CostStore


def test_a_stored_cost_is_read_back_by_another_store_of_the_same_code(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sources = [tmp_path / "space.py"]
    sources[0].write_text("WIDTHS = (16, 32)\n")
    first = CostStore("toy", sources)
    assert first.get("(16, 'conv', 8, 10)") is None
    first.put("(16, 'conv', 8, 10)", 1234)
    assert CostStore("toy", sources).get("(16, 'conv', 8, 10)") == 1234
    sources[0].write_text("WIDTHS = (16, 48)\n")  # the code that prices changed: a new store
    changed = CostStore("toy", sources)
    assert changed.path != first.path and changed.get("(16, 'conv', 8, 10)") is None


def test_a_store_that_is_not_a_database_is_a_miss_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sources = [tmp_path / "space.py"]
    sources[0].write_text("")
    store = CostStore("toy", sources)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="gptnas.spaces.cost_store"):
        assert store.get("a") is None
        store.put("a", 1)
        assert store.get("a") is None
    assert len(caplog.records) == 1 and "computed, not cached" in caplog.records[0].getMessage()


def test_the_cifar_space_prices_through_the_store_what_building_the_block_gives(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "space.py").write_text("")
    monkeypatch.setattr(cifar, "_COSTS", CostStore("cifar", [tmp_path / "space.py"]))
    segments = [(None, 24, 8), (24, cifar.Block("resnet_basic", 48, 2), 8), (48, cifar.Block("maxpool", 0, 2), None),
                (96, "head", 1)]
    built = [cifar._priced(cin, payload, side, 10) for cin, payload, side in segments]
    cifar._segment_cost.cache_clear()
    try:
        assert [cifar._segment_cost(cin, payload, side, 10) for cin, payload, side in segments] == built
        cifar._segment_cost.cache_clear()
        monkeypatch.setattr(cifar, "_priced", None)  # from the store alone now
        assert [cifar._segment_cost(cin, payload, side, 10) for cin, payload, side in segments] == built
    finally:
        cifar._segment_cost.cache_clear()
