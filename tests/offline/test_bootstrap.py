"""Bootstrap (the seed 003 document): priority, coverage, row- and column-level hole filling, lineage.

Expected values are computed here independently: the oracle gives the backfill values and pandas applies
the coalesce-by-priority and coverage rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance
from oracle.naive import naive_join_part
from support.bootstrap import assert_frames_equal, by_priority
from support.repo import write_repo

pytestmark = pytest.mark.spark

START, END = "2023-11-01", "2023-11-08"


SEED_REPO = {
    "feature_repo.yaml": 'start_date: "2023-11-01"\n',
    "group_bys/test/purchases.py": """
        from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select
        v1 = GroupBy(
            sources=[EventSource(table="data.purchases", topic="events.purchases",
                                 query=Query(selects=select("user_id", "purchase_price"), time_column="ts"))],
            keys=["user_id"], online=True,
            aggregations=[Aggregation(input_column="purchase_price", operation=Operation.SUM,
                                      windows=[Window(3, TimeUnit.DAYS), Window(7, TimeUnit.DAYS)]),
                          Aggregation(input_column="purchase_price", operation=Operation.COUNT,
                                      windows=[Window(3, TimeUnit.DAYS)])])
    """,
    "group_bys/test/returns.py": """
        from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select
        v1 = GroupBy(
            sources=[EventSource(table="data.returns",
                                 query=Query(selects=select("user_id", "refund_amt"), time_column="ts"))],
            keys=["user_id"], online=True,
            aggregations=[Aggregation(input_column="refund_amt", operation=Operation.SUM,
                                      windows=[Window(7, TimeUnit.DAYS)])])
    """,
    "staging_queries/test/payments_driver.py": """
        from feature_assets.api import StagingQuery
        QUERY = '''
            SELECT request_id, user_id, ts, ds,
                   (abs(hash(request_id)) % 1000) / 1000.0 AS rng,
                   CAST(abs(hash(request_id, 'label')) % 5 = 0 AS INT) AS label
            FROM data.checkouts
            WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'
        '''
        v1 = StagingQuery(query=QUERY, start_partition="2023-11-01")
        v2 = StagingQuery(query=QUERY, start_partition="2023-11-01")
    """,
    "joins/test/model.py": """
        from feature_assets.api import (BootstrapPart, ContextualSource, DataType, EventSource, ExternalPart, Join,
                                        JoinPart, Query, get_join_output_table_name,
                                        get_staging_query_output_table_name, select)
        from group_bys.test import purchases, returns
        from staging_queries.test import payments_driver

        ENTITY_KEYS = ["user_id"]
        V1_FEATURES = [JoinPart(group_by=purchases.v1)]
        V1_EXT_FEATURES = [ExternalPart(ContextualSource(fields=[("request_id", DataType.STRING)]))]
        V2_FEATURES = [JoinPart(group_by=returns.v1)]
        ROW_IDS = ["request_id"]

        v1_source = EventSource(
            table=get_staging_query_output_table_name(payments_driver.v1, full_name=True),
            query=Query(selects=select("request_id", "label", rng="rng", **{pk: pk for pk in ENTITY_KEYS}),
                        time_column="ts"))

        v1 = Join(online=True, left=v1_source, right_parts=V1_FEATURES, online_external_parts=V1_EXT_FEATURES,
                  bootstrap_from_log=True, row_ids=ROW_IDS)

        v2_dev_source = EventSource(
            table=get_join_output_table_name(v1),
            query=Query(selects=select("request_id", "user_id", "rng", "label"), wheres=["label = 1 OR rng < 0.05"],
                        time_column="ts"))

        v2_dev = Join(online=False, left=v2_dev_source, right_parts=V1_FEATURES + V2_FEATURES, row_ids=ROW_IDS,
                      bootstrap_parts=[BootstrapPart(table=get_join_output_table_name(v1, full_name=True))])

        v2_source = EventSource(
            table=get_staging_query_output_table_name(payments_driver.v2, full_name=True),
            query=Query(selects=select("request_id", "label", rng="rng", **{pk: pk for pk in ENTITY_KEYS}),
                        time_column="ts"))

        v2 = Join(online=True, left=v2_source, right_parts=V1_FEATURES + V2_FEATURES, bootstrap_from_log=True,
                  row_ids=ROW_IDS,
                  bootstrap_parts=[BootstrapPart(table=get_join_output_table_name(v1, full_name=True)),
                                   BootstrapPart(table=get_join_output_table_name(v2_dev, full_name=True))])
    """,
}

P = "test_purchases_v1_purchase_price_"
R = "test_returns_v1_refund_amt_"
V1_COLUMNS = [P + "sum_3d", P + "sum_7d", P + "count_3d"]
V2_COLUMNS = [R + "sum_7d"]


def computed_values(spark_tables: dict[str, pd.DataFrame], left: pd.DataFrame, compiled_join) -> pd.DataFrame:
    """Backfill values from the independent oracle (on the raw compiled JSON), prefixed like join columns."""
    out = pd.DataFrame(index=left.index)
    for part in compiled_join.raw["joinParts"]:
        stem = part["groupBy"]["metaData"]["name"].replace(".", "_") + "_"
        values = naive_join_part(left, part["groupBy"], spark_tables)
        for column in values.columns:
            out[stem + column] = values[column]
    return out


@pytest.fixture
def seed_repo(spark, tmp_path):
    from feature_assets.compiler import compile_configs, load_compiled, write_compiled
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data

    repo = tmp_path / "repo"
    write_repo(repo, SEED_REPO)
    write_compiled(compile_configs(repo))
    root = str(tmp_path / "warehouse")
    generate_quickstart_data(
        root,
        START,
        END,
        n_users=15,
        purchases_per_day=40,
        returns_per_day=12,
        checkouts_per_day=30,
        tables=["purchases", "returns", "checkouts"],
    )
    return repo, root, load_compiled(repo)


def write_log(
    spark, warehouse, table: str, left: pd.DataFrame, columns: list[str], fraction: float, seed: int, offset: int
) -> pd.DataFrame:
    """A flattened log for a sample of left rows: row ids, ts, ds, schema_hash and logged columns."""
    rng = np.random.default_rng(seed)
    sample = left[rng.random(len(left)) < fraction].copy()
    log = sample[["request_id", "ts", "ds"]].copy()
    log["schema_hash"] = "h1"
    for column in columns:
        if column == "ext_contextual_request_id":
            log[column] = sample["request_id"]
        else:
            values = rng.integers(0, 1000, len(sample)) + offset
            log[column] = pd.array(np.where(rng.random(len(sample)) < 0.2, -1, values), dtype="Int64")
            log.loc[log[column] == -1, column] = pd.NA  # logged nulls stay null for covered rows
    frame = spark.createDataFrame(log.astype(object).where(log.notna(), None))
    warehouse.write_partitions(frame, table, START, END)
    return log


def test_seed_example_runs_through_dagster_with_priority_and_hole_filling(spark, seed_repo):
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.runs import run_backfill
    from feature_assets.resources import SparkResource, WarehouseResource
    from feature_assets.storage import Warehouse

    repo, root, compiled = seed_repo
    store = Warehouse(spark, root)
    checkouts = store.read("data.checkouts").toPandas()
    v1_log = write_log(
        spark,
        store,
        "default.test_model_v1_logged",
        checkouts,
        V1_COLUMNS + ["ext_contextual_request_id"],
        0.4,
        1,
        10_000,
    )
    v2_log = write_log(spark, store, "default.test_model_v2_logged", checkouts, V2_COLUMNS, 0.3, 2, 50_000)

    defs = build_definitions(repo, resources={"spark": SparkResource(), "warehouse": WarehouseResource(root=root)})
    result = run_backfill(defs, "joins", "test.model.v2", START, END, instance=DagsterInstance.ephemeral())
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }
    assert {
        "default/test_model_v1",
        "default/test_model_v2_dev",
        "default/test_model_v2",
        "default/test_model_v2_bootstrap",
        "default/test_payments_driver_v1",
    } <= materialized

    tables = {name: store.read(name).toPandas() for name in ("data.purchases", "data.returns")}
    driver = store.read("default.test_payments_driver_v1").toPandas()
    assert len(driver) == len(checkouts)

    # v1: log (lowest and only bootstrap) then backfill for uncovered rows.
    v1_out = store.read("default.test_model_v1").toPandas()
    left = driver.reset_index(drop=True)
    computed = computed_values(tables, left, compiled["joins"]["test.model.v1"])
    expected_v1 = by_priority(left, computed, [v1_log], {"p": V1_COLUMNS}, ["ext_contextual_request_id"])
    assert len(v1_out) == len(left)
    assert_frames_equal(v1_out, expected_v1, V1_COLUMNS + ["ext_contextual_request_id"])

    # v2_dev: left = v1 output filtered by label/rng, bootstrapped from v1's output; v2 features computed.
    v2_dev_out = store.read("default.test_model_v2_dev").toPandas()
    dev_left = v1_out[(v1_out["label"] == 1) | (v1_out["rng"] < 0.05)].reset_index(drop=True)
    assert len(v2_dev_out) == len(dev_left) > 0
    dev_computed = computed_values(tables, dev_left, compiled["joins"]["test.model.v2_dev"])
    expected_dev = by_priority(
        dev_left, dev_computed, [v1_out[["request_id"] + V1_COLUMNS]], {"v1": V1_COLUMNS, "v2": V2_COLUMNS}, []
    )
    assert_frames_equal(v2_dev_out, expected_dev, V1_COLUMNS + V2_COLUMNS)

    # v2: v1 output, then v2_dev output, then its own log (lowest); the rest computed.
    v2_out = store.read("default.test_model_v2").toPandas()
    v2_left = store.read("default.test_payments_driver_v2").toPandas().reset_index(drop=True)
    v2_computed = computed_values(tables, v2_left, compiled["joins"]["test.model.v2"])
    sources = [
        v1_out[["request_id"] + V1_COLUMNS + ["ext_contextual_request_id"]],
        v2_dev_out[["request_id"] + V1_COLUMNS + V2_COLUMNS],
        v2_log.drop(columns=["ts", "ds", "schema_hash"]),
    ]
    expected_v2 = by_priority(v2_left, v2_computed, sources, {"v1": V1_COLUMNS, "v2": V2_COLUMNS}, [])
    assert len(v2_out) == len(v2_left)
    assert_frames_equal(v2_out, expected_v2, V1_COLUMNS + V2_COLUMNS)

    # What bootstrap saved is reported per join part.
    part_events = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    v2_purchases = part_events["default/test_model_v2_test_purchases_v1"]
    assert v2_purchases["rows_computed"].value == 0  # v1's output covers every row for v1 features
    v2_returns = part_events["default/test_model_v2_test_returns_v1"]
    assert 0 < v2_returns["rows_computed"].value < len(v2_left)


def test_lineage_encodes_bootstrap_priority(seed_repo):
    from feature_assets.definitions import build_definitions

    repo, root, _ = seed_repo
    graph = build_definitions(repo).resolve_asset_graph()
    from dagster import AssetKey

    node = graph.get(AssetKey(["default", "test_model_v2_bootstrap"]))
    parents = {p.to_user_string() for p in node.parent_keys}
    assert parents == {
        "default/test_payments_driver_v2",
        "default/test_model_v1",
        "default/test_model_v2_dev",
        "default/test_model_v2_logged",
    }
    description = node.description
    assert description.index("test_model_v1`") < description.index("test_model_v2_dev`") < description.index("_logged")
    upstream_notes = node.metadata["upstream"].value
    assert "bootstrap priority 1" in upstream_notes and "always lowest" in upstream_notes
