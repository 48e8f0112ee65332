"""What a run leaves for the researcher: logbook, hall of fame, the best network, plots, a summary."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from pathlib import Path

from matplotlib.figure import Figure

from gptnas.errors import GptnasError
from gptnas.files import atomic_path, write_atomic, write_json
from gptnas.search.costs import UNITS
from gptnas.spaces.declared import SPACE_FILE

log = logging.getLogger(__name__)


def _describe(space, candidate, store) -> dict:
    evaluation = store.get(candidate.key)
    return {
        "key": candidate.key,
        "encoding": space.encode(candidate.arch),
        "query": store.query_of(candidate.key),
        "fitness": evaluation.fitness,
        "test_accuracy": evaluation.test_accuracy,
        "params": evaluation.params,
        "flops": evaluation.flops,
        "latency_ms": evaluation.latency_ms,
        "latency_batch_ms": evaluation.latency_batch_ms,
        "status": evaluation.status,
    }


def evaluation_rows(store) -> list[tuple]:
    """(query, key, generation, fidelity, evaluation) of every evaluation, in the order the run made them: by
    generation, lower rungs (no query number) before the full schedule."""
    full = [(query, key, generation, 1.0, e) for query, key, _, generation, e in store.history()]
    lower = [("", key, generation, level, e) for key, level, _, generation, e in store.rungs()]
    return sorted(full + lower, key=lambda row: (row[2], row[3]))  # stable: each table's own order within


def write_outputs(search, run_dir: Path) -> dict:
    """Writes logbook.csv, evaluations.csv, the strategy's files and, with proxy scores (--screen, --warm_start),
    screened.csv; then, when at least one candidate worked, hall_of_fame.json, best.json, best_architecture.txt
    and the plots. A run whose every candidate failed is a GptnasError that counts the failures: it has no best
    network to report."""
    space, store = search.space, search.store
    logbook = io.StringIO()
    writer = csv.DictWriter(logbook, fieldnames=search.logbook.header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(search.logbook)
    write_atomic(run_dir / "logbook.csv", logbook.getvalue())
    evaluations = io.StringIO()
    writer = csv.writer(evaluations)
    writer.writerow(["query", "key", "generation", "fidelity", "cost", "fitness", "test_accuracy", "params", "flops",
                     "latency_ms", "latency_batch_ms", "seconds", "status", "reason"])
    for query, key, generation, level, e in evaluation_rows(store):
        writer.writerow([query, key, generation, f"{level:g}", f"{search.price(level):g}", e.fitness, e.test_accuracy,
                         e.params, e.flops, e.latency_ms, e.latency_batch_ms, f"{e.seconds:.3f}", e.status, e.reason])
    write_atomic(run_dir / "evaluations.csv", evaluations.getvalue())
    if search.store.screened():
        write_screened(search, run_dir)
    for name, content in search.strategy.files().items():
        write_json(run_dir / name, content)
    outcomes = [e for *_, e in store.history()]
    if not outcomes and store.rungs():
        raise GptnasError(f"no network was trained in full: {len(store.rungs())} were evaluated below the full "
                          f"schedule ({run_dir / 'evaluations.csv'}); give the run more --generations or --budget")
    if not any(e.ok for e in outcomes):
        raise GptnasError(nothing_worked(outcomes, run_dir))
    hall = ranked([_describe(space, c, store) for c in search.hall_of_fame])
    write_json(run_dir / "hall_of_fame.json", hall)
    best = _describe(space, best_candidate(search), store)
    where = space.name if space.reference == space.name else str(run_dir / SPACE_FILE)  # a declared space: its copy
    best["build"] = f"import gptnas; model = gptnas.build_model({where!r}, {best['key']!r}, num_classes={search.evaluator.num_classes})"
    best["num_classes"], best["input_size"] = search.evaluator.num_classes, search.evaluator.input_size
    best.update(search.evaluator.input_spec())  # input_channels, normalisation
    best["sources"] = {"evaluator": search.evaluator.source(), "gpt": search.strategy.summary().get("gpt_source"),
                       **({"latency": search.costs.source()} if search.costs.table is not None else {})}
    write_json(run_dir / "sources.json", best["sources"])  # what to fetch to repeat the run on the same bytes
    write_json(run_dir / "best.json", best)
    write_atomic(run_dir / "best_architecture.txt", best["encoding"] + "\n")
    plot(search, run_dir)
    return best


def ranked(described: list[dict]) -> list[dict]:
    """Best first: higher fitness, then (a tie) fewer parameters, then the earlier query."""
    return sorted(described, key=lambda h: (-h["fitness"], h["params"], h["query"]))


def best_candidate(search):
    """The best network evaluated: the highest fitness; among networks that tie there, the one with the fewest
    parameters, then the earliest evaluated. A tie at the top means validation no longer tells the best apart
    (saturated, e.g. 100 % on a small split): said in a warning."""
    working = [(query, key, encoding, e) for query, key, encoding, _, e in search.store.history() if e.ok]
    top = max(e.fitness for *_, e in working)
    tied = sorted((e.params, query, key, encoding) for query, key, encoding, e in working if e.fitness == top)
    if len(tied) > 1:
        log.warning("%d networks tie at the top fitness (%.2f): validation is saturated and cannot tell them apart; "
                    "the best is the one with the fewest parameters, then the earliest evaluated (query %d)",
                    len(tied), top, tied[0][1])
    _, _, key, encoding = tied[0]
    return search.candidate(search.space.decode(encoding), key)


def nothing_worked(outcomes: list, run_dir: Path) -> str:
    """The one line for a run in which no candidate worked: how many failed how, and the first reason."""
    if not outcomes:
        return f"no candidate was evaluated; nothing to report in {run_dir}"
    counts = Counter(e.status for e in outcomes)
    how = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    reason = next((e.reason for e in outcomes if e.reason), "")
    first = f"; the first: {reason[:160]}" if reason else ""
    return (f"all {len(outcomes)} candidates failed ({how}{first}); there is no best network: "
            f"{run_dir / 'evaluations.csv'} has each reason")


def write_screened(search, run_dir: Path) -> None:
    """screened.csv: every architecture the proxy scored, its score and seconds, and its query if evaluated."""
    queries = {key: query for query, key, *_ in search.store.history()}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["key", f"{search.settings.screen}_score", "seconds", "query"])
    for key, score, seconds in search.store.screened():
        writer.writerow([key, "" if score is None else score, f"{seconds:.4f}", queries.get(key, "")])
    write_atomic(run_dir / "screened.csv", out.getvalue())


def fidelity_spent(search) -> list[str]:
    """With evaluations below the full schedule (--multi_fidelity, dehb): those of each fidelity, the
    full-training equivalents and seconds they cost."""
    rows = evaluation_rows(search.store)
    levels = sorted({level for *_, level, _ in rows})
    if not levels or levels[0] == 1.0:
        return []
    parts = []
    for level in levels:
        at = [e for *_, f, e in rows if f == level]
        parts.append(f"{len(at)} at {level:.3g} ({sum(e.seconds for e in at):.1f} s)")
    spent = sum(f for *_, f, _ in rows)
    return [f"multi-fidelity: {', '.join(parts)} of the full schedule; {spent:.2f} full-training equivalents, "
            f"{sum(e.seconds for *_, e in rows):.1f} s of evaluation"]


def time_spent(search) -> list[str]:
    """Seconds outside evaluation: the GPT's (this process) and the zero-cost proxy's (the whole run: --screen,
    gpt-ga's --warm_start)."""
    gpt_seconds = search.strategy.summary().get("gpt_seconds")
    parts = [f"GPT {gpt_seconds:.1f} s"] if gpt_seconds else []
    screened = search.store.screened()
    if screened:
        seconds = sum(s for *_, s in screened)
        proxy = search.settings.screen or search.config.gpt.warm_start
        parts.append(f"zero-cost proxy ({proxy}) {seconds:.1f} s for {len(screened)} architectures "
                     f"({seconds / len(screened):.3f} s each, {100 * seconds / max(len(search.store), 1):.1f} s "
                     "per 100 queries)")
    return ["time outside evaluation: " + "; ".join(parts)] if parts else []


def trust_learned(search) -> list[str]:
    """--trust learned: the share of offspring the GPT rewrote, by generation (reconstruction.json has the arms)."""
    shares = search.strategy.summary().get("gpt_share")
    if not shares:
        return []
    return ["GPT trust learned by this run (share of offspring rewritten, by generation): "
            + " ".join(f"{shares[g]:.2f}" for g in sorted(shares))]


def plot(search, run_dir: Path) -> None:
    """fitness.png: every evaluation and the best so far, by query; pareto.png: fitness against the costs."""
    history = search.store.history()
    metric, title = search.evaluator.metric, f"{search.settings.strategy} on {search.space.name} ({search.config.data.dataset})"
    queries = [query for query, *_ in history]
    fitness = [e.fitness for *_, e in history]
    best = [max(fitness[: i + 1]) for i in range(len(fitness))]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.scatter(queries, fitness, s=6, alpha=0.4, color="C0", label="evaluated")
    ax.step(queries, best, where="post", color="C3", label="best so far")
    for end in search.logbook.select("queries")[:-1]:  # generation boundaries
        ax.axvline(end + 0.5, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("queries (unique architectures evaluated; grey lines: generations)")
    ax.set_ylabel(metric)
    ax.set_ylim(*_scale([f for f, e in zip(fitness, (e for *_, e in history)) if not collapsed(e, search)] or fitness))
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, run_dir / "fitness.png")

    pareto_plot(search, history, metric, title, run_dir / "pareto.png")


def pareto_plot(search, history, metric: str, title: str, path: Path) -> None:
    """Accuracy against each cost objective of the search (parameters when it has none), with the front."""
    working = [e for *_, e in history if not collapsed(e, search)]
    if not working:
        return
    costs = search.costs.objectives[1:] or ["params"]
    fig = Figure(figsize=(7 * len(costs), 4))
    axes = fig.subplots(1, len(costs), squeeze=False)
    for ax, name in zip(axes[0], costs):
        points = [(_cost(e, name), e.fitness) for e in working if _cost(e, name) is not None]
        front, top = [], float("-inf")
        for cost, value in sorted(points, key=lambda p: (p[0], -p[1])):
            if value > top:
                front.append((cost, value))
                top = value
        ax.scatter([c for c, _ in points], [f for _, f in points], s=8, alpha=0.5, label="evaluated")
        ax.step([c for c, _ in front], [f for _, f in front], where="post", color="C3", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(UNITS[name])
        ax.set_ylabel(metric)
        ax.legend(loc="lower right")
    hidden = len(history) - len(working)
    fig.suptitle(f"{title}: {metric.split(' (')[0]} against {', '.join(UNITS[c].split(' (')[0] for c in costs)}"
                 + (f" ({hidden} failed or chance-level networks not shown)" if hidden else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Figure, path: Path) -> None:
    """A PNG written whole or not at all; a link at `path` is replaced, never written through."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def _cost(evaluation, name: str):
    return {"params": evaluation.params, "flops": evaluation.flops, "latency": evaluation.latency_ms}[name]


def collapsed(evaluation, search) -> bool:
    """A failed network, or one no better than guessing (accuracy within 1.5x of chance): shown apart, so
    that the scale shows the differences between working networks."""
    chance = 100.0 / search.evaluator.num_classes
    return not evaluation.ok or ("accuracy" in search.evaluator.metric and evaluation.fitness <= 1.5 * chance)


def _scale(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    margin = (high - low) * 0.05 or 1.0
    return low - margin, high + margin


def summary_table(search, best: dict) -> str:
    """The final table printed to the terminal."""
    hall = ranked([_describe(search.space, c, search.store) for c in search.hall_of_fame])[:5]
    lines = [
        f"{search.settings.strategy} on {search.space.name} ({search.config.data.evaluator}, {search.config.data.dataset}): "
        f"{len(search.store)} unique architectures evaluated",
        f"{'rank':>4}  {'fitness':>8}  {'test acc':>8}  {'params':>10}  key",
    ]
    for rank, h in enumerate(hall, 1):
        test = "-" if h["test_accuracy"] is None else f"{h['test_accuracy']:.2f}"
        lines.append(f"{rank:>4}  {h['fitness']:>8.2f}  {test:>8}  {h['params']:>10,}  {h['key']}")
    lines += fidelity_spent(search) + time_spent(search) + trust_learned(search)
    lines.append(f"best network: {best['build']}")
    return "\n".join(lines)
