"""A join's consistency metrics in the online store without Spark: upload rows loaded (a reload replaces a
day), fetched back per compared column in time order with the exact numbers loaded, on the in-memory fake and
the real MongoDB-protocol server; the names of the datasets and upload tables."""

from __future__ import annotations

import json
import math
import random

import pytest

from feature_assets.online.fetch.consistency import (
    ALL_COLUMNS,
    NoConsistency,
    NotAConsistencyUploadTable,
    dataset_of_consistency_upload_table,
    fetch_consistency,
    is_consistency_upload_table,
    join_consistency_dataset,
    load_consistency,
)

HOUR = 3_600_000
DAY = 86_400_000
START = 1_698_796_800_000  # 2023-11-01
DATASET = "QUICKSTART_TRAINING_SET_V2_CONSISTENCY"
COLUMNS = ["quickstart_purchases_v1_purchase_price_sum_3d", "quickstart_returns_v1_refund_amt_last2"]
FIRST_FIELDS = ["ts", "total", "mismatch", "both_null", "left_null", "right_null", "smape"]


def upload_rows(seed: int, days: int = 3) -> list[dict]:
    """Consistency upload rows as the upload table holds them: per day a few hourly buckets (hours without
    requests absent), each column's counts and metrics, a list column without smape, and the `__all__` rows."""
    rng = random.Random(seed)
    rows = []
    for day in range(days):
        ds = f"2023-11-0{day + 1}"
        for hour in sorted(rng.sample(range(24), 5)):
            ts = START + day * DAY + hour * HOUR
            totals = []
            for column in COLUMNS:
                total = rng.randint(1, 40)
                left_null, right_null = rng.randint(0, total // 4), rng.randint(0, total // 4)
                both_null = rng.randint(0, min(left_null, right_null))
                mismatch = rng.randint(0, total // 3)
                numeric = column.endswith("_3d")
                totals.append((total, mismatch))
                rows.append(
                    {
                        "ts": ts,
                        "column_name": column,
                        "comparison": "exact",
                        "total": total,
                        "both_null": both_null,
                        "left_null": left_null,
                        "right_null": right_null,
                        "mismatch": mismatch,
                        "mismatch_rate": mismatch / total,
                        "both_present": total - left_null - right_null + both_null,
                        "smape": rng.random() / 10 if numeric else None,
                        "diff_p50": float(rng.randint(-3, 3)) if numeric else float("nan"),
                        "length_mismatch": None if numeric else rng.randint(0, 2),
                        "ds": ds,
                    }
                )
            total, mismatch = sum(t for t, _ in totals), sum(m for _, m in totals)
            rows.append(
                {"ts": ts, "column_name": ALL_COLUMNS, "total": total, "mismatch": mismatch, "ds": ds,
                 "mismatch_rate": mismatch / total, "smape": None}
            )  # fmt: skip
    return rows


def test_load_and_fetch_give_back_every_bucket_in_time_order(store):
    rows = upload_rows(0)
    written = load_consistency(store, DATASET, rows)
    assert written == {"2023-11-01": 15, "2023-11-02": 15, "2023-11-03": 15}
    start, end = START + DAY, START + 3 * DAY
    fetched = fetch_consistency(store, DATASET, start, end)
    assert sorted(fetched) == sorted(COLUMNS)  # the overall rows are not a feature
    json.dumps(fetched, allow_nan=False)  # plain JSON: NaN became null
    for column, buckets in fetched.items():
        expected = sorted(
            (r for r in rows if r["column_name"] == column and start <= r["ts"] < end), key=lambda r: r["ts"]
        )
        assert [b["ts"] for b in buckets] == [r["ts"] for r in expected] and len(buckets) == 10
        for bucket, row in zip(buckets, expected):
            assert list(bucket)[: len(FIRST_FIELDS)] == FIRST_FIELDS
            for name, value in row.items():
                if name in ("column_name", "ds"):
                    assert name not in bucket
                elif isinstance(value, float) and math.isnan(value):
                    assert bucket[name] is None
                else:
                    assert bucket[name] == value, (column, name)
    overall = fetch_consistency(store, DATASET, 0, end, include_overall=True)[ALL_COLUMNS]
    assert [b["total"] for b in overall] == [r["total"] for r in rows if r["column_name"] == ALL_COLUMNS]


def test_a_reload_replaces_the_day(store):
    rows = upload_rows(1)
    load_consistency(store, DATASET, rows)
    day_two = [row for row in upload_rows(2) if row["ds"] == "2023-11-02"][:4]
    assert load_consistency(store, DATASET, day_two) == {"2023-11-02": 4}
    fetched = fetch_consistency(store, DATASET, START + DAY, START + 2 * DAY, include_overall=True)
    assert sum(len(buckets) for buckets in fetched.values()) == 4
    assert {b["total"] for bs in fetched.values() for b in bs} <= {r["total"] for r in day_two}
    assert len(fetch_consistency(store, DATASET, START, START + DAY)[COLUMNS[0]]) == 5  # other days untouched
    with pytest.raises(ValueError, match="day 2023-11-01 comes twice"):
        load_consistency(store, DATASET, rows[:2] + [rows[20]] + rows[2:4])
    with pytest.raises(NoConsistency, match="no consistency metrics loaded into X_CONSISTENCY"):
        fetch_consistency(store, "X_CONSISTENCY", 0, 1)


def test_names():
    table = "default.quickstart_training_set_v2_consistency_upload"
    assert is_consistency_upload_table(table) and not is_consistency_upload_table("default.x_daily_stats_upload")
    assert dataset_of_consistency_upload_table(table) == DATASET
    assert join_consistency_dataset("quickstart/training_set.v2") == DATASET
    assert join_consistency_dataset("quickstart.training_set.v2") == DATASET
    with pytest.raises(NotAConsistencyUploadTable, match="not a consistency upload table"):
        dataset_of_consistency_upload_table("default.quickstart_training_set_v2_consistency")
