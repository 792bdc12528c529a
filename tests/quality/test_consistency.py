"""Online/offline consistency: the comparison table and the consistency metrics.

The "served" values are the offline join's own output for random requests (skewed and null keys, duplicate
timestamps, an empty day, nulls in every value column), written as the join's `_logged` table; recomputing
them must agree exactly (sketch columns within their bounds). Perturbed logs and a hand-perturbed comparison
are checked against an independent computation of every metric in plain Python.
"""

from __future__ import annotations

import functools
import math
import random

import numpy as np
import pytest
from support.configs import meta, query
from support.values import close, plain

from feature_assets.model import JOINS, config_from_json
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN
from feature_assets.quality.comparison import (
    comparable_columns,
    comparison_frame,
    comparison_join,
    sampled_requests,
)
from feature_assets.quality.consistency import (
    ALL_COLUMNS,
    CPC_RELATIVE_BOUND,
    DIFF_PERCENTILES,
    EDIT_DISTANCE_PERCENTILES,
    METRICS_SCHEMA,
    ConsistencyThresholds,
    EqualityRule,
    consistency_metrics,
    consistency_severity,
    edit_distance,
    equality_rules,
    kll_rank_error,
    smape_term,
    values_agree,
)

pytestmark = [pytest.mark.spark]

HOUR = 3_600_000
H1, D1, D2 = ({"length": n, "timeUnit": u} for n, u in ((1, "HOURS"), (1, "DAYS"), (2, "DAYS")))
PERCENTILES = [0.1, 0.5, 0.9]


def agg(column, op, windows=(), **args):
    arg_map = {k: str(v) for k, v in args.items()}
    return {"inputColumn": column, "operation": op, "argMap": arg_map, "windows": list(windows), "buckets": []}


def group_by(name, accuracy, aggregations):
    return {
        "metaData": meta(name),
        "sources": [
            {
                "events": {
                    "table": "rnd.events",
                    "topic": None,
                    "isCumulative": False,
                    "query": query(
                        {"key": "key", "value_long": "value_long", "value_double": "value_double", "s": "value_str"},
                        "ts",
                    ),
                }
            }
        ],
        "keyColumns": ["key"],
        "aggregations": aggregations,
        "accuracy": accuracy,
        "derivations": [],
        "backfillStartDate": None,
    }


TEMPORAL_GB = group_by(
    "rnd.temporal.v1",
    "TEMPORAL",
    [
        agg("value_double", "SUM", [H1, D1]),
        agg("value_long", "COUNT", [D1]),
        agg("value_long", "AVERAGE", [D1]),
        agg("value_long", "MAX", [H1]),
        agg("s", "LAST_K", [D1], k=3),
        agg("s", "HISTOGRAM", [D1]),
        agg("s", "LAST"),
        agg("value_double", "APPROX_PERCENTILE", [D1], percentiles=PERCENTILES),
        agg("s", "APPROX_UNIQUE_COUNT", [D2]),
    ],
)
SNAPSHOT_GB = group_by("rnd.daily.v1", "SNAPSHOT", [agg("value_long", "SUM", [D1])])


def join_json(name, row_ids=("row_id",), contextual=True):
    externals = [
        {
            "keyMapping": {},
            "prefix": None,
            "source": {
                "customJson": None,
                "keyFields": [["row_id", "STRING"]],
                "name": "contextual",
                "team": "rnd",
                "valueFields": [["row_id", "STRING"]],
            },
        }
    ]
    return {
        "metaData": {**meta(name), "online": True},
        "left": {
            "events": {
                "table": "rnd.left",
                "topic": None,
                "isCumulative": False,
                "query": query({"key": "key", "row_id": "row_id"}, "ts"),
            }
        },
        "joinParts": [
            {"groupBy": TEMPORAL_GB, "keyMapping": {}, "prefix": None},
            {"groupBy": SNAPSHOT_GB, "keyMapping": {}, "prefix": "d"},
        ],
        "onlineExternalParts": externals if contextual else [],
        "derivations": [],
        "rowIds": list(row_ids),
        "bootstrapParts": [],
        "bootstrapFromLog": False,
    }


JOIN = config_from_json(JOINS, join_json("rnd.served.v1"))
PREFIX = "rnd_temporal_v1_"
SUM_1D = PREFIX + "value_double_sum_1d"
LAST_K = PREFIX + "s_last3_1d"
HISTOGRAM = PREFIX + "s_histogram_1d"
PERCENTILE = PREFIX + "value_double_approx_percentile_1d"
UNIQUE = PREFIX + "s_approx_unique_count_2d"
COUNT = PREFIX + "value_long_count_1d"
CONTEXTUAL = "ext_contextual_row_id"
BOUNDS = "_rank_bounds_" + PERCENTILE


# --------------------------------------------------------------------------- independent metrics


@functools.cache
def _levenshtein(left: tuple, right: tuple) -> int:
    """The textbook recursive definition (memoized)."""
    if not left or not right:
        return len(left) + len(right)
    return min(
        _levenshtein(left[1:], right) + 1,
        _levenshtein(left, right[1:]) + 1,
        _levenshtein(left[1:], right[1:]) + (0 if left[0] == right[0] else 1),
    )


def naive_metrics(logged_rows, comparison_rows, columns, match, agree=close):
    """{(ds, hour, column): metrics} from collected rows, in plain Python."""
    by_match = {}
    for row in comparison_rows:
        by_match.setdefault(tuple(row[c] for c in match), row)
    cells = {}
    for row in logged_rows:
        other = by_match.get(tuple(row[c] for c in match))
        if other is None:
            continue
        hour = row["ts"] // HOUR * HOUR
        for column in columns:
            if column in (row.get(ABSENT_FIELDS_COLUMN) or []):
                continue
            cells.setdefault((row["ds"], hour, column), []).append((plain(row[column]), plain(other[column])))
    expected = {}
    for key, pairs in cells.items():
        both = [(left, right) for left, right in pairs if left is not None and right is not None]
        numeric = [(left, right) for left, right in both if isinstance(left, (int, float))]
        lists = [(left, right) for left, right in both if isinstance(left, list)]
        mismatch = sum(1 for left, right in pairs if not agree(left, right))
        diffs = [float(left - right) for left, right in numeric]
        distances = [_levenshtein(tuple(left), tuple(right)) for left, right in lists]
        expected[key] = {
            "total": len(pairs),
            "both_null": sum(1 for left, right in pairs if left is None and right is None),
            "left_null": sum(1 for left, _ in pairs if left is None),
            "right_null": sum(1 for _, right in pairs if right is None),
            "mismatch": mismatch,
            "mismatch_rate": mismatch / len(pairs),
            "both_present": len(both),
            "smape": (
                float(np.mean([0.0 if a == b == 0 else 2 * abs(a - b) / (abs(a) + abs(b)) for a, b in numeric]))
                if numeric
                else None
            ),
            **{f"diff_p{round(p * 100):02d}": _percentile(diffs, p) for p in DIFF_PERCENTILES},
            "length_mismatch": sum(1 for left, right in lists if len(left) != len(right)) if lists else None,
            **{f"edit_distance_p{round(p * 100):02d}": _percentile(distances, p) for p in EDIT_DISTANCE_PERCENTILES},
        }
    return expected


def _percentile(values, fraction):
    return float(np.percentile(values, fraction * 100)) if values else None


def assert_metrics_equal(rows, expected):
    got = {(r["ds"], r["ts"], r["column_name"]): r for r in rows if r["column_name"] != ALL_COLUMNS}
    assert set(got) == set(expected)
    for key, metrics in expected.items():
        for name, value in metrics.items():
            actual = got[key][name]
            if value is None or actual is None:
                assert value is None and actual is None, (key, name, actual, value)
            else:
                assert math.isclose(actual, value, rel_tol=1e-9, abs_tol=1e-9), (key, name, actual, value)


# --------------------------------------------------------------------------- the served log


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory):
    """A warehouse with a random case, the offline join output as the served values, and its `_logged` table
    (some rows name the histogram among their absent fields, as a schema version without it would)."""
    from pyspark.sql import functions as F

    from feature_assets.dev.datagen.random_events import random_event_case
    from feature_assets.offline.join import assemble_join, compute_join_part, read_left
    from feature_assets.storage import Warehouse

    warehouse = Warehouse(spark, str(tmp_path_factory.mktemp("consistency") / "warehouse"))
    case = random_event_case(seed=7, n_keys=30, n_events=2500, n_left=1600, n_days=4, key_type="string")
    case.write(warehouse.root, "rnd")
    left = read_left(warehouse, JOIN, case.start_ds, case.end_ds)
    parts = [(p, compute_join_part(warehouse, JOIN, p, left, case.start_ds, case.end_ds)) for p in JOIN.join_parts]
    output = assemble_join(JOIN, left, parts)
    absent = F.xxhash64("row_id") % 10 == 0
    logged = output.select(
        F.lit("hash1").alias(SCHEMA_HASH_COLUMN),
        *[
            F.when(absent, F.lit(None)).otherwise(F.col(c)).alias(c)
            if c == HISTOGRAM
            else F.col("row_id").alias(c)
            if c == CONTEXTUAL
            else F.col(c)
            for c in output.columns
            if c != "ds"
        ],
        F.when(absent, F.array(F.lit(HISTOGRAM)))
        .otherwise(F.array().cast("array<string>"))
        .alias(ABSENT_FIELDS_COLUMN),
        "ds",
    )
    # No requests in three hours of the second day: hours without rows in the metrics.
    hour_of_day = F.floor(F.col("ts") % 86_400_000 / HOUR)
    logged = logged.where(~((F.col("ds") == case.days[1]) & hour_of_day.isin(3, 4, 5)))
    warehouse.write_partitions(logged, JOIN.logged_table, case.start_ds, case.end_ds)
    logged = warehouse.read(JOIN.logged_table, case.start_ds, case.end_ds).cache()
    comparison = comparison_frame(warehouse, JOIN, case.start_ds, case.end_ds, sample_percent=100).cache()
    return warehouse, case, logged, comparison


def test_comparison_has_the_logged_requests_and_the_comparable_columns(served):
    _, case, logged, comparison = served
    features = [c for c in JOIN.part_columns]
    assert comparison.columns == ["row_id", "key", "ts", *features, BOUNDS, "ds"]
    rows = comparison.select(PERCENTILE, BOUNDS).collect()
    assert any(r[PERCENTILE] is None for r in rows) and any(r[PERCENTILE] for r in rows)
    for values, bounds in rows:
        assert (values is None) == (bounds is None)
        for value, (low, high) in zip(values or [], bounds or []):
            assert low <= value <= high
    assert any(low < high for _, bounds in rows for low, high in bounds or [])
    assert CONTEXTUAL not in comparison.columns
    assert comparable_columns(JOIN, logged.columns) == features
    requests = logged.count()
    assert comparison.count() == requests and comparison.select("row_id").distinct().count() == requests
    assert requests < len(case.left)  # the hours taken out
    assert not comparison_join(JOIN).bootstrap_from_log and comparison_join(JOIN).left.kind == "events"


def test_served_values_recomputed_agree_exactly(served):
    warehouse, case, logged, comparison = served
    requests = logged.count()
    metrics = consistency_metrics(logged, comparison, JOIN)
    for frame, table in ((comparison, JOIN.comparison_table), (metrics, JOIN.consistency_table)):
        warehouse.write_partitions(frame, table, case.start_ds, case.end_ds)
        assert warehouse.read(table, case.start_ds, case.end_ds).count() == frame.count()
    assert [f.name for f in metrics.schema.fields] == [f.name for f in METRICS_SCHEMA.fields]
    rows = [r.asDict() for r in metrics.collect()]
    columns = {r["column_name"] for r in rows}
    assert columns == {*JOIN.part_columns, ALL_COLUMNS}
    assert all(r["mismatch"] == 0 and r["mismatch_rate"] == 0 for r in rows), [r for r in rows if r["mismatch"]][:3]
    for r in rows:
        if r["smape"] is not None:
            assert r["smape"] == 0 and r["diff_p01"] == 0 and r["diff_p99"] == 0
        if r["edit_distance_p99"] is not None:
            assert r["edit_distance_p99"] == 0 and r["length_mismatch"] == 0
    by_column = {}
    for r in rows:
        by_column[r["column_name"]] = by_column.get(r["column_name"], 0) + r["total"]
    absent = logged.where(f"array_contains({ABSENT_FIELDS_COLUMN}, '{HISTOGRAM}')").count()
    assert 0 < absent < requests
    assert by_column[HISTOGRAM] == requests - absent
    assert by_column[SUM_1D] == requests
    assert by_column[ALL_COLUMNS] == sum(v for k, v in by_column.items() if k != ALL_COLUMNS)
    # Hours without requests (the empty day has requests but no events) have no rows; every other hour has.
    hours = {(r["ds"], r["ts"] // HOUR * HOUR) for r in logged.select("ds", "ts").collect()}
    assert {(r["ds"], r["ts"]) for r in rows} == hours
    day_start = min(r["ts"] for r in logged.where(f"ds = '{case.days[1]}'").select("ts").collect()) // 86_400_000
    assert not {(case.days[1], day_start * 86_400_000 + h * HOUR) for h in (3, 4, 5)} & hours
    rules = {r["column_name"]: r["comparison"] for r in rows}
    assert rules[PERCENTILE] == "approx_percentile" and rules[UNIQUE] == "approx_unique_count"
    assert rules[SUM_1D] == "float" and rules[COUNT] == "exact" and rules[LAST_K] == "exact"
    report = consistency_severity(rows)
    assert report.level == "PASS" and not report.failing, report.description

    # Sketch answers anywhere within the rank bounds agree; outside them they do not.
    from pyspark.sql import functions as F

    bounds = comparison.select("row_id", "ds", F.col(BOUNDS).alias("bounds"))
    at_low = F.transform(F.col("bounds"), lambda b: b[0])
    beyond = F.transform(F.col("bounds"), lambda b: b[1] + 1)
    for served_value, expected_mismatch in ((at_low, False), (beyond, True)):
        moved = logged.join(bounds, ["row_id", "ds"]).withColumn(PERCENTILE, served_value).drop("bounds")
        percentile_rows = consistency_metrics(moved, comparison, JOIN).where(f"column_name = '{PERCENTILE}'").collect()
        mismatches = sum(r["mismatch"] for r in percentile_rows)
        present = sum(r["both_present"] for r in percentile_rows)
        assert mismatches == (present if expected_mismatch else 0), (mismatches, present)


def perturb(logged, column, share, seed):
    """Change the column on `share` of the rows (chosen by row id): numbers + 1.5, a null becomes 1.0."""
    from pyspark.sql import functions as F

    rng = random.Random(seed)
    ids = sorted(r["row_id"] for r in logged.select("row_id").collect())
    chosen = rng.sample(ids, round(share * len(ids)))
    changed = F.col("row_id").isin(chosen)
    value = F.coalesce(F.col(column) + F.lit(1.5), F.lit(1.0))
    return logged.withColumn(column, F.when(changed, value).otherwise(F.col(column))), set(chosen)


def test_perturbed_feature_has_the_perturbed_share_of_mismatches(served):
    warehouse, case, logged, comparison = served
    perturbed, chosen = perturb(logged, SUM_1D, 0.03, seed=3)
    rows = [r.asDict() for r in consistency_metrics(perturbed, comparison, JOIN).collect()]
    report = consistency_severity(rows)
    by_column = {c.column: c for c in report.columns}
    assert by_column[SUM_1D].mismatch == len(chosen)
    assert by_column[SUM_1D].mismatch_rate == pytest.approx(0.03, abs=0.5 / logged.count())
    assert all(c.mismatch == 0 for name, c in by_column.items() if name != SUM_1D)
    assert report.level == "ERROR" and by_column[SUM_1D].level == "ERROR"
    assert report.description.startswith(f"ERROR {SUM_1D}: mismatch rate 0.0")
    assert f"({len(chosen)}/{logged.count()})" in report.description
    assert report.failing == [by_column[SUM_1D]]

    # Half of the requests sampled: the rate is 3% within its sampling error (hypergeometric, 4 sigma).
    sampled = comparison_frame(warehouse, JOIN, case.start_ds, case.end_ds, sample_percent=50)
    n, requests = sampled.count(), logged.count()
    assert abs(n - requests / 2) < 4 * math.sqrt(requests / 4)
    sampled_report = consistency_severity(consistency_metrics(perturbed, sampled, JOIN))
    column = {c.column: c for c in sampled_report.columns}
    assert column[SUM_1D].total == n
    assert abs(column[SUM_1D].mismatch_rate - 0.03) <= 4 * math.sqrt(0.03 * 0.97 / n)
    assert sampled_report.overall is not None and sampled_report.overall.mismatch == column[SUM_1D].mismatch


def test_default_sample_is_deterministic_and_agrees_with_the_full_comparison(served):
    warehouse, case, logged, comparison = served
    first = comparison_frame(warehouse, JOIN, case.start_ds, case.end_ds)
    again = sampled_requests(logged, JOIN, JOIN.meta.consistency_sample_percent)
    ids = sorted(r["row_id"] for r in first.select("row_id").collect())
    assert ids == sorted(r["row_id"] for r in again.select("row_id").collect())
    expected = logged.count() * 0.05
    assert abs(len(ids) - expected) < 4 * math.sqrt(expected)
    full = {r["row_id"]: r.asDict() for r in comparison.where(comparison.row_id.isin(ids)).collect()}
    for row in first.collect():
        assert all(close(plain(row[c]), plain(full[row["row_id"]][c])) for c in JOIN.part_columns)
    assert sampled_requests(logged, JOIN, 0).count() == 0
    assert sampled_requests(logged, JOIN, 100).count() == logged.count()
    with pytest.raises(ValueError, match="sample percent 101"):
        sampled_requests(logged, JOIN, 101)


def test_metrics_equal_an_independent_computation_on_perturbed_values(served):
    """Both sides perturbed at random: nulls on either side, numbers shifted (zeros included), list elements
    replaced, dropped or added, map keys added, sketch columns moved far beyond their bounds."""
    from pyspark.sql import functions as F

    _, _, logged, comparison = served

    def scramble(frame, seed, side):
        pick = F.pmod(F.xxhash64("row_id", F.lit(seed)), F.lit(20))
        columns = []
        for column in frame.columns:
            value = F.col(column)
            if column in JOIN.part_columns:
                dtype = frame.schema[column].dataType.simpleString()
                if dtype.startswith("array<string"):
                    changed = F.when(pick == 3, F.array_union(value, F.array(F.lit("zzz")))).when(
                        pick == 4, F.slice(value, 2, 5)
                    )
                elif dtype.startswith("array<double"):
                    changed = F.when(pick == 3, F.transform(value, lambda x: x + 1000))
                elif dtype.startswith("map"):
                    changed = F.when(pick == 3, F.map_concat(value, F.create_map(F.lit(side), F.lit(1).cast("long"))))
                elif column == UNIQUE:  # moved far beyond the sketch bound only
                    changed = F.when(pick == 3, value * 3 + 1000)
                elif dtype in ("double", "bigint", "int"):
                    changed = F.when(pick == 3, value * 3 + 1000).when(pick == 4, F.lit(0).cast(dtype))
                else:
                    changed = F.when(pick == 3, F.concat(value, F.lit(side)))
                value = F.when(pick == 1, F.lit(None)).otherwise(F.coalesce(changed, value))
            elif column == BOUNDS:  # moved with the values, so only the values' own changes count
                shifted = F.transform(value, lambda pair: F.transform(pair, lambda x: x + 1000))
                value = F.when(pick == 3, shifted).otherwise(value)
            columns.append(value.alias(column))
        return frame.select(*columns)

    left = scramble(logged, 11, "l").cache()
    right = scramble(comparison, 12, "r").cache()
    rows = [r.asDict() for r in consistency_metrics(left, right, JOIN).collect()]
    expected = naive_metrics(
        [r.asDict(recursive=True) for r in left.collect()],
        [r.asDict(recursive=True) for r in right.collect()],
        JOIN.part_columns,
        ["row_id", "ds"],
    )
    assert_metrics_equal(rows, expected)
    assert sum(m["mismatch"] for m in expected.values()) > 0.1 * sum(m["total"] for m in expected.values())
    assert any((m["edit_distance_p99"] or 0) > 0 for m in expected.values())
    overall = {(r["ds"], r["ts"]): r for r in rows if r["column_name"] == ALL_COLUMNS}
    for (ds, ts), row in overall.items():
        cells = [m for (d, t, _), m in expected.items() if (d, t) == (ds, ts)]
        assert row["total"] == sum(m["total"] for m in cells)
        assert row["mismatch"] == sum(m["mismatch"] for m in cells)
        assert row["mismatch_rate"] == pytest.approx(row["mismatch"] / row["total"])
        assert row["smape"] is None and row["comparison"] is None
    left.unpersist()
    right.unpersist()


def test_without_row_ids_rows_match_on_time_day_and_keys(spark):
    """Duplicated requests (same key and time) each meet the one offline row; null keys match null keys."""
    join = config_from_json(JOINS, join_json("rnd.no_ids.v1", row_ids=(), contextual=False))
    columns = f"key string, ts bigint, {COUNT} bigint, {SUM_1D} double, ds string"
    day = "2024-01-02"
    t0 = 1704153600000
    logged = spark.createDataFrame(
        [
            ("a", t0 + 5, 1, 2.0, day),
            ("a", t0 + 5, 1, 2.5, day),  # a duplicate request served another value
            (None, t0 + HOUR, 0, None, day),
            ("b", t0 + 2 * HOUR, 3, 0.0, day),
            ("c", t0 + 3 * HOUR, 4, 1.0, day),  # not in the comparison (not sampled)
        ],
        columns,
    )
    comparison = spark.createDataFrame(
        [
            ("a", t0 + 5, 1, 2.0, day),
            ("a", t0 + 5, 1, 2.0, day),
            (None, t0 + HOUR, 0, None, day),
            ("b", t0 + 2 * HOUR, 3, 0.0, day),
        ],
        columns,
    )
    rows = {(r["ts"], r["column_name"]): r.asDict() for r in consistency_metrics(logged, comparison, join).collect()}
    assert rows[(t0, SUM_1D)]["total"] == 2 and rows[(t0, SUM_1D)]["mismatch"] == 1
    assert rows[(t0, SUM_1D)]["smape"] == pytest.approx(2 * 0.5 / 4.5 / 2)
    assert rows[(t0, COUNT)]["mismatch"] == 0
    assert rows[(t0 + HOUR, SUM_1D)]["both_null"] == 1 and rows[(t0 + HOUR, SUM_1D)]["mismatch"] == 0
    assert rows[(t0 + 2 * HOUR, SUM_1D)]["smape"] == 0
    assert rows[(t0, ALL_COLUMNS)]["total"] == 4 and rows[(t0, ALL_COLUMNS)]["mismatch_rate"] == 0.25
    assert not any(ts == t0 + 3 * HOUR for ts, _ in rows)


# --------------------------------------------------------------------------- equality and metrics (plain Python)


def test_smape_with_zeros_signs_and_nulls():
    assert smape_term(0.0, 0.0) == 0
    assert smape_term(0.0, 5.0) == 2.0
    assert smape_term(-1.0, 1.0) == 2.0
    assert smape_term(3.0, 1.0) == pytest.approx(1.0)
    assert smape_term(1e-300, 0.0) == 2.0


def test_edit_distance_equals_the_recursive_definition():
    rng = random.Random(5)
    for _ in range(300):
        left = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        right = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        assert edit_distance(left, right) == _levenshtein(tuple(left), tuple(right)), (left, right)
    assert edit_distance([1.0, 2.0], [1.0 + 1e-12, 2.0], EqualityRule("float")) == 0
    assert edit_distance([1.0, 2.0], [1.0 + 1e-6, 2.0], EqualityRule("float")) == 1


def test_equality_rules():
    from pyspark.sql import types as T

    types = {c: T.StringType() for c in JOIN.part_columns}
    types.update({SUM_1D: T.DoubleType(), COUNT: T.LongType(), PERCENTILE: T.ArrayType(T.DoubleType())})
    rules = equality_rules(JOIN, types)
    exact, floating, percentile, unique = rules[COUNT], rules[SUM_1D], rules[PERCENTILE], rules[UNIQUE]
    assert (exact.name, floating.name, unique.name) == ("exact", "float", "approx_unique_count")
    assert percentile.rank_error == kll_rank_error(200)
    assert 0.016 < kll_rank_error(200) < 0.017 and 0.03 < CPC_RELATIVE_BOUND < 0.034

    # exact and float
    assert values_agree(2**62 + 1, 2**62 + 1, exact) and not values_agree(2**62 + 1, 2**62, exact)
    assert values_agree(0.1 + 0.2, 0.3, floating) and values_agree(1e9, 1e9 + 0.5, floating)
    assert not values_agree(1e9, 1e9 + 2, floating) and not values_agree(0.0, 1e-11, floating)
    assert values_agree(float("nan"), float("nan"), floating) and not values_agree(float("nan"), 1.0, floating)
    assert values_agree(None, None) and not values_agree(None, 0) and not values_agree("a", None)
    assert values_agree(["a", "b"], ["a", "b"]) and not values_agree(["a", "b"], ["b", "a"])
    assert values_agree({"a": 1}, {"a": 1}) and not values_agree({"a": 1}, {"a": 1, "b": 2})
    assert not values_agree({"a": 1}, {"b": 1}) and not values_agree({"a": 1}, {"a": 2})
    assert values_agree([1.0, None], [1.0 + 1e-13, None], floating) and not values_agree([1.0], [1.0, 2.0], floating)

    # approximate unique count: within 1 + 3.3% of the larger value
    assert values_agree(1000, 1030, unique) and not values_agree(1000, 1040, unique)
    assert values_agree(3, 4, unique) and not values_agree(3, 5, unique)
    assert not values_agree(1000, 1030, exact)

    # approximate percentiles: float-equal to the offline value at p, or within the offline values at p -+ eps
    offline, bounds = [10.0, 50.0, 90.0], [[9.0, 11.0], [45.0, 52.0], [80.0, 99.0]]
    assert values_agree([10.0, 50.0, 90.0], offline, percentile, bounds)
    assert values_agree([9.0, 45.0, 99.0], offline, percentile, bounds)
    assert not values_agree([10.0, 52.5, 90.0], offline, percentile, bounds)
    assert not values_agree([8.9, 50.0, 90.0], offline, percentile, bounds)
    assert not values_agree([9.0, 50.0, 90.0], offline, percentile)  # no bounds: the float rule
    assert not values_agree([10.0, 50.0], offline, percentile, bounds)
    assert values_agree({"x": [10.0, 46.0, 90.0]}, {"x": offline}, percentile, {"x": bounds})
    assert not values_agree({"x": [10.0, 46.0, 90.0]}, {"x": offline}, percentile, {"y": bounds})
    assert edit_distance([9.5, 46.0, 90.0], offline, percentile, bounds) == 0


def test_severity_levels_and_description():
    def row(column, total, mismatch, smape=None, comparison="float", present=None):
        return {
            "column_name": column,
            "comparison": comparison,
            "total": total,
            "mismatch": mismatch,
            "smape": smape,
            "both_present": total if present is None else present,
        }

    rows = [
        row("f_ok", 1000, 0, 0.0),
        row("f_warn", 500, 1, 0.0),
        row("f_warn", 500, 1, 0.0),  # two hours: 2/1000 = 0.002
        row("f_smape", 1000, 0, 0.05),
        row("f_approx", 1000, 0, 0.02, "approx_unique_count"),
        row("f_bad", 100, 3, None, "exact"),
        row(ALL_COLUMNS, 4200, 5, None, None, 0),
    ]
    report = consistency_severity(rows)
    levels = {c.column: c.level for c in report.columns}
    assert levels == {"f_ok": "PASS", "f_warn": "WARN", "f_smape": "ERROR", "f_approx": "PASS", "f_bad": "ERROR"}
    assert report.level == "ERROR"
    assert report.overall is not None and report.overall.mismatch_rate == pytest.approx(5 / 4200)
    assert report.description.startswith("ERROR f_bad: mismatch rate 0.03 (3/100)")
    assert "ERROR f_smape: mismatch rate 0 (0/1000), smape 0.05" in report.description
    assert "WARN f_warn: mismatch rate 0.002 (2/1000)" in report.description
    assert "f_ok" not in report.description and "f_approx" not in report.description

    lenient = ConsistencyThresholds.from_mapping({"mismatch_rate_warn": 0.01, "mismatch_rate_fail": 0.05})
    assert {c.column: c.level for c in consistency_severity(rows, lenient).columns}["f_bad"] == "WARN"
    assert consistency_severity([]).level == "PASS"
    with pytest.raises(ValueError, match="unknown"):
        ConsistencyThresholds.from_mapping({"mismatch_warn": 0.1})
    with pytest.raises(ValueError, match="smape"):
        ConsistencyThresholds(smape_warn=0.1, smape_fail=0.01)


def test_online_sketch_answers_are_within_the_documented_bounds():
    """The online IRs (CPC and KLL sketches, built in two halves and merged as a batch head and streamed events
    are) against the exact offline answers, over many random sizes and distributions."""
    from pyspark.sql import types as T

    from feature_assets.aggregation.ir import nearest_ranks
    from feature_assets.aggregation.registry import operation_def

    rules = equality_rules(JOIN, {PERCENTILE: T.ArrayType(T.DoubleType()), UNIQUE: T.LongType()})
    unique_op = operation_def("APPROX_UNIQUE_COUNT").online({})
    percentile_op = operation_def("APPROX_PERCENTILE").online({"percentiles": str(PERCENTILES)})
    rng = np.random.default_rng(9)
    estimated = 0
    for trial in range(60):
        n = int(rng.choice([5, 50, 400, 3000, 20000]))
        values = rng.lognormal(0, 2, n) if trial % 2 else rng.integers(0, n, n).astype(float)
        halves = np.array_split(values, 2)
        unique_irs, percentile_irs = [None, None], [None, None]
        for index, half in enumerate(halves):
            for value in half:
                unique_irs[index] = unique_op.update(unique_irs[index], float(value), 0)
                percentile_irs[index] = percentile_op.update(percentile_irs[index], float(value), 0)
        unique = unique_op.finalize(unique_op.merge(*unique_irs))
        merged = percentile_op.merge(*percentile_irs)
        estimated += merged.is_estimation_mode()
        percentiles = percentile_op.finalize(merged)
        ordered = sorted(values.tolist())
        eps = rules[PERCENTILE].rank_error
        low = nearest_ranks(ordered, [max(0.0, p - eps) for p in PERCENTILES])
        high = nearest_ranks(ordered, [min(1.0, p + eps) for p in PERCENTILES])
        exact = nearest_ranks(ordered, PERCENTILES)
        assert values_agree(unique, len(set(ordered)), rules[UNIQUE]), (n, unique)
        assert values_agree(percentiles, exact, rules[PERCENTILE], [list(b) for b in zip(low, high)]), n
    assert estimated > 10  # the KLL sketches did compact
