"""Each clarification of the bootstrap document, on small data, against an independent pandas computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from oracle.naive import naive_join_part
from support.bootstrap import assert_frames_equal, by_priority
from support.repo import write_repo

pytestmark = pytest.mark.spark
START, END = "2023-11-01", "2023-11-05"

REPO = {
    "group_bys/t/purchases.py": """
        from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select
        v1 = GroupBy(sources=[EventSource(table="data.purchases", topic="t.purchases",
                                          query=Query(selects=select("user_id", "purchase_price"), time_column="ts"))],
                     keys=["user_id"],
                     aggregations=[Aggregation(input_column="purchase_price", operation=Operation.SUM,
                                               windows=[Window(2, TimeUnit.DAYS)]),
                                   Aggregation(input_column="purchase_price", operation=Operation.COUNT,
                                               windows=[Window(2, TimeUnit.DAYS)])])
    """,
    "group_bys/t/returns.py": """
        from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select
        v1 = GroupBy(sources=[EventSource(table="data.returns",
                                          query=Query(selects=select("user_id", "refund_amt"), time_column="ts"))],
                     keys=["user_id"],
                     aggregations=[Aggregation(input_column="refund_amt", operation=Operation.SUM,
                                               windows=[Window(3, TimeUnit.DAYS)])])
    """,
    "group_bys/t/missing.py": """
        from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, select
        v1 = GroupBy(sources=[EventSource(table="data.never_written", topic="t.never",
                                          query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                     keys=["user_id"],
                     aggregations=[Aggregation(input_column="amount", operation=Operation.MAX)])
    """,
    "joins/t/model.py": """
        from feature_assets.api import (BootstrapPart, Derivation, EventSource, ExternalPart, ExternalSource, Join,
                                        JoinPart, Query, DataType, select)
        from group_bys.t import missing, purchases, returns
        left = EventSource(table="data.checkouts", query=Query(selects=select("request_id", "user_id"), time_column="ts"))
        PARTS = [JoinPart(group_by=purchases.v1), JoinPart(group_by=returns.v1)]
        rows = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                    bootstrap_parts=[BootstrapPart(table="boot.rows")],
                    derivations=[Derivation(name="*", expr="*"),
                                 Derivation(name="total", expr="t_purchases_v1_purchase_price_sum_2d + coalesce(t_returns_v1_refund_amt_sum_3d, 0)")])
        columns = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                       bootstrap_parts=[BootstrapPart(table="boot.some_columns")])
        shared = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                      bootstrap_parts=[BootstrapPart(table="boot.first"), BootstrapPart(table="boot.second")])
        external = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                        online_external_parts=[ExternalPart(ExternalSource(name="risk", key_fields=[("user_id", DataType.STRING)],
                                                                           value_fields=[("score", DataType.LONG)]))],
                        bootstrap_parts=[BootstrapPart(table="boot.custom",
                                                       query=Query(selects=select("request_id", ext_risk_score="risk_score")))])
        with_log = Join(left=left, right_parts=PARTS, row_ids=["request_id"], bootstrap_from_log=True,
                      bootstrap_parts=[BootstrapPart(table="boot.second")])
        covered_missing = Join(left=left, right_parts=[JoinPart(group_by=missing.v1)], row_ids=["request_id"],
                               bootstrap_parts=[BootstrapPart(table="boot.missing_all")])
        duplicated = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                          bootstrap_parts=[BootstrapPart(table="boot.duplicated")])
        few = Join(left=left, right_parts=PARTS, row_ids=["request_id"], bootstrap_parts=[BootstrapPart(table="boot.most")])
        everything = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                          bootstrap_parts=[BootstrapPart(table="boot.ids_only"), BootstrapPart(table="boot.everything")],
                          derivations=[Derivation(name="*", expr="*"),
                                       Derivation(name="total", expr="t_purchases_v1_purchase_price_sum_2d + coalesce(t_returns_v1_refund_amt_sum_3d, 0)")])
        mixed = Join(left=left, right_parts=PARTS, row_ids=["request_id"],
                     bootstrap_parts=[BootstrapPart(table="boot.mixed_high"), BootstrapPart(table="boot.mixed_all"),
                                      BootstrapPart(table="boot.mixed_low")])
    """,
}
PA = ["t_purchases_v1_purchase_price_sum_2d", "t_purchases_v1_purchase_price_count_2d"]
RB = ["t_returns_v1_refund_amt_sum_3d"]


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    from feature_assets.compiler import compile_configs, load_compiled, write_compiled
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.storage import Warehouse

    tmp = tmp_path_factory.mktemp("bootstrap_rules")
    repo = tmp / "repo"
    write_repo(repo, REPO)
    write_compiled(compile_configs(repo))
    root = str(tmp / "warehouse")
    generate_quickstart_data(
        root,
        START,
        END,
        n_users=8,
        purchases_per_day=30,
        returns_per_day=10,
        checkouts_per_day=20,
        tables=["purchases", "returns", "checkouts"],
    )
    store = Warehouse(spark, root)
    left = store.read("data.checkouts").toPandas().sort_values("request_id").reset_index(drop=True)
    tables = {t: store.read(t).toPandas() for t in ("data.purchases", "data.returns")}
    return load_compiled(repo)["joins"], store, left, tables


def write_table(spark, store, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    clean = frame.astype(object).where(frame.notna(), None)
    store.write_partitions(spark.createDataFrame(clean), table, START, END)
    return frame


def sample(left: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    return left[np.random.default_rng(seed).random(len(left)) < fraction][["request_id", "ds"]].copy()


def values(n: int, seed: int, nulls: float = 0.0) -> pd.array:
    rng = np.random.default_rng(seed)
    data = rng.integers(100_000, 200_000, n)
    return pd.array(np.where(rng.random(n) < nulls, -1, data), dtype="Int64").astype(object)


def output_frame(store, join, start=START, end=END):
    """As the asset graph runs it: coverage flags, the parts bootstrap does not cover, then the output (a frame)."""
    from feature_assets.offline.bootstrap import write_bootstrap_table
    from feature_assets.offline.join import output_from_stored, read_left, write_join_part

    left = read_left(store, join, start, end)
    table = "default." + join.name.replace(".", "_") + "_bootstrap"
    info = write_bootstrap_table(store, join, left, table, start, end)
    flagged = store.read(table, start, end)
    parts, stats = [], []
    for part in join.join_parts:
        part_table = f"{table}_part_{len(parts)}"
        stats.append(write_join_part(store, join, part, flagged, part_table, start, end, None, stored_as=table))
        parts.append((part, store.read(part_table, start, end)))
    return output_from_stored(store, join, flagged, parts, start, end), stats, info


def run_join(store, join, start=START, end=END):
    output, stats, info = output_frame(store, join, start, end)
    return output.toPandas(), stats, info


def computed(left, tables, join) -> pd.DataFrame:
    out = pd.DataFrame(index=left.index)
    for part in join.raw["joinParts"]:
        stem = part["groupBy"]["metaData"]["name"].replace(".", "_") + "_"
        for column, series in naive_join_part(left, part["groupBy"], tables).items():
            out[stem + column] = series
    return out


def nullify(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    frame[column] = [None if v == -1 else v for v in frame[column]]
    return frame


def test_subset_of_rows_and_of_group_bys_with_derivations(spark, setup):
    joins, store, left, tables = setup
    boot = sample(left, 0.5, 1)
    for i, column in enumerate(PA):
        boot[column] = values(len(boot), 10 + i)
    boot = boot._append(pd.DataFrame({"request_id": ["not-a-left-row"], "ds": [START], PA[0]: [1], PA[1]: [1]}))
    write_table(spark, store, "boot.rows", boot)
    out, stats, info = run_join(store, joins["t.model.rows"])
    expected = by_priority(
        left, computed(left, tables, joins["t.model.rows"]), [boot.drop(columns="ds")], {"a": PA, "b": RB}, []
    )
    assert len(out) == len(left)
    assert_frames_equal(out, expected, PA + RB)
    assert stats[0]["rows_computed"] == len(left) - (len(boot) - 1)  # covered rows skip the purchases part
    assert stats[1]["rows_computed"] == len(left)  # returns is not covered at all
    totals = out.set_index("request_id")
    want = expected[PA[0]].astype(float) + expected[RB[0]].fillna(0).astype(float)
    assert np.allclose(totals.loc[expected.index, "total"].astype(float), want, equal_nan=True)


def test_subset_of_one_group_bys_columns_is_filled_by_computation(spark, setup):
    joins, store, left, tables = setup
    boot = sample(left, 0.6, 2)
    boot[PA[0]] = values(len(boot), 20)  # sum provided, count missing: the group-by is computed for these rows
    write_table(spark, store, "boot.some_columns", boot)
    out, stats, _ = run_join(store, joins["t.model.columns"])
    expected = by_priority(
        left, computed(left, tables, joins["t.model.columns"]), [boot.drop(columns="ds")], {"a": PA, "b": RB}, []
    )
    assert_frames_equal(out, expected, PA + RB)
    assert stats[0]["rows_computed"] == len(left)


def test_several_parts_share_a_column_by_priority_and_nulls_fall_through(spark, setup):
    joins, store, left, tables = setup
    first = sample(left, 0.5, 3)
    for i, column in enumerate(PA):
        first[column] = values(len(first), 30 + i, nulls=0.4)
    first = nullify(nullify(first, PA[0]), PA[1])
    second = sample(left, 0.5, 4)
    for i, column in enumerate(PA + RB):
        second[column] = values(len(second), 40 + i)
    write_table(spark, store, "boot.first", first)
    write_table(spark, store, "boot.second", second)
    out, _, _ = run_join(store, joins["t.model.shared"])
    expected = by_priority(
        left,
        computed(left, tables, joins["t.model.shared"]),
        [first.drop(columns="ds"), second.drop(columns="ds")],
        {"a": PA, "b": RB},
        [],
    )
    assert_frames_equal(out, expected, PA + RB)
    both = set(first["request_id"]) & set(second["request_id"])
    assert both, "the samples must overlap for the priority rule to be exercised"


def test_external_parts_come_from_a_custom_table(spark, setup):
    joins, store, left, tables = setup
    custom = sample(left, 0.7, 5)
    custom["risk_score"] = values(len(custom), 50)
    write_table(spark, store, "boot.custom", custom)
    out, _, info = run_join(store, joins["t.model.external"])
    renamed = custom.rename(columns={"risk_score": "ext_risk_score"}).drop(columns="ds")
    expected = by_priority(
        left, computed(left, tables, joins["t.model.external"]), [renamed], {"a": PA, "b": RB}, ["ext_risk_score"]
    )
    assert_frames_equal(out, expected, PA + RB + ["ext_risk_score"])
    assert info["provided_by"]["boot.custom"] == ["ext_risk_score"]


def test_log_table_has_the_lowest_priority(spark, setup):
    joins, store, left, tables = setup
    second = sample(left, 0.5, 4)
    for i, column in enumerate(PA + RB):
        second[column] = values(len(second), 40 + i)
    write_table(spark, store, "boot.second", second)
    log = sample(left, 0.6, 6)
    log["ts"] = 0
    log["schema_hash"] = "h"
    for i, column in enumerate(PA + RB):
        log[column] = values(len(log), 60 + i)
    write_table(spark, store, "default.t_model_with_log_logged", log)
    out, _, info = run_join(store, joins["t.model.with_log"])
    assert list(info["provided_by"]) == ["boot.second", "default.t_model_with_log_logged"]
    expected = by_priority(
        left,
        computed(left, tables, joins["t.model.with_log"]),
        [second.drop(columns="ds"), log.drop(columns=["ds", "ts", "schema_hash"])],
        {"a": PA, "b": RB},
        [],
    )
    assert_frames_equal(out, expected, PA + RB)


def test_fully_covered_part_never_reads_its_source(spark, setup):
    joins, store, left, _ = setup
    assert not store.exists("data.never_written")
    boot = left[["request_id", "ds"]].copy()
    boot["t_missing_v1_amount_max"] = values(len(boot), 70)
    write_table(spark, store, "boot.missing_all", boot)
    out, stats, _ = run_join(store, joins["t.model.covered_missing"])
    assert stats[0]["rows_computed"] == 0
    assert (
        out.set_index("request_id").loc[boot["request_id"], "t_missing_v1_amount_max"].tolist()
        == boot["t_missing_v1_amount_max"].tolist()
    )


@pytest.mark.parametrize("seed", [21, 22])
def test_one_table_covering_every_row_is_read_in_place(spark, setup, seed):
    """A single bootstrap table provides every value (another only matches ids): its values are read where
    they are stored (the narrow left rows broadcast to them, nothing shuffled) and written without a shuffle
    by day; same rows as the rules."""
    from feature_assets.offline.frames import reads_in_place
    from feature_assets.offline.join import output_from_stored, write_join_output

    joins, store, left, tables = setup
    rng = np.random.default_rng(seed)
    every = left[["request_id", "ds"]].copy()
    for i, column in enumerate(PA + RB):
        every[column] = values(len(every), seed * 10 + i, nulls=rng.uniform(0.1, 0.5))
        every = nullify(every, column)
    # Rows no left row asks for: another id, and a left id on another day.
    other_day = START if left["ds"].iloc[0] != START else END
    strays = pd.DataFrame({"request_id": ["not-a-left-row", left["request_id"].iloc[0]], "ds": [START, other_day]})
    for column in PA + RB:
        strays[column] = 1
    write_table(spark, store, "boot.everything", pd.concat([every, strays]).sample(frac=1, random_state=seed))
    write_table(spark, store, "boot.ids_only", sample(left, 0.5, seed))  # matches rows, provides no value
    join = joins["t.model.everything"]
    out, stats, _ = run_join(store, join)
    expected = by_priority(left, computed(left, tables, join), [every.drop(columns="ds")], {"a": PA, "b": RB}, [])
    assert [s["rows_computed"] for s in stats] == [0, 0]
    assert len(out) == len(left) and out["request_id"].is_unique
    assert_frames_equal(out, expected, PA + RB)
    totals = out.set_index("request_id").loc[expected.index, "total"].astype(float)
    assert np.allclose(totals, expected[PA[0]].astype(float) + expected[RB[0]].fillna(0).astype(float), equal_nan=True)

    table = "default.t_model_everything_bootstrap"
    flagged = store.read(table, START, END)
    parts = [(part, store.read(f"{table}_part_{i}", START, END)) for i, part in enumerate(join.join_parts)]
    frame = output_from_stored(store, join, flagged, parts, START, END)
    assert reads_in_place(frame) and "BroadcastHashJoin" in frame._jdf.queryExecution().executedPlan().toString()
    write_join_output(store, join, flagged, parts, "default.t_model_everything", START, END)
    written = store.read("default.t_model_everything", START, END).toPandas()
    assert sorted(written.columns) == sorted(out.columns) and len(written) == len(left)
    assert_frames_equal(written, expected, PA + RB)
    assert (written.groupby("ds").size() == left.groupby("ds").size()).all()


def test_duplicate_bootstrap_rows_fail_naming_the_table_and_ids(spark, setup):
    from feature_assets.offline.bootstrap import DuplicateBootstrapRows

    joins, store, left, _ = setup
    boot = sample(left, 0.3, 7)
    boot[PA[0]] = 1
    boot = pd.concat([boot, boot.head(2)])
    write_table(spark, store, "boot.duplicated", boot)
    with pytest.raises(DuplicateBootstrapRows) as error:
        run_join(store, joins["t.model.duplicated"])
    message = str(error.value)
    assert "boot.duplicated" in message and boot["request_id"].iloc[0] in message


@pytest.fixture
def join_strategy(spark, monkeypatch, request):
    """How bootstrap sources are joined: as the small sources here are (broadcast), or as if they were too
    large to broadcast (shuffled hash join), or too large for a hash join as well (sort-merge join)."""
    from feature_assets.offline import bootstrap

    threshold = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    if request.param != "broadcast":
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    if request.param == "sort-merge":
        monkeypatch.setattr(bootstrap, "HASH_BUILD_BYTES_PER_PARTITION", 0)
    yield request.param
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", threshold)


@pytest.mark.parametrize(
    ("seed", "join_strategy"), [(11, "broadcast"), (12, "hash"), (13, "sort-merge")], indirect=["join_strategy"]
)
def test_random_sources_match_the_naive_rules_and_covered_parts_are_not_joined(spark, setup, seed, join_strategy):
    """Random overlapping sources with random nulls and column subsets; one part covered on every row."""
    joins, store, left, tables = setup
    rng = np.random.default_rng(seed)
    # Every row provides the purchases columns (some values null), so that part is skipped entirely.
    every = left[["request_id", "ds"]].copy()
    for i, column in enumerate(PA):
        every[column] = values(len(every), seed * 10 + i, nulls=0.3)
        every = nullify(every, column)
    high = sample(left, rng.uniform(0.2, 0.6), seed + 1)
    for i, column in enumerate([PA[0], *RB]):
        high[column] = values(len(high), seed * 20 + i, nulls=0.4)
        high = nullify(high, column)
    low = sample(left, rng.uniform(0.2, 0.6), seed + 2)
    low[RB[0]] = values(len(low), seed * 30, nulls=0.2)
    low = nullify(low, RB[0])
    write_table(spark, store, "boot.mixed_high", high)
    write_table(spark, store, "boot.mixed_all", every)
    write_table(spark, store, "boot.mixed_low", low)
    join = joins["t.model.mixed"]
    out, stats, _ = run_join(store, join)
    sources = [frame.drop(columns="ds") for frame in (high, every, low)]
    expected = by_priority(left, computed(left, tables, join), sources, {"a": PA, "b": RB}, [])
    assert len(out) == len(left)
    assert_frames_equal(out, expected, PA + RB)
    covered_returns = set(high["request_id"]) | set(low["request_id"])
    assert stats[0]["rows_computed"] == 0
    assert stats[1]["rows_computed"] == len(left) - len(covered_returns)


def test_few_uncovered_rows_are_computed_from_their_keys_events_alone(spark, setup):
    """Bootstrap covers most rows: the rest are computed from their own keys' events only, same values."""
    joins, store, left, tables = setup
    most = sample(left, 0.9, 13)
    for i, column in enumerate(PA + RB):
        most[column] = values(len(most), 130 + i, nulls=0.3)
        most = nullify(most, column)
    write_table(spark, store, "boot.most", most)
    join = joins["t.model.few"]
    out, stats, _ = run_join(store, join)
    expected = by_priority(left, computed(left, tables, join), [most.drop(columns="ds")], {"a": PA, "b": RB}, [])
    assert_frames_equal(out, expected, PA + RB)
    assert 0 < stats[0]["rows_computed"] == stats[1]["rows_computed"] == len(left) - len(most) < 0.25 * len(left)


@pytest.mark.parametrize(("columns", "shuffles"), [(PA, 3), (PA + RB, 4)], ids=["one part", "both parts"])
def test_partly_covered_output_shuffles_each_input_once(spark, setup, columns, shuffles):
    """Part tables are keyed by the row ids, like the bootstrap values: the output's joins share one
    partitioning, so Spark shuffles the left rows, each part and the values once each, never the joined rows.
    Values that are one part's columns are appended to that part's rows and shuffled with them."""
    from feature_assets.offline.frames import shuffle_count

    joins, store, left, tables = setup
    half = sample(left, 0.5, 17)
    for i, column in enumerate(columns):
        half[column] = values(len(half), 170 + i, nulls=0.2)
        half = nullify(half, column)
    write_table(spark, store, "boot.most", half)
    threshold = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")  # as for tables too large to broadcast
    try:
        output, _, _ = output_frame(store, joins["t.model.few"])
        found = shuffle_count(output)
        out = output.toPandas()
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", threshold)
    assert found == shuffles
    expected = by_priority(
        left, computed(left, tables, joins["t.model.few"]), [half.drop(columns="ds")], {"a": PA, "b": RB}, []
    )
    assert_frames_equal(out, expected, PA + RB)


@pytest.mark.parametrize("seed", [31, 32])
def test_values_joined_with_their_parts_rows_match_the_rules_even_beside_stale_rows(spark, setup, seed):
    """One table provides every column of one part on some rows: its values are joined together with that
    part's computed rows. Same rows as the rules; and a part table computed before those rows were covered
    (a row for every left row) still gives each left row once, with the bootstrap values where covered."""
    from pyspark.sql import functions as F

    from feature_assets.offline.bootstrap import read_bootstrap_values
    from feature_assets.offline.join import output_from_stored, values_beside_part, write_join_part

    joins, store, left, tables = setup
    rng = np.random.default_rng(seed)
    boot = sample(left, rng.uniform(0.3, 0.9), seed)
    for i, column in enumerate(PA):
        boot[column] = values(len(boot), seed * 10 + i, nulls=rng.uniform(0.1, 0.5))
        boot = nullify(boot, column)
    write_table(spark, store, "boot.rows", boot)
    join = joins["t.model.rows"]
    out, stats, _ = run_join(store, join)
    expected = by_priority(left, computed(left, tables, join), [boot.drop(columns="ds")], {"a": PA, "b": RB}, [])
    assert len(out) == len(left) and out["request_id"].is_unique
    assert_frames_equal(out, expected, PA + RB)
    assert stats[0]["rows_computed"] == len(left) - len(boot)

    table = "default.t_model_rows_bootstrap"
    flagged = store.read(table, START, END)
    purchases, returns = join.join_parts
    uncovered = flagged.withColumn(join.coverage_column(purchases), F.lit(False))
    write_join_part(store, join, purchases, uncovered, f"{table}_stale", START, END, None)
    parts = [
        (purchases, store.read(f"{table}_stale", START, END)),
        (returns, store.read(f"{table}_part_1", START, END)),
    ]
    assert values_beside_part(join, read_bootstrap_values(store, join, START, END), parts, flagged) is not None
    stale = output_from_stored(store, join, flagged, parts, START, END).toPandas()
    assert len(stale) == len(left) and stale["request_id"].is_unique
    assert_frames_equal(stale, expected, PA + RB)
