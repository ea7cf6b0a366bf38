"""Cells (model x seed) -> per-model mean ± std, and per domain the leader and whether its lead is beyond noise.

The lead of the best model over the second is judged by a paired t-test over the seeds both models
finished (seed s of one against seed s of the other: the same seed gives the same initial data order,
so pairing removes that part of the noise). With 3 seeds the test has 2 degrees of freedom: only a
consistent lead counts as beyond noise, which is the point.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

METRICS = ("auc", "logloss", "gauc")
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False}
OVERALL = "all"


@dataclass
class CellResult:
    model: str
    seed: int
    status: str                          # completed | error: ... | not run
    test: dict | None = None             # the run's report["test"]: {"overall": {...}, "domains": [...]}
    best_val_auc: float | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    samples_per_s: float | None = None   # mean training throughput over the run's epochs
    parameters: int | None = None
    run_dir: str = ""

    def value(self, scope: str, metric: str) -> float | None:
        """Test ``metric`` of a domain name or of ``OVERALL``; None when undefined or not measured."""
        if self.test is None:
            return None
        entry = self.test["overall"] if scope == OVERALL else next(
            (d for d in self.test["domains"] if str(d["name"]) == scope), None)
        value = None if entry is None else entry.get(metric)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class Summary:
    mean: float | None
    std: float | None
    n: int
    values: dict[int, float] = field(default_factory=dict)   # seed -> value

    def text(self) -> str:
        if self.mean is None:
            return "–"
        return f"{self.mean:.4f} ± {self.std:.4f}" if self.n > 1 else f"{self.mean:.4f} (1 seed)"


@dataclass
class Lead:
    scope: str
    best: str
    second: str | None
    difference: float | None             # best mean - second mean (the metric's units)
    p_value: float | None                # paired t-test over shared seeds; None: fewer than 2 pairs
    pairs: int
    beyond_noise: bool | None

    def verdict(self, alpha: float) -> str:
        if self.second is None:
            return "only model"
        if self.p_value is None:
            return f"untested ({self.pairs} paired seed{'s' if self.pairs != 1 else ''})"
        word = "beyond noise" if self.beyond_noise else "within noise"
        return f"{word} (p = {self.p_value:.3f}, {self.pairs} seeds)"


def _summary(values: dict[int, float]) -> Summary:
    if not values:
        return Summary(None, None, 0)
    xs = list(values.values())
    return Summary(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0, len(xs), values)


def summarize(cells: list[CellResult], scope: str, metric: str) -> Summary:
    """Test ``metric`` of a scope over the finished seeds."""
    return _summary({c.seed: v for c in cells if c.status == "completed" and (v := c.value(scope, metric)) is not None})


def summarize_val(cells: list[CellResult]) -> Summary:
    """Validation AUC of each finished seed's best epoch (what early stopping selected on)."""
    return _summary({c.seed: c.best_val_auc for c in cells if c.status == "completed" and c.best_val_auc is not None})


def paired_p_value(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test of a - b; None with fewer than 2 pairs."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    if len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b)]
    if max(diffs) - min(diffs) <= 1e-15 * max(1.0, max(abs(d) for d in diffs)):
        return 1.0 if abs(diffs[0]) <= 1e-15 else 0.0   # no spread: identical pairs, or an exact lead
    from scipy import stats

    return float(stats.ttest_rel(a, b).pvalue)


def lead(by_model: dict[str, list[CellResult]], scope: str, metric: str, alpha: float) -> Lead | None:
    """The best model of a scope by mean test ``metric``, and the test of its lead over the second."""
    summaries = {m: summarize(cells, scope, metric) for m, cells in by_model.items()}
    ranked = sorted((m for m, s in summaries.items() if s.mean is not None),
                    key=lambda m: summaries[m].mean, reverse=HIGHER_IS_BETTER[metric])
    if not ranked:
        return None
    best = ranked[0]
    if len(ranked) == 1:
        return Lead(scope, best, None, None, None, 0, None)
    second = ranked[1]
    a, b = summaries[best].values, summaries[second].values
    seeds = sorted(set(a) & set(b))
    p = paired_p_value([a[s] for s in seeds], [b[s] for s in seeds])
    return Lead(scope, best, second, summaries[best].mean - summaries[second].mean, p, len(seeds),
                None if p is None else p < alpha)


def scopes(cells: list[CellResult]) -> list[str]:
    """Domain names in report order (from the first measured cell), then ``OVERALL``."""
    for cell in cells:
        if cell.test is not None:
            return [str(d["name"]) for d in cell.test["domains"]] + [OVERALL]
    return [OVERALL]


def mean_of(values) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.fmean(xs) if xs else None
