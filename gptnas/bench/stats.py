"""The statistics of a study report: means across seeds, medians with unreached runs, paired tests."""

from __future__ import annotations

import math
import statistics

from scipy.stats import wilcoxon


def mean_std(values: list[float], digits: int = 2) -> str:
    """`mean ± sd` over seeds (the sample standard deviation, not a standard error); NaNs (nothing to report)
    are left out, and "-" when nothing is left."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def median_queries(values: list[int | None], budget: int) -> str:
    """Median with unreached runs counted as beyond the budget."""
    ranked = sorted(math.inf if v is None else v for v in values)
    middle = statistics.median(ranked)
    return f">{budget}" if math.isinf(middle) else f"{middle:g}"


def one_sided_wilcoxon(ours: list[float], theirs: list[float]) -> float:
    """p-value of the paired Wilcoxon signed-rank test that `ours` is greater (1.0 when all pairs tie)."""
    if all(abs(a - b) < 1e-12 for a, b in zip(ours, theirs)):
        return 1.0
    return float(wilcoxon(ours, theirs, alternative="greater").pvalue)
