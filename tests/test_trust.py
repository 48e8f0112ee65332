"""--trust learned: gpt-ga rewrites a share of its offspring, learned from how rewritten offspring score
against plain ones of the same generation; the share follows the evidence, every proposal is on record in
one arm, and a killed run resumes with exactly the shares of an uninterrupted one."""

from __future__ import annotations

import csv
import json

import pytest
from test_run_directory import kill_and_resume, outcome

import evolve
from gptnas.search.trust import NO_EVIDENCE, gpt_share

NB201 = ["--space", "nas-bench-201", "--evaluator", "benchmark", "--dataset", "cifar10"]


def scored(fitness: dict):
    """fitness_in for a table {(key, generation): fitness}."""
    return lambda key, generation: fitness.get((key, generation))


def generation(gen: int, rewritten: list[float], plain: list[float]) -> tuple[dict, dict]:
    entry = {"gen": gen, "gpt": [f"g{gen}.{i}" for i in range(len(rewritten))],
             "plain": [f"p{gen}.{i}" for i in range(len(plain))]}
    fitness = {(k, gen): f for k, f in zip(entry["gpt"] + entry["plain"], rewritten + plain)}
    return entry, fitness


def test_without_evidence_the_gpt_rewrites_half():
    assert gpt_share([], 0, scored({}), 0.1) == NO_EVIDENCE == 0.5
    entry, fitness = generation(0, [90.0, 91.0], [])  # one arm empty: nothing to compare
    assert gpt_share([entry], 1, scored(fitness), 0.1) == 0.5


def test_the_share_follows_which_arm_scores_higher_within_its_floor():
    log, fitness = [], {}
    for gen in range(3):
        entry, f = generation(gen, [92.0 + gen, 93.0 + gen, 92.5 + gen], [80.0 + gen, 81.0 + gen, 79.0 + gen])
        log.append(entry)
        fitness |= f
    assert gpt_share(log, 3, scored(fitness), 0.1) == 0.9  # the GPT clearly helps: all but the floor
    assert gpt_share(log, 3, scored(fitness), 0.0) > 0.99
    swapped = [{"gen": e["gen"], "gpt": e["plain"], "plain": e["gpt"]} for e in log]
    assert gpt_share(swapped, 3, scored(fitness), 0.1) == 0.1  # the GPT clearly hurts: the floor
    one, f = generation(0, [92.0], [91.0])  # one pair: weak evidence, a share between
    assert 0.5 < gpt_share([one], 1, scored(f), 0.1) < 0.9


def test_ties_are_no_evidence_and_later_or_unevaluated_offspring_do_not_count():
    entry, fitness = generation(0, [90.0, 90.0], [90.0, 90.0])
    assert gpt_share([entry], 1, scored(fitness), 0.1) == pytest.approx(0.5)
    later, f = generation(1, [99.0, 99.0], [10.0, 10.0])
    assert gpt_share([entry, later], 1, scored(fitness | f), 0.1) == pytest.approx(0.5)  # generation 1 is now
    unevaluated = {k: v for k, v in f.items() if k[0].startswith("g")}  # the plain arm never evaluated
    assert gpt_share([entry, later], 2, scored(fitness | unevaluated), 0.1) == pytest.approx(0.5)


def reconstruction(run_dir) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"}
            for e in json.loads((run_dir / "reconstruction.json").read_text())]


def test_a_learned_trust_run_puts_every_proposal_in_one_arm_at_the_share_of_its_evidence(tmp_path, requires_table,
                                                                                           capsys):
    requires_table("nas-bench-201:cifar10")
    run = tmp_path / "run"
    assert evolve.main([*NB201, "--strategy", "gpt-ga", "--trust", "learned", "--population", "10",
                        "--generations", "4", "--seed", "4", "--output_dir", str(run)]) == 0
    log = reconstruction(run)
    shares = " ".join(f"{e['share']:.2f}" for e in log)
    assert f"GPT trust learned by this run (share of offspring rewritten, by generation): {shares}" in capsys.readouterr().out
    with open(run / "evaluations.csv") as f:
        evaluated = {(r["key"], int(r["generation"])): float(r["fitness"]) for r in csv.DictReader(f)}
    assert log[0]["gen"] == 0 and log[0]["share"] == 0.5
    for entry in log:
        keys = entry["gpt"] + entry["plain"]
        generation_keys = {k for k, g in evaluated if g == entry["gen"]}
        assert generation_keys <= set(keys)  # every evaluated proposal is in an arm
        assert gpt_share(log, entry["gen"], scored(evaluated), 0.1) == entry["share"]  # the evidence before it
        assert 0.1 <= entry["share"] <= 0.9
    assert any(entry["gpt"] for entry in log) and any(entry["plain"] for entry in log)


def test_kill_9_then_resume_learns_the_same_shares(tmp_path, requires_table):
    """gpt-ga's kill -9 test: its adapter, trust shares and rewrites resume exactly (the other strategies':
    tests/test_run_directory.py)."""
    requires_table("nas-bench-201:cifar10")
    args = [*NB201, "--strategy", "gpt-ga", "--trust", "learned", "--population", "10", "--generations", "4",
            "--seed", "6", "--adapt_every", "1", "--adapt_steps", "2"]
    straight = tmp_path / "straight"
    assert evolve.main([*args, "--output_dir", str(straight)]) == 0
    killed = tmp_path / "killed"
    assert kill_and_resume(args, killed, len(outcome(straight)["order"]), 2, seed=7), "every run ended before its kill"
    assert outcome(killed) == outcome(straight)
    assert reconstruction(killed) == reconstruction(straight)


@pytest.mark.parametrize("flags, message", [
    (["--trust", "always"], "argument --trust: invalid choice: 'always' (choose from 'full', 'learned')"),
    (["--trust_floor", "0.7"], "trust_floor must lie in [0, 0.5], got 0.7"),
])
def test_bad_trust_flags_get_one_line(tmp_path, capsys, flags, message):
    assert evolve.main([*NB201, *flags, "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
