"""Day reports against their reference: reference days, merging hours into days, drift grading, null-rate
spikes and row-count change, checked against direct computations on random data (pure Python)."""

from __future__ import annotations

import numpy as np
import pytest

from feature_assets.quality import drift_report
from feature_assets.quality.drift_report import (
    day_report,
    day_summaries,
    markdown_table,
    merged_days,
    reference_days,
)
from feature_assets.statistics import DriftThresholds, drift, numeric_summary, severity, summarize


def _rows(ds: str, column: str, values: np.ndarray, hours: int = 4):
    """A day's values split into hourly summaries, as the stats table holds them."""
    for part in np.array_split(values, hours):
        yield ds, column, numeric_summary(column, part).to_bytes()


def _days(by_day: dict[str, dict[str, np.ndarray]]):
    rows = [
        row for ds, columns in by_day.items() for column, values in columns.items() for row in _rows(ds, column, values)
    ]
    return day_summaries(rows)


def test_reference_days():
    assert reference_days(("previous_day", None, None), "2023-11-01") == ["2023-10-31"]
    assert reference_days(("trailing_7_days", None, None), "2023-11-08") == [f"2023-11-0{d}" for d in range(1, 8)]
    assert reference_days(("pinned", "2023-10-30", "2023-11-02"), "2023-12-01") == [
        "2023-10-30",
        "2023-10-31",
        "2023-11-01",
        "2023-11-02",
    ]
    with pytest.raises(ValueError, match="unknown drift reference"):
        reference_days(("last_year", None, None), "2023-11-01")


def test_hours_merge_into_the_day_and_days_into_the_reference():
    rng = np.random.default_rng(1)
    values = {ds: rng.normal(size=500) for ds in ("2023-11-01", "2023-11-02", "2023-11-03")}
    for day in values.values():
        day[rng.random(day.size) < 0.1] = np.nan
    days = _days({ds: {"x": v} for ds, v in values.items()})
    day = days["2023-11-02"]["x"]
    assert (day.total, day.null_count) == (500, int(np.isnan(values["2023-11-02"]).sum()))
    window = merged_days(days, ["2023-11-01", "2023-11-02", "2023-11-09"])["x"]
    both = np.concatenate([values["2023-11-01"], values["2023-11-02"]])
    assert (window.total, window.null_count) == (1000, int(np.isnan(both).sum()))
    # k=200 sketches of 900 values are exact enough for the median: within 2% in rank.
    median = window.percentiles()["0.5"]
    present = np.sort(both[~np.isnan(both)])
    rank = np.searchsorted(present, median, side="right") / present.size
    assert abs(rank - 0.5) < 0.02


def test_shifted_day_is_an_error_naming_the_column_and_an_unshifted_day_passes(monkeypatch):
    rng = np.random.default_rng(7)
    n = 5000
    by_day = {
        f"2023-11-0{d}": {"steady": rng.normal(size=n), "moved": rng.normal(size=n) + (1.5 if d == 8 else 0.0)}
        for d in range(1, 9)
    }
    days = _days(by_day)
    thresholds = DriftThresholds()
    # KLL merges compact randomly, so a second merge of the same days differs: keep the one the report used.
    merges: list = []
    monkeypatch.setattr(drift_report, "merged_days", lambda *a: merges.append(merged_days(*a)) or merges[-1])
    shifted = day_report("2023-11-08", days, ("trailing_7_days", None, None), thresholds)
    monkeypatch.undo()
    (reference,) = merges
    assert shifted.drift_severity == "ERROR"
    assert [c.column for c in shifted.drifting("ERROR")] == ["moved"]
    assert {c.column: c.severity for c in shifted.columns}["steady"] == "PASS"
    assert "| moved | numeric | ERROR |" in markdown_table(shifted)
    assert markdown_table(shifted).index("| moved") < markdown_table(shifted).index("| steady")

    calm = day_report("2023-11-07", days, ("previous_day", None, None), thresholds)
    assert calm.drift_severity == "PASS"
    assert calm.reference_days == ["2023-11-06"]

    # The report's metrics are `drift` of the day against the merged reference days.
    expected = drift(days["2023-11-08"]["moved"], reference["moved"])
    column = {c.column: c for c in shifted.columns}["moved"]
    assert column.metrics == pytest.approx(expected, rel=1e-12)
    assert column.severity == severity(expected, thresholds)


def test_thresholds_decide_the_severity():
    rng = np.random.default_rng(3)
    days = _days({"2023-11-01": {"x": rng.normal(size=4000)}, "2023-11-02": {"x": rng.normal(size=4000) + 0.3}})
    default = day_report("2023-11-02", days, ("previous_day", None, None), DriftThresholds())
    assert default.drift_severity in ("WARN", "ERROR")
    lenient = DriftThresholds(
        jensen_shannon_warn=0.9, jensen_shannon_fail=1, psi_warn=9, psi_fail=10, hellinger_warn=0.9,
        hellinger_fail=1, ks_warn=0.9, ks_fail=1,
    )  # fmt: skip
    assert day_report("2023-11-02", days, ("previous_day", None, None), lenient).drift_severity == "PASS"


def test_no_reference_passes_and_says_so():
    days = _days({"2023-11-05": {"x": np.arange(100.0)}})
    report = day_report("2023-11-05", days, ("previous_day", None, None), DriftThresholds())
    assert not report.has_reference
    assert report.drift_severity == "PASS" and report.row_change is None
    assert "no reference stats" in markdown_table(report)


def test_null_rate_spike_and_row_count_change_levels():
    rng = np.random.default_rng(11)
    before = rng.normal(size=1000)
    spiked = rng.normal(size=300)
    spiked[:120] = np.nan  # 40% nulls against 0%: ERROR (>= 30 points)
    mild = rng.normal(size=1000)
    mild[:150] = np.nan  # 15 points: WARN
    days = _days({"2023-11-01": {"a": before, "b": before}, "2023-11-02": {"a": spiked, "b": spiked}})
    report = day_report("2023-11-02", days, ("previous_day", None, None), DriftThresholds())
    assert report.null_severity == "ERROR"
    assert {c.column for c in report.null_spikes("ERROR")} == {"a", "b"}
    assert report.rows == 300 and report.reference_rows == 1000
    assert report.row_change == pytest.approx(0.7)
    assert report.row_severity == "WARN"

    days = _days({"2023-11-01": {"a": before}, "2023-11-02": {"a": mild}})
    report = day_report("2023-11-02", days, ("previous_day", None, None), DriftThresholds())
    assert report.null_severity == "WARN" and report.row_severity == "PASS"
    assert report.columns[0].null_rate_change == pytest.approx(0.15)


def test_categorical_columns_drift_by_their_items():
    days = day_summaries(
        [
            ("2023-11-01", "c", summarize("categorical", ["a"] * 500 + ["b"] * 500, "c").to_bytes()),
            ("2023-11-02", "c", summarize("categorical", ["a"] * 900 + ["b"] * 100, "c").to_bytes()),
        ]
    )
    report = day_report("2023-11-02", days, ("previous_day", None, None), DriftThresholds())
    assert report.columns[0].severity == "ERROR" and report.columns[0].metrics["ks"] is None
