"""Online IRs and codec: merge/finalize against the offline window kernel, and codec round trips (no Spark)."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from feature_assets.aggregation import codec
from feature_assets.aggregation.evaluate import Events, evaluate, head_ir, ir_from_wire, ir_to_wire, spec_operation
from feature_assets.aggregation.registry import operation_def
from feature_assets.aggregation.spec import AggSpec
from feature_assets.aggregation.windows import compute_features

DAY = 86_400_000
HOUR = 3_600_000

EXACT_OPS = [
    ("SUM", {}),
    ("COUNT", {}),
    ("AVERAGE", {}),
    ("MIN", {}),
    ("MAX", {}),
    ("FIRST", {}),
    ("LAST", {}),
    ("FIRST_K", {"k": "3"}),
    ("LAST_K", {"k": "3"}),
    ("TOP_K", {"k": "4"}),
    ("BOTTOM_K", {"k": "2"}),
    ("UNIQUE_COUNT", {}),
    ("BOUNDED_UNIQUE_COUNT", {"k": "5"}),
    ("HISTOGRAM", {}),
    ("VARIANCE", {}),
    ("SKEW", {}),
    ("KURTOSIS", {}),
]
SKETCH_OPS = [("APPROX_UNIQUE_COUNT", {}), ("APPROX_PERCENTILE", {"percentiles": "[0.1, 0.5, 0.9]"})]


def spec(op, args, column="v", window=None, bucket=None, name=None):
    return AggSpec(
        name or f"{column}_{op.lower()}_{window}_{bucket}", column, op, tuple(sorted(args.items())), window, bucket
    )


def close(a, b, rel=1e-9):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return a == b


def kernel_value(value):
    """A kernel output cell as plain Python (None for nulls)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


@pytest.mark.parametrize("op,args", EXACT_OPS + SKETCH_OPS)
@pytest.mark.parametrize("kind", ["long", "double"])
def test_merge_equals_direct_and_kernel(op, args, kind):
    rng = random.Random(hash((op, kind)) & 0xFFFF)
    n = 150
    ts = sorted(rng.randrange(0, 10 * DAY) for _ in range(n))
    ts[10] = ts[11]  # a tie on ts
    if kind == "long":
        values = [rng.randrange(-50, 50) for _ in range(n)]
    else:
        values = [rng.randrange(-400, 400) / 4.0 for _ in range(n)]
    operation_ = operation_def(op).online(args)
    whole = operation_.fold(operation_.init(), values, ts)
    cut = rng.randrange(1, n - 1)
    left = operation_.fold(operation_.init(), values[:cut], ts[:cut])
    right = operation_.fold(operation_.init(), values[cut:], ts[cut:])
    # wire round trip of both halves before merging, as the head IR travels through the store
    left = operation_.from_wire(codec.decode_value(codec.encode_value(operation_.to_wire(left))))
    merged = operation_.merge(left, right)
    events = pd.DataFrame({"key": ["a"] * n, "ts": ts, "v": values})
    queries = pd.DataFrame({"key": ["a"], "ts": [10 * DAY + 1]})
    s = spec(op, args)
    expected = kernel_value(
        compute_features(events, queries, ["key"], [s], frozenset({"v"}) if kind == "long" else frozenset())[
            s.column_name
        ][0]
    )
    got_whole, got_merged = operation_.finalize(whole), operation_.finalize(merged)
    if op == "APPROX_UNIQUE_COUNT":  # offline is exact; CPC within its error
        assert abs(got_whole - expected) <= 0.05 * expected + 1
        assert abs(got_merged - expected) <= 0.05 * expected + 1
    elif op == "APPROX_PERCENTILE":  # KLL before its first compaction answers the exact nearest rank
        assert close(got_whole, expected) and close(got_merged, expected)
    else:
        assert close(got_whole, expected, 1e-9), (got_whole, expected)
        assert close(got_merged, expected, 1e-9), (got_merged, expected)


def test_empty_values():
    for op, args in EXACT_OPS + SKETCH_OPS:
        operation_ = operation_def(op).online(args)
        value = operation_.finalize(operation_.init())
        assert value == (0 if op in ("COUNT", "UNIQUE_COUNT", "BOUNDED_UNIQUE_COUNT", "APPROX_UNIQUE_COUNT") else None)


def test_strings_and_ties():
    events = Events([1, 1, 2, 5], {"s": ["b", "a", None, "c"]})
    first = spec("FIRST", {}, "s")
    last_k = spec("LAST_K", {"k": "3"}, "s")
    assert evaluate(first, events, 10) == "a"  # equal ts: the smaller value sorts first
    assert evaluate(last_k, events, 10) == ["c", "b", "a"]
    assert evaluate(spec("HISTOGRAM", {}, "s"), events, 10) == {"a": 1, "b": 1, "c": 1}
    assert evaluate(spec("COUNT", {}, "s", window=5), events, 6) == 3  # [1, 6): t - W included
    assert evaluate(spec("COUNT", {}, "s", window=4), events, 6) == 1  # [2, 6): only c (null at 2 ignored)
    assert evaluate(spec("COUNT", {}, "s", window=4), events, 5) == 2  # [1, 5): ts 5 excluded
    assert evaluate(spec("COUNT", {}, "s", window=1), events, 5) == 0  # [4, 5): empty


# --------------------------------------------------------------------------- codec


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        -(2**63),
        1.5,
        float("inf"),
        "",
        "héllo",
        b"\x00\xff",
        [1, 2, 3, 4, 5],
        [1.0, 2.5, -3.0, 4.0],
        [1, None, 3, 4],
        [1, 2.0, 3, 4],
        ["a", "b"],
        [],
        {"a": 1, 2: [1.5, None], None: {"x": b"y"}},
        [[1, 2, 3, 4], [[True, False]], {"k": []}],
    ],
)
def test_codec_round_trip(value):
    assert codec.decode_value(codec.encode_value(value)) == value
    fingerprint = codec.schema_fingerprint({"a": 1})
    data = codec.encode(codec.KIND_TEMPORAL, fingerprint, value)
    assert codec.decode(data, codec.KIND_TEMPORAL, fingerprint) == value


def test_codec_refuses_foreign_values():
    data = codec.encode(codec.KIND_SNAPSHOT, 7, [1, 2])
    with pytest.raises(codec.CodecError, match="another schema"):
        codec.decode(data, codec.KIND_SNAPSHOT, 8)
    with pytest.raises(codec.CodecError, match="kind"):
        codec.decode(data, codec.KIND_TEMPORAL, 7)
    with pytest.raises(codec.CodecError, match="version"):
        codec.decode(data[:2] + bytes([99]) + data[3:])
    with pytest.raises(codec.CodecError, match="magic"):
        codec.decode(b"XX" + data[2:])
    with pytest.raises(codec.CodecError):
        codec.decode(data[:-1])


def test_codec_is_compact():
    ts = list(range(1_700_000_000_000, 1_700_000_000_000 + 50))
    data = codec.encode(codec.KIND_TEMPORAL, 1, [ts, [[float(i) for i in range(50)]], [None]])
    assert len(data) < 8 + 2 * (2 + 50 * 8) + 10


# --------------------------------------------------------------------------- windows vs the kernel


def ranks_close(got: list, history: list, s, rank_error: float = 0.02) -> bool:
    """Each sketch percentile is the true value at a rank within the KLL rank error of the target rank."""
    import bisect
    import json

    n = len(history)
    slack = rank_error * n + 1
    for value, p in zip(got, json.loads(s.args["percentiles"])):
        target = math.ceil(p * n - 1e-9)
        if not (bisect.bisect_left(history, value) - slack <= target <= bisect.bisect_right(history, value) + slack):
            return False
    return True


def all_specs():
    windows = [None, 10 * 60_000, HOUR, DAY, 2 * DAY]
    specs = []
    for op, args in EXACT_OPS + SKETCH_OPS:
        for column in ("value_long", "value_double"):
            for window in windows:
                specs.append(spec(op, args, column, window))
        specs.append(
            spec(
                op,
                args,
                "value_str"
                if op not in ("SUM", "AVERAGE", "VARIANCE", "SKEW", "KURTOSIS", "APPROX_PERCENTILE")
                else "value_long",
                DAY,
            )
        )
    for op, args in (("SUM", {}), ("COUNT", {}), ("LAST_K", {"k": "2"}), ("UNIQUE_COUNT", {})):
        for window in (None, DAY):
            specs.append(spec(op, args, "value_long", window, bucket="value_str"))
    return specs


def test_windows_match_kernel_with_split_history():
    """Tail + head IRs + later events evaluated online == the kernel on all events, for every spec."""
    from feature_assets.dev.datagen.random_events import random_event_case

    case = random_event_case(seed=3, n_keys=12, n_events=900, n_left=200, n_days=5)
    events = case.events[case.events["key"].notna()].reset_index(drop=True)
    specs = all_specs()
    integral = frozenset({"value_long"})
    queries = case.left[case.left["key"].notna()][["key", "ts"]].reset_index(drop=True)
    offline = compute_features(events, queries, ["key"], specs, integral)
    split = int(case.events["ts"].min()) + 2 * DAY  # the batch end: online data = tail+head before, events after
    tail = 2 * DAY
    columns = ["value_double", "value_long", "value_str"]
    mismatches = []
    for row in range(len(queries)):
        key, t = queries["key"][row], int(queries["ts"][row])
        if t < split:
            continue
        mine = events[events["key"] == key].sort_values("ts", kind="mergesort")
        as_lists = {
            c: [
                None
                if (v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)))
                else (int(v) if c == "value_long" else v)
                for v in mine[c].tolist()
            ]
            for c in columns
        }
        ts = mine["ts"].astype(np.int64).tolist()
        head_n = sum(1 for x in ts if x < split - tail)
        batch_n = sum(1 for x in ts if x < split)
        head = Events(ts[:head_n], {c: as_lists[c][:head_n] for c in columns})
        online_events = Events(ts[head_n:], {c: as_lists[c][head_n:] for c in columns})
        assert batch_n >= head_n
        for s in specs:
            op = spec_operation(s)
            if s.window_millis is None:
                wire = codec.decode_value(codec.encode_value(ir_to_wire(s, head_ir(s, head, op), op)))
                got = evaluate(s, online_events, t, head=ir_from_wire(s, wire, op), op=op)
            else:
                got = evaluate(s, online_events, t, op=op)
            expected = kernel_value(offline[s.column_name][row])
            if s.bucket and isinstance(expected, dict):
                expected = {str(k): kernel_value(v) for k, v in expected.items()}
            if s.operation == "APPROX_UNIQUE_COUNT" and s.window_millis is None:
                ok = abs(got - expected) <= 0.05 * expected + 1
            elif s.operation == "APPROX_PERCENTILE" and s.window_millis is None:
                history = sorted(float(v) for v, x in zip(as_lists[s.input_column], ts) if x < t and v is not None)
                ok = (got is None) == (expected is None) and (got is None or ranks_close(got, history, s))
            else:
                ok = close(got, expected, 1e-9)
            if not ok:
                mismatches.append((s.column_name, key, t, got, expected))
    assert not mismatches, mismatches[:10]


def test_python_values_fast_paths_match_to_python():
    import numpy as np
    import pandas as pd

    from feature_assets.aggregation.values import python_values, to_python

    columns = [
        (pd.Series([1, 2, 3], dtype="int64"), "bigint"),
        (pd.Series([1.0, np.nan, 3.0]), "bigint"),
        (pd.Series([1, None, 3], dtype="Int64"), "bigint"),
        (pd.Series([0.5, np.nan]), "double"),
        (pd.Series(["a", None], dtype=object), "string"),
        (pd.Series([True, False]), "boolean"),
    ]
    for series, type_name in columns:
        got = python_values(series, type_name)
        assert got == [to_python(v, type_name) for v in series.tolist()], (series.dtype, type_name)
        assert [type(v) for v in got] == [type(to_python(v, type_name)) for v in series.tolist()]
