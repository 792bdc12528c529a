"""The consistency trend of a day against its trailing week, against an independent computation on random rows:
sums over hours and days, the two-bin drift metrics written out by hand, grading only a rise."""

from __future__ import annotations

import math
import random

import pytest

from feature_assets.quality.consistency import ALL_COLUMNS
from feature_assets.quality.consistency_trend import consistency_trend, trailing_days
from feature_assets.statistics.drift import DriftThresholds

EPSILON = 1e-4


def naive_psi(p: list[float], q: list[float]) -> float:
    p = [(x / sum(p) + EPSILON) / (1 + 2 * EPSILON) for x in p]
    q = [(x / sum(q) + EPSILON) / (1 + 2 * EPSILON) for x in q]
    return sum((a - b) * math.log(a / b) for a, b in zip(p, q))


def naive_hellinger(p: list[float], q: list[float]) -> float:
    p, q = [x / sum(p) for x in p], [x / sum(q) for x in q]
    return math.sqrt(max(0.0, 1 - sum(math.sqrt(a * b) for a, b in zip(p, q))))


def random_rows(rng: random.Random, ds: str, columns: list[str], rate: dict[str, float]) -> list[dict]:
    rows = []
    for hour in range(rng.randrange(0, 5)):
        for column in columns:
            total = rng.randrange(0, 40)
            mismatch = sum(rng.random() < rate[column] for _ in range(total))
            rows.append({"ds": ds, "ts": hour, "column_name": column, "total": total, "mismatch": mismatch})
    if rows:
        for column in (ALL_COLUMNS,):
            rows.append(
                {"ds": ds, "ts": 0, "column_name": column, "total": sum(r["total"] for r in rows), "mismatch": 0}
            )
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_trend_equals_the_naive_computation(seed):
    rng = random.Random(seed)
    columns = [f"f{i}" for i in range(rng.randrange(1, 5))]
    day = "2023-11-10"
    first, last = trailing_days(day)
    assert (first, last) == ("2023-11-03", "2023-11-09")
    trailing_days_used = sorted(rng.sample([f"2023-11-{d:02d}" for d in range(3, 10)], rng.randrange(0, 8)))
    old = {c: rng.choice([0.0, 0.01, 0.2]) for c in columns}
    new = {c: rng.choice([0.0, 0.01, 0.2, 0.6]) for c in columns}
    trailing = [row for ds in trailing_days_used for row in random_rows(rng, ds, columns, old)]
    today = random_rows(rng, day, columns, new)
    report = consistency_trend(day, today, trailing)

    expected_columns = sorted({r["column_name"] for r in today} - {ALL_COLUMNS})
    assert [c.column for c in report.columns] == expected_columns
    assert report.trailing_days == len({r["ds"] for r in trailing})
    levels = DriftThresholds()
    for trend in report.columns:
        total = sum(r["total"] for r in today if r["column_name"] == trend.column)
        mismatch = sum(r["mismatch"] for r in today if r["column_name"] == trend.column)
        before_total = sum(r["total"] for r in trailing if r["column_name"] == trend.column)
        before_mismatch = sum(r["mismatch"] for r in trailing if r["column_name"] == trend.column)
        assert trend.total == total and trend.trailing_total == before_total
        assert trend.mismatch_rate == (mismatch / total if total else None)
        assert trend.trailing_mismatch_rate == (before_mismatch / before_total if before_total else None)
        if not (total and before_total):
            assert trend.psi is None and trend.level == "PASS"
            continue
        p, q = [total - mismatch, mismatch], [before_total - before_mismatch, before_mismatch]
        assert trend.psi == pytest.approx(naive_psi(p, q), abs=1e-12)
        assert trend.hellinger == pytest.approx(naive_hellinger(p, q), abs=1e-9)
        rose = mismatch / total > before_mismatch / before_total
        worst = "PASS"
        if rose:
            for value, (warn, fail) in (
                (trend.psi, (levels.psi_warn, levels.psi_fail)),
                (trend.jensen_shannon, (levels.jensen_shannon_warn, levels.jensen_shannon_fail)),
                (trend.hellinger, (levels.hellinger_warn, levels.hellinger_fail)),
            ):
                level = "ERROR" if value >= fail else "WARN" if value >= warn else "PASS"
                worst = max(worst, level, key=["PASS", "WARN", "ERROR"].index)
        assert trend.level == ("WARN" if worst != "PASS" else "PASS")
    assert report.level == max((c.level for c in report.columns), default="PASS", key=["PASS", "WARN", "ERROR"].index)


def test_descriptions():
    rows = [{"ds": "2023-11-09", "ts": 0, "column_name": "f", "total": 100, "mismatch": 0}]
    today = [{"ds": "2023-11-10", "ts": 0, "column_name": "f", "total": 100, "mismatch": 30}]
    assert consistency_trend("2023-11-10", today, []).description == (
        "2023-11-10: no consistency partition in the trailing week to compare with"
    )
    report = consistency_trend("2023-11-10", today, rows)
    assert report.level == "WARN"
    assert report.description.startswith("2023-11-10: WARN f: mismatch rate 0.3 against 0 over the trailing week")
    better = consistency_trend("2023-11-10", rows, today)  # fewer mismatches than before: not drift
    assert (
        better.level == "PASS"
        and better.description == "2023-11-10: 1 columns as consistent as over the trailing 1 days"
    )
