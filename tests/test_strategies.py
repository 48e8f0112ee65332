"""The search core and its strategies: the elimination-rate schedule, the novelty rule, the result store,
checkpoints that hold data only, and settings that reach the evaluator."""

from __future__ import annotations

import json
import random
import sys

import pytest

from gptnas.errors import GptnasError
from gptnas.evaluators import get_evaluator
from gptnas.evaluators.base import Evaluation
from gptnas.search import checkpoint
from gptnas.search.config import EvolveConfig
from gptnas.search.core import Search
from gptnas.search.executors import SerialExecutor
from gptnas.search.store import ResultStore
from gptnas.search.strategies.all import get_strategy, strategy_names
from gptnas.spaces import get_space

SPACE = get_space("nas-bench-macro")


def make_search(tmp_path, **settings) -> Search:
    config = EvolveConfig.from_flags(dict(space="nas-bench-macro", evaluator="benchmark", output_dir=str(tmp_path),
                                          **settings))
    # The core alone, on results the tests store themselves: the table is not read (build_search would load it).
    return Search(config, SPACE, get_evaluator("benchmark", SPACE, "cifar10"), tmp_path, SerialExecutor(),
                  show_progress=False)


def store_some(search: Search, generation: int, count: int, rng: random.Random) -> list:
    """Stores `count` new architectures as evaluated in `generation` (fitness from their order)."""
    archs = []
    while len(archs) < count:
        arch = SPACE.sample(rng)
        key = SPACE.key(arch)
        if key in search.store or any(SPACE.key(a) == key for a in archs):
            continue
        search.store.add(len(search.store) + 1, key, SPACE.encode(arch), generation,
                         Evaluation(50.0 + len(search.store), None, 1, 1, 0.0))
        archs.append(arch)
    return archs


def test_every_strategy_is_found_by_name_and_bad_names_list_the_valid_ones():
    assert strategy_names() == ["ga", "gpt-ga", "random", "regularized-evolution", "tpe", "dehb"]
    valid = "ga, gpt-ga, random, regularized-evolution, tpe, dehb"
    with pytest.raises(GptnasError, match=f"unknown strategy 'gpt'; valid: {valid}"):
        get_strategy("gpt")


def test_tpe_asks_optuna_for_every_choice_of_a_conditional_space_and_stays_within_the_limits(tmp_path):
    config = EvolveConfig.from_flags(dict(space="cifar", evaluator="proxy", dataset="digits", strategy="tpe",
                                          population=5, max_params=300_000, output_dir=str(tmp_path)))
    space = get_space("cifar")
    search = Search(config, space, get_evaluator("proxy", space, "digits"), tmp_path, SerialExecutor(),
                    show_progress=False)
    search.seed_generation(0)
    proposals = search.strategy.propose()
    assert len(proposals) == 5 and all(space.params(arch) <= 300_000 for _, arch in proposals)
    for trial, arch in proposals:  # asked, or made feasible and told to Optuna as a trial of its own
        trial = trial or search.strategy.as_trial(arch, values=[90.0])
        assert len(trial.params) == sum(segment.is_choice for segment in space.segments(arch))  # one per choice
        assert search.strategy.suggested(trial) == arch


def test_tpe_without_optuna_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    with pytest.raises(GptnasError, match=r"--strategy tpe needs Optuna: pip install 'gptnas\[peers\]'"):
        make_search(tmp_path, strategy="tpe")


def test_elimination_rate_decays_linearly_over_the_budget_counted_before_the_generation(tmp_path):
    search = make_search(tmp_path, strategy="gpt-ga", budget=100, elimination_rate=0.4, elimination_rate_final=0.0)
    rng = random.Random(0)
    store_some(search, 0, 20, rng)
    store_some(search, 1, 30, rng)
    rate = search.strategy.elimination_rate
    assert rate(0) == pytest.approx(0.4)  # nothing evaluated before generation 0
    assert rate(1) == pytest.approx(0.4 * (1 - 20 / 100))  # generation 1's own queries do not count yet
    assert rate(2) == pytest.approx(0.4 * (1 - 50 / 100))
    store_some(search, 2, 60, rng)  # past the budget: the final rate, never below it
    assert rate(3) == pytest.approx(0.0)


def test_elimination_rate_decays_over_the_generations_without_a_budget(tmp_path):
    search = make_search(tmp_path, strategy="gpt-ga", generations=10, elimination_rate=0.5, elimination_rate_final=0.1)
    rate = search.strategy.elimination_rate
    assert [round(rate(g), 6) for g in (0, 5, 10, 12)] == [0.5, 0.3, 0.1, 0.1]


def test_novelty_rule_mutates_offspring_evaluated_before_or_twice_in_the_batch(tmp_path):
    search = make_search(tmp_path, strategy="ga")
    rng = random.Random(1)
    old, = store_some(search, 0, 1, rng)
    current, = store_some(search, 1, 1, rng)  # first evaluated in the generation being made (a resumed one)
    fresh = SPACE.sample(random.Random(99))
    search.seed_generation(1)
    out = search.strategy.novel([old, old, fresh, current], generation=1)
    keys = [SPACE.key(a) for a in out]
    assert len(set(keys)) == 4  # no duplicates within the batch
    assert SPACE.key(old) not in keys  # evaluated in an earlier generation: mutated away
    assert out[2] == fresh and out[3] == current  # new to this generation: kept as they are


def test_novelty_rule_samples_afresh_once_mutation_finds_nothing_new(tmp_path):
    """A population that has evaluated its whole neighbourhood (a tight latency limit) keeps finding new networks:
    here no mutation ever leads anywhere new, as when every reachable feasible network is in the store."""
    search = make_search(tmp_path, strategy="ga")
    old, = store_some(search, 0, 1, random.Random(1))
    search.strategy.toolbox.register("mutate", lambda arch: arch)
    search.seed_generation(1)
    out = search.strategy.novel([old, old], generation=1)
    keys = [SPACE.key(a) for a in out]
    assert SPACE.key(old) not in keys and len(set(keys)) == 2


def test_regularized_evolution_proposes_a_child_not_evaluated_before(tmp_path):
    search = make_search(tmp_path, strategy="regularized-evolution")
    old, = store_some(search, 0, 1, random.Random(1))
    search.strategy.toolbox.register("mutate", lambda arch: arch)  # every mutant is the parent itself
    search.seed_generation(1)
    child, = search.strategy.propose([search.candidate(old, SPACE.key(old))], cycle=1)
    assert SPACE.key(child) != SPACE.key(old)


def test_novelty_rule_off_keeps_the_offspring(tmp_path):
    search = make_search(tmp_path, strategy="ga", novelty_tries=0)
    old, = store_some(search, 0, 1, random.Random(1))
    assert search.strategy.novel([old, old], generation=1) == [old, old]


def test_result_store_persists_orders_by_query_and_refuses_another_run(tmp_path):
    path = tmp_path / "results.sqlite"
    store = ResultStore(path, {"seed": 0})
    archs = [SPACE.sample(random.Random(i)) for i in range(3)]
    keys = [SPACE.key(a) for a in archs]
    for query, generation in ((2, 0), (1, 0), (3, 1)):  # a parallel run finishes out of order
        store.add(query, keys[query - 1], SPACE.encode(archs[query - 1]), generation,
                  Evaluation(float(query), None, 10, 20, 0.5))
    store.add(4, keys[0], SPACE.encode(archs[0]), 1, Evaluation(0.0, None, 1, 1, 0.0))  # already there: ignored
    store.close()

    store = ResultStore(path, {"seed": 0})
    assert len(store) == 3 and keys[1] in store and store.get(keys[1]).fitness == 2.0
    assert [query for query, *_ in store.history()] == [1, 2, 3]
    assert (store.evaluated_in(0), store.evaluated_in(1), store.evaluated_through(0), store.evaluated_through(1)) == (2, 1, 2, 3)
    assert store.evaluated_before(keys[0], 1) and not store.evaluated_before(keys[2], 1)
    store.close()
    with pytest.raises(GptnasError, match="belongs to another run \\(seed: 0 here, 1 asked\\)"):
        ResultStore(path, {"seed": 1})
    (tmp_path / "junk.sqlite").write_text("not a database at all " * 100)
    with pytest.raises(GptnasError, match="not a readable gptnas result store"):
        ResultStore(tmp_path / "junk.sqlite", {"seed": 0})


def test_checkpoint_is_json_and_restores_population_hall_of_fame_and_logbook(tmp_path):
    search = make_search(tmp_path, strategy="ga", population=6)
    archs = store_some(search, 0, 6, random.Random(2))
    population = [search.candidate(a, SPACE.key(a)) for a in archs]
    search.record(0, population, 6)
    checkpoint.save(search, 0)
    state = json.loads((tmp_path / checkpoint.CHECKPOINT).read_text())  # plain data: loading it runs no code
    assert state["population"] == [SPACE.encode(a) for a in archs]
    search.store.close()

    resumed = make_search(tmp_path, strategy="ga", population=6)
    assert checkpoint.load(resumed) == 0
    assert [c.key for c in resumed.population] == [c.key for c in population]
    assert [c.key for c in resumed.hall_of_fame] == [c.key for c in search.hall_of_fame]
    assert list(resumed.logbook) == list(search.logbook)
    resumed.store.close()

    state["population"] = ["space:cifar nonsense"]
    (tmp_path / checkpoint.CHECKPOINT).write_text(json.dumps(state))
    with pytest.raises(GptnasError, match="checkpoint.json is corrupt"):
        checkpoint.load(make_search(tmp_path, strategy="ga", population=6))
    del state["store"]
    (tmp_path / checkpoint.CHECKPOINT).write_text(json.dumps(state))
    with pytest.raises(GptnasError, match="checkpoint.json is corrupt"):
        make_search(tmp_path, strategy="ga", population=6)


def test_shared_settings_reach_every_evaluator_and_train_settings_only_the_trainer():
    proxy = EvolveConfig.from_flags(dict(space="cifar", evaluator="proxy", dataset="digits", seed=7, device="cpu",
                                         data_dir="d"))
    assert proxy.evaluator_options() == {"seed": 7, "device": "cpu", "data_dir": "d"}
    train = EvolveConfig.from_flags(dict(space="cifar", dataset="digits", seed=3, epochs=2, profile="gpt-nas"))
    assert train.data.evaluator == "train"
    assert train.evaluator_options() == {"seed": 3, "epochs": 2, "min_steps": 300, "batch_size": 512, "lr": 0.01,
                                         "train_fraction": 1.0, "image_scale": 1.0}
    table = EvolveConfig.from_flags(dict(space="nas-bench-201", seed=3))
    assert table.data.evaluator == "benchmark" and table.evaluator_options() == {}
    evaluator = get_evaluator("proxy", "cifar", "digits", **proxy.evaluator_options())
    assert (evaluator.settings.seed, evaluator.settings.device) == (7, "cpu")
