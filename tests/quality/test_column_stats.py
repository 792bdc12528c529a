"""Spark column stats of a join output against a naive per-bucket computation in plain Python."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime

import datasketches
import numpy as np
import pytest

from feature_assets.quality.column_stats import STATS_SCHEMA, daily_column_stats
from feature_assets.statistics import DEFAULT_K, ColumnSummary, merge, summarize

pytestmark = [pytest.mark.spark]

HOUR = 3_600_000
DAY = 86_400_000
RANK_ERROR = datasketches.kll_doubles_sketch.get_normalized_rank_error(DEFAULT_K, False)
SCHEMA = (
    "user_id string, ts bigint, ds string, amount bigint, score double, active boolean, city string, "
    "recent array<bigint>, weights array<double>, counts map<string,double>"
)
FEATURES = ["amount", "score", "active", "city", "recent", "weights", "counts"]
KINDS = {
    "amount": "numeric",
    "score": "numeric",
    "active": "boolean",
    "city": "categorical",
    "recent": "list",
    "weights": "list",
    "counts": "map",
}
# 2024-03-01, 2024-03-02 and 2024-03-05: the days between have no rows.
DAYS = [datetime(2024, 3, day, tzinfo=UTC) for day in (1, 2, 5)]


def day_of(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d")


def random_rows(seed: int, size: int) -> list[tuple]:
    """Join-output rows: skewed keys, duplicate timestamps (a few per hour), a null ts, nulls in every
    feature, NaN scores, null list elements (NaN ones in `weights`), null maps."""
    rng = np.random.default_rng(seed)
    rows = []
    for row in range(size):
        day = DAYS[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]
        # Hours 0-5 and 20-23 only: the hours between are empty buckets.
        hour = int(rng.choice([0, 1, 2, 3, 4, 5, 20, 21, 22, 23]))
        ts = int(day.timestamp() * 1000) + hour * HOUR + int(rng.integers(0, 4)) * 900_000
        user = f"u{min(int(rng.zipf(1.4)), 400)}"
        amount = None if rng.random() < 0.1 else int(rng.lognormal(3, 2))
        score = None if rng.random() < 0.05 else (math.nan if rng.random() < 0.05 else float(rng.normal(0, 1)))
        active = None if rng.random() < 0.1 else bool(rng.random() < 0.3)
        city = None if rng.random() < 0.15 else f"city_{min(int(rng.zipf(1.6)), 60)}"
        recent = (
            None
            if rng.random() < 0.1
            else [None if rng.random() < 0.1 else int(x) for x in rng.integers(0, 9, int(rng.poisson(2)))]
        )
        weights = (
            None
            if rng.random() < 0.1
            else [math.nan if rng.random() < 0.1 else float(x) for x in rng.random(int(rng.integers(0, 4)))]
        )
        counts = (
            None
            if rng.random() < 0.1
            else {f"k{int(key)}": float(rng.random()) for key in rng.integers(0, 8, int(rng.integers(0, 4)))}
        )
        rows.append((user, None if row == 7 else ts, day_of(ts), amount, score, active, city, recent, weights, counts))
    return rows


def bucket_rows(rows: list[tuple], with_ts: bool) -> dict[tuple[str, int], list[tuple]]:
    """(ds, bucket) -> its rows, grouped in plain Python."""
    groups: dict[tuple[str, int], list[tuple]] = defaultdict(list)
    for row in rows:
        ts, ds = row[1], row[2]
        day_start = int(datetime.strptime(ds, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
        bucket = ts - ts % HOUR if with_ts and ts is not None else day_start
        groups[(ds, bucket)].append(row)
    return groups


def naive_summaries(groups: dict[tuple[str, int], list[tuple]]) -> dict[tuple[str, int, str], ColumnSummary]:
    """(ds, bucket, column) -> the core summary of that bucket's values."""
    return {
        (ds, bucket, column): summarize(KINDS[column], [row[index] for row in members], column=column)
        for (ds, bucket), members in groups.items()
        for index, column in enumerate(FEATURES, start=3)
    }


def exact_values(rows: list[tuple], column: str) -> np.ndarray:
    """The sorted non-null values (numeric) or lengths (list, map) of a column."""
    index = FEATURES.index(column) + 3
    values = [row[index] for row in rows]
    if KINDS[column] in ("list", "map"):
        return np.sort(np.array([len(v) for v in values if v is not None], dtype=np.float64))
    return np.sort(np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64))


def assert_within_rank_error(percentiles: dict[str, float], exact_sorted: np.ndarray) -> None:
    n = exact_sorted.size
    for key, value in percentiles.items():
        below = np.searchsorted(exact_sorted, value, side="left") / n
        at_or_below = np.searchsorted(exact_sorted, value, side="right") / n
        assert below - RANK_ERROR <= float(key) <= at_or_below + RANK_ERROR, (key, value)


@pytest.fixture(scope="module")
def join_rows():
    return random_rows(seed=21, size=6_000)


@pytest.fixture(scope="module")
def join_frame(spark, join_rows):
    return spark.createDataFrame(join_rows, SCHEMA).cache()


def test_hourly_stats_match_a_naive_computation(join_frame, join_rows):
    stats = daily_column_stats(join_frame, exclude=["user_id"])
    assert stats.schema == STATS_SCHEMA
    result = stats.collect()
    groups = bucket_rows(join_rows, with_ts=True)
    expected = naive_summaries(groups)
    got = {(row.ds, row.ts, row.column_name): row for row in result}
    assert set(got) == set(expected)
    assert {row.column_name for row in result} == set(FEATURES)
    for key, naive in expected.items():
        row = got[key]
        summary = ColumnSummary.from_bytes(row.summary)
        assert row.column_kind == naive.kind == KINDS[row.column_name]
        assert (row.total, row.null_count) == (summary.total, summary.null_count) == (naive.total, naive.null_count)
        assert row.null_rate == pytest.approx(naive.null_rate)
        assert row.sample_percent == 100.0
        assert summary.true_count == naive.true_count and summary.false_count == naive.false_count
        assert summary.total_elements == naive.total_elements and summary.null_elements == naive.null_elements
        assert summary.top_items() == naive.top_items()
        if naive.kind in ("numeric", "list", "map") and naive.non_null_count:
            exact = exact_values(groups[key[:2]], row.column_name)
            assert_within_rank_error(row.percentiles, exact)
            by_point = summary.percentiles() if naive.kind == "numeric" else summary.length_percentiles()
            assert row.percentiles == by_point
        else:
            assert row.percentiles is None
        if naive.kind in ("categorical", "boolean"):
            assert row.distinct_estimate == pytest.approx(naive.distinct_estimate)
        else:
            assert row.distinct_estimate is None


def test_totals_and_merged_buckets_match_the_whole_table(join_frame, join_rows):
    result = daily_column_stats(join_frame, exclude=["user_id"]).collect()
    by_column = defaultdict(list)
    for row in result:
        by_column[row.column_name].append(ColumnSummary.from_bytes(row.summary))
    for column in FEATURES:
        index = FEATURES.index(column) + 3
        values = [row[index] for row in join_rows]
        merged = merge(by_column[column])
        assert merged is not None
        nulls = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
        assert (merged.total, merged.null_count) == (len(join_rows), nulls)
        if KINDS[column] == "numeric":
            assert_within_rank_error(merged.percentiles(), exact_values(join_rows, column))
        if KINDS[column] in ("list", "map"):
            assert_within_rank_error(merged.length_percentiles(), exact_values(join_rows, column))
        if KINDS[column] == "categorical":
            counts = Counter(v for v in values if v is not None)
            assert merged.top_items(5) == sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:5]
            assert merged.distinct_estimate == pytest.approx(len(counts), rel=0.02)
    weights = [v for row in join_rows if (v := row[FEATURES.index("weights") + 3]) is not None]
    weights_summary = merge(by_column["weights"])
    assert weights_summary is not None
    assert weights_summary.null_elements == sum(1 for v in weights for x in v if math.isnan(x))


def test_frame_without_ts_uses_daily_buckets(join_frame, join_rows):
    stats = daily_column_stats(join_frame.drop("ts"), feature_columns=["amount", "city", "counts"])
    result = stats.collect()
    expected = {
        key: summary
        for key, summary in naive_summaries(bucket_rows(join_rows, with_ts=False)).items()
        if key[2] in ("amount", "city", "counts")
    }
    got = {(row.ds, row.ts, row.column_name): row for row in result}
    assert set(got) == set(expected)
    for (ds, bucket, _), naive in expected.items():
        row = got[(ds, bucket, naive.column)]
        assert bucket % DAY == 0 and day_of(bucket) == ds
        assert (row.total, row.null_count) == (naive.total, naive.null_count)
    totals = Counter(row.ds for row in result if row.column_name == "amount" for _ in range(row.total))
    assert totals == Counter(row[2] for row in join_rows)
    assert sorted(totals) == ["2024-03-01", "2024-03-02", "2024-03-05"]


def test_sampling_is_deterministic_and_recorded(join_frame, join_rows):
    def sampled(seed: int) -> dict:
        rows = daily_column_stats(join_frame, exclude=["user_id"], sample_percent=30, seed=seed).collect()
        return {
            (row.ds, row.ts, row.column_name): (row.total, row.null_count, row.sample_percent, row.distinct_estimate)
            for row in rows
        }

    first, again, other_seed = sampled(5), sampled(5), sampled(6)
    assert first == again
    assert first != other_seed
    full = {
        (row.ds, row.ts, row.column_name): row.total
        for row in daily_column_stats(join_frame, exclude=["user_id"]).collect()
    }
    assert all(value[2] == 30.0 for value in first.values())
    assert all(total <= full[key] for key, (total, *_) in first.items())
    kept = sum(total for (_, _, column), (total, *_) in first.items() if column == "amount")
    assert kept == pytest.approx(0.3 * len(join_rows), rel=0.1)


def test_bad_arguments_name_the_problem(join_frame):
    with pytest.raises(ValueError, match="'ds' column"):
        daily_column_stats(join_frame.drop("ds"))
    with pytest.raises(ValueError, match="sample_percent must be in \\(0, 100\\], got 0"):
        daily_column_stats(join_frame, sample_percent=0)
    with pytest.raises(ValueError, match="feature_columns not in the frame: \\['nope'\\]"):
        daily_column_stats(join_frame, feature_columns=["amount", "nope"])
    with pytest.raises(ValueError, match="time columns \\['ts'\\]"):
        daily_column_stats(join_frame, feature_columns=["ts"])
