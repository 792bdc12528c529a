"""Consistency over time: a day's mismatch rate per feature against the trailing week's, with the drift metrics.

A feature whose served values have always disagreed a little (a known sketch error, a slow stream) is not news;
one that starts to disagree is. Per compared column, the day's outcome distribution (values that agree,
values that mismatch) is compared with the same distribution over the `TRAILING_DAYS` days before it that have
a `{join}_consistency` partition, by the stats drift metrics (`statistics.drift`: PSI, Jensen-Shannon,
Hellinger over the two bins) and graded by `DriftThresholds`: a column reaching a warn or fail level is WARN
(the `consistency_drift` check grades the rate itself up to ERROR). A column is only graded when the trailing week
compared at least one value and the day's rate is above the trailing rate: fewer mismatches are not drift to
act on. Without a trailing week (the first day) nothing is graded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from feature_assets.quality.consistency import ALL_COLUMNS
from feature_assets.statistics.drift import SEVERITIES, DriftThresholds, hellinger, jensen_shannon, psi, severity

TRAILING_DAYS = 7


def trailing_days(ds: str, days: int = TRAILING_DAYS) -> tuple[str, str]:
    """The first and last day of the `days` days before `ds`."""
    day = date.fromisoformat(ds)
    return (day - timedelta(days=days)).isoformat(), (day - timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class ColumnTrend:
    column: str
    level: str
    total: int
    mismatch_rate: float | None
    trailing_total: int
    trailing_mismatch_rate: float | None
    psi: float | None
    jensen_shannon: float | None
    hellinger: float | None

    @property
    def change(self) -> float | None:
        if self.mismatch_rate is None or self.trailing_mismatch_rate is None:
            return None
        return self.mismatch_rate - self.trailing_mismatch_rate

    def text(self) -> str:
        rates = f"{_number(self.mismatch_rate)} against {_number(self.trailing_mismatch_rate)}"
        return (
            f"{self.column}: mismatch rate {rates} "
            f"over the trailing week (psi {_number(self.psi)}, jensen-shannon {_number(self.jensen_shannon)})"
        )


@dataclass(frozen=True)
class TrendReport:
    ds: str
    level: str
    columns: list[ColumnTrend]
    trailing_days: int
    description: str


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _sums(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    sums: dict[str, list[int]] = {}
    for row in rows:
        entry = sums.setdefault(row["column_name"], [0, 0])
        entry[0] += int(row.get("total") or 0)
        entry[1] += int(row.get("mismatch") or 0)
    return {column: (total, mismatch) for column, (total, mismatch) in sums.items()}


def consistency_trend(
    ds: str,
    day_rows: Iterable[Mapping[str, Any]],
    trailing_rows: Iterable[Mapping[str, Any]],
    thresholds: DriftThresholds | None = None,
) -> TrendReport:
    """The trend of day `ds` (its `{join}_consistency` rows) against the rows of the days before it."""
    trailing_list = list(trailing_rows)
    days_seen = len({row["ds"] for row in trailing_list})
    today, before = _sums(day_rows), _sums(trailing_list)
    columns = []
    for column in sorted(set(today) - {ALL_COLUMNS}):
        total, mismatch = today[column]
        trailing_total, trailing_mismatch = before.get(column, (0, 0))
        rate = mismatch / total if total else None
        trailing_rate = trailing_mismatch / trailing_total if trailing_total else None
        metrics: dict[str, float | None] = {"psi": None, "jensen_shannon": None, "hellinger": None}
        level = "PASS"
        if total and trailing_total:
            current = [total - mismatch, mismatch]
            reference = [trailing_total - trailing_mismatch, trailing_mismatch]
            metrics = {
                "psi": psi(current, reference),
                "jensen_shannon": jensen_shannon(current, reference),
                "hellinger": hellinger(current, reference),
            }
            if rate is not None and trailing_rate is not None and rate > trailing_rate:
                # A warning at most: the consistency_drift check owns ERROR for the rate itself.
                level = "WARN" if severity(metrics, thresholds) != "PASS" else "PASS"
        columns.append(
            ColumnTrend(
                column,
                level,
                total,
                rate,
                trailing_total,
                trailing_rate,
                metrics["psi"],
                metrics["jensen_shannon"],
                metrics["hellinger"],
            )
        )
    worst = max((SEVERITIES.index(c.level) for c in columns), default=0)
    flagged = sorted((c for c in columns if c.level != "PASS"), key=lambda c: (-SEVERITIES.index(c.level), c.column))
    if not days_seen:
        description = f"{ds}: no consistency partition in the trailing week to compare with"
    elif not flagged:
        description = f"{ds}: {len(columns)} columns as consistent as over the trailing {days_seen} days"
    else:
        description = "\n".join(f"{ds}: {c.level} {c.text()}" for c in flagged)
    return TrendReport(ds, SEVERITIES[worst], columns, days_seen, description)
