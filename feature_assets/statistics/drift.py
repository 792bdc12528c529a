"""Drift between a current and a reference `ColumnSummary`, and the thresholds that grade it.

The metrics work on two distributions over the same bins (counts or probabilities; each is normalized to
sum 1 first):

- PSI (population stability index), natural log: sum (p - q) * ln(p / q). Empty bins would make it
  infinite, so each distribution first gets `epsilon` (default 1e-4) added to every bin and is renormalized.
- Jensen-Shannon divergence, base 2 (not the distance, its square root): in [0, 1], 0 for equal inputs.
- Hellinger distance: sqrt(sum (sqrt p - sqrt q)^2 / 2) = sqrt(1 - sum sqrt(p * q)), in [0, 1].
- Kolmogorov-Smirnov statistic: max |F_p(x) - F_q(x)| over the given CDF points.

How `drift` bins each kind: numeric, list (lengths) and map (keys per map) use 20 bins split at the
reference's 5% quantiles (deduplicated, so a value repeated over many quantiles is one bin edge) and
both KLL sketches' PMFs over them; KS compares both sketches' CDFs at the union of both sketches'
percentiles (every 1%). Categoricals use the union of both sides' top 20 items plus an "other" bin (no KS:
categories have no order). Booleans use the two bins (false, true). Nulls are not part of the distributions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from feature_assets.statistics.summary import TOP_ITEMS, ColumnSummary

DEFAULT_PSI_EPSILON = 1e-4
BINS = 20
METRICS = ("psi", "jensen_shannon", "hellinger", "ks")
SEVERITIES = ("PASS", "WARN", "ERROR")

ArrayLike = Sequence[float] | np.ndarray


def _distribution(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name}: bins must be finite and non-negative")
    total = array.sum()
    if total <= 0:
        raise ValueError(f"{name}: bins sum to 0")
    return np.asarray(array / total, dtype=np.float64)


def _pair(p: ArrayLike, q: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    first, second = _distribution(p, "p"), _distribution(q, "q")
    if first.size != second.size:
        raise ValueError(f"p has {first.size} bins but q has {second.size}")
    return first, second


def psi(p: ArrayLike, q: ArrayLike, epsilon: float = DEFAULT_PSI_EPSILON) -> float:
    """Population stability index (natural log) after adding `epsilon` to every bin of both sides."""
    first, second = _pair(p, q)
    first = (first + epsilon) / (1.0 + epsilon * first.size)
    second = (second + epsilon) / (1.0 + epsilon * second.size)
    return float(np.sum((first - second) * np.log(first / second)))


def jensen_shannon(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1]."""
    first, second = _pair(p, q)
    middle = (first + second) / 2

    def kl_to_middle(side: np.ndarray) -> float:
        present = side > 0
        return float(np.sum(side[present] * np.log2(side[present] / middle[present])))

    return float(min(max((kl_to_middle(first) + kl_to_middle(second)) / 2, 0.0), 1.0))


def hellinger(p: ArrayLike, q: ArrayLike) -> float:
    """Hellinger distance, in [0, 1]: sqrt(sum (sqrt p - sqrt q)^2 / 2)."""
    first, second = _pair(p, q)
    return float(min(np.sqrt(np.sum((np.sqrt(first) - np.sqrt(second)) ** 2) / 2), 1.0))


def ks_statistic(cdf_p: ArrayLike, cdf_q: ArrayLike) -> float:
    """The largest absolute difference of two CDFs evaluated at the same points."""
    first = np.asarray(cdf_p, dtype=np.float64)
    second = np.asarray(cdf_q, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"CDFs must be 1-D of the same length, got shapes {first.shape} and {second.shape}")
    if first.size == 0:
        return 0.0
    return float(np.max(np.abs(first - second)))


def _metrics(p: ArrayLike, q: ArrayLike, ks: float | None) -> dict[str, float | None]:
    return {"psi": psi(p, q), "jensen_shannon": jensen_shannon(p, q), "hellinger": hellinger(p, q), "ks": ks}


def _no_metrics() -> dict[str, float | None]:
    return dict.fromkeys(METRICS)


def _sketch_drift(current: ColumnSummary, reference: ColumnSummary) -> dict[str, float | None]:
    now, then = current.quantiles, reference.quantiles
    if now is None or then is None or now.is_empty() or then.is_empty():
        return _no_metrics()
    edges = np.unique(then.get_quantiles([step / BINS for step in range(1, BINS)], True))
    split_points = [float(edge) for edge in edges]
    p = now.get_pmf(split_points)
    q = then.get_pmf(split_points)
    ranks = [step / 100 for step in range(101)]
    points = np.unique(np.concatenate([now.get_quantiles(ranks, True), then.get_quantiles(ranks, True)]))
    # get_cdf returns one more value (1.0 past the last point); inclusive: the fraction at or below x.
    cdf_now = now.get_cdf([float(x) for x in points], True)[:-1]
    cdf_then = then.get_cdf([float(x) for x in points], True)[:-1]
    return _metrics(p, q, ks_statistic(cdf_now, cdf_then))


def _categorical_drift(current: ColumnSummary, reference: ColumnSummary) -> dict[str, float | None]:
    now, then = current.frequent, reference.frequent
    now_total, then_total = current.non_null_count, reference.non_null_count
    if now is None or then is None or now_total <= 0 or then_total <= 0:
        return _no_metrics()
    items = sorted({item for side in (current, reference) for item, _ in side.top_items(TOP_ITEMS)})

    def shares(sketch: object, total: int) -> list[float]:
        counts = [min(float(sketch.get_estimate(item)), float(total)) for item in items]  # type: ignore[attr-defined]
        # Estimates may overshoot by the sketch's error, so "other" is clipped at 0.
        return [*counts, max(total - sum(counts), 0.0)]

    return _metrics(shares(now, now_total), shares(then, then_total), None)


def _boolean_drift(current: ColumnSummary, reference: ColumnSummary) -> dict[str, float | None]:
    p = [current.false_count, current.true_count]
    q = [reference.false_count, reference.true_count]
    if sum(p) == 0 or sum(q) == 0:
        return _no_metrics()
    ks = abs(p[0] / sum(p) - q[0] / sum(q))
    return _metrics(p, q, ks)


def drift(current: ColumnSummary, reference: ColumnSummary) -> dict[str, float | None]:
    """{"psi", "jensen_shannon", "hellinger", "ks"} of `current` against `reference`; a metric is None when
    either side has no non-null value (and "ks" always for categoricals)."""
    if current.kind != reference.kind:
        raise ValueError(
            f"cannot compare {current.column!r} ({current.kind}) with reference {reference.column!r} ({reference.kind})"
        )
    if current.kind in ("numeric", "list", "map"):
        return _sketch_drift(current, reference)
    if current.kind == "categorical":
        return _categorical_drift(current, reference)
    return _boolean_drift(current, reference)


@dataclass(frozen=True)
class DriftThresholds:
    """Warn and fail levels per metric (a metric at or above a level reaches it). Defaults: JS divergence
    0.05 / 0.15, PSI 0.1 / 0.2 (the usual "moderate" / "significant" shift), Hellinger 0.1 / 0.2,
    KS 0.1 / 0.2."""

    jensen_shannon_warn: float = 0.05
    jensen_shannon_fail: float = 0.15
    psi_warn: float = 0.1
    psi_fail: float = 0.2
    hellinger_warn: float = 0.1
    hellinger_fail: float = 0.2
    ks_warn: float = 0.1
    ks_fail: float = 0.2

    def __post_init__(self) -> None:
        for metric in METRICS:
            warn, fail = self.levels(metric)
            if not 0 <= warn <= fail:
                raise ValueError(f"drift thresholds for {metric}: need 0 <= warn ({warn}) <= fail ({fail})")

    def levels(self, metric: str) -> tuple[float, float]:
        if metric not in METRICS:
            raise ValueError(f"unknown drift metric {metric!r} (expected one of {', '.join(METRICS)})")
        return getattr(self, f"{metric}_warn"), getattr(self, f"{metric}_fail")


def severity(metrics: Mapping[str, float | None], thresholds: DriftThresholds | None = None) -> str:
    """ "ERROR" when any metric reaches its fail level, "WARN" when any reaches its warn level, else "PASS".
    Missing or None metrics do not count."""
    levels = thresholds or DriftThresholds()
    worst = 0
    for metric in METRICS:
        value = metrics.get(metric)
        if value is None:
            continue
        warn, fail = levels.levels(metric)
        if value >= fail:
            worst = max(worst, 2)
        elif value >= warn:
            worst = max(worst, 1)
    return SEVERITIES[worst]
