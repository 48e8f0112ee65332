"""Benchmark spaces are exactly the spaces of their tables."""

import random

import pytest
import torch

from gptnas.language.tokens import EOS
from gptnas.spaces import get_space
from gptnas.spaces.base import count_macs, count_params
from gptnas.tables import load_table


def all_sequences(space):
    """Every complete token sequence the grammar allows (finite spaces only)."""
    out, stack = [], [(space.start(), ())]
    while stack:
        state, tokens = stack.pop()
        for token in space.allowed(state):
            if token == EOS:
                out.append(tokens)
            else:
                stack.append((space.step(state, token), tokens + (token,)))
    return out


def test_nas_bench_macro_keys_build_the_published_networks(requires_table):
    requires_table("nas-bench-macro")
    space, table = get_space("nas-bench-macro"), load_table("nas-bench-macro")
    assert len(table) == 3**8
    canonical = {key: space.key(space.from_key(key)) for key in table}
    assert all(table[c]["mean_acc"] == table[key]["mean_acc"] for key, c in canonical.items())  # aliases: canonical values
    assert len(set(canonical.values())) == 3969
    for key in random.Random(0).sample(sorted(set(canonical.values())), 400):  # all: benchmarks/verify_spaces.py
        with torch.device("meta"):
            assert count_params(space.build_model(space.from_key(key))) == table[key]["params"], key


def test_nas_bench_macro_grammar_is_exactly_the_canonical_networks(requires_table):
    requires_table("nas-bench-macro")
    space, table = get_space("nas-bench-macro"), load_table("nas-bench-macro")
    spelled = {" ".join(tokens) for tokens in all_sequences(space)}
    assert spelled == {space.encode(space.from_key(key)) for key in table}
    assert len(spelled) == 3969
    cost = space.cost(space.from_key("22212220"))
    assert cost == {"params": table["22212220"]["params"], "flops": table["22212220"]["flops"]}


@pytest.mark.parametrize("name", ["channel-bench-mobilenet", "channel-bench-resnet"])
def test_channel_bench_keys_and_costs(name, requires_table):
    requires_table(name)
    space, table = get_space(name), load_table(name)
    assert len(table) == 4**7
    assert {space.key(space.from_key(k)) for k in table} == set(table)
    for key in random.Random(0).sample(sorted(table), 150):  # the full check: benchmarks/verify_spaces.py
        assert space.cost(space.from_key(key)) == {"params": table[key]["params"], "flops": table[key]["flops"]}


def test_channel_bench_grammar_spells_every_key():
    space = get_space("channel-bench-resnet")
    assert len({" ".join(t) for t in all_sequences(space)}) == 4**7


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_nas_bench_201_keys_and_isomorphism(dataset, requires_table):
    requires_table(f"nas-bench-201:{dataset}")
    space, table = get_space("nas-bench-201"), load_table(f"nas-bench-201:{dataset}")
    assert len(table) == 5**6
    canonical = {space.key(space.from_key(k)) for k in table}
    assert len(canonical) == 6466 and canonical <= set(table)
    best = max(table, key=lambda k: table[k]["val_acc_200"])
    assert space.key(space.from_key(best)) == best  # the optimum is its own canonical form


def test_nas_bench_201_grammar_spells_all_cells():
    space = get_space("nas-bench-201")
    sequences = all_sequences(space)
    assert len(sequences) == 5**6
    assert len({space.decode(" ".join(t)) for t in sequences}) == 6466


def test_nas_bench_201_params_follow_the_benchmark_formula():
    """Parameters depend only on the op counts: params(M) = 0.073306 + 0.24304 n3x3 + 0.028 n1x1."""
    space = get_space("nas-bench-201")
    checked = set()
    for cell in sorted({space.from_key(space.key(space.sample(random.Random(i)))) for i in range(300)})[:40]:
        n3, n1 = cell.count("nor_conv_3x3"), cell.count("nor_conv_1x1")
        if (n3, n1) in checked:
            continue
        checked.add((n3, n1))
        model = space.build_model(cell)
        assert space.cost(cell) == {"params": count_params(model), "flops": count_macs(model, 32)}
        assert space.cost(cell)["params"] == 73306 + 243040 * n3 + 28000 * n1
    assert len(checked) >= 8
