"""The consistency drift check of a `{join}_consistency` table: served (logged) values against recomputed ones.

Over the days of the run taken together, each compared feature's mismatch rate and smape are graded by the
join's `ConsistencyThresholds`: the check fails with severity ERROR when any feature reaches a fail level,
fails with WARN when one reaches only a warn level, else passes. The description names the features at WARN
or ERROR with their numbers (and the days that reach a level, when the run covers several); the metadata holds
every number as a float (per feature, per day, and the thresholds), so Dagster plots them over runs.

Blocking: an asset that trains on the join should not read days whose served values disagree with the
offline ones. Declare the check with `blocking=True` (`consistency_check_spec(..., blocking=True)`, the
`blocking` argument of `definitions.consistency_assets.consistency_assets`) and make the training asset depend
on `{join}_consistency`: a failing ERROR check then stops the run before that asset (and the upload) runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from feature_assets.quality.consistency import ConsistencyReport, ConsistencyThresholds
from feature_assets.quality.consistency_trend import TRAILING_DAYS, TrendReport

CONSISTENCY_CHECK = "consistency_drift"
CONSISTENCY_TREND_CHECK = "consistency_trend"
TREND_DESCRIPTION = (
    f"each feature's mismatch rate of the day against the trailing {TRAILING_DAYS} days (PSI, Jensen-Shannon and "
    "Hellinger of agreeing/mismatching values, graded by the drift thresholds): WARN when it rose by a drift "
    "level; the consistency_drift check owns ERROR"
)
CHECK_DESCRIPTION = (
    "each feature's mismatch rate and smape (served against recomputed values) against the join's consistency "
    "thresholds: WARN from a warn level, ERROR from a fail level"
)


def consistency_check_spec(key: AssetKey, blocking: bool = False) -> AssetCheckSpec:
    return AssetCheckSpec(CONSISTENCY_CHECK, asset=key, description=CHECK_DESCRIPTION, blocking=blocking)


def consistency_trend_check_spec(key: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec(CONSISTENCY_TREND_CHECK, asset=key, description=TREND_DESCRIPTION)


def _put(metadata: dict, key: str, value: float | None) -> None:
    """A number as a float; an absent one (nothing compared, no numeric values) is left out."""
    if value is not None:
        metadata[key] = float(value)


def report_metadata(report: ConsistencyReport, prefix: str = "") -> dict[str, float]:
    """A report's numbers as floats: per feature its mismatch rate, smape, values compared and mismatches;
    the overall rate; the worst rate and smape; how many features warn or fail."""
    metadata: dict[str, float] = {
        f"{prefix}columns_warn": float(sum(c.level == "WARN" for c in report.columns)),
        f"{prefix}columns_error": float(sum(c.level == "ERROR" for c in report.columns)),
    }
    rates = [c.mismatch_rate for c in report.columns if c.mismatch_rate is not None]
    smapes = [c.smape for c in report.columns if c.smape is not None]
    _put(metadata, f"{prefix}max_mismatch_rate", max(rates, default=None))
    _put(metadata, f"{prefix}max_smape", max(smapes, default=None))
    if report.overall is not None:
        _put(metadata, f"{prefix}overall_mismatch_rate", report.overall.mismatch_rate)
        _put(metadata, f"{prefix}values_compared", report.overall.total)
    for column in report.columns:
        _put(metadata, f"{prefix}{column.column}/mismatch_rate", column.mismatch_rate)
        _put(metadata, f"{prefix}{column.column}/smape", column.smape)
        _put(metadata, f"{prefix}{column.column}/total", column.total)
        _put(metadata, f"{prefix}{column.column}/mismatch", column.mismatch)
    return metadata


def consistency_check(
    report: ConsistencyReport, thresholds: ConsistencyThresholds, days: Mapping[str, ConsistencyReport]
) -> AssetCheckResult:
    """The check's result for a run: `report` over all its days, `days` each day's own report."""
    lines = [report.description]
    if len(days) > 1:
        for ds, day in sorted(days.items()):
            if day.level != "PASS":
                lines.extend(f"{ds}: {line}" for line in day.description.splitlines())
    metadata: dict = report_metadata(report)
    if len(days) > 1:
        for ds, day in sorted(days.items()):
            metadata.update(report_metadata(day, prefix=f"{ds}/"))
    metadata.update({f"threshold/{name}": float(value) for name, value in thresholds.__dict__.items()})
    return AssetCheckResult(
        check_name=CONSISTENCY_CHECK,
        passed=report.level == "PASS",
        severity=AssetCheckSeverity.ERROR if report.level == "ERROR" else AssetCheckSeverity.WARN,
        description="\n".join(lines),
        metadata=metadata,
    )


def trend_metadata(report: TrendReport, prefix: str = "") -> dict[str, float]:
    """A day's trend as floats: per feature the trailing week's mismatch rate, the change and the drift metrics."""
    metadata: dict[str, float] = {f"{prefix}trend/trailing_days": float(report.trailing_days)}
    for column in report.columns:
        _put(metadata, f"{prefix}trend/{column.column}/trailing_mismatch_rate", column.trailing_mismatch_rate)
        _put(metadata, f"{prefix}trend/{column.column}/change", column.change)
        _put(metadata, f"{prefix}trend/{column.column}/psi", column.psi)
        _put(metadata, f"{prefix}trend/{column.column}/jensen_shannon", column.jensen_shannon)
        _put(metadata, f"{prefix}trend/{column.column}/hellinger", column.hellinger)
    return metadata


def consistency_trend_check(reports: Mapping[str, TrendReport]) -> AssetCheckResult:
    """The trend check of a run: fails (WARN) when a feature of any day drifted from its trailing week."""
    flagged = [report for _, report in sorted(reports.items()) if report.level != "PASS"]
    lines = [report.description for report in flagged] or [report.description for _, report in sorted(reports.items())]
    metadata: dict = {}
    for ds, report in sorted(reports.items()):
        metadata.update(trend_metadata(report, prefix=f"{ds}/" if len(reports) > 1 else ""))
    return AssetCheckResult(
        check_name=CONSISTENCY_TREND_CHECK,
        passed=not flagged,
        severity=AssetCheckSeverity.WARN,
        description="\n".join(lines),
        metadata=metadata,
    )
