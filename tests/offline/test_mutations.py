"""Join parts over entity sources with a mutation log (feature_assets/offline/mutations.py) against the oracle.

Random cases (tests/oracle/naive.py's `naive_join_part` on the same tables) with and without aggregations,
a hand-written case for the tricky orderings, and the compile-time rule for aggregations over mutation
sources. Integers and strings compare exactly, floats with a relative tolerance of 1e-9.
"""

from __future__ import annotations

import math
import textwrap

import pandas as pd
import pytest
from oracle.naive import naive_join_part, output_column_names
from support.configs import meta, query
from support.values import norm

from feature_assets.model.configs import Join

DAY_MS = 86_400_000


# ------------------------------------------------------------------------------------------------
# compiled-config builders
# ------------------------------------------------------------------------------------------------


def agg(column, op, buckets=()):
    return {"argMap": {}, "buckets": list(buckets), "inputColumn": column, "operation": op, "windows": []}


def mutation_group_by(
    name,
    keys,
    values,
    aggregations=None,
    derivations=(),
    snapshot="rnd.entity_snapshots",
    mutations="rnd.entity_mutations",
):
    selects = {k: k for k in keys}
    selects.update({c: c for c in values})
    return {
        "accuracy": "TEMPORAL",
        "aggregations": aggregations,
        "backfillStartDate": None,
        "derivations": list(derivations),
        "keyColumns": list(keys),
        "metaData": meta(name),
        "sources": [
            {
                "entities": {
                    "snapshotTable": snapshot,
                    "mutationTable": mutations,
                    "mutationTopic": None,
                    "query": query(selects, None, "mutation_ts", "is_before"),
                }
            }
        ],
    }


def make_join(name, left_table, left_selects, group_by, key_mapping=None, prefix=None):
    left = {"events": {"isCumulative": False, "query": query(left_selects, "ts"), "table": left_table, "topic": None}}
    part = {"groupBy": group_by, "keyMapping": dict(key_mapping or {}), "prefix": prefix}
    return {
        "bootstrapFromLog": False,
        "bootstrapParts": [],
        "derivations": [],
        "joinParts": [part],
        "left": left,
        "metaData": meta(name),
        "onlineExternalParts": [],
        "rowIds": ["row_id"],
    }


# ------------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------------


def same(got, want):
    got, want = norm(got), norm(want)
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(same(got[k], want[k]) for k in want)
    if isinstance(want, float) or isinstance(got, float):
        return (
            isinstance(got, (int, float))
            and not isinstance(got, bool)
            and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
        )
    return type(got) is type(want) and got == want


def run_part(warehouse, join, start_ds, end_ds):
    """The part table (contract checks) and every left row with its features, by row_id."""
    from feature_assets.offline.join import assemble_join, read_left
    from feature_assets.offline.mutations import mutation_join_part

    join = Join.from_json(join)
    part = join.join_parts[0]
    assert join.uses_mutations(part)
    left = read_left(warehouse, join, start_ds, end_ds)
    table = mutation_join_part(warehouse, join, part, left, start_ds, end_ds)
    left_keys = part.left_keys
    prefix = part.feature_prefix
    features = [prefix + c for c in part.group_by.output_columns]
    row = [*join.row_ids, *left_keys, "ts", "ds"]
    assert table.columns == [*row, *features]
    distinct = left.select(*row).distinct().count()
    assert table.count() == distinct, "one row per distinct (row ids, left keys, ts, ds)"
    assert table.select(*row).distinct().count() == distinct
    output = assemble_join(join, left, [(part, table)])
    rows = {}
    for row in output.collect():
        record = row.asDict(recursive=True)
        assert record["row_id"] not in rows
        rows[record["row_id"]] = record
    return table, rows, prefix


def compare(rows, expected: pd.DataFrame, prefix, columns):
    assert set(rows) == set(expected["row_id"]), "every left row exactly once"
    bad = []
    for record in expected.to_dict("records"):
        got = rows[record["row_id"]]
        for column in columns:
            if not same(got[prefix + column], record[column]):
                bad.append(f"{record['row_id']} {column}: engine={got[prefix + column]!r} oracle={record[column]!r}")
    assert not bad, f"{len(bad)} mismatches, e.g.\n" + "\n".join(bad[:25])


def oracle(left: pd.DataFrame, group_by, tables, key_mapping=None):
    expected = naive_join_part(left, group_by, tables, key_mapping=key_mapping)
    expected.insert(0, "row_id", left["row_id"].tolist())
    return expected


# ------------------------------------------------------------------------------------------------
# random cases
# ------------------------------------------------------------------------------------------------


def random_case(warehouse, seed, key_type, **kwargs):
    from feature_assets.dev.datagen.random_events import random_event_case

    case = random_event_case(seed, key_type=key_type, n_events=200, n_left=300, **kwargs)
    case.write(warehouse.root, namespace="rnd")
    return case


def case_tables(case):
    return {"rnd.entity_snapshots": case.entity_snapshots, "rnd.entity_mutations": case.entity_mutations}


AGGREGATIONS = [agg("value_long", op) for op in ("SUM", "COUNT", "AVERAGE", "VARIANCE")] + [
    agg("value_str", "COUNT"),
    agg("value_long", "SUM", buckets=["value_str"]),
    agg("value_long", "COUNT", buckets=["value_str"]),
]


@pytest.mark.spark
@pytest.mark.parametrize("seed,key_type", [(11, "string"), (22, "long"), (33, "composite"), (44, "string")])
def test_random_mutations_without_aggregations(warehouse, seed, key_type):
    from pyspark.sql import types as T

    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    gb = mutation_group_by("rnd.entity_now", keys, ["value_long", "value_str"])
    join = make_join("rnd.mut_plain", "rnd.left", {**{k: k for k in keys}, "row_id": "row_id"}, gb)
    table, rows, prefix = run_part(warehouse, join, case.start_ds, case.end_ds)
    types = {f.name: f.dataType for f in table.schema.fields}
    assert types[prefix + "value_long"] == T.LongType() and types[prefix + "value_str"] == T.StringType()
    expected = oracle(case.left, gb, case_tables(case))
    compare(rows, expected, prefix, ["value_long", "value_str"])
    assert expected["value_long"].notna().sum() > 50 and expected["value_str"].isna().sum() > 10


@pytest.mark.spark
@pytest.mark.parametrize("seed,key_type", [(55, "long"), (66, "composite"), (77, "string")])
def test_random_mutations_with_aggregations(warehouse, seed, key_type):

    case = random_case(warehouse, seed, key_type)
    keys = case.key_columns
    gb = mutation_group_by("rnd.entity_agg", keys, ["value_long", "value_str"], AGGREGATIONS)
    join = make_join("rnd.mut_agg", "rnd.left", {**{k: k for k in keys}, "row_id": "row_id"}, gb, prefix="m")
    table, rows, prefix = run_part(warehouse, join, case.start_ds, case.end_ds)
    types = {f.name: f.dataType.simpleString() for f in table.schema.fields}
    assert [types[prefix + c] for c in output_column_names(gb)] == [
        "bigint",
        "bigint",
        "double",
        "double",
        "bigint",
        "map<string,bigint>",
        "map<string,bigint>",
    ]
    expected = oracle(case.left, gb, case_tables(case))
    compare(rows, expected, prefix, output_column_names(gb))
    counts = expected["value_long_count"]
    assert (counts == 0).sum() > 5 and (counts > 0).sum() > 50


@pytest.mark.spark
def test_key_mapping_and_derivations(warehouse):
    case = random_case(warehouse, 88, "string")
    gb = mutation_group_by(
        "rnd.entity_derived",
        ["key"],
        ["value_long", "value_str"],
        derivations=[
            {"name": "doubled", "expression": "value_long * 2"},
            {"name": "label", "expression": "upper(value_str)"},
        ],
    )
    join = make_join("rnd.mut_mapped", "rnd.left", {"lk": "key", "row_id": "row_id"}, gb, key_mapping={"lk": "key"})
    table, rows, prefix = run_part(warehouse, join, case.start_ds, case.end_ds)
    plain = oracle(
        case.left.rename(columns={"key": "lk"}),
        mutation_group_by("x", ["key"], ["value_long", "value_str"]),
        case_tables(case),
        key_mapping={"lk": "key"},
    )
    plain["doubled"] = [None if norm(v) is None else 2 * v for v in plain["value_long"]]
    plain["label"] = [None if norm(v) is None else v.upper() for v in plain["value_str"]]
    compare(rows, plain, prefix, ["doubled", "label"])


@pytest.mark.spark
def test_entity_left_sees_its_own_day_snapshot(warehouse):
    from feature_assets.offline.join import read_left
    from feature_assets.offline.mutations import mutation_join_part

    case = random_case(warehouse, 99, "composite")
    keys = case.key_columns
    gb = mutation_group_by("rnd.entity_agg", keys, ["value_long", "value_str"], AGGREGATIONS)
    join = make_join("rnd.mut_entity_left", "rnd.left", {k: k for k in keys}, gb)
    join["left"] = {
        "entities": {
            "snapshotTable": "rnd.entity_snapshots",
            "mutationTable": None,
            "mutationTopic": None,
            "query": query({k: k for k in keys}),
        }
    }
    join = Join.from_json(join)
    left = read_left(warehouse, join, case.start_ds, case.end_ds)
    table = mutation_join_part(warehouse, join, join.join_parts[0], left, case.start_ds, case.end_ds)
    prefix = "rnd_entity_agg_"
    assert table.columns == [*keys, "ds", *[prefix + c for c in output_column_names(gb)]]
    key_of = lambda r: (tuple(norm(r[k]) for k in keys), r["ds"])
    engine = {key_of(r): r for r in (row.asDict(recursive=True) for row in table.collect())}
    snapshots = case.entity_snapshots
    left_rows = snapshots[snapshots["ds"].between(case.start_ds, case.end_ds)][keys + ["ds"]].reset_index(drop=True)
    assert len(engine) == len(left_rows)
    expected = pd.concat([left_rows, naive_join_part(left_rows, gb, case_tables(case), left_is_entity=True)], axis=1)
    expected["row_id"] = [key_of(r) for r in expected.to_dict("records")]
    compare(engine, expected, prefix, output_column_names(gb))


# ------------------------------------------------------------------------------------------------
# a hand-written case: duplicates, no-op retractions, equal timestamps, bounds
# ------------------------------------------------------------------------------------------------

T0 = 1_704_153_600_000  # 2024-01-02 00:00 UTC
D0, PREV, NEXT = "2024-01-02", "2024-01-01", "2024-01-03"


def hand_tables():
    snapshot = pd.DataFrame(
        [
            (1, 5, "a", PREV),
            (1, 7, "b", PREV),  # two rows of one key
            (2, 3, None, PREV),
            (5, 1, "s", D0),  # the snapshot of D0: only for left rows of NEXT
        ],
        columns=["user_id", "balance", "note", "ds"],
    )
    mutation_rows = [
        (1, 7, "b", T0 + 100, True),
        (1, 9, "c", T0 + 100, False),
        (1, 42, "z", T0 + 200, True),  # retracts a row that is not there: no-op
        (1, 5, "a", T0 + 300, False),
        (1, 5, "a", T0 + 300, True),  # equal ts: the retraction first
        (2, 3, None, T0 + 50, True),
        (2, 3, None, T0 + 60, False),
        (2, 4, "x", T0 + 60, False),
        (2, 3, None, T0 + 70, True),
        (3, 1, "q", T0 + 10, False),
        (3, None, "r", T0 + 20, False),
        (None, 99, "n", T0 + 10, False),  # null key: ignored
        (3, 100, "late", T0 + DAY_MS + 5, False),  # a mutation of NEXT
        (5, 2, "t", T0 + DAY_MS + 5, False),
    ]
    mutations = pd.DataFrame(mutation_rows, columns=["user_id", "balance", "note", "mutation_ts", "is_before"])
    mutations["ds"] = [D0 if ts < T0 + DAY_MS else NEXT for ts in mutations["mutation_ts"]]
    mutations["user_id"] = mutations["user_id"].astype("Int64")
    mutations["balance"] = mutations["balance"].astype("Int64")
    left_rows = [(k, T0 + dt) for k in (1, 2, 3) for dt in (0, 10, 11, 60, 61, 100, 101, 250, 300, 301, DAY_MS - 1)]
    left_rows += [(4, T0 + 500), (None, T0 + 500), (5, T0 + DAY_MS + 5), (5, T0 + DAY_MS + 6), (3, T0 + DAY_MS + 6)]
    left = pd.DataFrame(left_rows, columns=["user_id", "ts"])
    left["user_id"] = left["user_id"].astype("Int64")
    left["ds"] = [D0 if ts < T0 + DAY_MS else NEXT for ts in left["ts"]]
    left["row_id"] = [f"r{i:03d}" for i in range(len(left))]
    return {"data.users": snapshot, "data.users_mutations": mutations, "data.checkouts": left}


def write_hand_tables(warehouse):
    from feature_assets.dev.datagen.parquet_tables import write_partitioned

    tables = hand_tables()
    for name, frame in tables.items():
        write_partitioned(frame, warehouse.root, name)
    return tables


@pytest.mark.spark
def test_hand_written_orderings(warehouse):
    tables = write_hand_tables(warehouse)
    plain = mutation_group_by(
        "data.users_now", ["user_id"], ["balance", "note"], snapshot="data.users", mutations="data.users_mutations"
    )
    aggregated = mutation_group_by(
        "data.users_agg",
        ["user_id"],
        ["balance", "note"],
        [
            agg("balance", "SUM"),
            agg("balance", "COUNT"),
            agg("balance", "AVERAGE"),
            agg("balance", "VARIANCE"),
            agg("note", "COUNT"),
            agg("balance", "SUM", buckets=["note"]),
        ],
        snapshot="data.users",
        mutations="data.users_mutations",
    )
    left = tables["data.checkouts"]
    results = {}
    for gb in (plain, aggregated):
        join = make_join("data.hand", "data.checkouts", {"user_id": "user_id", "row_id": "row_id"}, gb)
        _, rows, prefix = run_part(warehouse, join, D0, NEXT)
        expected = oracle(left, gb, {k: v for k, v in tables.items() if k != "data.checkouts"})
        compare(rows, expected, prefix, output_column_names(gb))
        results[gb["metaData"]["name"]] = {
            r: {c[len(prefix) :]: v for c, v in row.items() if c.startswith(prefix)} for r, row in rows.items()
        }
    at = {(k, ts): r for k, ts, r in zip(left["user_id"].astype(object), left["ts"], left["row_id"])}
    now = lambda k, dt: results["data.users_now"][at[(k, T0 + dt)]]
    total = lambda k, dt: results["data.users_agg"][at[(k, T0 + dt)]]
    # key 1: snapshot [5a, 7b] (the greatest row last) -> 7b; at 100 -7b +9c; at 300 -5a +5a -> 5a last
    assert [now(1, dt)["balance"] for dt in (0, 100, 101, 300, 301)] == [7, 7, 9, 9, 5]
    assert [total(1, dt)["balance_sum"] for dt in (0, 101, 250, 301)] == [12, 14, 14, 14]
    # key 2: -3 at 50, +3 +4x at 60, -3 at 70 -> 4x
    assert [now(2, dt)["balance"] for dt in (0, 11, 60, 61, 100)] == [3, 3, None, 4, 4]
    assert [total(2, dt)["balance_count"] for dt in (0, 11, 60, 61, 100)] == [1, 1, 0, 2, 1]
    assert total(2, 61)["balance_sum_by_note"] == {"x": 4} and total(2, 60)["balance_sum_by_note"] is None
    # key 3: no snapshot row; +1q at 10, +(null)r at 20; the mutation of the next day is not applied
    assert [now(3, dt)["note"] for dt in (0, 10, 11, 61, DAY_MS - 1)] == [None, None, "q", "r", "r"]
    assert total(3, 61)["balance_count"] == 1 and total(3, 61)["note_count"] == 2
    assert total(3, 0)["balance_count"] == 0 and total(3, 0)["balance_sum"] is None
    # absent and null keys
    assert total(4, 500)["balance_count"] == 0
    null_row = results["data.users_agg"][left.loc[left["user_id"].isna(), "row_id"].iloc[0]]
    assert all(v is None for v in null_row.values())
    # NEXT: the snapshot of D0 plus NEXT's mutations before the row
    assert [now(5, DAY_MS + dt)["balance"] for dt in (5, 6)] == [1, 2]
    assert now(3, DAY_MS + 6)["balance"] == 100  # not in D0's snapshot, added on NEXT at +5 ms


# ------------------------------------------------------------------------------------------------
# compile time: aggregations over mutation sources
# ------------------------------------------------------------------------------------------------

GROUP_BY = """
from feature_assets.api import *

v1 = GroupBy(
    sources=[EntitySource(snapshot_table="data.users", mutation_table={mutation_table!r},
                          query=Query(selects=select("user_id", "balance", "note"),
                                      mutation_time_column="mutation_ts", reversal_column="is_before"))],
    keys=["user_id"], accuracy=Accuracy.{accuracy},
    aggregations={aggregations},
)
"""


def compile_group_by(repo, aggregations, mutation_table="data.users_mutations", accuracy="TEMPORAL"):
    from feature_assets.compiler import compile_configs

    path = repo / "group_bys" / "team" / "x.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        GROUP_BY.format(mutation_table=mutation_table, accuracy=accuracy, aggregations=textwrap.dedent(aggregations))
    )
    return compile_configs(repo, "group_bys/team/x.py")


def compile_error(repo, aggregations, **kwargs):
    from feature_assets.compiler import CompileError

    with pytest.raises(CompileError) as info:
        compile_group_by(repo, aggregations, **kwargs)
    return info.value


SUPPORTED = """[
    Aggregation(input_column="balance", operation=Operation.SUM),
    Aggregation(input_column="balance", operation=Operation.COUNT),
    Aggregation(input_column="balance", operation=Operation.AVERAGE),
    Aggregation(input_column="balance", operation=Operation.VARIANCE),
    Aggregation(input_column="balance", operation=Operation.SUM, buckets=["note"]),
]"""


@pytest.mark.parametrize("aggregations", ["None", SUPPORTED])
def test_mutation_source_compiles(tmp_path, aggregations):
    compile_group_by(tmp_path, aggregations)


@pytest.mark.parametrize("operation", ["MAX", "LAST", "UNIQUE_COUNT", "APPROX_PERCENTILE([0.5])", "LAST_K(3)"])
def test_mutation_source_refuses_other_operations(tmp_path, operation):
    error = compile_error(
        tmp_path,
        f"""[
        Aggregation(input_column="balance", operation=Operation.SUM),
        Aggregation(input_column="balance", operation=Operation.{operation}),
    ]""",
    )
    assert (error.file, error.obj, error.field) == ("group_bys/team/x.py", "team.x.v1", "aggregations[1].operation")
    assert operation.split("(")[0] in error.message and "mutation_table" in error.message
    assert "sources[0]" in error.message


def test_mutation_source_refuses_windows(tmp_path):
    error = compile_error(
        tmp_path,
        """[
        Aggregation(input_column="balance", operation=Operation.SUM, windows=[Window(1, TimeUnit.DAYS)]),
    ]""",
    )
    assert (error.file, error.obj, error.field) == ("group_bys/team/x.py", "team.x.v1", "aggregations[0].windows")
    assert "mutation_table" in error.message


def test_entity_source_without_mutations_keeps_every_operation(tmp_path):
    compile_group_by(
        tmp_path,
        '[Aggregation(input_column="balance", operation=Operation.MAX)]',
        mutation_table=None,
        accuracy="SNAPSHOT",
    )
