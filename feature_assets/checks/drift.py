"""Asset checks of a stats table: drift, null-rate spikes and row-count change against the reference.

A run covering several days is graded by its worst day. A failed check's severity is WARN (moderate) or
ERROR (severe); its description names the days, the columns and their numbers, and its metadata holds
every number as a float (per day, per column), so Dagster plots them over runs.
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import AssetCheckResult, AssetCheckSeverity

from feature_assets.quality.drift_report import ColumnDrift, DayReport, worst
from feature_assets.statistics.drift import METRICS

DRIFT_CHECK = "drift"
NULL_RATE_CHECK = "null_rate_spike"
ROW_COUNT_CHECK = "row_count_change"
CHECKS = (
    (DRIFT_CHECK, "PSI, Jensen-Shannon, Hellinger and KS per column against the reference (join's thresholds)"),
    (NULL_RATE_CHECK, "each column's null rate against the reference's: WARN from +10 points, ERROR from +30"),
    (ROW_COUNT_CHECK, "rows against the reference's rows per day: WARN from a 50% change, ERROR from 90%"),
)
MAX_NAMED = 8
SHORT_METRICS = {"jensen_shannon": "JS", "psi": "PSI", "hellinger": "Hellinger", "ks": "KS"}


def _put(metadata: dict, key: str, value: float | None) -> None:
    """A number as a float; an absent one (no reference) is left out rather than stored as NaN."""
    if value is not None:
        metadata[key] = float(value)


def _metrics_text(column: ColumnDrift) -> str:
    shown = [f"{SHORT_METRICS[m]} {column.metrics[m]:.3f}" for m in METRICS if column.metrics.get(m) is not None]
    return f"{column.column} ({', '.join(shown)})"


def _named(columns: list[ColumnDrift], text: Callable[[ColumnDrift], str]) -> str:
    more = f" and {len(columns) - MAX_NAMED} more" if len(columns) > MAX_NAMED else ""
    return ", ".join(text(c) for c in columns[:MAX_NAMED]) + more


def _result(check: str, level: str, description: str, metadata: dict) -> AssetCheckResult:
    severity = AssetCheckSeverity.ERROR if level == "ERROR" else AssetCheckSeverity.WARN
    return AssetCheckResult(
        check_name=check, passed=level == "PASS", severity=severity, description=description, metadata=metadata
    )


def drift_check(reports: list[DayReport]) -> AssetCheckResult:
    lines = []
    metadata: dict = {}
    for report in reports:
        if not report.has_reference:
            lines.append(f"{report.ds}: no reference stats ({report.reference})")
            continue
        for level in ("ERROR", "WARN"):
            columns = report.drifting(level)
            if columns:
                lines.append(f"{report.ds} {level} ({len(columns)} columns): {_named(columns, _metrics_text)}")
        for metric in METRICS:
            values = [value for c in report.columns if (value := c.metrics.get(metric)) is not None]
            _put(metadata, f"{report.ds}/max_{metric}", max(values, default=None))
        metadata[f"{report.ds}/columns_warn"] = float(len(report.drifting("WARN")))
        metadata[f"{report.ds}/columns_error"] = float(len(report.drifting("ERROR")))
        for column in report.columns:
            for metric in METRICS:
                if column.metrics.get(metric) is not None:
                    _put(metadata, f"{report.ds}/{column.column}/{metric}", column.metrics[metric])
    level = worst(r.drift_severity for r in reports if r.has_reference)
    if level == "PASS":
        lines.insert(0, "no column drifts past the warn levels")
    return _result(DRIFT_CHECK, level, "\n".join(lines), metadata)


def null_rate_check(reports: list[DayReport]) -> AssetCheckResult:
    lines = []
    metadata: dict = {}

    def text(column: ColumnDrift) -> str:
        return f"{column.column} ({column.reference_null_rate:.3f} -> {column.null_rate:.3f})"

    for report in reports:
        for level in ("ERROR", "WARN"):
            spikes = sorted(report.null_spikes(level), key=lambda c: -(c.null_rate_change or 0.0))
            if spikes:
                lines.append(f"{report.ds} {level}: {_named(spikes, text)}")
        changes = [c.null_rate_change for c in report.columns if c.null_rate_change is not None]
        _put(metadata, f"{report.ds}/max_null_rate_increase", max(changes, default=None))
        for column in report.columns:
            _put(metadata, f"{report.ds}/{column.column}/null_rate", column.null_rate)
    level = worst(r.null_severity for r in reports)
    if level == "PASS":
        lines.insert(0, "no null-rate spike")
    return _result(NULL_RATE_CHECK, level, "\n".join(lines), metadata)


def row_count_check(reports: list[DayReport]) -> AssetCheckResult:
    lines = []
    metadata: dict = {}
    for report in reports:
        metadata[f"{report.ds}/rows"] = float(report.rows)
        _put(metadata, f"{report.ds}/reference_rows_per_day", report.reference_rows)
        _put(metadata, f"{report.ds}/row_change", report.row_change)
        if report.row_severity != "PASS":
            lines.append(
                f"{report.ds} {report.row_severity}: {report.rows} rows against {report.reference_rows:.0f} a day "
                f"({report.row_change:.0%} change)"
            )
    level = worst(r.row_severity for r in reports)
    if level == "PASS":
        lines.insert(0, "row counts within 50% of the reference")
    return _result(ROW_COUNT_CHECK, level, "\n".join(lines), metadata)


def stats_checks(reports: list[DayReport]) -> list[AssetCheckResult]:
    return [drift_check(reports), null_rate_check(reports), row_count_check(reports)]


def day_metadata(report: DayReport) -> dict[str, float]:
    """A day's numbers for its materialization's metadata, as floats."""
    metadata: dict[str, float] = {
        "rows": float(report.rows),
        "columns_warn": float(len(report.drifting("WARN"))),
        "columns_error": float(len(report.drifting("ERROR"))),
    }
    _put(metadata, "reference_rows_per_day", report.reference_rows)
    _put(metadata, "row_change", report.row_change)
    for metric in METRICS:
        values = [value for c in report.columns if (value := c.metrics.get(metric)) is not None]
        _put(metadata, f"max_{metric}", max(values, default=None))
    for column in report.columns:
        _put(metadata, f"{column.column}/null_rate", column.null_rate)
        for metric in METRICS:
            if column.metrics.get(metric) is not None:
                _put(metadata, f"{column.column}/{metric}", column.metrics[metric])
    return metadata
