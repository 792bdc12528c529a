"""Column summaries against exact numpy/Counter computations on random data (no Spark)."""

from __future__ import annotations

import json
import math
from collections import Counter

import datasketches
import numpy as np
import pytest

from feature_assets.statistics import (
    DEFAULT_K,
    PERCENTILE_POINTS,
    ColumnSummary,
    kind_of_spark_type,
    merge,
    summarize,
)
from feature_assets.statistics.summary import FORMAT_VERSION

RANK_ERROR = datasketches.kll_doubles_sketch.get_normalized_rank_error(DEFAULT_K, False)
PERCENTILE_KEYS = ["0.01", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3", "0.35", "0.4", "0.45", "0.5"] + [
    "0.55",
    "0.6",
    "0.65",
    "0.7",
    "0.75",
    "0.8",
    "0.85",
    "0.9",
    "0.95",
    "0.99",
]


def numeric_day(rng: np.random.Generator, size: int) -> list[float | None]:
    """Skewed values (lognormal plus a heavy repeated value) with None and NaN nulls."""
    values = rng.lognormal(mean=1.0, sigma=1.5, size=size)
    values[rng.random(size) < 0.2] = 3.0
    out: list[float | None] = [float(v) for v in values]
    for row in np.flatnonzero(rng.random(size) < 0.05):
        out[row] = None
    for row in np.flatnonzero(rng.random(size) < 0.03):
        out[row] = math.nan
    return out


def exact_non_null(values: list[float | None]) -> np.ndarray:
    return np.sort(np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64))


def assert_percentiles_within_rank_error(percentiles: dict[str, float | None], exact_sorted: np.ndarray) -> None:
    """The exact rank interval of each returned value covers the requested rank, up to the KLL bound."""
    assert list(percentiles) == PERCENTILE_KEYS
    n = exact_sorted.size
    for key, value in percentiles.items():
        assert value is not None
        below = np.searchsorted(exact_sorted, value, side="left") / n
        at_or_below = np.searchsorted(exact_sorted, value, side="right") / n
        rank = float(key)
        assert below - RANK_ERROR <= rank <= at_or_below + RANK_ERROR, (key, value, below, at_or_below)


def test_percentile_points_and_keys():
    assert [format(p, "g") for p in PERCENTILE_POINTS] == PERCENTILE_KEYS


@pytest.mark.parametrize(
    ("type_string", "kind"),
    [
        ("bigint", "numeric"),
        ("int", "numeric"),
        ("double", "numeric"),
        ("float", "numeric"),
        ("decimal(10,2)", "numeric"),
        ("boolean", "boolean"),
        ("string", "categorical"),
        ("date", "categorical"),
        ("timestamp", "categorical"),
        ("struct<a:int>", "categorical"),
        ("array<bigint>", "list"),
        ("array<map<string,int>>", "list"),
        ("map<string,double>", "map"),
        ("MAP<STRING,BIGINT>", "map"),
    ],
)
def test_kind_of_spark_type(type_string, kind):
    assert kind_of_spark_type(type_string) == kind


def test_numeric_counts_and_percentiles_match_numpy():
    rng = np.random.default_rng(7)
    values = numeric_day(rng, 200_000)
    summary = summarize("numeric", values, column="amount")
    exact = exact_non_null(values)
    assert summary.total == len(values)
    assert summary.null_count == len(values) - exact.size
    assert summary.null_rate == pytest.approx((len(values) - exact.size) / len(values))
    assert summary.quantiles is not None and summary.quantiles.is_estimation_mode()
    assert_percentiles_within_rank_error(summary.percentiles(), exact)
    as_json = summary.to_json_dict()
    assert as_json["min"] == exact[0] and as_json["max"] == exact[-1]


def test_numeric_accepts_numpy_and_small_exact_inputs():
    array = np.array([5.0, np.nan, 1.0, 3.0, 2.0, 4.0])
    summary = summarize("numeric", array)
    assert (summary.total, summary.null_count) == (6, 1)
    # Not compacted yet: nearest rank exactly (the smallest value with at least p of the values at or below).
    percentiles = summary.percentiles()
    assert percentiles["0.01"] == 1.0
    assert percentiles["0.2"] == 1.0
    assert percentiles["0.5"] == 3.0
    assert percentiles["0.99"] == 5.0


def test_seven_merged_days_match_one_pass_within_the_bound():
    rng = np.random.default_rng(11)
    days = [numeric_day(rng, int(size)) for size in (30_000, 0, 50_000, 1, 20_000, 40_000, 25_000)]
    daily = [summarize("numeric", day, column="amount") for day in days]
    merged = merge(daily)
    everything = [v for day in days for v in day]
    one_pass = summarize("numeric", everything, column="amount")
    exact = exact_non_null(everything)
    assert merged is not None
    assert (
        (merged.total, merged.null_count)
        == (one_pass.total, one_pass.null_count)
        == (len(everything), len(everything) - exact.size)
    )
    assert_percentiles_within_rank_error(merged.percentiles(), exact)
    assert_percentiles_within_rank_error(one_pass.percentiles(), exact)
    for key, merged_value in merged.percentiles().items():
        one_pass_value = one_pass.percentiles()[key]
        # Exact rank intervals of the two answers overlap up to twice the bound.
        low = [np.searchsorted(exact, v, side="left") / exact.size for v in (merged_value, one_pass_value)]
        high = [np.searchsorted(exact, v, side="right") / exact.size for v in (merged_value, one_pass_value)]
        assert max(low) - min(high) <= 2 * RANK_ERROR, key


def test_empty_buckets():
    assert merge([]) is None
    empty = summarize("numeric", [], column="amount")
    assert (empty.total, empty.null_count, empty.null_rate) == (0, 0, None)
    assert set(empty.percentiles().values()) == {None}
    only_nulls = summarize("numeric", [None, math.nan], column="amount")
    assert (only_nulls.total, only_nulls.null_count, only_nulls.null_rate) == (2, 2, 1.0)
    merged = merge([empty, only_nulls])
    assert merged is not None and (merged.total, merged.null_count) == (2, 2)
    assert set(merged.percentiles().values()) == {None}
    json.dumps(merged.to_json_dict())
    for kind in ("boolean", "categorical", "list", "map"):
        summary = summarize(kind, [], column="c")
        assert summary.total == 0
        restored = ColumnSummary.from_bytes(summary.to_bytes())
        assert restored.to_json_dict() == summary.to_json_dict()


def categorical_day(rng: np.random.Generator, size: int, categories: int = 150) -> list[str | None]:
    ranks = np.minimum(rng.zipf(1.3, size=size), categories)
    out: list[str | None] = [f"cat_{rank}" for rank in ranks]
    for row in np.flatnonzero(rng.random(size) < 0.1):
        out[row] = None
    return out


def test_categorical_counts_are_exact_below_the_sketch_capacity():
    rng = np.random.default_rng(3)
    values = categorical_day(rng, 100_000)
    summary = summarize("categorical", values, column="city")
    counts = Counter(v for v in values if v is not None)
    assert (summary.total, summary.null_count) == (len(values), values.count(None))
    assert summary.top_items() == sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:20]
    assert summary.distinct_estimate == pytest.approx(len(counts), rel=0.03)


def test_categorical_top_items_survive_many_distinct_values():
    rng = np.random.default_rng(5)
    values: list[str | None] = [f"id_{v}" for v in rng.integers(0, 200_000, size=300_000)]
    values += ["hot"] * 30_000 + ["warm"] * 10_000 + [None] * 5_000
    summary = summarize("categorical", values, column="user")
    counts = Counter(v for v in values if v is not None)
    top = dict(summary.top_items(2))
    # Beyond the sketch's capacity counts are estimates, within 3.5 / 256 of the total weight.
    tolerance = 3.5 / 256 * (len(values) - 5_000)
    assert set(top) == {"hot", "warm"}
    assert abs(top["hot"] - counts["hot"]) <= tolerance and abs(top["warm"] - counts["warm"]) <= tolerance
    assert summary.distinct_estimate == pytest.approx(len(counts), rel=0.05)


def test_categorical_merge_unions_distinct_values_and_adds_counts():
    rng = np.random.default_rng(8)
    days = [categorical_day(rng, size) for size in (10_000, 0, 5_000)] + [[f"new_{i}" for i in range(30)]]
    merged = merge(summarize("categorical", day, column="city") for day in days)
    everything = [v for day in days for v in day]
    counts = Counter(v for v in everything if v is not None)
    assert merged is not None
    assert (merged.total, merged.null_count) == (len(everything), everything.count(None))
    assert merged.distinct_estimate == pytest.approx(len(counts), rel=0.03)
    assert merged.top_items(5) == sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:5]


def test_categorical_values_of_other_types_count_by_string_form():
    summary = summarize("categorical", [1, 1, 2.5, None, math.nan, b"\x01", True], column="mixed")
    assert (summary.total, summary.null_count) == (7, 2)
    # 1 and True are equal keys to Counter: the first one seen names them.
    assert dict(summary.top_items()) == {"1": 3, "2.5": 1, "01": 1}


def test_boolean_counts():
    rng = np.random.default_rng(4)
    choices = np.array([True, False, None, np.True_, np.False_, math.nan], dtype=object)
    values = list(rng.choice(choices, size=10_000, p=[0.4, 0.3, 0.1, 0.1, 0.05, 0.05]))
    summary = summarize("boolean", values, column="flag")
    trues = sum(1 for v in values if v is True or v is np.True_)
    falses = sum(1 for v in values if v is False or v is np.False_)
    assert (summary.total, summary.true_count, summary.false_count) == (10_000, trues, falses)
    assert summary.null_count == 10_000 - trues - falses
    assert summary.to_json_dict()["true_rate"] == pytest.approx(trues / (trues + falses))


def test_list_lengths_and_null_elements():
    rng = np.random.default_rng(9)
    values: list[list[float | None] | None] = []
    for _ in range(20_000):
        if rng.random() < 0.1:
            values.append(None)
            continue
        length = int(rng.poisson(3))
        values.append([None if rng.random() < 0.1 else float(x) for x in rng.random(length)])
    summary = summarize("list", values, column="recent")
    lengths = np.sort(np.array([len(v) for v in values if v is not None], dtype=np.float64))
    assert (summary.total, summary.null_count) == (len(values), values.count(None))
    assert summary.total_elements == int(lengths.sum())
    assert summary.null_elements == sum(1 for v in values if v is not None for x in v if x is None)
    assert_percentiles_within_rank_error(summary.length_percentiles(), lengths)
    with pytest.raises(ValueError, match="recent"):
        summary.percentiles()


def test_map_key_counts_and_frequent_keys():
    rng = np.random.default_rng(10)
    keys = [f"k{i}" for i in range(12)]
    values: list[object] = []
    for row in range(20_000):
        if rng.random() < 0.1:
            values.append(None)
            continue
        chosen = rng.choice(keys, size=int(rng.integers(0, 6)), replace=False, p=np.linspace(1, 2, 12) / 18)
        entries = {str(k): float(rng.random()) for k in chosen}
        # Arrow hands maps over as lists of (key, value) pairs.
        values.append(list(entries.items()) if row % 2 else entries)
    summary = summarize("map", values, column="counts")
    sizes = np.sort(np.array([len(v) for v in values if v is not None], dtype=np.float64))  # type: ignore[arg-type]
    key_counts = Counter(k for v in values if v is not None for k in (dict(v) if isinstance(v, list) else v))  # type: ignore[arg-type]
    assert (summary.total, summary.null_count) == (len(values), values.count(None))
    assert summary.total_elements == int(sizes.sum())
    assert dict(summary.top_items()) == dict(key_counts)
    assert_percentiles_within_rank_error(summary.length_percentiles(), sizes)


@pytest.mark.parametrize("kind", ["numeric", "boolean", "categorical", "list", "map"])
def test_serialization_round_trip(kind):
    rng = np.random.default_rng(12)
    values = {
        "numeric": numeric_day(rng, 50_000),
        "boolean": [True, False, None] * 100,
        "categorical": categorical_day(rng, 5_000),
        "list": [[1, None], None, [], [2, 3, 4]] * 100,
        "map": [{"a": 1}, None, {"a": 2, "b": None}] * 100,
    }[kind]
    summary = summarize(kind, values, column="näme")
    data = summary.to_bytes()
    assert data[0] == FORMAT_VERSION
    restored = ColumnSummary.from_bytes(data)
    assert restored.to_json_dict() == summary.to_json_dict()
    assert ColumnSummary.from_bytes(restored.to_bytes()).to_json_dict() == summary.to_json_dict()
    assert (restored.column, restored.kind) == ("näme", kind)
    # A restored summary still merges.
    merged = merge([restored, summary])
    assert merged is not None and merged.total == 2 * summary.total


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match="version 9"):
        ColumnSummary.from_bytes(bytes([9]) + summarize("numeric", [1.0]).to_bytes()[1:])
    with pytest.raises(ValueError, match="trailing"):
        ColumnSummary.from_bytes(summarize("numeric", [1.0]).to_bytes() + b"x")
    with pytest.raises(ValueError, match="'a' \\(numeric\\) and 'a' \\(categorical\\)"):
        merge([summarize("numeric", [1.0], column="a"), summarize("categorical", ["x"], column="a")])
    with pytest.raises(ValueError, match="'b'.*'c'"):
        summarize("numeric", [1.0], column="b").merge(summarize("numeric", [1.0], column="c"))
    with pytest.raises(ValueError, match="unknown summary kind 'text'"):
        summarize("text", ["x"], column="a")


def test_json_output_is_strict_json():
    summary = summarize("numeric", [1.0, math.inf, -math.inf, None], column="x")
    assert summary.percentiles()["0.99"] == math.inf
    as_json = summary.to_json_dict()
    json.dumps(as_json, allow_nan=False)
    assert as_json["percentiles"]["0.5"] == 1.0 and as_json["max"] is None and as_json["null_count"] == 1


def test_boolean_inputs_of_other_shapes():
    flags = np.array([True, False, True])
    assert (summarize("boolean", flags).true_count, summarize("boolean", flags).false_count) == (2, 1)
    with pytest.raises(ValueError, match="'flag': 'yes' is not a boolean value"):
        summarize("boolean", [True, "yes"], column="flag")
