"""gpt-ga's --warm_start: before it first writes, the GPT learns from the uniform samples a zero-cost proxy ranks
best; the scores cost no query and are stored, the adapter is saved, and a run stopped after scoring, before
its adapter was saved, resumes to exactly what an uninterrupted one does."""

from __future__ import annotations

import pytest
from test_screening import NB201, make_search

import evolve
from gptnas.gpt.model import ArchGPT

WARM = dict(strategy="gpt-ga", population=4, generations=1, seed=3, warm_start="naswot", warm_start_samples=6,
            warm_start_top=2, warm_start_steps=2)


def queried(search) -> list[str]:
    return [key for _, key, *_ in search.store.history()]


def test_the_gpt_learns_from_the_proxys_best_samples_before_the_first_query(tmp_path, requires_table, monkeypatch):
    requires_table("nas-bench-201:cifar10")
    learned, adapt = [], ArchGPT.adapt
    monkeypatch.setattr(ArchGPT, "adapt", lambda gpt, texts, *args, **kwargs: learned.append(texts) or
                        adapt(gpt, texts, *args, **kwargs))
    search = make_search(tmp_path, **WARM)
    search.run()
    scores = search.store.proxy_scores
    assert len(scores) == 6 and len(queried(search)) == 4 + 3  # six scored, none a query (3 offspring, 1 elite)
    best = sorted(scores, key=lambda key: -scores[key])[:2]
    space = search.space
    assert learned == [[space.encode(space.from_key(key)) for key in best]]  # once, on the two best, best first
    assert (tmp_path / "adapters" / "warm_start" / "adapter_model.safetensors").exists()


def test_a_run_stopped_before_its_adapter_was_saved_resumes_exactly(tmp_path, requires_table, monkeypatch):
    requires_table("nas-bench-201:cifar10")
    straight = make_search(tmp_path / "straight", **WARM)
    straight.run()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # scored and stored, then stopped where the adapter would be trained
        patch.setattr(ArchGPT, "adapt", stopped)
        with pytest.raises(KeyboardInterrupt):
            make_search(tmp_path / "stopped", **WARM).run()
    resumed = make_search(tmp_path / "stopped", **WARM)
    assert len(resumed.store.proxy_scores) == 6 and not queried(resumed)
    resumed.run()
    assert queried(resumed) == queried(straight)
    assert resumed.store.proxy_scores == straight.store.proxy_scores


@pytest.mark.parametrize(("flags", "message"), [
    (["--warm_start_top", "4"], "--warm_start_top needs --warm_start naswot or synflow"),
    (["--warm_start", "naswot", "--warm_start_top", "65"], "need 1 <= warm_start_top <= warm_start_samples"),
    (["--warm_start", "synflow", "--screen", "naswot"], "give both the same proxy"),
])
def test_bad_warm_start_flags_get_one_line(tmp_path, capsys, flags, message):
    assert evolve.main([*NB201, "--strategy", "gpt-ga", *flags, "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_the_warm_start_learns_at_the_adaptation_rate(tmp_path, capsys):
    """--adapt_lr sets the warm start's rate too, so it is not refused without --adapt_every."""
    command, (config, _) = evolve.parse([*NB201, "--strategy", "gpt-ga", "--warm_start", "naswot", "--adapt_lr",
                                         "0.001", "--output_dir", str(tmp_path / "run")])
    assert command == "search" and config.gpt.adapt_lr == 0.001 and config.gpt.warm_start == "naswot"
