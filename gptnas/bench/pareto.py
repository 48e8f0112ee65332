"""Latency studies on a device's measured table (`--latency_table`): Pareto fronts and their hypervolume, the
best accuracy under latency caps, and the constrained optimum a `--max_latency_ms` search is measured against.

Definitions (stated in the report too):
- a run's front after q queries: the networks among its first q that no other of them beats on validation
  accuracy (the fitness a search selects on) without being slower; it is scored on their test accuracy;
- hypervolume: of the front's (test accuracy, latency) points, both objectives scaled to [0, 1] over the
  table's canonical networks (accuracy from their median to their best test accuracy, latency from the
  fastest to the slowest), against the reference point (median accuracy, slowest latency): a network below
  the table's median accuracy adds nothing, and 1 would be a single network as accurate as the best and as
  fast as the fastest. Computed by moocore (DEAP's own backend);
- the table's front: the canonical networks no other beats on test accuracy without being slower (what a
  search that knew the test accuracies could at best return), and its hypervolume;
- best accuracy under a cap: the test accuracy of the network with the best validation accuracy among those
  the run evaluated within the cap; the caps are the 10th, 25th and 50th percentiles of the table's latencies;
- the constrained optimum at a limit: the best validation accuracy among the table's canonical networks within
  the limit (its test accuracy is what is reported).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

import moocore
import numpy as np
from matplotlib.figure import Figure

from gptnas.bench.harness import Benchmark
from gptnas.bench.stats import mean_std, one_sided_wilcoxon
from gptnas.latency_tables import load_latency_table
from gptnas.spaces import get_space
from gptnas.tables import TABLES, load_table, table_for

TARGET_STRATEGY = "gpt-ga"
HYPERVOLUME_POINTS = (25, 50, 100, 200)
CAP_PERCENTILES = (10, 25, 50)
# HELP's latency-constrained results on NAS-Bench-201 CIFAR-100 (MetaD2A + HELP; Lee et al., NeurIPS 2021):
# device -> {latency limit in ms: accuracy %}, from the file names of HELP's data/nasbench201/architecture_config.
HELP_ANCHORS = {
    "eyeriss": {3.9: 71.5, 5.1: 71.8, 9.1: 73.5},
    "fpga": {3.8: 70.2, 4.7: 71.8, 7.4: 73.5},
    "gold_6226": {8.0: 67.3, 14.3: 72.1},
    "pixel2": {18.0: 71.8, 25.0: 73.2},
    "titan_rtx_256": {17.8: 69.7},
}
ANCHOR_BENCHMARK = "nas-bench-201:cifar100"
ANCHOR_QUERIES = 50  # gpt-ga should match HELP's accuracy within this many queries (median over seeds)
OPTIMUM_QUERIES = 100  # ... and reach the constrained optimum within this many (median)


@dataclass(frozen=True)
class Cell:
    key: str
    fitness: float  # what a search selects on
    test: float  # what is reported
    latency: float  # ms on the device


@lru_cache(maxsize=None)
def table_cells(benchmark: Benchmark, device: str) -> tuple[Cell, ...]:
    """The table's canonical networks with their latency on `device`."""
    space = get_space(benchmark.space)
    name = table_for(space, benchmark.dataset)
    spec, table, latency = TABLES[name], load_table(name), load_latency_table(device, space.name)
    return tuple(Cell(k, float(r[spec.fitness]), float(r[spec.test]), latency(k)) for k, r in table.items()
                 if space.key(space.from_key(k)) == k)


def constrained_optimum(benchmark: Benchmark, device: str, limit: float) -> Cell:
    """The canonical network with the best validation accuracy within `limit` ms on `device`."""
    return max((c for c in table_cells(benchmark, device) if c.latency <= limit), key=lambda c: c.fitness)


@dataclass(frozen=True)
class Scale:
    """The table's ranges, which map (test accuracy, latency) to the unit square the hypervolume is taken in."""

    median: float  # test accuracy of the reference point
    best: float
    fastest: float
    slowest: float

    @classmethod
    def of(cls, cells) -> Scale:
        return cls(statistics.median(c.test for c in cells), max(c.test for c in cells),
                   min(c.latency for c in cells), max(c.latency for c in cells))

    def hypervolume(self, points: list[tuple[float, float]]) -> float:
        """Hypervolume of (test accuracy, latency) points; both objectives minimised in the unit square."""
        if not points:
            return 0.0
        scaled = np.array([[(self.best - acc) / (self.best - self.median),
                            (ms - self.fastest) / (self.slowest - self.fastest)] for acc, ms in points])
        return float(moocore.hypervolume(scaled, ref=[1.0, 1.0]))


def front(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The (fitness, test, latency) points that no other beats on fitness without being slower."""
    if not points:
        return []
    values = np.array([[f, ms] for f, _, ms in points])
    keep = moocore.is_nondominated(values, maximise=[True, False], keep_weakly=True)
    return [p for p, k in zip(points, keep) if k]


def run_points(trajectory: dict, queries: int) -> list[tuple[float, float, float]]:
    return list(zip(trajectory["fitness"][:queries], trajectory["test"][:queries], trajectory["latency"][:queries]))


def run_hypervolume(trajectory: dict, queries: int, scale: Scale) -> float:
    return scale.hypervolume([(test, ms) for _, test, ms in front(run_points(trajectory, queries))])


def best_under(trajectory: dict, cap: float) -> float:
    """Test accuracy of the best (by fitness; the earliest of a tie) network the run evaluated within `cap` ms
    (nan: none)."""
    best, reported = -math.inf, math.nan
    for fitness, test, ms in run_points(trajectory, len(trajectory["fitness"])):
        if ms <= cap and fitness > best:
            best, reported = fitness, test
    return reported


def table_front(cells) -> list[Cell]:
    best = front([(c.test, c.test, c.latency) for c in cells])
    return sorted((Cell("", math.nan, t, ms) for _, t, ms in best), key=lambda c: c.latency)


def hypervolume_section(benchmark: Benchmark, groups: dict[str, list[dict]], budget: int, device: str,
                        png: str) -> list[str]:
    """Markdown: each strategy's hypervolume over the queries, gpt-ga's paired tests, the best accuracy under
    latency caps, and the fronts' figure."""
    cells = table_cells(benchmark, device)
    scale = Scale.of(cells)
    best_front = table_front(cells)
    ideal = scale.hypervolume([(c.test, c.latency) for c in best_front])
    points = [q for q in HYPERVOLUME_POINTS if q <= budget]
    caps = [round(float(np.percentile([c.latency for c in cells], p)), 3) for p in CAP_PERCENTILES]
    lines = [f"Latency on `{device}`: {scale.fastest:.3f}-{scale.slowest:.3f} ms over the table's {len(cells)} "
             f"canonical networks; the table's front has {len(best_front)} networks and hypervolume {ideal:.4f}.", "",
             "| strategy | " + " | ".join(f"HV @{q}" for q in points) + " | "
             + " | ".join(f"acc within {cap} ms" for cap in caps) + " |",
             "|---|" + "---|" * (len(points) + len(caps))]
    volumes = {}
    for strategy, runs in groups.items():
        volumes[strategy] = {q: [run_hypervolume(t, q, scale) for t in runs] for q in points}
        lines.append(f"| {strategy} | " + " | ".join(mean_std(volumes[strategy][q], 4) for q in points) + " | "
                     + " | ".join(mean_std([best_under(t, cap) for t in runs]) for cap in caps) + " |")
    lines.append("| the table (best possible) | " + " | ".join(f"{ideal:.4f}" for _ in points) + " | "
                 + " | ".join(f"{max(c.test for c in cells if c.latency <= cap):.2f}" for cap in caps) + " |")
    lines += hypervolume_tests(volumes, points)
    plot_fronts(benchmark, groups, best_front, device, png)
    return lines + ["", f"![fronts on {benchmark.name}]({png.split('/')[-1]})", ""]


def hypervolume_tests(volumes: dict[str, dict[int, list[float]]], points: list[int]) -> list[str]:
    lines = []
    for ours in (s for s in volumes if s.startswith(TARGET_STRATEGY)):
        baselines = [s for s in volumes if not s.startswith(TARGET_STRATEGY)]
        if not baselines:
            continue
        n = len(volumes[ours][points[0]])
        lines += ["", f"Paired one-sided Wilcoxon p-values, {ours}'s hypervolume larger than ... (n = {n} seeds):", "",
                  "| baseline | " + " | ".join(f"@{q}" for q in points) + " |", "|---|" + "---|" * len(points)]
        for strategy in baselines:
            lines.append(f"| {strategy} | " + " | ".join(
                f"{one_sided_wilcoxon(volumes[ours][q], volumes[strategy][q]):.3g}" for q in points) + " |")
    return lines


def plot_fronts(benchmark: Benchmark, groups: dict[str, list[dict]], best_front: list[Cell], device: str,
                path: str) -> None:
    """The table's front and each strategy's front after the whole budget, for the first seed."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.step([c.latency for c in best_front], [c.test for c in best_front], where="post", color="black",
            label="the table's front")
    for strategy, runs in groups.items():
        found = sorted(front(run_points(runs[0], len(runs[0]["fitness"]))), key=lambda p: p[2])
        ax.plot([ms for *_, ms in found], [t for _, t, _ in found], marker="o", linestyle="", label=strategy)
    ax.set_xlabel(f"latency on {device} (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{benchmark.name}: fronts of seed {groups[next(iter(groups))][0]['seed']}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def constrained_lines(benchmark: Benchmark, device: str, limit: float) -> list[str]:
    """What a --max_latency_ms search is measured against: the constrained optimum and HELP's result."""
    best = constrained_optimum(benchmark, device, limit)
    lines = [f"Constrained search: latency on `{device}` at most {limit:g} ms. Constrained optimum: validation "
             f"{best.fitness:.2f}, test {best.test:.2f}, {best.latency:.3f} ms (`{best.key}`); queries to the "
             "optimum below count to it."]
    anchor = help_anchor(benchmark, device, limit)
    if anchor is not None:
        lines.append(f"HELP (MetaD2A + HELP) reported {anchor:.1f} % at {limit:g} ms on `{device}`.")
    return lines + [""]


def help_anchor(benchmark: Benchmark, device: str, limit: float) -> float | None:
    if benchmark.name != ANCHOR_BENCHMARK:
        return None
    return HELP_ANCHORS.get(device, {}).get(limit)


def constrained_targets(benchmark: Benchmark, device: str, limit: float, figures: dict) -> list[str]:
    """gpt-ga against HELP's accuracy at ANCHOR_QUERIES and the constrained optimum within OPTIMUM_QUERIES."""
    mine = figures.get(TARGET_STRATEGY)
    anchor = help_anchor(benchmark, device, limit)
    if mine is None or ANCHOR_QUERIES not in mine["at"]:
        return []
    median = statistics.median(mine["at"][ANCHOR_QUERIES])
    lines = ["", f"Targets ({TARGET_STRATEGY}, medians over seeds):", ""]
    if anchor is not None:
        verdict = "met" if median >= anchor else f"missed by {anchor - median:.2f}"
        lines.append(f"- accuracy @{ANCHOR_QUERIES}: {median:.2f} against HELP's {anchor:.1f}: {verdict};")
    reached = mine["median_to_optimum"]
    met = not reached.startswith(">") and float(reached) <= OPTIMUM_QUERIES
    lines.append(f"- queries to the constrained optimum: {reached} (target <= {OPTIMUM_QUERIES}: "
                 f"{'met' if met else 'missed'}).")
    return lines
