"""A day's column summaries against a reference: drift per column, null-rate spikes, row-count change.

Pure Python over `ColumnSummary` (no Spark): the stats assets' checks, the charts and the online fetcher's
range comparison share it.

- The reference of a day: the previous day, the 7 days before it merged ("trailing_7_days"), or a pinned
  window of days (the join's `drift_reference`). Hourly summaries merge into days, days into the reference.
- Drift: `statistics.drift` per column, graded by the join's `DriftThresholds` (PASS, WARN, ERROR).
- Null-rate spike: the day's null rate minus the reference's, WARN from `NULL_RATE_WARN` (10 points) up,
  ERROR from `NULL_RATE_FAIL` (30 points) up.
- Row-count change: |rows / reference rows per day - 1|, WARN from `ROW_CHANGE_WARN` (50%), ERROR from
  `ROW_CHANGE_FAIL` (90%). The stats' row counts are those of the sampled rows; with the same sample share
  on both sides the ratio is the table's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from feature_assets.statistics import ColumnSummary, DriftThresholds, drift, merge, severity
from feature_assets.statistics.drift import METRICS, SEVERITIES

PREVIOUS_DAY, TRAILING_7_DAYS, PINNED = "previous_day", "trailing_7_days", "pinned"
TRAILING_DAYS = 7
NULL_RATE_WARN = 0.1
NULL_RATE_FAIL = 0.3
ROW_CHANGE_WARN = 0.5
ROW_CHANGE_FAIL = 0.9

DaySummaries = dict[str, dict[str, ColumnSummary]]  # ds -> column -> summary of the day


def _shift(ds: str, days: int) -> str:
    return (date.fromisoformat(ds) + timedelta(days=days)).isoformat()


def _days(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def reference_days(reference: tuple[str, str | None, str | None], ds: str) -> list[str]:
    """The days a day is compared with, for a join's `drift_reference` (kind, start_ds, end_ds)."""
    kind, start, end = reference
    if kind == PREVIOUS_DAY:
        return [_shift(ds, -1)]
    if kind == TRAILING_7_DAYS:
        return [_shift(ds, -offset) for offset in range(TRAILING_DAYS, 0, -1)]
    if kind == PINNED and start and end:
        return _days(start, end)
    raise ValueError(f"unknown drift reference {reference!r}")


def describe_reference(reference: tuple[str, str | None, str | None]) -> str:
    kind, start, end = reference
    return f"pinned {start}..{end}" if kind == PINNED else kind


def day_summaries(rows: Iterable[tuple[str, str, bytes]]) -> DaySummaries:
    """(ds, column, summary bytes) rows of a stats table (hourly or daily buckets) merged per day and column."""
    parts: dict[str, dict[str, list[ColumnSummary]]] = {}
    for ds, column, blob in rows:
        parts.setdefault(ds, {}).setdefault(column, []).append(ColumnSummary.from_bytes(blob))
    merged: DaySummaries = {}
    for ds, columns in parts.items():
        merged[ds] = {}
        for column, summaries in columns.items():
            summary = merge(summaries)
            assert summary is not None
            merged[ds][column] = summary
    return merged


def merged_days(days: DaySummaries, wanted: Iterable[str]) -> dict[str, ColumnSummary]:
    """Each column's summary over the wanted days that have stats."""
    by_column: dict[str, list[ColumnSummary]] = {}
    for ds in wanted:
        for column, summary in days.get(ds, {}).items():
            by_column.setdefault(column, []).append(summary)
    merged = {}
    for column, summaries in by_column.items():
        latest = summaries[-1].kind  # a column whose type changed within the window: its latest kind only
        combined = merge(s for s in summaries if s.kind == latest)
        if combined is not None:
            merged[column] = combined
    return merged


def rows_of(summaries: Mapping[str, ColumnSummary]) -> int:
    """The rows a set of column summaries describes (every column counts every row)."""
    return max((summary.total for summary in summaries.values()), default=0)


def grade(value: float | None, warn: float, fail: float) -> str:
    if value is None:
        return "PASS"
    return "ERROR" if value >= fail else "WARN" if value >= warn else "PASS"


def worst(severities: Iterable[str]) -> str:
    return SEVERITIES[max((SEVERITIES.index(s) for s in severities), default=0)]


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    metrics: dict[str, float | None]
    severity: str
    null_rate: float | None
    reference_null_rate: float | None

    @property
    def null_rate_change(self) -> float | None:
        if self.null_rate is None or self.reference_null_rate is None:
            return None
        return self.null_rate - self.reference_null_rate

    @property
    def null_severity(self) -> str:
        return grade(self.null_rate_change, NULL_RATE_WARN, NULL_RATE_FAIL)

    @property
    def rank(self) -> tuple[int, float]:
        """Sort key, worst first: the severity, then the largest Jensen-Shannon divergence (else PSI)."""
        score = self.metrics.get("jensen_shannon")
        if score is None:
            score = self.metrics.get("psi")
        return (-SEVERITIES.index(self.severity), -(score or 0.0))


@dataclass
class DayReport:
    """One day against its reference."""

    ds: str
    reference: str  # how the reference was chosen ("previous_day", ...)
    reference_days: list[str]  # the reference's days that have stats
    rows: int
    reference_rows: float | None  # rows per reference day; None without a reference
    columns: list[ColumnDrift] = field(default_factory=list)

    @property
    def has_reference(self) -> bool:
        return bool(self.reference_days)

    @property
    def drift_severity(self) -> str:
        return worst(column.severity for column in self.columns)

    @property
    def null_severity(self) -> str:
        return worst(column.null_severity for column in self.columns)

    @property
    def row_change(self) -> float | None:
        if not self.reference_rows:
            return None
        return abs(self.rows / self.reference_rows - 1.0)

    @property
    def row_severity(self) -> str:
        return grade(self.row_change, ROW_CHANGE_WARN, ROW_CHANGE_FAIL)

    def worst_columns(self, limit: int = 10) -> list[ColumnDrift]:
        return sorted(self.columns, key=lambda c: (c.rank, c.column))[:limit]

    def drifting(self, level: str) -> list[ColumnDrift]:
        return [c for c in self.worst_columns(len(self.columns)) if c.severity == level]

    def null_spikes(self, level: str) -> list[ColumnDrift]:
        return [c for c in self.columns if c.null_severity == level]


def day_report(
    ds: str,
    days: DaySummaries,
    reference: tuple[str, str | None, str | None],
    thresholds: DriftThresholds,
) -> DayReport:
    """`ds` against its reference days in `days` (days without stats are skipped; none: no reference)."""
    current = days.get(ds, {})
    wanted = [day for day in reference_days(reference, ds) if day in days and day != ds]
    then = merged_days(days, wanted)
    report = DayReport(
        ds,
        describe_reference(reference),
        wanted,
        rows_of(current),
        rows_of(then) / len(wanted) if wanted else None,
    )
    for column, summary in sorted(current.items()):
        previous = then.get(column)
        if previous is None or previous.kind != summary.kind:
            metrics: dict[str, float | None] = dict.fromkeys(METRICS)
        else:
            metrics = drift(summary, previous)
        report.columns.append(
            ColumnDrift(
                column,
                summary.kind,
                metrics,
                severity(metrics, thresholds),
                summary.null_rate,
                previous.null_rate if previous is not None else None,
            )
        )
    return report


def range_drift(
    current: Mapping[str, ColumnSummary], reference: Mapping[str, ColumnSummary], thresholds: DriftThresholds
) -> dict[str, dict[str, object]]:
    """Per column present on both sides: the drift metrics, their severity and both null rates."""
    out: dict[str, dict[str, object]] = {}
    for column, summary in sorted(current.items()):
        previous = reference.get(column)
        if previous is None or previous.kind != summary.kind:
            continue
        metrics = drift(summary, previous)
        out[column] = {
            **metrics,
            "severity": severity(metrics, thresholds),
            "null_rate": summary.null_rate,
            "reference_null_rate": previous.null_rate,
        }
    return out


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown_table(report: DayReport, limit: int = 10) -> str:
    """The worst-drifting columns of a day as a markdown table."""
    if not report.has_reference:
        return f"{report.ds}: no reference stats ({report.reference}) to compare with."
    lines = [
        f"Worst-drifting columns of {report.ds} against {report.reference} ({', '.join(report.reference_days)})",
        "",
        "| column | kind | severity | JS | PSI | Hellinger | KS | null rate | ref. null rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for column in report.worst_columns(limit):
        m = column.metrics
        lines.append(
            f"| {column.column} | {column.kind} | {column.severity} | {_number(m.get('jensen_shannon'))} "
            f"| {_number(m.get('psi'))} | {_number(m.get('hellinger'))} | {_number(m.get('ks'))} "
            f"| {_number(column.null_rate)} | {_number(column.reference_null_rate)} |"
        )
    return "\n".join(lines)
