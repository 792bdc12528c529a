"""The Spark engine against the naive oracle (tests/oracle/naive.py) on random and quickstart data.

Every comparison is row by row and column by column: integers and strings exactly, floats with a
relative tolerance of 1e-9 (1e-6 for VARIANCE/SKEW/KURTOSIS), the sketches within their error
(APPROX_UNIQUE_COUNT: 3% + 1; APPROX_PERCENTILE: the value must lie between the oracle's exact
nearest-rank percentiles at p - 0.05 and p + 0.05). Output Spark types are checked too.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest
from oracle.naive import naive_join_part, naive_snapshot_backfill, output_column_names
from support.configs import meta, query
from support.values import norm

from feature_assets.model.configs import GroupBy, Join, StagingQuery
from feature_assets.naming import clean_name

pytestmark = pytest.mark.spark

HOUR = {"length": 1, "timeUnit": "HOURS"}
DAY1 = {"length": 1, "timeUnit": "DAYS"}
DAY2 = {"length": 2, "timeUnit": "DAYS"}
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

PERCENTILES = [0.1, 0.5, 0.9]
PERCENTILE_EPS = 0.05

NUMERIC_OPS = [
    "SUM",
    "COUNT",
    "AVERAGE",
    "MIN",
    "MAX",
    "FIRST",
    "LAST",
    "FIRST_K",
    "LAST_K",
    "TOP_K",
    "BOTTOM_K",
    "UNIQUE_COUNT",
    "BOUNDED_UNIQUE_COUNT",
    "HISTOGRAM",
    "VARIANCE",
    "SKEW",
    "KURTOSIS",
    "APPROX_UNIQUE_COUNT",
    "APPROX_PERCENTILE",
]
STRING_OPS = [
    "COUNT",
    "MIN",
    "MAX",
    "FIRST",
    "LAST",
    "FIRST_K",
    "LAST_K",
    "HISTOGRAM",
    "UNIQUE_COUNT",
    "BOUNDED_UNIQUE_COUNT",
    "APPROX_UNIQUE_COUNT",
]
INPUT_TYPES = {"value_long": "long", "value_double": "double", "value_str": "string"}
K_OPS = {"FIRST_K": "first", "LAST_K": "last", "TOP_K": "top", "BOTTOM_K": "bottom"}
COUNT_OPS = {"COUNT", "UNIQUE_COUNT", "BOUNDED_UNIQUE_COUNT", "APPROX_UNIQUE_COUNT"}
MOMENT_OPS = {"VARIANCE", "SKEW", "KURTOSIS"}


# ------------------------------------------------------------------------------------------------
# compiled-config builders (same shape as quickstart/production/...)
# ------------------------------------------------------------------------------------------------


def agg(column, op, windows=(), buckets=(), **args):
    arg_map = {k: str(v) for k, v in args.items()}
    if op == "APPROX_PERCENTILE" and "percentiles" not in arg_map:
        arg_map["percentiles"] = str(PERCENTILES)
    if op in K_OPS and "k" not in arg_map:
        arg_map["k"] = "3"
    return {
        "argMap": arg_map,
        "buckets": list(buckets),
        "inputColumn": column,
        "operation": op,
        "windows": list(windows),
    }


def event_group_by(name, keys, aggregations, accuracy="TEMPORAL", derivations=(), table="rnd.events"):
    selects = {k: k for k in keys}
    selects.update({c: c for c in INPUT_TYPES})
    return {
        "accuracy": accuracy,
        "aggregations": aggregations,
        "backfillStartDate": None,
        "derivations": list(derivations),
        "keyColumns": list(keys),
        "metaData": meta(name),
        "sources": [{"events": {"isCumulative": False, "query": query(selects, "ts"), "table": table, "topic": None}}],
    }


def entity_group_by(name, keys, aggregations=None, accuracy="SNAPSHOT"):
    selects = {k: k for k in keys}
    selects.update({"value_long": "value_long", "value_str": "value_str"})
    return {
        "accuracy": accuracy,
        "aggregations": aggregations,
        "backfillStartDate": None,
        "derivations": [],
        "keyColumns": list(keys),
        "metaData": meta(name),
        "sources": [
            {
                "entities": {
                    "mutationTable": None,
                    "mutationTopic": None,
                    "query": query(selects),
                    "snapshotTable": "rnd.entity_snapshots",
                }
            }
        ],
    }


def event_left(selects):
    return {"events": {"isCumulative": False, "query": query(selects, "ts"), "table": "rnd.left", "topic": None}}


def entity_left(selects):
    return {
        "entities": {
            "mutationTable": None,
            "mutationTopic": None,
            "query": query(selects),
            "snapshotTable": "rnd.entity_snapshots",
        }
    }


def join_part(group_by, key_mapping=None, prefix=None):
    return {"groupBy": group_by, "keyMapping": dict(key_mapping or {}), "prefix": prefix}


def make_join(name, left, parts, derivations=()):
    return {
        "bootstrapFromLog": False,
        "bootstrapParts": [],
        "derivations": list(derivations),
        "joinParts": parts,
        "left": left,
        "metaData": meta(name),
        "onlineExternalParts": [],
        "rowIds": ["row_id"],
    }


def full_aggregations(windows, with_bucket=True):
    """Every operation on every value column, windowed (``windows``) and unwindowed."""
    aggs = []
    for column, ops in (("value_long", NUMERIC_OPS), ("value_double", NUMERIC_OPS), ("value_str", STRING_OPS)):
        for op in ops:
            args = {}
            if op == "BOUNDED_UNIQUE_COUNT":  # value_double uses the default k (8)
                args = {"value_long": {"k": 4}, "value_str": {"k": 2}}.get(column, {})
            aggs.append(agg(column, op, windows, **args))
            unwindowed = agg(column, op, (), **args)
            if op in K_OPS:  # a different k for the unwindowed variant (distinct output names anyway)
                unwindowed["argMap"]["k"] = "5"
            aggs.append(unwindowed)
    if with_bucket:
        aggs += [
            agg("value_long", "SUM", windows, buckets=["value_str"]),
            agg("value_double", "LAST", (), buckets=["value_str"]),
            agg("value_long", "COUNT", [DAY1], buckets=["value_str"]),
        ]
    return aggs


def column_specs(group_by):
    """{output column: (operation, input type, bucketed)} written independently of the engine."""
    out = {}
    for a in group_by.get("aggregations") or []:
        op, args = a["operation"], a.get("argMap") or {}
        base = f"{a['inputColumn']}_{K_OPS[op] + args['k'] if op in K_OPS else op.lower()}"
        for bucket in a.get("buckets") or [None]:
            stem = base if bucket is None else f"{base}_by_{bucket}"
            for w in a.get("windows") or [None]:
                suffix = "" if w is None else f"_{w['length']}{'h' if w['timeUnit'] == 'HOURS' else 'd'}"
                out[stem + suffix] = (op, INPUT_TYPES.get(a["inputColumn"], "long"), bucket is not None)
    return out


def oracle_group_by(group_by):
    """The group-by the oracle runs: APPROX_PERCENTILE asks for p - eps and p + eps (the bounds)."""
    copy = {**group_by, "aggregations": []}
    for a in group_by.get("aggregations") or []:
        a = {**a, "argMap": dict(a.get("argMap") or {})}
        if a["operation"] == "APPROX_PERCENTILE":
            bounds = []
            for p in PERCENTILES:
                bounds += [round(p - PERCENTILE_EPS, 6), round(p + PERCENTILE_EPS, 6)]
            a["argMap"]["percentiles"] = str(bounds)
        copy["aggregations"].append(a)
    if not group_by.get("aggregations"):
        copy["aggregations"] = group_by.get("aggregations")
    return copy


# ------------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------------


def expected_type(op, input_type, bucketed):
    from pyspark.sql import types as T

    elem = {"long": T.LongType(), "double": T.DoubleType(), "string": T.StringType()}[input_type]
    if op in COUNT_OPS:
        t = T.LongType()
    elif op == "SUM":
        t = T.LongType() if input_type == "long" else T.DoubleType()
    elif op in MOMENT_OPS or op == "AVERAGE":
        t = T.DoubleType()
    elif op in ("MIN", "MAX", "FIRST", "LAST"):
        t = elem
    elif op in K_OPS:
        t = T.ArrayType(elem)
    elif op == "HISTOGRAM":
        t = T.MapType(elem, T.LongType())
    elif op == "APPROX_PERCENTILE":
        t = T.ArrayType(T.DoubleType())
    else:
        raise AssertionError(op)
    return T.MapType(T.StringType(), t) if bucketed else t


def check_schema(frame, specs, prefix=""):
    fields = {f.name: f.dataType for f in frame.schema.fields}
    bad = []
    for name, (op, input_type, bucketed) in specs.items():
        want = expected_type(op, input_type, bucketed).simpleString()
        got = fields[prefix + name].simpleString()
        if got != want:
            bad.append(f"{prefix + name}: {got} != {want}")
    assert not bad, "wrong output types:\n" + "\n".join(bad)


def _is_nan(v):
    return isinstance(v, float) and math.isnan(v)


def scalar_equal(got, want, rel_tol):
    if want is None or got is None:
        return got is None and want is None
    if _is_nan(got) or _is_nan(want):
        return False
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, float) or isinstance(got, float):
        if not isinstance(got, (int, float)) or not isinstance(want, (int, float)):
            return False
        return math.isclose(got, want, rel_tol=rel_tol, abs_tol=0.0 if rel_tol < 1e-7 else 1e-9)
    return type(got) is type(want) and got == want


def value_equal(op, got, want):
    """Engine value vs oracle value of one (unbucketed) feature."""
    if want is None or got is None:
        return got is None and want is None
    if op == "APPROX_UNIQUE_COUNT":
        return isinstance(got, int) and abs(got - want) <= 0.03 * want + 1 and (want != 0 or got == 0)
    if op == "APPROX_PERCENTILE":
        if not isinstance(got, list) or len(got) != len(PERCENTILES):
            return False
        return all(want[2 * i] <= g <= want[2 * i + 1] for i, g in enumerate(got))
    rel = 1e-6 if op in MOMENT_OPS else 1e-9
    if isinstance(want, list):
        return (
            isinstance(got, list) and len(got) == len(want) and all(scalar_equal(g, w, rel) for g, w in zip(got, want))
        )
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(scalar_equal(got[k], want[k], rel) for k in want)
    return scalar_equal(got, want, rel)


def feature_equal(spec, got, want):
    op, _, bucketed = spec
    if not bucketed:
        return value_equal(op, got, want)
    if want is None or got is None:
        return got is None and want is None
    return isinstance(got, dict) and set(got) == set(want) and all(value_equal(op, got[b], want[b]) for b in want)


def compare_rows(engine: dict, oracle: dict, columns: dict, what: str, max_report: int = 25):
    """engine/oracle: {row key: {column: value}}; columns: {engine column: (oracle column, spec)}."""
    assert set(engine) == set(oracle), (
        f"{what}: row sets differ; engine-only {sorted(set(engine) - set(oracle), key=repr)[:10]}, "
        f"oracle-only {sorted(set(oracle) - set(engine), key=repr)[:10]}"
    )
    bad = []
    for key in sorted(engine, key=repr):
        for engine_col, (oracle_col, spec) in columns.items():
            got, want = engine[key][engine_col], oracle[key][oracle_col]
            if not feature_equal(spec, got, want):
                bad.append(f"{key} {engine_col}: engine={got!r} oracle={want!r}")
    assert not bad, f"{what}: {len(bad)} mismatches, e.g.\n" + "\n".join(bad[:max_report])


def oracle_records(frame: pd.DataFrame, key_of) -> dict:
    cols = list(frame.columns)
    out = {}
    for values in zip(*(frame[c].tolist() for c in cols)):
        rec = dict(zip(cols, values))
        out[key_of(rec)] = rec
    return out


def checked_part_columns(output, gb: dict, prefix: str) -> dict:
    """Output column -> (oracle column, spec) of one join part, after checking its Spark types."""
    if not gb.get("aggregations"):
        return {prefix + c: (c, ("LAST", "?", False)) for c in output_column_names(gb)}
    specs = column_specs(gb)
    check_schema(output, specs, prefix)
    return {prefix + c: (c, specs[c]) for c in specs}


# ------------------------------------------------------------------------------------------------
# engine runners
# ------------------------------------------------------------------------------------------------


def random_case(warehouse, seed, key_type, **kwargs):
    from feature_assets.dev.datagen.random_events import random_event_case

    kwargs.setdefault("windows_millis", [HOUR_MS, DAY_MS, 2 * DAY_MS])
    kwargs.setdefault("n_events", 1500)
    kwargs.setdefault("n_left", 250)
    case = random_event_case(seed, key_type=key_type, **kwargs)
    case.write(warehouse.root, namespace="rnd")
    return case


def oracle_tables(case):
    return {f"rnd.{name}": frame for name, frame in case.tables().items()}


def snapshot_reader(warehouse, start_ds, end_ds):
    """Materializes each group-by's daily table (snapshot_backfill over [start_ds, end_ds]) once and
    returns a read_snapshot callable reading it back by range."""
    from feature_assets.offline.group_by import snapshot_backfill

    written = {}

    def read(group_by, s, e):
        table = "daily." + clean_name(group_by.name)
        if table not in written:
            warehouse.write_partitions(
                snapshot_backfill(warehouse, group_by, start_ds, end_ds), table, start_ds, end_ds
            )
            written[table] = True
        assert start_ds <= s and e <= end_ds, (s, e)
        return warehouse.read(table, s, e)

    return read


def run_join(warehouse, join: Join, start_ds, end_ds, read_snapshot=None):
    from feature_assets.offline.join import assemble_join, compute_join_part, read_left

    left = read_left(warehouse, join, start_ds, end_ds)
    parts = [
        (part, compute_join_part(warehouse, join, part, left, start_ds, end_ds, read_snapshot))
        for part in join.join_parts
    ]
    output = assemble_join(join, left, parts)
    rows = [r.asDict(recursive=True) for r in output.collect()]
    return output, rows


def by_row_id(rows):
    out = {}
    for r in rows:
        assert r["row_id"] not in out, f"left row {r['row_id']} appears twice"
        out[r["row_id"]] = r
    return out


def part_prefix(part):
    p = part.get("prefix")
    return (f"{p}_" if p else "") + clean_name(part["groupBy"]["metaData"]["name"]) + "_"


def check_event_join(warehouse, case, join, read_snapshot=None, key_renames=None):
    """Run the join over the case's range and compare every part with naive_join_part per row_id."""
    output, rows = run_join(warehouse, Join.from_json(join), case.start_ds, case.end_ds, read_snapshot)
    engine = by_row_id(rows)
    assert set(engine) == set(case.left["row_id"]), "every left row exactly once"
    left = case.left.rename(columns=key_renames or {})
    tables = oracle_tables(case)
    for part in join["joinParts"]:
        gb = part["groupBy"]
        specs = column_specs(gb)
        prefix = part_prefix(part)
        check_schema(output, specs, prefix)
        assert [prefix + c for c in output_column_names(gb)] == [c for c in output.columns if c.startswith(prefix)]
        expected = naive_join_part(left, oracle_group_by(gb), tables, key_mapping=part.get("keyMapping"))
        expected.insert(0, "row_id", left["row_id"].tolist())
        oracle = oracle_records(expected, lambda r: r["row_id"])
        compare_rows(engine, oracle, {prefix + c: (c, specs[c]) for c in specs}, f"join part {prefix}")
        assert_not_degenerate(expected, specs)
    return output, engine


def assert_not_degenerate(expected: pd.DataFrame, specs: dict):
    """Every compared column has some rows with a non-empty window (so the comparison is not vacuous)."""
    empty = [
        c
        for c, (op, _, _) in specs.items()
        if not any(v is not None and (op not in COUNT_OPS or v != 0) for v in expected[c])
    ]
    assert not empty, f"columns without any non-empty value: {empty}"


# ------------------------------------------------------------------------------------------------
# 1. TEMPORAL event join parts: every operation, hour/day windows and unwindowed, bucketed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,key_type", [(101, "string"), (202, "long"), (303, "composite"), (404, "string")])
def test_temporal_event_join_every_operation(warehouse, seed, key_type):
    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    gb = event_group_by("rnd.temporal_all", keys, full_aggregations([HOUR, DAY1, DAY2]))
    join = make_join("rnd.join_temporal", event_left({**{k: k for k in keys}, "row_id": "row_id"}), [join_part(gb)])
    output, engine = check_event_join(warehouse, case, join)
    # the left columns pass through unchanged
    left = case.left.set_index("row_id")
    for rid, row in engine.items():
        assert row["ts"] == int(left.at[rid, "ts"]) and row["ds"] == left.at[rid, "ds"]
        for k in keys:
            assert row[k] == norm(left.at[rid, k])


# ------------------------------------------------------------------------------------------------
# 2. SNAPSHOT event join: values as of 00:00 of the left ds, from the group-by's daily table
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,key_type", [(505, "long"), (606, "composite")])
def test_snapshot_event_join(warehouse, seed, key_type):
    from feature_assets.storage import shift_ds

    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    gb = event_group_by("rnd.snapshot_all", keys, full_aggregations([DAY1, DAY2]), accuracy="SNAPSHOT")
    join = make_join("rnd.join_snapshot", event_left({**{k: k for k in keys}, "row_id": "row_id"}), [join_part(gb)])
    reader = snapshot_reader(warehouse, shift_ds(case.start_ds, -1), case.end_ds)
    check_event_join(warehouse, case, join, reader)


@pytest.mark.parametrize("seed,key_type", [(1313, "string"), (1414, "composite")])
def test_part_tables_carry_row_ids_that_may_repeat_or_be_null(warehouse, seed, key_type):
    """Part tables carry the join's row ids and the output joins them on those, yet row ids shared by left rows
    with other keys or times, or null, still give every left row its own features (temporal and snapshot)."""
    from feature_assets.offline.join import compute_join_part, read_left
    from feature_assets.storage import shift_ds

    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    temporal = event_group_by("rnd.shared_temporal", keys, full_aggregations([HOUR, DAY1]))
    snapshot = event_group_by("rnd.shared_snapshot", keys, full_aggregations([DAY1]), accuracy="SNAPSHOT")
    # About ten left rows (of any key, time and day) per shared id; one in ten without one.
    shared = "CASE WHEN row_id LIKE '%7' THEN NULL ELSE substr(row_id, 1, 5) END"
    selects = {**{k: k for k in keys}, "row_id": "row_id", "shared_id": shared}
    join = make_join("rnd.join_shared_ids", event_left(selects), [join_part(temporal), join_part(snapshot)])
    join["rowIds"] = ["shared_id"]
    reader = snapshot_reader(warehouse, shift_ds(case.start_ds, -1), case.end_ds)
    check_event_join(warehouse, case, join, reader)
    compiled = Join.from_json(join)
    left = read_left(warehouse, compiled, case.start_ds, case.end_ds)
    assert left.where("shared_id IS NULL").count() > 0
    assert left.groupBy("shared_id", "ds").count().where("count > 1").count() > 0
    part = compiled.join_parts[0]
    table = compute_join_part(warehouse, compiled, part, left, case.start_ds, case.end_ds, reader)
    assert table.columns[: 2 + len(keys)] == ["shared_id", *keys, "ts"]


# ------------------------------------------------------------------------------------------------
# 3. snapshot_backfill vs naive_snapshot_backfill
# ------------------------------------------------------------------------------------------------


def check_backfill(warehouse, case, gb, start_ds, end_ds):
    from feature_assets.offline.group_by import snapshot_backfill

    keys = gb["keyColumns"]
    frame = snapshot_backfill(warehouse, GroupBy.from_json(gb), start_ds, end_ds)
    rows = [r.asDict(recursive=True) for r in frame.collect()]
    key_of = lambda r: (tuple(norm(r[k]) for k in keys), r["ds"])
    engine = {}
    for r in rows:
        assert key_of(r) not in engine, f"duplicate daily row {key_of(r)}"
        engine[key_of(r)] = r
    expected = naive_snapshot_backfill(oracle_group_by(gb), oracle_tables(case), start_ds, end_ds)
    oracle = oracle_records(expected, key_of)
    assert len(oracle) == len(expected)
    specs = column_specs(gb)
    if gb.get("aggregations"):
        check_schema(frame, specs)
        columns = {c: (c, specs[c]) for c in specs}
    else:
        columns = {c: (c, ("LAST", "?", False)) for c in output_column_names(gb)}
    assert sorted(frame.columns) == sorted(keys + ["ds"] + list(columns))
    compare_rows(engine, oracle, columns, f"snapshot_backfill {gb['metaData']['name']}")
    return engine


@pytest.mark.parametrize("seed,key_type", [(707, "string"), (808, "composite")])
def test_snapshot_backfill_events(warehouse, seed, key_type):
    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    windowed = event_group_by(
        "rnd.daily_windowed",
        keys,
        [
            agg(c, op, [HOUR, DAY1, DAY2])
            for c, ops in (("value_long", NUMERIC_OPS), ("value_str", STRING_OPS))
            for op in ops
        ]
        + [agg("value_double", "AVERAGE", [DAY1], buckets=["value_str"])],
    )
    unwindowed = event_group_by(
        "rnd.daily_unwindowed",
        keys,
        [agg(c, op) for c, ops in (("value_double", NUMERIC_OPS), ("value_str", STRING_OPS)) for op in ops],
    )
    # only hour windows: a key has a row on a day only if it has an event in that day's last 3 hours
    hours = event_group_by(
        "rnd.daily_hours",
        keys,
        [agg("value_long", op, [HOUR, {"length": 3, "timeUnit": "HOURS"}]) for op in ("SUM", "COUNT", "LAST")],
    )
    for gb in (windowed, unwindowed, hours):
        engine = check_backfill(warehouse, case, gb, case.start_ds, case.end_ds)
        assert engine, "the daily table is not empty"


@pytest.mark.parametrize("seed,key_type", [(909, "long"), (1010, "composite")])
def test_snapshot_backfill_entities(warehouse, seed, key_type):
    from feature_assets.storage import shift_ds

    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    # the generator's snapshots have one row per key and day (no null keys)
    assert not case.entity_snapshots.duplicated(keys + ["ds"]).any()
    plain = entity_group_by("rnd.entity_plain", keys)
    aggregated = entity_group_by(
        "rnd.entity_agg",
        keys,
        [
            agg("value_long", op)
            for op in (
                "SUM",
                "COUNT",
                "AVERAGE",
                "MIN",
                "MAX",
                "LAST",
                "FIRST_K",
                "HISTOGRAM",
                "VARIANCE",
                "UNIQUE_COUNT",
            )
        ]
        + [agg("value_str", op) for op in ("COUNT", "LAST", "LAST_K", "UNIQUE_COUNT", "APPROX_UNIQUE_COUNT")],
    )
    first = shift_ds(case.start_ds, -1)  # the initial snapshot, the day before the range
    for gb in (plain, aggregated):
        engine = check_backfill(warehouse, case, gb, first, case.end_ds)
        assert {ds for _, ds in engine} == {first, *case.days}


# ------------------------------------------------------------------------------------------------
# 4. entity left source joined with an event group-by (and an entity group-by)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,key_type", [(1111, "string"), (1212, "composite")])
def test_entity_left_join(warehouse, seed, key_type):
    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    events_gb = event_group_by(
        "rnd.for_entities",
        keys,
        [agg("value_long", op, [HOUR, DAY1, DAY2]) for op in ("SUM", "COUNT", "LAST", "LAST_K", "UNIQUE_COUNT")]
        + [agg("value_double", op) for op in ("AVERAGE", "MAX", "FIRST", "TOP_K", "VARIANCE", "APPROX_PERCENTILE")]
        + [agg("value_str", "HISTOGRAM", [DAY1])],
    )
    entity_gb = entity_group_by("rnd.entity_values", keys)
    join = make_join(
        "rnd.join_entity_left",
        entity_left({**{k: k for k in keys}, "value_str": "value_str"}),
        [join_part(events_gb), join_part(entity_gb, prefix="same")],
    )
    reader = snapshot_reader(warehouse, case.start_ds, case.end_ds)
    output, rows = run_join(warehouse, Join.from_json(join), case.start_ds, case.end_ds, reader)

    left = case.entity_snapshots[case.entity_snapshots["ds"].between(case.start_ds, case.end_ds)]
    left = left[keys + ["value_str", "ds"]].reset_index(drop=True)
    key_of = lambda r: (tuple(norm(r[k]) for k in keys), r["ds"])
    engine = {}
    for r in rows:
        assert key_of(r) not in engine
        engine[key_of(r)] = r
    assert len(rows) == len(left), "every left row exactly once"
    for r in oracle_records(left, key_of).values():
        assert engine[key_of(r)]["value_str"] == norm(r["value_str"])
    tables = oracle_tables(case)
    for part in join["joinParts"]:
        gb = part["groupBy"]
        prefix = part_prefix(part)
        expected = naive_join_part(left, oracle_group_by(gb), tables, left_is_entity=True)
        expected = pd.concat([left[keys + ["ds"]], expected], axis=1)
        oracle = oracle_records(expected, key_of)
        columns = checked_part_columns(output, gb, prefix)
        compare_rows(engine, oracle, columns, f"entity-left part {prefix}")


# ------------------------------------------------------------------------------------------------
# 5. key mapping, prefixes, two group-bys with different keys, group-by and join derivations
# ------------------------------------------------------------------------------------------------


def test_key_mapping_prefix_and_derivations(warehouse):
    case = random_case(warehouse, 1313, "composite")
    gb_ab = event_group_by(
        "rnd.by_ab",
        ["key_a", "key_b"],
        [agg("value_long", "SUM", [HOUR, DAY1]), agg("value_long", "COUNT", [DAY1]), agg("value_str", "LAST")],
        derivations=[{"name": "*", "expression": "*"}, {"name": "sum_1d_x2", "expression": "value_long_sum_1d * 2"}],
    )
    gb_a = event_group_by(
        "rnd.by_a",
        ["key_a"],
        [agg("value_long", "COUNT", [DAY2]), agg("value_double", "MAX", [DAY1]), agg("value_str", "LAST")],
        derivations=[
            {"name": "count_plus_one", "expression": "value_long_count_2d + 1"},
            {"name": "last_str", "expression": "value_str_last"},
        ],
    )
    join = make_join(
        "rnd.join_mapped",
        event_left({"la": "key_a", "lb": "key_b", "row_id": "row_id"}),
        [
            join_part(gb_ab, key_mapping={"la": "key_a", "lb": "key_b"}, prefix="pa"),
            join_part(gb_a, key_mapping={"la": "key_a"}),
        ],
        derivations=[
            {"name": "*", "expression": "*"},
            {"name": "both_counts", "expression": "pa_rnd_by_ab_value_long_count_1d + rnd_by_a_count_plus_one"},
        ],
    )
    output, rows = run_join(warehouse, Join.from_json(join), case.start_ds, case.end_ds)
    engine = by_row_id(rows)
    assert set(engine) == set(case.left["row_id"])
    ab_cols = ["value_long_sum_1h", "value_long_sum_1d", "value_long_count_1d", "value_str_last"]
    assert output.columns == (
        ["la", "lb", "row_id", "ts"]
        + [f"pa_rnd_by_ab_{c}" for c in ab_cols + ["sum_1d_x2"]]
        + ["rnd_by_a_count_plus_one", "rnd_by_a_last_str", "both_counts", "ds"]
    )

    left = case.left.rename(columns={"key_a": "la", "key_b": "lb"})
    tables = oracle_tables(case)
    ab = naive_join_part(left, gb_ab, tables, key_mapping={"la": "key_a", "lb": "key_b"})
    a = naive_join_part(left, gb_a, tables, key_mapping={"la": "key_a"})
    bad = []
    for i, rid in enumerate(left["row_id"]):
        row = engine[rid]
        want = {f"pa_rnd_by_ab_{c}": ab[c].iloc[i] for c in ab_cols}
        s = ab["value_long_sum_1d"].iloc[i]
        want["pa_rnd_by_ab_sum_1d_x2"] = None if s is None else s * 2
        c2 = a["value_long_count_2d"].iloc[i]
        want["rnd_by_a_count_plus_one"] = None if c2 is None else c2 + 1
        want["rnd_by_a_last_str"] = a["value_str_last"].iloc[i]
        c1 = ab["value_long_count_1d"].iloc[i]
        want["both_counts"] = None if c1 is None or c2 is None else c1 + c2 + 1
        for col, w in want.items():
            if not scalar_equal(row[col], w, 1e-9):
                bad.append(f"{rid} {col}: engine={row[col]!r} oracle={w!r}")
    assert not bad, f"{len(bad)} mismatches, e.g.\n" + "\n".join(bad[:25])
    # a left row whose key_b is null but key_a is set gets the key_a part only
    partial = [rid for rid, la, lb in zip(left["row_id"], left["la"], left["lb"]) if la is not None and pd.isna(lb)]
    assert partial, "the case has partially null composite keys"
    for rid in partial:
        assert engine[rid]["pa_rnd_by_ab_value_long_count_1d"] is None
        assert engine[rid]["rnd_by_a_count_plus_one"] is not None


# ------------------------------------------------------------------------------------------------
# 6. the quickstart training set
# ------------------------------------------------------------------------------------------------


def test_quickstart_training_set(warehouse, quickstart_compiled):
    from feature_assets.dev.datagen.parquet_tables import read_table
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.storage import shift_ds

    start, end = "2023-11-01", "2023-11-30"
    generate_quickstart_data(warehouse.root, start, end)
    join = quickstart_compiled["joins"]["quickstart.training_set.v1"]
    assert [join.uses_snapshot_table(p) for p in join.join_parts] == [True, False, True]
    reader = snapshot_reader(warehouse, shift_ds(start, -1), end)
    output, rows = run_join(warehouse, join, start, end, reader)

    tables = {
        f"data.{t}": read_table(warehouse.root, f"data.{t}") for t in ("purchases", "returns", "checkouts", "users")
    }
    checkouts = tables["data.checkouts"]
    engine = {}
    for r in rows:
        assert r["request_id"] not in engine
        engine[r["request_id"]] = r
    assert set(engine) == set(checkouts["request_id"]) and len(rows) == len(checkouts) == 3000

    left = checkouts[["user_id", "request_id", "ts", "ds"]].reset_index(drop=True)
    for user, rid, ts, ds in zip(left["user_id"], left["request_id"], left["ts"], left["ds"]):
        assert (engine[rid]["user_id"], engine[rid]["ts"], engine[rid]["ds"]) == (user, int(ts), ds)
    expected_columns = list(join.raw["left"]["events"]["query"]["selects"]) + ["ts"]
    for part in join.raw["joinParts"]:
        gb = part["groupBy"]
        prefix = part_prefix(part)
        assert prefix.startswith("quickstart_") and prefix.endswith(("purchases_v1_", "returns_v1_", "users_v1_"))
        expected_columns += [prefix + c for c in output_column_names(gb)]
        expected = naive_join_part(left, gb, tables)
        expected.insert(0, "request_id", left["request_id"].tolist())
        oracle = oracle_records(expected, lambda r: r["request_id"])
        columns = checked_part_columns(output, gb, prefix)
        compare_rows(engine, oracle, columns, f"quickstart part {prefix}")
    assert output.columns == expected_columns + ["ds"]
    # the data is not degenerate: features are present for most rows
    assert sum(r["quickstart_purchases_v1_purchase_price_count_30d"] > 0 for r in rows) > 2000
    assert sum(r["quickstart_users_v1_email_verified"] is not None for r in rows) > 2000


# ------------------------------------------------------------------------------------------------
# 7. idempotent partition writes
# ------------------------------------------------------------------------------------------------


def _rows(frame):
    return sorted(tuple(r) for r in frame.select("ds", "key", "v", "d").collect())


def test_write_partitions_idempotent(warehouse, spark):
    table = "rnd.idem"
    data = [(f"k{i}", i, float(i) / 4, f"2024-01-0{1 + i % 5}") for i in range(40)]
    frame = spark.createDataFrame(data, "key string, v long, d double, ds string")
    warehouse.write_partitions(frame, table, "2024-01-01", "2024-01-05")
    before = _rows(warehouse.read(table))
    assert len(before) == 40 and warehouse.partitions(table) == [f"2024-01-0{i}" for i in range(1, 6)]

    # the same range twice: identical rows, no duplicates
    warehouse.write_partitions(
        frame.where("ds between '2024-01-02' and '2024-01-04'"), table, "2024-01-02", "2024-01-04"
    )
    warehouse.write_partitions(
        frame.where("ds between '2024-01-02' and '2024-01-04'"), table, "2024-01-02", "2024-01-04"
    )
    assert _rows(warehouse.read(table)) == before

    # a day that became empty is empty after the rewrite; the others of the range are replaced
    changed = frame.where("ds in ('2024-01-02', '2024-01-04')").withColumn("v", frame["v"] + 1000)
    warehouse.write_partitions(changed, table, "2024-01-02", "2024-01-04")
    after = _rows(warehouse.read(table))
    assert warehouse.read(table, "2024-01-03", "2024-01-03").count() == 0
    assert "2024-01-03" in warehouse.partitions(table)
    expected = sorted(
        [r for r in before if r[0] in ("2024-01-01", "2024-01-05")]
        + [(ds, key, v + 1000, d) for ds, key, v, d in before if ds in ("2024-01-02", "2024-01-04")]
    )
    assert after == expected

    # writing [a, b] leaves partitions outside untouched, even if the frame holds rows outside the range
    stray = frame.withColumn("v", frame["v"] - 5000)
    warehouse.write_partitions(stray.where("ds <> '2024-01-03'"), table, "2024-01-03", "2024-01-03")
    assert _rows(warehouse.read(table)) == after
    warehouse.write_partitions(stray, table, "2024-01-03", "2024-01-03")
    final = _rows(warehouse.read(table))
    assert [r for r in final if r[0] != "2024-01-03"] == [r for r in after if r[0] != "2024-01-03"]
    assert [r for r in final if r[0] == "2024-01-03"] == sorted(
        (ds, key, v - 5000, d) for key, v, d, ds in data if ds == "2024-01-03"
    )
    assert warehouse.partitions(table) == [f"2024-01-0{i}" for i in range(1, 6)]

    # an empty frame over a fresh range gives empty partitions (readable, same schema)
    warehouse.write_partitions(frame.where("false"), table, "2024-01-06", "2024-01-07")
    assert warehouse.partitions(table)[-2:] == ["2024-01-06", "2024-01-07"]
    assert warehouse.read(table, "2024-01-06", "2024-01-07").count() == 0
    assert _rows(warehouse.read(table)) == final


# ------------------------------------------------------------------------------------------------
# 8. staging query with date macros
# ------------------------------------------------------------------------------------------------


def test_staging_query_range(warehouse):
    from feature_assets.offline.staging_query import run_staging_query

    case = random_case(warehouse, 1414, "string")
    staging = {
        "metaData": meta("rnd.staged"),
        "partitionColumn": "ds",
        "setups": [],
        "startPartition": None,
        "query": (
            "SELECT key, ts, value_long, value_str, ds FROM rnd.events "
            "WHERE ds >= '{{ start_date }}' AND ds <= '{{end_date}}'"
        ),
    }
    start, end = case.days[1], case.days[3]
    frame = run_staging_query(warehouse, StagingQuery.from_json(staging), start, end)
    got = Counter(
        tuple(norm(v) for v in r) for r in frame.select("key", "ts", "value_long", "value_str", "ds").collect()
    )
    ev = case.events[case.events["ds"].between(start, end)]
    want = Counter(
        tuple(norm(v) for v in row) for row in zip(ev["key"], ev["ts"], ev["value_long"], ev["value_str"], ev["ds"])
    )
    assert got == want and sum(got.values()) == len(ev) > 0
    assert dict(frame.dtypes)["ds"] == "string"

    # startPartition clips the range; a differently named partition column becomes ds
    staging2 = {
        **staging,
        "startPartition": case.days[2],
        "partitionColumn": "day",
        "query": "SELECT key, ts, ds AS day FROM rnd.events WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'",
    }
    frame2 = run_staging_query(warehouse, StagingQuery.from_json(staging2), start, end)
    assert "day" not in frame2.columns
    got2 = Counter(tuple(r) for r in frame2.select("key", "ts", "ds").collect())
    ev2 = case.events[case.events["ds"].between(case.days[2], end)]
    assert got2 == Counter(zip([norm(k) for k in ev2["key"]], ev2["ts"].tolist(), ev2["ds"].tolist()))


@pytest.mark.spark
@pytest.mark.parametrize(
    "threshold,windows,max_collected",
    [("0", [HOUR, DAY2], None), ("12", [HOUR, DAY1], None), ("0", [], None), ("0", [HOUR, DAY2], 3)],
    ids=["all-hot", "some-hot", "all-hot-unwindowed-only", "all-hot-too-many-to-collect"],
)
def test_hot_keys_split_by_time_give_the_same_features(
    spark, warehouse, monkeypatch, threshold, windows, max_collected
):
    """Keys over the threshold are split into time slices, with heads for the unwindowed aggregations;
    every operation (windowed, unwindowed, bucketed) must still equal the oracle. Hot keys are collected to
    the driver, or kept as a frame when there are too many of them."""
    from feature_assets.offline import hot_keys
    from feature_assets.offline.hot_keys import HOT_KEY_EVENTS_CONF

    if max_collected is not None:
        monkeypatch.setattr(hot_keys, "MAX_COLLECTED_HOT_KEYS", max_collected)

    case = random_case(warehouse, 717, "string", n_events=900, n_left=150)
    keys = case.key_columns
    aggregations = full_aggregations(windows or [DAY1])
    if not windows:
        aggregations = [a for a in aggregations if not a["windows"]]
    gb = event_group_by("rnd.hot", keys, aggregations)
    join = make_join("rnd.join_hot", event_left({**{k: k for k in keys}, "row_id": "row_id"}), [join_part(gb)])
    spark.conf.set(HOT_KEY_EVENTS_CONF, threshold)
    try:
        check_event_join(warehouse, case, join)
    finally:
        spark.conf.unset(HOT_KEY_EVENTS_CONF)


@pytest.mark.spark
def test_no_hot_key_plans_no_split(spark):
    """Without a hot key, queries and events only gain the ordinary slice (-1): no join with hot keys, no
    copies of events and no heads, so the kernel's inputs are read once."""
    from feature_assets.aggregation.spec import AggSpec
    from feature_assets.offline.hot_keys import SLICE, slice_hot_keys

    events = spark.createDataFrame([("a", 1, 2.0), ("b", 5, 1.0), ("a", 9, 4.0)], "k string, ts long, v double")
    queries = spark.createDataFrame([("a", 10), ("b", 10)], "k string, ts long")
    specs = [AggSpec("v_last2", "v", "LAST_K", (("k", "2"),), None)]
    sliced_queries, sliced_events = slice_hot_keys(queries, events, ["k"], specs)
    for frame, rows in ((sliced_queries, 2), (sliced_events, 3)):
        plan = frame._jdf.queryExecution().optimizedPlan().toString()
        assert "Join" not in plan and "Union" not in plan and "Generate" not in plan, plan
        assert [r[SLICE] for r in frame.collect()] == [-1] * rows


@pytest.mark.spark
def test_hot_keys_in_daily_snapshot_backfills(spark, warehouse):
    """The daily table of a group-by (queries at each day's end) with every key hot: unwindowed heads too."""
    from feature_assets.offline.hot_keys import HOT_KEY_EVENTS_CONF

    case = random_case(warehouse, 727, "long", n_events=700, n_left=50)
    keys = case.key_columns
    gb = event_group_by(
        "rnd.daily_hot",
        keys,
        [agg("value_double", op, [HOUR, DAY1]) for op in ("SUM", "LAST_K")]
        + [agg(c, op) for c, ops in (("value_double", NUMERIC_OPS), ("value_str", STRING_OPS)) for op in ops],
    )
    spark.conf.set(HOT_KEY_EVENTS_CONF, "0")
    try:
        assert check_backfill(warehouse, case, gb, case.start_ds, case.end_ds)
    finally:
        spark.conf.unset(HOT_KEY_EVENTS_CONF)
