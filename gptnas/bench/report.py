"""From trajectories to numbers: runs.csv, optimum.csv, regret plots and report.md (a space searched by
training its networks has no table, so no optimum: its plot shows the reported accuracy itself).

Definitions (stated in the report too):
- queries: unique canonical architectures evaluated, in order (aliases and isomorphic cells count once);
- reported accuracy at q queries: the test accuracy of the architecture with the best fitness among the
  first q (NAS-Bench-201: fitness = validation accuracy; the macro tables have one accuracy, used for both);
- the optimum: the best fitness of any canonical architecture in the table; queries to the optimum / to
  within 0.1 of it: the first query whose fitness reaches it (empty when the run never does). A run that
  stopped before the budget (nothing new left to propose) keeps its last value;
- `<strategy>+<proxy>` (e.g. `ga+naswot`): the strategy with zero-cost screening, proposing `screen_pool` times as
  many architectures as it evaluates and evaluating the proxy's best; proxy scores cost no query, their seconds
  are reported beside the GPT's (per 100 queries, and per architecture screened);
- `mean ± sd`: the mean over seeds and the sample standard deviation across seeds (not a standard error);
- p-values: the paired one-sided Wilcoxon signed-rank test over seeds; with n seeds the smallest p it can give
  is 1/2^n (0.25 with 2 seeds, 0.03 with 5), so few seeds cannot show a difference however large.
- with `--budget_unit full`, the budget and every "@" column count full-training equivalents instead of queries:
  an evaluation at a share f of the full schedule costs f (NAS-Bench-201's 12-epoch table: 0.06), a full one 1;
  accuracy at B equivalents is the test accuracy of the best-fitness network trained in full within B, and
  "cost to optimum" is the budget spent when the optimum was first evaluated in full. With `--multi_fidelity sh`,
  only networks evaluated at the full schedule are reported or compared; the lower rungs cost budget, and the
  GPT's and the proxy's seconds per 100 queries count an evaluation at any fidelity as a query.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from matplotlib.figure import Figure

from gptnas.bench import pareto
from gptnas.bench.harness import Benchmark, split_variant, uses_gpt
from gptnas.bench.stats import mean_std, median_queries, one_sided_wilcoxon
from gptnas.gpt.folder import weights_sha256
from gptnas.gpt.provenance import tables_seen_by
from gptnas.spaces import get_space
from gptnas.tables import TABLES, load_table, table_for

QUERY_POINTS = (10, 25, 50, 100, 200)
FULL_POINTS = (5, 10, 25, 50, 100, 200)  # with --budget_unit full: full-training equivalents
WITHIN = 0.1
TARGET_STRATEGY = "gpt-ga"  # the strategy the targets below are set for
# This project's targets for gpt-ga: (reported accuracy at 10 queries, at 100 queries, median queries to the
# optimum), set from published and simulated results on the same tables, in the order below:
# - at 10 queries, about GENIUS's result with 10 queries (GPT-4 prompted as the optimiser; Zheng et al. 2023,
#   arXiv 2304.10970): 92.83-93.05, 91.76, 93.84, 70.58;
# - at 100 queries, at most about 0.3 below the best test accuracy in the table (93.13, 91.89, 94.37, 73.51)
#   and, on NAS-Bench-201, above regularized evolution (P=20, S=5) after 100 queries (94.15, 72.85);
# - queries to the optimum, about half of regularized evolution's median over 200 simulated seeds (91, 218, 168, 126).
TARGETS = {
    "nas-bench-macro": (93.00, 93.12, 45),
    "channel-bench-mobilenet": (91.70, 91.86, 110),
    "nas-bench-201:cifar10": (93.90, 94.30, 80),
    "nas-bench-201:cifar100": (71.50, 73.20, 60),
}

# ... with multi-fidelity, in full-training equivalents: (reported accuracy at 10, median cost to the optimum); at
# 10 within 0.1 of the table's best test accuracy.
FIDELITY_TARGETS = {"nas-bench-201:cifar10": (94.27, 25), "nas-bench-201:cifar100": (73.41, 25)}

# ... and for gpt-ga with zero-cost screening: reported accuracy at 10 queries.
SCREENED_TARGETS = {"nas-bench-macro": 93.05, "channel-bench-mobilenet": 91.80, "nas-bench-201:cifar10": 94.00,
                    "nas-bench-201:cifar100": 72.00}

TARGETS_NOTE = (
    "The project's targets: at 10 queries, about what GENIUS (GPT-4 prompted as the optimiser) reached with 10 "
    "queries; at 100 queries, at most about 0.3 below the table's best test accuracy; queries to the optimum, "
    "about half of regularized evolution's median (P=20, S=5, simulated on the same tables)."
)


@dataclass(frozen=True)
class Optimum:
    fitness: float  # the best fitness of any canonical architecture
    test: float  # the test accuracy of that architecture
    best_test: float  # the best test accuracy of any canonical architecture (regret is measured to it)
    architectures: int  # canonical architectures in the table


@lru_cache(maxsize=None)
def optimum(benchmark: Benchmark, device: str | None = None, limit: float | None = None) -> Optimum:
    """The table's optimum, or with a device and a latency limit the constrained one (gptnas/bench/pareto.py)."""
    if device is not None and limit is not None:
        within = [c for c in pareto.table_cells(benchmark, device) if c.latency <= limit]
        best = pareto.constrained_optimum(benchmark, device, limit)
        return Optimum(best.fitness, best.test, max(c.test for c in within), len(within))
    space = get_space(benchmark.space)
    name = table_for(space, benchmark.dataset)
    spec, table = TABLES[name], load_table(name)
    canonical = [r for k, r in table.items() if space.key(space.from_key(k)) == k]
    best = max(canonical, key=lambda r: float(r[spec.fitness]))
    return Optimum(float(best[spec.fitness]), float(best[spec.test]),
                   max(float(r[spec.test]) for r in canonical), len(canonical))


def costs(trajectory: dict) -> list[float]:
    """The budget spent when each query of the trajectory had finished (its own count without a "cost")."""
    return trajectory.get("cost") or list(range(1, len(trajectory["fitness"]) + 1))


def reported_curve(trajectory: dict, budget: int) -> list[float]:
    """Reported accuracy after 1..budget units of budget spent (queries, or full-training equivalents)."""
    curve, best_fitness, reported = [], -math.inf, math.nan
    rows = list(zip(costs(trajectory), trajectory["fitness"], trajectory["test"]))
    i = 0
    for spent in range(1, budget + 1):
        while i < len(rows) and rows[i][0] <= spent + 1e-9:
            if rows[i][1] > best_fitness:  # a failed training has no test accuracy
                best_fitness, reported = rows[i][1], math.nan if rows[i][2] is None else rows[i][2]
            i += 1
        curve.append(reported)
    return curve


def first_query_reaching(trajectory: dict, level: float) -> float | None:
    """The budget spent when a query first reached fitness `level` (its number, counting queries)."""
    for spent, fitness in zip(costs(trajectory), trajectory["fitness"]):
        if fitness >= level - 1e-9:
            return spent
    return None


def query_points(budget: int, unit: str = "query") -> list[int]:
    """The standard query counts (or full-training equivalents) within the budget, and the budget itself."""
    return sorted({q for q in (FULL_POINTS if unit == "full" else QUERY_POINTS) if q <= budget} | {budget})


def write_csvs(trajectories: list[dict], benchmarks: list[Benchmark], budget: int, output_dir: Path,
               constraint: tuple = (), unit: str = "query") -> None:
    """runs.csv, and optimum.csv for the benchmarks with a table; `constraint` is (device, latency limit) for a
    constrained study."""
    by_name = {b.name: b for b in benchmarks}
    counted = "queries" if unit == "query" else "full_training_equivalents"
    with open(output_dir / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["benchmark", "strategy", "seed", counted, "accuracy"])
        for t in trajectories:
            curve = reported_curve(t, budget)
            for q in query_points(budget, unit):
                writer.writerow([t["benchmark"], t["strategy"], t["seed"], q, f"{curve[q - 1]:.4f}"])
    tabled = [t for t in trajectories if not by_name[t["benchmark"]].trained]
    if not tabled:
        return
    with open(output_dir / "optimum.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["benchmark", "strategy", "seed", f"{counted}_to_optimum", f"{counted}_to_within_{WITHIN}"])
        for t in tabled:
            best = optimum(by_name[t["benchmark"]], *constraint).fitness
            hit, near = first_query_reaching(t, best), first_query_reaching(t, best - WITHIN)
            writer.writerow([t["benchmark"], t["strategy"], t["seed"], "" if hit is None else hit, "" if near is None else near])


def plot_curves(benchmark: Benchmark, groups: dict[str, list[dict]], budget: int, path: Path,
                constraint: tuple = (), unit: str = "query") -> None:
    """The mean regret of reported accuracy over the budget (a table's benchmark: regret to its best test
    accuracy), or the mean reported accuracy itself (a trained space, whose optimum nobody knows)."""
    best = None if benchmark.trained else optimum(benchmark, *constraint).best_test
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    queries = range(1, budget + 1)
    for strategy, runs in groups.items():
        curves = [reported_curve(t, budget) for t in runs]
        if best is None:
            ax.plot(queries, [statistics.fmean(c[q - 1] for c in curves) for q in queries], label=strategy)
        else:
            mean = [statistics.fmean(best - c[q - 1] for c in curves) for q in queries]
            ax.plot(queries, [max(m, 1e-3) for m in mean], label=strategy)
    ax.set_xscale("log")
    if best is not None:
        ax.set_yscale("log")
    ax.set_xlabel("queries (unique architectures evaluated)" if unit == "query" else "full-training equivalents spent")
    ax.set_ylabel("reported test accuracy (%)" if best is None else "regret of reported accuracy (%)")
    ax.set_title(f"{benchmark.name}: mean over {len(next(iter(groups.values())))} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def gpt_lines(groups: dict[str, list[dict]]) -> list[str]:
    """Which GPT the runs of a benchmark used, and which benchmark tables were in its training corpus."""
    used = sorted({t.get("gpt") or "" for runs in groups.values() for t in runs if "gpt" in t and
                   uses_gpt(t["strategy"])})
    lines = []
    for gpt in used:
        tables = tables_seen_by(gpt or None)
        lines.append(f"GPT: `{gpt or 'the shipped model'}` (weights sha256 {weights_sha256(gpt or None)[:12]}); "
                     f"benchmark tables in its training corpus: {', '.join(tables) or 'none'}.")
    return lines + [""] if lines else []


def benchmark_section(benchmark: Benchmark, groups: dict[str, list[dict]], budget: int, png: str,
                      constraint: tuple = (), unit: str = "query") -> tuple[list[str], dict]:
    """Markdown for one benchmark, and the gpt-ga figures the targets are checked against."""
    best = None if benchmark.trained else optimum(benchmark, *constraint)
    points = query_points(budget, unit)
    q = "q" if unit == "query" else "cost"
    if best is None:
        lines = [f"### {benchmark.name}", "", f"Space `{benchmark.space}`, no table: every network was trained on "
                 f"`{benchmark.dataset}` by the `train` evaluator, selected on its validation accuracy and reported "
                 "by its test accuracy.", ""]
        to_optimum = []
    else:
        lines = [f"### {benchmark.name}", "",
                 f"{best.architectures} canonical architectures{' within the limit' if constraint else ''}; "
                 f"optimum fitness {best.fitness:.2f} "
                 f"(its test accuracy {best.test:.2f}; best test accuracy in the table {best.best_test:.2f}).", ""]
        to_optimum = [f"median {q} to optimum", f"median {q} to within {WITHIN}"]
    lines += gpt_lines(groups)
    header = (["strategy"] + [f"acc @{p}" for p in points] + to_optimum
              + ["GPT s / 100 queries", "proxy s / 100 queries", "proxy s / screened"])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    figures: dict[str, dict] = {}
    for strategy, runs in groups.items():
        curves = [reported_curve(t, budget) for t in runs]
        at = {p: [c[p - 1] for c in curves] for p in points}
        queries = max(sum(len(t["fitness"]) + t.get("rungs", 0) for t in runs), 1)  # at every fidelity
        seconds = sum(t["gpt_seconds"] for t in runs) / queries * 100
        figures[strategy] = {"at": at}
        reached = []
        if best is not None:
            hits = [first_query_reaching(t, best.fitness) for t in runs]
            near = [first_query_reaching(t, best.fitness - WITHIN) for t in runs]
            figures[strategy].update(median_to_optimum=median_queries(hits, budget), hits=hits)
            reached = [median_queries(hits, budget), median_queries(near, budget)]
        lines.append("| " + " | ".join([strategy] + [mean_std(at[p]) for p in points] + reached + [f"{seconds:.1f}"]
                                       + proxy_cost(runs, queries)) + " |")
    lines += comparisons(groups, figures, points)
    lines += short_lines(groups, budget) if unit == "query" else []
    lines += trust_lines(groups)
    picture = "reported accuracy" if best is None else "regret"
    lines += ["", f"![{picture} on {benchmark.name}]({png})", ""]
    return lines, figures


def short_lines(groups: dict[str, list[dict]], budget: int) -> list[str]:
    """The runs that stopped before the budget: their strategy found nothing new left to propose."""
    lines = []
    for strategy, runs in groups.items():
        short = sorted(len(t["fitness"]) for t in runs if len(t["fitness"]) < budget)
        if short:
            lines.append(f"- {len(short)} of {len(runs)} `{strategy}` runs stopped before the budget, with nothing "
                         f"new left to propose, after {short[0]}-{short[-1]} queries; each keeps its last value.")
    return [""] + lines if lines else []


def trust_lines(groups: dict[str, list[dict]]) -> list[str]:
    """For strategies run with --trust learned: the share of offspring the GPT rewrote, over the generations."""
    lines = []
    for strategy, runs in groups.items():
        shares = [[share for _, share in sorted((int(g), v) for g, v in t["gpt_share"].items())]
                  for t in runs if t.get("gpt_share")]
        if not shares:
            continue
        first = statistics.fmean(s[0] for s in shares)
        later = [s for s in shares if len(s) > 1]
        second = f"{statistics.fmean(s[1] for s in later):.2f}" if later else "-"
        last = statistics.fmean(s[-1] for s in shares)
        lines.append(f"- `{strategy}` learned how much to trust its GPT: it rewrote a share of {first:.2f} of the "
                     f"initial population, {second} of generation 1's offspring and {last:.2f} in the last "
                     f"generation it rewrote (mean over {len(shares)} seeds).")
    return [""] + lines if lines else []


def proxy_cost(runs: list[dict], queries: int) -> list[str]:
    """The screening proxy's seconds per 100 queries and per architecture screened ("-": not screened)."""
    screened = sum(t["screened"] for t in runs)
    if not screened:
        return ["-", "-"]
    seconds = sum(t["proxy_seconds"] for t in runs)
    return [f"{seconds / queries * 100:.1f}", f"{seconds / screened:.3f}"]


def comparisons(groups: dict[str, list[dict]], figures: dict[str, dict], points: list[int]) -> list[str]:
    """Paired one-sided Wilcoxon p-values of each gpt-ga row against the baselines screened as it is (none for
    plain gpt-ga), so a screened gpt-ga is measured against what screening alone gives (e.g. ga+naswot)."""
    lines = []
    for ours in (s for s in groups if uses_gpt(s)):
        screen = split_variant(ours)[1]
        baselines = [s for s in groups if s != ours and split_variant(s)[1] == screen]
        if not baselines:
            continue
        n = len(groups[ours])
        lines += ["", f"Paired one-sided Wilcoxon p-values, {ours} better than ... (n = {n} seeds; the smallest p "
                  f"{n} seeds can give is {0.5 ** n:.2g}):", "",
                  "| baseline | " + " | ".join(f"@{q}" for q in points) + " |", "|---|" + "---|" * len(points)]
        for strategy in baselines:
            mine, theirs = figures[ours]["at"], figures[strategy]["at"]
            lines.append(f"| {strategy} | " + " | ".join(f"{one_sided_wilcoxon(mine[q], theirs[q]):.3g}" for q in points) + " |")
    return lines


def targets_section(all_figures: dict[str, dict]) -> list[str]:
    screened = sorted({s for figures in all_figures.values() for s in figures
                       if split_variant(s)[0] == TARGET_STRATEGY and split_variant(s)[1]})  # e.g. gpt-ga+naswot
    header = ["benchmark", "acc @10 (target)", "acc @100 (target)", "median q to optimum (target)",
              *(f"{s} acc @10 (target)" for s in screened)]
    lines = ["## Targets (gpt-ga)", "", TARGETS_NOTE, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (at10, at100, to_opt) in TARGETS.items():
        ran = all_figures.get(name, {})
        figures = ran.get(TARGET_STRATEGY)
        if figures is None and not any(s in ran for s in screened):
            continue
        cells = [name]
        if figures is None:
            cells += ["not run"] * 3
        else:
            cells += [_against(figures, 10, at10), _against(figures, 100, at100)]
            median = figures["median_to_optimum"]
            met = not median.startswith(">") and float(median) <= to_opt
            cells.append(f"{median} ({to_opt}: {'met' if met else 'missed'})")
        cells += [_against(ran[s], 10, SCREENED_TARGETS[name]) if s in ran else "not run" for s in screened]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def fidelity_lines(trajectories: list[dict], strategies: list[str], fidelity: dict) -> list[str]:
    """Which strategies ran multi-fidelity, and how many evaluations each made below the full schedule."""
    lines = [f"Multi-fidelity settings, on every run that takes them: `{fidelity!r}`.", ""]
    for strategy in strategies:
        runs = [t for t in trajectories if t["strategy"] == strategy]
        if runs:
            rungs = statistics.fmean(t.get("rungs", 0) for t in runs)
            full = statistics.fmean(len(t["fitness"]) for t in runs)
            lines.append(f"- `{strategy}`: {full:.1f} evaluations at the full schedule and {rungs:.1f} below it "
                         "per run (mean over seeds).")
    return lines + [""]


def fidelity_targets_section(all_figures: dict[str, dict]) -> list[str]:
    """gpt-ga's targets with multi-fidelity on NAS-Bench-201, in full-training equivalents."""
    lines = ["## Targets (gpt-ga, multi-fidelity)", "", "| benchmark | acc @10 (target) | median cost to optimum "
             "(target) |", "|---|---|---|"]
    for name, (at10, to_opt) in FIDELITY_TARGETS.items():
        figures = all_figures.get(name, {}).get(TARGET_STRATEGY)
        if figures is None:
            continue
        median = figures["median_to_optimum"]
        met = not median.startswith(">") and float(median) <= to_opt
        lines.append(f"| {name} | {_against(figures, 10, at10)} | {median} ({to_opt}: {'met' if met else 'missed'}) |")
    return lines + [""]


def _against(figures: dict, q: int, target: float) -> str:
    if q not in figures["at"]:
        return f"not measured ({target:.2f})"
    mean = statistics.fmean(figures["at"][q])
    verdict = "met" if mean >= target else f"missed by {target - mean:.2f}"
    return f"{mean:.2f} ({target:.2f}: {verdict})"


LEAKAGE = (
    "No leakage: a GPT that searches a space never saw a table of that space, on any dataset (each benchmark "
    "below names its GPT and the tables in its training corpus; the harness refuses any other). The shipped "
    "GPT learned from human-designed networks (torchvision, timm, pytorchcv's CIFAR and SVHN networks, classic "
    "CIFAR designs; see its model card) and no benchmark table. Online adaptation, "
    "when on, learns only from architectures this run evaluated, and each of those counts as a query. "
    "Search selects on validation accuracy where the table has it (NAS-Bench-201); the macro tables have only "
    "a test accuracy, so there the search selects on the same number it reports."
)


def write_report(trajectories: list[dict], benchmarks: list[Benchmark], strategies: list[str], budget: int,
                 output_dir: Path, command: str, settings: dict) -> str:
    hardware = settings.get("hardware", {})
    device, limit = hardware.get("latency_table"), hardware.get("max_latency_ms")
    pareto_study = device is not None and "latency" in hardware.get("objectives", "")
    constraint = (device, limit) if device is not None and limit is not None else ()
    fidelity = settings.get("fidelity", {})
    unit = fidelity.get("budget_unit") or "query"
    write_csvs(trajectories, benchmarks, budget, output_dir, constraint, unit)
    seeds = len({t["seed"] for t in trajectories})
    counted = "unique queries" if unit == "query" else "full-training equivalents"
    lines = ["# gptnas benchmark report", "", f"Command: `{command}`", "",
             f"{len(trajectories)} runs: {len(benchmarks)} benchmarks x {len(strategies)} strategies x {seeds} paired seeds, "
             f"budget {budget} {counted} each.", "", LEAKAGE,
             "", __doc__.split("Definitions (stated in the report too):")[1].strip(), ""]
    if device is not None:
        lines += [pareto.__doc__.split("Definitions (stated in the report too):")[1].strip(), ""]
    if settings.get("study"):
        lines += ["Study settings (on top of each strategy's defaults): `" + repr(settings["study"]) + "`", ""]
    if hardware:
        lines += [f"Hardware settings of every run: `{hardware!r}`", ""]
    if fidelity:
        lines += fidelity_lines(trajectories, strategies, fidelity)
    all_figures = {}
    for benchmark in benchmarks:
        groups = {s: sorted((t for t in trajectories if t["benchmark"] == benchmark.name and t["strategy"] == s),
                            key=lambda t: t["seed"]) for s in strategies}
        groups = {s: runs for s, runs in groups.items() if runs}
        png = f"{'accuracy' if benchmark.trained else 'regret'}_{benchmark.name.replace(':', '_')}.png"
        plot_curves(benchmark, groups, budget, output_dir / png, constraint, unit)
        section, all_figures[benchmark.name] = benchmark_section(benchmark, groups, budget, png, constraint, unit)
        if constraint:
            section[2:2] = pareto.constrained_lines(benchmark, *constraint)
            section += pareto.constrained_targets(benchmark, *constraint, all_figures[benchmark.name])
        if pareto_study:
            front_png = str(output_dir / f"front_{benchmark.name.replace(':', '_')}.png")
            section += pareto.hypervolume_section(benchmark, groups, budget, device, front_png)
        lines += section
    if unit == "full":
        lines += fidelity_targets_section(all_figures)
    elif not hardware and not fidelity and set(TARGETS) & set(all_figures):  # set for unconstrained,
        lines += targets_section(all_figures)  # single-objective searches of the tables
    text = "\n".join(lines)
    (output_dir / "report.md").write_text(text)
    return text
