"""Zero-cost screening (--screen, --screen_pool): for every strategy, queries are counted as before, the
evaluated architectures are the proxy's best of the pool, proxy seconds are stored and reported, a killed
and resumed run queries exactly what an uninterrupted one does, and bad settings get one line."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest
from test_run_directory import kill_and_resume, outcome

import evolve
from gptnas.bench.__main__ import main as bench
from gptnas.errors import GptnasError
from gptnas.search.config import EvolveConfig
from gptnas.search.core import Search
from gptnas.search.executors import SerialExecutor
from gptnas.search.run import build_search
from gptnas.search.store import ResultStore
from gptnas.spaces import get_space

SPACE = get_space("nas-bench-201")
NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10"]


def make_search(run_dir, **settings) -> Search:
    config = EvolveConfig.from_flags(dict(space="nas-bench-201", evaluator="benchmark", dataset="cifar10",
                                          output_dir=str(run_dir), **settings))  # gpt-ga: the shipped GPT
    return build_search(config, run_dir, SerialExecutor(), show_progress=False)


@pytest.mark.parametrize("strategy", ["gpt-ga", "ga", "regularized-evolution", "random"])
def test_a_screened_run_evaluates_exactly_its_budget_of_the_many_it_screened(tmp_path, requires_table, strategy):
    requires_table("nas-bench-201:cifar10")
    search = make_search(tmp_path, strategy=strategy, population=6, generations=10, budget=15, screen="synflow",
                         screen_pool=3, seed=2)
    search.run()
    evaluated = [key for _, key, *_ in search.store.history()]
    assert len(evaluated) == len(set(evaluated)) == 15  # queries: evaluations only, each network once
    screened = {key: score for key, score, _ in search.store.screened()}
    assert set(evaluated) <= set(screened) and len(screened) > 2 * 15  # scores cost no query
    assert all(score is not None for key, score in screened.items() if key in evaluated)


def test_the_evaluated_architectures_are_the_proxys_best_of_each_pool(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    search = make_search(tmp_path, strategy="random", population=4, generations=2, screen="synflow", screen_pool=3)
    search.run()
    scores = search.store.proxy_scores
    for generation in range(3):  # random search's pool: 3 batches of `population` fresh samples
        search.seed_generation(generation)
        pool = dict.fromkeys(SPACE.key(search.make_feasible(SPACE.sample(search.rng))) for _ in range(3 * 4))
        evaluated = [key for _, key, _, g, _ in search.store.history() if g == generation]
        best = sorted(pool, key=lambda key: -scores[key] if scores[key] is not None else math.inf)[:4]
        assert evaluated == best  # best first, so a budget ending mid-pool spends itself on the best


def test_ranking_puts_failed_networks_last_and_fills_up_with_repeats(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    search = make_search(tmp_path, strategy="ga", population=4, screen="synflow")
    rng, archs = random.Random(0), []
    while len(archs) < 3:
        arch = SPACE.sample(rng)
        if SPACE.key(arch) not in {SPACE.key(a) for a in archs}:
            archs.append(arch)
    a, b, c = archs
    for arch, score in ((a, 1.0), (b, None), (c, 5.0)):  # stored scores are used, never recomputed
        search.store.add_proxy_score(SPACE.key(arch), score, 0.0)
    assert search.screen.best([a, b, a, c], 2) == [c, a]
    assert search.screen.best([b, a, b, c], 4) == [c, a, b, b]  # fewer distinct than asked: repeats fill up


def test_proxy_seconds_are_stored_and_reported(tmp_path, requires_table, capsys):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "ga", "--population", "4", "--generations", "1", "--screen", "naswot",
                        "--screen_pool", "2", "--output_dir", str(run)]) == 0
    assert "zero-cost proxy (naswot)" in capsys.readouterr().out
    store = ResultStore(run / "results.sqlite", {}, must_exist=True)
    seconds = [s for *_, s in store.screened()]
    assert len(seconds) > len(store) and all(s > 0 for s in seconds)
    with open(run / "screened.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == [key for key, *_ in store.screened()]
    assert sum(bool(r["query"]) for r in rows) == len(store)  # each evaluated network's query is on its row


def test_kill_9_then_resume_queries_exactly_what_an_uninterrupted_screened_run_does(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--strategy", "ga", "--population", "4", "--generations", "2", "--seed", "5",
            "--screen", "naswot", "--screen_pool", "2"]
    straight = tmp_path / "straight"
    assert evolve.main([*args, "--output_dir", str(straight)]) == 0
    killed = tmp_path / "killed"
    assert kill_and_resume(args, killed, len(outcome(straight)["order"]), 2, seed=1), "every run ended before its kill"
    assert outcome(killed) == outcome(straight)
    scored = [ResultStore(run / "results.sqlite", {}, must_exist=True).proxy_scores for run in (straight, killed)]
    assert scored[0] == scored[1]


def test_a_replayed_run_ranks_by_the_stored_scores(tmp_path, requires_table):
    """Regularized evolution resumes by replaying every cycle: with the stored scores, not recomputed ones."""
    requires_table("nas-bench-201:cifar10")
    settings = dict(strategy="regularized-evolution", population=5, generations=2, screen="synflow", screen_pool=2)
    first = make_search(tmp_path, **settings)
    first.run()
    order = [key for _, key, *_ in first.store.history()]
    first.store.close()
    replayed = make_search(tmp_path, **settings)
    replayed.run()
    assert [key for _, key, *_ in replayed.store.history()] == order
    assert replayed.store.screened() == ResultStore(tmp_path / "results.sqlite", {}, must_exist=True).screened()


@pytest.mark.parametrize(("flags", "message"), [
    (["--screen", "jacov"], "argument --screen: invalid choice: 'jacov' (choose from 'naswot', 'synflow')"),
    (["--screen", "naswot", "--screen_pool", "0"], "screen_pool must be >= 1, got 0"),
])
def test_bad_screening_flags_get_one_line(tmp_path, capsys, flags, message):
    assert evolve.main([*NB201, *flags, "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_resume_with_other_screening_is_refused(tmp_path, requires_table):
    requires_table("nas-bench-201:cifar10")
    make_search(tmp_path, strategy="random", population=4, generations=0).run()
    with pytest.raises(GptnasError, match="belongs to another run .screen: null here"):
        make_search(tmp_path, strategy="random", population=4, generations=0, screen="naswot")


def test_a_study_runs_screened_variants_beside_the_plain_strategies(tmp_path, capsys, requires_table):
    requires_table("nas-bench-201:cifar10")
    config = tmp_path / "study.yaml"
    config.write_text("common:\n  population: 4\nstrategies:\n  ga+naswot:\n    screen_pool: 2\n")
    out = tmp_path / "study"
    assert bench(["--spaces", "nas-bench-201:cifar10", "--strategies", "ga,ga+naswot,random+synflow", "--seeds", "1",
                  "--budget", "8", "--config", str(config), "--output_dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| GPT s / 100 queries | proxy s / 100 queries | proxy s / screened |" in report
    rows = {line.split(" | ")[0][2:]: line for line in report.splitlines() if line.startswith("| ")}
    assert rows["ga"].endswith("| - | - |") and not rows["ga+naswot"].endswith("| - | - |")
    runs = out / "runs" / "nas-bench-201_cifar10"
    plain, screened = (json.loads((runs / s / "seed_0" / "trajectory.json").read_text()) for s in ("ga", "ga+naswot"))
    assert len(screened["keys"]) == len(set(screened["keys"])) == 8 and screened["screened"] > 8
    assert screened["proxy_seconds"] > 0 and plain["screened"] == plain["proxy_seconds"] == 0
    assert screened["keys"] != plain["keys"]
    capsys.readouterr()
    assert bench(["--spaces", "nas-bench-201:cifar10", "--strategies", "ga+jacov", "--output_dir",
                  str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown screening proxy 'jacov' in 'ga+jacov'" in err and err.count("\n") == 1
