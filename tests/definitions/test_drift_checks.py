"""The stats checks' results: severities, descriptions naming columns and numbers, and float metadata."""

from __future__ import annotations

import numpy as np
from dagster import AssetCheckSeverity

from feature_assets.checks.drift import DRIFT_CHECK, NULL_RATE_CHECK, ROW_COUNT_CHECK, day_metadata, stats_checks
from feature_assets.quality.drift_report import day_report, day_summaries
from feature_assets.statistics import DriftThresholds, numeric_summary


def _reports(shift: float, nulls: int = 0, rows: int = 4000):
    rng = np.random.default_rng(5)
    rows_ = []
    for day in range(1, 4):
        ds = f"2023-11-0{day}"
        size = rows if day == 3 else 4000
        moved = rng.normal(size=size) + (shift if day == 3 else 0.0)
        if day == 3 and nulls:
            moved[:nulls] = np.nan
        rows_ += [(ds, "moved", numeric_summary("moved", moved).to_bytes())]
        rows_ += [(ds, "steady", numeric_summary("steady", rng.normal(size=size)).to_bytes())]
    days = day_summaries(rows_)
    return [
        day_report(ds, days, ("previous_day", None, None), DriftThresholds()) for ds in ("2023-11-02", "2023-11-03")
    ]


def test_a_shifted_day_fails_the_drift_check_with_error_naming_the_column():
    drift_result, null_result, row_result = stats_checks(_reports(shift=2.0))
    assert drift_result.check_name == DRIFT_CHECK and not drift_result.passed
    assert drift_result.severity == AssetCheckSeverity.ERROR
    assert "2023-11-03 ERROR (1 columns): moved (PSI " in drift_result.description
    assert "steady" not in drift_result.description
    metadata = drift_result.metadata
    assert metadata["2023-11-03/moved/jensen_shannon"].value > 0.15
    assert isinstance(metadata["2023-11-03/steady/psi"].value, float)
    assert null_result.passed and row_result.passed


def test_unshifted_days_pass():
    drift_result, null_result, row_result = stats_checks(_reports(shift=0.0))
    assert drift_result.passed and null_result.passed and row_result.passed
    assert drift_result.description.startswith("no column drifts")


def test_null_spike_and_row_drop_fail_their_checks():
    _, null_result, row_result = stats_checks(_reports(shift=0.0, nulls=600, rows=1000))
    assert not null_result.passed and null_result.severity == AssetCheckSeverity.ERROR
    assert "moved (0.000 -> 0.600)" in null_result.description
    assert null_result.check_name == NULL_RATE_CHECK
    assert not row_result.passed and row_result.severity == AssetCheckSeverity.WARN
    assert (
        row_result.check_name == ROW_COUNT_CHECK
        and "1000 rows against 4000 a day (75% change)" in row_result.description
    )


def test_day_metadata_is_floats():
    report = _reports(shift=2.0)[1]
    metadata = day_metadata(report)
    assert all(isinstance(value, float) for value in metadata.values())
    assert metadata["columns_error"] == 1.0 and metadata["rows"] == 4000.0
    assert {"moved/psi", "moved/ks", "steady/null_rate", "max_jensen_shannon", "row_change"} <= set(metadata)
