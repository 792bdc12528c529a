"""Hand-computed checks of the naive reference implementation (tests/oracle)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

try:  # pytest's default import mode puts tests/ on sys.path
    from oracle.naive import (
        DAY_MS,
        HOUR_MS,
        ds_to_ms,
        naive_join_part,
        naive_snapshot_backfill,
        naive_value,
        output_column_names,
    )
except ImportError:  # pragma: no cover - run from the project root as a package
    from tests.oracle.naive import (
        DAY_MS,
        HOUR_MS,
        ds_to_ms,
        naive_join_part,
        naive_snapshot_backfill,
        naive_value,
        output_column_names,
    )

D0 = "2024-01-10"
T0 = ds_to_ms(D0)  # 2024-01-10 00:00 UTC


# ---------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------


def win(length, unit="DAYS"):
    return {"length": length, "timeUnit": unit}


def agg(col, op, windows=None, k=None, buckets=None, **args):
    arg_map = {key: str(v) for key, v in args.items()}
    if k is not None:
        arg_map["k"] = str(k)
    return {"inputColumn": col, "operation": op, "argMap": arg_map, "windows": windows or [], "buckets": buckets or []}


def events_gb(aggs, keys=("user_id",), selects=None, accuracy="TEMPORAL", table="data.purchases", start=None):
    selects = selects or {c: c for c in list(keys) + ["price"]}
    return {
        "metaData": {"name": "t.purchases.v1", "outputNamespace": "default", "team": "t", "online": True},
        "sources": [
            {
                "events": {
                    "table": table,
                    "topic": None,
                    "isCumulative": False,
                    "query": {"selects": selects, "wheres": [], "timeColumn": "ts", "startPartition": start},
                }
            }
        ],
        "keyColumns": list(keys),
        "aggregations": aggs,
        "accuracy": accuracy,
    }


def entity_gb(aggs, selects, keys=("user_id",), accuracy="TEMPORAL", mutations=False):
    return {
        "metaData": {"name": "t.users.v1", "outputNamespace": "default", "team": "t", "online": True},
        "sources": [
            {
                "entities": {
                    "snapshotTable": "data.users",
                    "mutationTable": "data.users_mutations" if mutations else None,
                    "mutationTopic": None,
                    "query": {
                        "selects": selects,
                        "wheres": [],
                        "timeColumn": None,
                        "mutationTimeColumn": "mutation_ts",
                        "reversalColumn": "is_before",
                        "startPartition": None,
                    },
                }
            }
        ],
        "keyColumns": list(keys),
        "aggregations": aggs,
        "accuracy": accuracy,
    }


def ev_frame(rows, cols=("user_id", "price", "ts")):
    df = pd.DataFrame(rows, columns=list(cols))
    df["ds"] = [pd.Timestamp(t, unit="ms").strftime("%Y-%m-%d") for t in df["ts"]]
    return df


def left_events(rows):
    """rows: (user_id, ts)"""
    df = pd.DataFrame(rows, columns=["user_id", "ts"])
    df["ds"] = [pd.Timestamp(t, unit="ms").strftime("%Y-%m-%d") for t in df["ts"]]
    return df


def one(gb, events, left_ts, key=1, left_is_entity=False):
    """The output row (dict) of a single left row."""
    tables = {"data.purchases": events}
    left = left_events([(key, left_ts)])
    out = naive_join_part(left, gb, tables, left_is_entity=left_is_entity)
    return out.iloc[0].to_dict()


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------


def test_output_column_names():
    gb = events_gb(
        [
            agg("purchase_price", "SUM", [win(3), win(14), win(30)]),
            agg("purchase_price", "LAST_K", k=10),
            agg("refund_amt", "AVERAGE", [win(30)]),
            agg("price", "APPROX_PERCENTILE", [win(6, "HOURS")], percentiles="[0.5, 0.9]"),
            agg("price", "TOP_K", [win(1)], k=3),
            agg("price", "BOTTOM_K", k=2),
            agg("price", "FIRST_K", k=4),
            agg("price", "SUM", [win(1), win(2, "HOURS")], buckets=["category"]),
            agg("price", "BOUNDED_UNIQUE_COUNT", k=5),
            agg("price", "APPROX_UNIQUE_COUNT", None),
        ]
    )
    assert output_column_names(gb) == [
        "purchase_price_sum_3d",
        "purchase_price_sum_14d",
        "purchase_price_sum_30d",
        "purchase_price_last10",
        "refund_amt_average_30d",
        "price_approx_percentile_6h",
        "price_top3_1d",
        "price_bottom2",
        "price_first4",
        "price_sum_by_category_1d",
        "price_sum_by_category_2h",
        "price_bounded_unique_count",
        "price_approx_unique_count",
    ]
    ent = entity_gb(None, {"user_id": "user_id", "age": "age", "city": "city"})
    assert output_column_names(ent) == ["age", "city"]
    ent["aggregations"] = []
    assert output_column_names(ent) == ["age", "city"]


# ---------------------------------------------------------------------------
# operations on plain values
# ---------------------------------------------------------------------------

PAIRS = [(1, 4), (2, 1), (3, 4), (4, None), (5, 7), (6, 2)]  # values 4,1,4,7,2 by time


@pytest.mark.parametrize(
    "op,args,expected",
    [
        ("SUM", {}, 18),
        ("COUNT", {}, 5),
        ("AVERAGE", {}, 3.6),
        ("MIN", {}, 1),
        ("MAX", {}, 7),
        ("FIRST", {}, 4),
        ("LAST", {}, 2),
        ("FIRST_K", {"k": "3"}, [4, 1, 4]),
        ("LAST_K", {"k": "3"}, [2, 7, 4]),
        ("LAST_K", {"k": "10"}, [2, 7, 4, 1, 4]),
        ("TOP_K", {"k": "3"}, [7, 4, 4]),
        ("BOTTOM_K", {"k": "2"}, [1, 2]),
        ("UNIQUE_COUNT", {}, 4),
        ("APPROX_UNIQUE_COUNT", {}, 4),
        ("BOUNDED_UNIQUE_COUNT", {"k": "3"}, 3),
        ("BOUNDED_UNIQUE_COUNT", {"k": "10"}, 4),
        ("HISTOGRAM", {}, {4: 2, 1: 1, 7: 1, 2: 1}),
        # sorted 1,2,4,4,7: p=0.5 -> rank ceil(2.5)=3 -> 4; p=0.9 -> rank 5 -> 7; p=0 -> rank 1 -> 1
        ("APPROX_PERCENTILE", {"percentiles": "[0.5, 0.9, 0.0, 0.2]"}, [4, 7, 1, 1]),
        ("VARIANCE", {}, 4.24),  # mean 3.6; squared devs .36+6.76+.36+11.56+2.56 = 21.6 / 5
    ],
)
def test_naive_value_ops(op, args, expected):
    got = naive_value(op, PAIRS, args)
    if isinstance(expected, float):
        assert got == pytest.approx(expected)
    else:
        assert got == expected


def test_skew_and_kurtosis():
    vals = [(i, v) for i, v in enumerate([1, 2, 3, 10])]
    xs = np.array([1, 2, 3, 10], dtype=float)
    d = xs - xs.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    assert naive_value("SKEW", vals) == pytest.approx(m3 / m2**1.5)
    assert naive_value("KURTOSIS", vals) == pytest.approx(m4 / m2**2 - 3)
    # symmetric two-point distribution: skew 0, excess kurtosis 1 - 3 = -2
    assert naive_value("SKEW", [(0, 1.0), (1, 3.0)]) == pytest.approx(0.0)
    assert naive_value("KURTOSIS", [(0, 1.0), (1, 3.0)]) == pytest.approx(-2.0)
    # m2 == 0 -> null, variance 0
    same = [(0, 0.1), (1, 0.1), (2, 0.1)]
    assert naive_value("SKEW", same) is None
    assert naive_value("KURTOSIS", same) is None
    assert naive_value("VARIANCE", same) == 0.0
    assert naive_value("VARIANCE", [(0, 5)]) == 0.0


def test_sum_types_and_strings():
    s = naive_value("SUM", [(0, np.int64(2)), (1, 3)])
    assert s == 5 and isinstance(s, int)
    f = naive_value("SUM", [(0, 2.5), (1, 0.5)])
    assert f == 3.0 and isinstance(f, float)
    avg = naive_value("AVERAGE", [(0, 2), (1, 3)])
    assert avg == 2.5 and isinstance(avg, float)
    strs = [(0, "b"), (1, "a"), (2, "c"), (3, "a")]
    assert naive_value("MIN", strs) == "a"
    assert naive_value("MAX", strs) == "c"
    assert naive_value("HISTOGRAM", strs) == {"b": 1, "a": 2, "c": 1}
    assert naive_value("UNIQUE_COUNT", strs) == 3
    assert naive_value("LAST", strs) == "a"
    assert naive_value("FIRST_K", strs, {"k": "2"}) == ["b", "a"]


@pytest.mark.parametrize(
    "op",
    [
        "SUM",
        "AVERAGE",
        "MIN",
        "MAX",
        "FIRST",
        "LAST",
        "FIRST_K",
        "LAST_K",
        "TOP_K",
        "BOTTOM_K",
        "HISTOGRAM",
        "APPROX_PERCENTILE",
        "VARIANCE",
        "SKEW",
        "KURTOSIS",
    ],
)
def test_empty_is_null(op):
    args = {"k": "3", "percentiles": "[0.5]"}
    assert naive_value(op, [], args) is None
    assert naive_value(op, [(1, None), (2, float("nan"))], args) is None


@pytest.mark.parametrize("op", ["COUNT", "UNIQUE_COUNT", "APPROX_UNIQUE_COUNT", "BOUNDED_UNIQUE_COUNT"])
def test_empty_is_zero(op):
    assert naive_value(op, [], {"k": "3"}) == 0
    assert naive_value(op, [(1, None), (2, pd.NA)], {"k": "3"}) == 0


def test_ties_on_equal_ts():
    # equal ts: the larger value counts as the later one
    pairs = [(10, 5), (10, 3), (10, 9), (5, 100), (20, 1)]
    assert naive_value("FIRST", [(10, 5), (10, 3)]) == 3
    assert naive_value("LAST", [(10, 5), (10, 3)]) == 5
    assert naive_value("FIRST_K", pairs, {"k": "3"}) == [100, 3, 5]
    assert naive_value("LAST_K", pairs, {"k": "3"}) == [1, 9, 5]
    assert naive_value("LAST", pairs[:4]) == 9
    assert naive_value("FIRST", pairs[:3]) == 3


def test_percentile_rank_rounding():
    vals = [(i, float(i + 1)) for i in range(30)]  # 1..30
    # 0.1 * 30 = 3.0000000000000004 in floating point; nearest rank is 3
    assert naive_value("APPROX_PERCENTILE", vals, {"percentiles": "[0.1, 0.5, 1.0]"}) == [3.0, 15.0, 30.0]


# ---------------------------------------------------------------------------
# temporal joins: window boundaries, defaults, null keys
# ---------------------------------------------------------------------------


def test_temporal_window_boundaries():
    t = T0 + 12 * HOUR_MS
    W = 3 * DAY_MS
    events = ev_frame(
        [
            (1, 1, t - W - 1),  # just outside the window
            (1, 10, t - W),  # exactly t - W: included
            (1, 100, t - 1),  # included
            (1, 1000, t),  # exactly t: excluded
            (1, 10000, t + 5),  # future
            (2, 7, t - 5),  # other key
        ]
    )
    gb = events_gb(
        [agg("price", "SUM", [win(3)]), agg("price", "COUNT", [win(3), win(1, "HOURS")]), agg("price", "SUM")]
    )
    row = one(gb, events, t)
    assert row == {"price_sum_3d": 110, "price_count_3d": 2, "price_count_1h": 1, "price_sum": 111}


def test_temporal_hour_window_and_multiple_left_rows():
    events = ev_frame([(1, 1, T0), (1, 2, T0 + HOUR_MS), (1, 4, T0 + 2 * HOUR_MS), (2, 8, T0 + HOUR_MS)])
    gb = events_gb([agg("price", "SUM", [win(1, "HOURS")]), agg("price", "LAST")])
    left = left_events([(1, T0 + 2 * HOUR_MS), (1, T0 + 2 * HOUR_MS + 1), (2, T0), (3, T0 + DAY_MS), (1, T0 + HOUR_MS)])
    left.index = [10, 11, 12, 13, 14]
    out = naive_join_part(left, gb, {"data.purchases": events})
    assert list(out.index) == [10, 11, 12, 13, 14]
    assert list(out.columns) == ["price_sum_1h", "price_last"]
    assert out["price_sum_1h"].tolist() == [2, 4, None, None, 1]
    assert out["price_last"].tolist() == [2, 4, None, None, 1]


def test_empty_window_defaults_in_join():
    events = ev_frame([(1, 5, T0 - 10 * DAY_MS)])
    gb = events_gb(
        [
            agg("price", op, [win(1)], k=3)
            for op in [
                "COUNT",
                "UNIQUE_COUNT",
                "APPROX_UNIQUE_COUNT",
                "BOUNDED_UNIQUE_COUNT",
                "SUM",
                "AVERAGE",
                "LAST_K",
                "HISTOGRAM",
            ]
        ]
    )
    row = one(gb, events, T0)
    assert row == {
        "price_count_1d": 0,
        "price_unique_count_1d": 0,
        "price_approx_unique_count_1d": 0,
        "price_bounded_unique_count_1d": 0,
        "price_sum_1d": None,
        "price_average_1d": None,
        "price_last3_1d": None,
        "price_histogram_1d": None,
    }


def test_null_values_are_ignored():
    events = ev_frame([(1, None, T0 - 3), (1, 2.0, T0 - 2), (1, None, T0 - 1)])
    gb = events_gb([agg("price", "COUNT"), agg("price", "LAST"), agg("price", "FIRST")])
    assert one(gb, events, T0) == {"price_count": 1, "price_last": 2.0, "price_first": 2.0}


def test_null_keys():
    events = ev_frame([(None, 5, T0 - 3), (1, 2, T0 - 2)])
    events["user_id"] = events["user_id"].astype("Int64")
    gb = events_gb([agg("price", "COUNT"), agg("price", "SUM")])
    left = left_events([(None, T0), (1, T0), (2, T0)])
    left["user_id"] = left["user_id"].astype("Int64")
    out = naive_join_part(left, gb, {"data.purchases": events})
    assert out.iloc[0].tolist() == [None, None]  # null key: null even for counts
    assert out.iloc[1].tolist() == [1, 2]  # the null-key event never matches
    assert out.iloc[2].tolist() == [0, None]


def test_string_keys_multiple_keys_and_key_mapping():
    events = pd.DataFrame(
        {
            "uid": ["a", "a", "b", "a"],
            "merchant": [1, 2, 1, 1],
            "price": [1.0, 2.0, 4.0, 8.0],
            "ts": [T0 - 4, T0 - 3, T0 - 2, T0 - 1],
        }
    )
    events["ds"] = "2024-01-09"
    gb = events_gb(
        [agg("price", "SUM")],
        keys=("uid", "merchant"),
        selects={"uid": "uid", "merchant": "merchant", "price": "price"},
    )
    left = pd.DataFrame({"user": ["a", "a", "b", "1"], "merchant": [1, 2, 2, 1], "ts": [T0] * 4, "ds": [D0] * 4})
    out = naive_join_part(left, gb, {"data.purchases": events}, key_mapping={"user": "uid"})
    assert out["price_sum"].tolist() == [9.0, 2.0, None, None]


def test_select_renames_and_start_partition():
    events = pd.DataFrame(
        {"user": [1, 1, 1], "purchase_price": [1, 2, 4], "event_time": [T0 - 2 * DAY_MS, T0 - DAY_MS, T0 - 1]}
    )
    events["ds"] = [pd.Timestamp(t, unit="ms").strftime("%Y-%m-%d") for t in events["event_time"]]
    gb = events_gb([agg("price", "SUM")], selects={"user_id": "user", "price": "purchase_price"})
    gb["sources"][0]["events"]["query"]["timeColumn"] = "event_time"
    assert one(gb, events, T0) == {"price_sum": 7}
    gb["sources"][0]["events"]["query"]["startPartition"] = "2024-01-09"
    assert one(gb, events, T0) == {"price_sum": 6}


def test_multiple_event_sources_are_unioned():
    gb = events_gb([agg("price", "SUM"), agg("price", "LAST")])
    src2 = {
        "events": {
            "table": "data.more",
            "topic": None,
            "isCumulative": False,
            "query": {
                "selects": {"user_id": "uid", "price": "amount"},
                "wheres": [],
                "timeColumn": "ts",
                "startPartition": None,
            },
        }
    }
    gb["sources"].append(src2)
    tables = {
        "data.purchases": ev_frame([(1, 1, T0 - 10)]),
        "data.more": ev_frame([(1, 5, T0 - 5)], cols=("uid", "amount", "ts")),
    }
    out = naive_join_part(left_events([(1, T0)]), gb, tables)
    assert out.iloc[0].to_dict() == {"price_sum": 6, "price_last": 5}


def test_ties_in_join():
    events = ev_frame([(1, 5, T0 - 10), (1, 3, T0 - 10), (1, 1, T0 - 20)])
    gb = events_gb(
        [agg("price", "LAST"), agg("price", "FIRST"), agg("price", "LAST_K", k=2), agg("price", "FIRST_K", k=2)]
    )
    assert one(gb, events, T0) == {"price_last": 5, "price_first": 1, "price_last2": [5, 3], "price_first2": [1, 3]}


# ---------------------------------------------------------------------------
# snapshot accuracy and entity left
# ---------------------------------------------------------------------------


def test_snapshot_accuracy_event_left():
    D = T0  # left day start
    events = ev_frame(
        [
            (1, 1, D - 2 * DAY_MS - 1),  # outside a 2d window
            (1, 10, D - 2 * DAY_MS),  # exactly D - W: included
            (1, 100, D - 1),  # last ms of the previous day
            (1, 1000, D),  # same day as the left row: excluded
            (1, 10000, D + 6 * HOUR_MS),  # before left ts but same day: excluded
        ]
    )
    gb = events_gb([agg("price", "SUM", [win(2)]), agg("price", "SUM")], accuracy="SNAPSHOT")
    assert one(gb, events, D + 12 * HOUR_MS) == {"price_sum_2d": 110, "price_sum": 111}
    # same for a left row at exactly midnight
    assert one(gb, events, D) == {"price_sum_2d": 110, "price_sum": 111}
    # temporal accuracy for comparison
    gb["accuracy"] = "TEMPORAL"
    # (window [D - 36h, D + 12h): the event at D - 2d drops out)
    assert one(gb, events, D + 12 * HOUR_MS) == {"price_sum_2d": 11100, "price_sum": 11111}


def test_entity_left_with_event_group_by():
    end = T0 + DAY_MS  # end of D0
    events = ev_frame([(1, 1, end - DAY_MS - 1), (1, 10, end - DAY_MS), (1, 100, end - 1), (1, 1000, end)])
    gb = events_gb([agg("price", "SUM", [win(1)]), agg("price", "COUNT")])
    left = pd.DataFrame({"user_id": [1, 2], "ds": [D0, D0]})
    for acc in ("TEMPORAL", "SNAPSHOT"):
        gb["accuracy"] = acc
        out = naive_join_part(left, gb, {"data.purchases": events}, left_is_entity=True)
        assert out["price_sum_1d"].tolist() == [110, None]
        assert out["price_count"].tolist() == [3, 0]


# ---------------------------------------------------------------------------
# entity group-bys
# ---------------------------------------------------------------------------


def users_snapshots():
    return pd.DataFrame(
        {
            "user_id": [1, 2, 1, 2, 3, 1, 1],
            "balance": [5, 7, 10, 70, 30, 11, 12],
            "city": ["x", "y", "x", "y", "z", "p", "q"],
            "ds": ["2024-01-08", "2024-01-08", "2024-01-09", "2024-01-09", "2024-01-09", "2024-01-10", "2024-01-10"],
        }
    )


USER_SELECTS = {"user_id": "user_id", "balance": "balance", "city": "city"}


def test_entity_without_aggregations():
    gb = entity_gb(None, USER_SELECTS, accuracy="SNAPSHOT")
    tables = {"data.users": users_snapshots()}
    # event left on 2024-01-10 -> snapshot 2024-01-09
    left = left_events([(1, T0 + 5), (3, T0 + 5), (4, T0 + 5), (2, T0 - 1)])
    out = naive_join_part(left, gb, tables)
    assert list(out.columns) == ["balance", "city"]
    assert out["balance"].tolist() == [10, 30, None, 7]
    assert out["city"].tolist() == ["x", "z", None, "y"]
    # entity left: same ds
    eleft = pd.DataFrame({"user_id": [1, 2, 3], "ds": ["2024-01-09", "2024-01-09", "2024-01-08"]})
    out = naive_join_part(eleft, gb, tables, left_is_entity=True)
    assert out["balance"].tolist() == [10, 70, None]
    # temporal accuracy without a mutation table: also the ds - 1 snapshot
    gb["accuracy"] = "TEMPORAL"
    assert naive_join_part(left, gb, tables)["balance"].tolist() == [10, 30, None, 7]


def test_entity_with_aggregations():
    gb = entity_gb(
        [agg("balance", "SUM"), agg("balance", "COUNT"), agg("city", "LAST"), agg("balance", "MAX")],
        USER_SELECTS,
        accuracy="SNAPSHOT",
    )
    tables = {"data.users": users_snapshots()}
    left = left_events([(1, T0 + DAY_MS + 5), (2, T0 + DAY_MS + 5)])  # 2024-01-11 -> snapshot 2024-01-10
    out = naive_join_part(left, gb, tables)
    # user 1 has two rows on 2024-01-10 (11, "p") and (12, "q"); ties on time -> the larger value is last
    assert out.iloc[0].to_dict() == {"balance_sum": 23, "balance_count": 2, "city_last": "q", "balance_max": 12}
    assert out.iloc[1].to_dict() == {"balance_sum": None, "balance_count": 0, "city_last": None, "balance_max": None}
    eleft = pd.DataFrame({"user_id": [1, 2], "ds": ["2024-01-09", "2024-01-09"]})
    out = naive_join_part(eleft, gb, tables, left_is_entity=True)
    assert out["balance_sum"].tolist() == [10, 70]


def mutation_tables():
    snap = pd.DataFrame({"user_id": [1, 2], "balance": [10, 50], "ds": ["2024-01-09", "2024-01-09"]})
    h = HOUR_MS
    muts = pd.DataFrame(
        [
            # user 1: update 10 -> 20 at 10:00, 20 -> 30 at 15:00, delete at 18:00
            (1, 10, T0 + 10 * h, True),
            (1, 20, T0 + 10 * h, False),
            (1, 30, T0 + 15 * h, False),
            (1, 20, T0 + 15 * h, True),  # after listed before before: order by is_before
            (1, 30, T0 + 18 * h, True),
            # user 3: inserted at 09:00, a second row at 11:00
            (3, 1, T0 + 9 * h, False),
            (3, 2, T0 + 11 * h, False),
            # user 2: retraction of a non-existent row is a no-op
            (2, 999, T0 + 1 * h, True),
        ],
        columns=["user_id", "balance", "mutation_ts", "is_before"],
    )
    muts["ds"] = D0
    # a mutation of the next day must not be used for left rows of D0
    nxt = pd.DataFrame([(1, 77, T0 + DAY_MS + h, False)], columns=["user_id", "balance", "mutation_ts", "is_before"])
    nxt["ds"] = "2024-01-11"
    return {"data.users": snap, "data.users_mutations": pd.concat([muts, nxt], ignore_index=True)}


def test_entity_mutations_without_aggregations():
    gb = entity_gb(None, {"user_id": "user_id", "balance": "balance"}, mutations=True)
    h = HOUR_MS
    left = left_events(
        [
            (1, T0 + 9 * h),
            (1, T0 + 10 * h),
            (1, T0 + 10 * h + 1),
            (1, T0 + 15 * h),
            (1, T0 + 16 * h),
            (1, T0 + 18 * h),
            (1, T0 + 19 * h),
            (2, T0 + 23 * h),
            (3, T0 + 8 * h),
            (3, T0 + 10 * h),
        ]
    )
    out = naive_join_part(left, gb, mutation_tables())
    #               <10h  =10h >10h =15h  16h  =18h  19h   u2  u3@8 u3@10
    assert out["balance"].tolist() == [10, 10, 20, 20, 30, 30, None, 50, None, 1]
    # snapshot accuracy ignores mutations
    gb["accuracy"] = "SNAPSHOT"
    assert naive_join_part(left, gb, mutation_tables())["balance"].tolist() == [10] * 7 + [50, None, None]


def test_entity_mutations_with_aggregations():
    gb = entity_gb(
        [agg("balance", "SUM"), agg("balance", "COUNT"), agg("balance", "LAST")],
        {"user_id": "user_id", "balance": "balance"},
        mutations=True,
    )
    h = HOUR_MS
    left = left_events([(3, T0 + 12 * h), (3, T0 + 10 * h), (1, T0 + 12 * h), (1, T0 + 20 * h), (4, T0 + 20 * h)])
    out = naive_join_part(left, gb, mutation_tables())
    assert out["balance_sum"].tolist() == [3, 1, 20, None, None]
    assert out["balance_count"].tolist() == [2, 1, 1, 0, 0]
    assert out["balance_last"].tolist() == [2, 1, 20, None, None]


def test_entity_mutation_retracts_one_of_duplicates():
    snap = pd.DataFrame({"user_id": [1, 1], "balance": [5, 5], "ds": ["2024-01-09"] * 2})
    muts = pd.DataFrame([(1, 5, T0 + 1, True)], columns=["user_id", "balance", "mutation_ts", "is_before"])
    muts["ds"] = D0
    gb = entity_gb([agg("balance", "COUNT")], {"user_id": "user_id", "balance": "balance"}, mutations=True)
    out = naive_join_part(left_events([(1, T0 + 2)]), gb, {"data.users": snap, "data.users_mutations": muts})
    assert out["balance_count"].tolist() == [1]


# ---------------------------------------------------------------------------
# buckets
# ---------------------------------------------------------------------------


def test_buckets():
    events = pd.DataFrame(
        [
            (1, 1.0, "a", T0 - 3 * DAY_MS),
            (1, 2.0, "a", T0 - 10),
            (1, 4.0, "b", T0 - 9),
            (1, 8.0, None, T0 - 8),  # null bucket: ignored
            (1, None, "c", T0 - 7),  # null value: bucket c never appears
            (1, 16.0, "b", T0),  # at t: excluded
        ],
        columns=["user_id", "price", "category", "ts"],
    )
    events["ds"] = "2024-01-09"
    gb = events_gb(
        [
            agg("price", "SUM", [win(1), win(7)], buckets=["category"]),
            agg("price", "COUNT", [win(1)], buckets=["category"]),
            agg("price", "SUM", [win(1)]),
        ],
        selects={"user_id": "user_id", "price": "price", "category": "category"},
    )
    row = one(gb, events, T0)
    assert row == {
        "price_sum_by_category_1d": {"a": 2.0, "b": 4.0},
        "price_sum_by_category_7d": {"a": 3.0, "b": 4.0},
        "price_count_by_category_1d": {"a": 1, "b": 1},
        "price_sum_1d": 14.0,
    }
    empty = one(gb, events, T0 - 5 * DAY_MS)
    assert empty == {
        "price_sum_by_category_1d": None,
        "price_sum_by_category_7d": None,
        "price_count_by_category_1d": None,
        "price_sum_1d": None,
    }


# ---------------------------------------------------------------------------
# daily backfill
# ---------------------------------------------------------------------------


def test_snapshot_backfill_events_windowed():
    # D0 = 2024-01-10; end of D0 = T0 + 1d
    events = ev_frame(
        [
            (1, 1, T0 - DAY_MS + 5),  # 2024-01-09
            (1, 2, T0 + 5),  # 2024-01-10
            (2, 4, T0 + DAY_MS + 5),  # 2024-01-11
            (None, 8, T0 + 5),  # null key: no row
            (3, None, T0 + 5),  # null value still makes a row
        ]
    )
    events["user_id"] = events["user_id"].astype("Int64")
    gb = events_gb([agg("price", "SUM", [win(1)]), agg("price", "COUNT", [win(2)])])
    out = naive_snapshot_backfill(gb, {"data.purchases": events}, "2024-01-09", "2024-01-12")
    assert list(out.columns) == ["user_id", "ds", "price_sum_1d", "price_count_2d"]
    got = [tuple(r) for r in out.itertuples(index=False)]
    assert got == [
        (1, "2024-01-09", 1, 1),
        (1, "2024-01-10", 2, 2),
        (3, "2024-01-10", None, 0),
        (1, "2024-01-11", None, 1),  # within the 2d max window but not the 1d one
        (2, "2024-01-11", 4, 1),
        (3, "2024-01-11", None, 0),
        (2, "2024-01-12", None, 1),
    ]


def test_snapshot_backfill_events_unwindowed():
    events = ev_frame([(1, 1, T0 - 30 * DAY_MS), (2, 5, T0 + DAY_MS)])
    gb = events_gb([agg("price", "SUM", [win(1)]), agg("price", "LAST_K", k=2)])
    out = naive_snapshot_backfill(gb, {"data.purchases": events}, D0, "2024-01-11")
    got = [tuple(r) for r in out.itertuples(index=False)]
    assert got == [
        (1, D0, None, [1]),
        (1, "2024-01-11", None, [1]),
        (2, "2024-01-11", 5, [5]),
    ]


def test_snapshot_backfill_matches_entity_left_join():
    rng = np.random.default_rng(7)
    n = 300
    events = ev_frame(
        list(
            zip(
                rng.integers(0, 5, n).tolist(),
                rng.integers(0, 100, n).tolist(),
                (T0 + rng.integers(-5 * DAY_MS, 5 * DAY_MS, n)).tolist(),
            )
        )
    )
    gb = events_gb(
        [
            agg("price", "SUM", [win(2), win(5, "HOURS")]),
            agg("price", "LAST_K", [win(3)], k=3),
            agg("price", "APPROX_PERCENTILE", [win(4)], percentiles="[0.5]"),
        ]
    )
    tables = {"data.purchases": events}
    bf = naive_snapshot_backfill(gb, tables, "2024-01-06", "2024-01-14")
    left = bf[["user_id", "ds"]]
    jp = naive_join_part(left, gb, tables, left_is_entity=True)
    for c in output_column_names(gb):
        assert bf[c].tolist() == jp[c].tolist()


def test_snapshot_backfill_entities():
    tables = {"data.users": users_snapshots()}
    gb = entity_gb(None, USER_SELECTS)
    out = naive_snapshot_backfill(gb, tables, "2024-01-09", "2024-01-10")
    assert list(out.columns) == ["user_id", "balance", "city", "ds"]
    assert [tuple(r) for r in out.itertuples(index=False)] == [
        (1, 10, "x", "2024-01-09"),
        (2, 70, "y", "2024-01-09"),
        (3, 30, "z", "2024-01-09"),
        (1, 11, "p", "2024-01-10"),
        (1, 12, "q", "2024-01-10"),
    ]
    gb = entity_gb([agg("balance", "SUM"), agg("city", "UNIQUE_COUNT")], USER_SELECTS)
    out = naive_snapshot_backfill(gb, tables, "2024-01-10", "2024-01-11")
    assert list(out.columns) == ["user_id", "ds", "balance_sum", "city_unique_count"]
    assert [tuple(r) for r in out.itertuples(index=False)] == [(1, "2024-01-10", 23, 2)]


# ---------------------------------------------------------------------------
# brute force cross-check and speed
# ---------------------------------------------------------------------------


def test_random_against_brute_force_and_speed():
    rng = np.random.default_rng(11)
    n_ev, n_left = 4000, 3000
    events = ev_frame(
        list(
            zip(
                rng.integers(0, 50, n_ev).tolist(),
                rng.integers(0, 1000, n_ev).tolist(),
                (T0 + rng.integers(-20 * DAY_MS, 0, n_ev)).tolist(),
            )
        )
    )
    left = left_events(
        list(zip(rng.integers(0, 60, n_left).tolist(), (T0 + rng.integers(-15 * DAY_MS, 0, n_left)).tolist()))
    )
    gb = events_gb(
        [
            agg("price", "SUM", [win(1), win(7)]),
            agg("price", "COUNT", [win(12, "HOURS")]),
            agg("price", "LAST"),
            agg("price", "VARIANCE", [win(3)]),
            agg("price", "TOP_K", [win(2)], k=3),
        ]
    )
    start = time.time()
    out = naive_join_part(left, gb, {"data.purchases": events})
    assert time.time() - start < 10
    ev = events
    for i in rng.choice(n_left, 100, replace=False):
        u, t = int(left["user_id"].iloc[i]), int(left["ts"].iloc[i])
        mine = ev[ev.user_id == u]

        def in_win(w, mine=mine, t=t):
            return mine[(mine.ts >= t - w) & (mine.ts < t)]

        s1 = in_win(DAY_MS).price
        assert out["price_sum_1d"].iloc[i] == (int(s1.sum()) if len(s1) else None)
        assert out["price_sum_7d"].iloc[i] == (int(in_win(7 * DAY_MS).price.sum()) if len(in_win(7 * DAY_MS)) else None)
        assert out["price_count_12h"].iloc[i] == len(in_win(12 * HOUR_MS))
        before = mine[mine.ts < t].sort_values(["ts", "price"])
        assert out["price_last"].iloc[i] == (int(before.price.iloc[-1]) if len(before) else None)
        v3 = in_win(3 * DAY_MS).price
        if len(v3):
            assert math.isclose(
                out["price_variance_3d"].iloc[i], float(np.var(v3.to_numpy(dtype=float))), rel_tol=1e-9, abs_tol=1e-9
            )
        else:
            assert out["price_variance_3d"].iloc[i] is None
        top = sorted(in_win(2 * DAY_MS).price.tolist(), reverse=True)[:3]
        assert out["price_top3_2d"].iloc[i] == (top or None)
