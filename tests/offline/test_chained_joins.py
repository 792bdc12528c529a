"""JoinSource: a group-by over another join's output (chained joins), through Dagster and against the oracle."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance
from oracle.naive import naive_join_part
from support.repo import write_repo

pytestmark = pytest.mark.spark
START, END = "2023-11-01", "2023-11-06"

REPO = {
    "feature_repo.yaml": 'start_date: "2023-11-01"\n',
    "group_bys/c/purchases.py": """
        from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select
        v1 = GroupBy(sources=[EventSource(table="data.purchases", topic="c.purchases",
                                          query=Query(selects=select("user_id", "purchase_price"), time_column="ts"))],
                     keys=["user_id"],
                     aggregations=[Aggregation(input_column="purchase_price", operation=Operation.SUM,
                                               windows=[Window(2, TimeUnit.DAYS)])])
    """,
    "joins/c/enriched.py": """
        from feature_assets.api import EventSource, Join, JoinPart, Query, select
        from group_bys.c.purchases import v1 as purchases
        v1 = Join(left=EventSource(table="data.checkouts",
                                   query=Query(selects=select("request_id", "user_id", "product_id"), time_column="ts")),
                  right_parts=[JoinPart(group_by=purchases)], row_ids=["request_id"])
    """,
    "group_bys/c/checkout_spend.py": """
        from feature_assets.api import (Aggregation, GroupBy, JoinSource, Operation, Query, TimeUnit, Window, select,
                                        Accuracy)
        from joins.c.enriched import v1 as enriched
        v1 = GroupBy(sources=[JoinSource(join=enriched, query=Query(
                         selects=select("product_id", spend="c_purchases_v1_purchase_price_sum_2d"), time_column="ts"))],
                     keys=["product_id"], accuracy=Accuracy.TEMPORAL,
                     aggregations=[Aggregation(input_column="spend", operation=Operation.MAX,
                                               windows=[Window(1, TimeUnit.DAYS)]),
                                   Aggregation(input_column="spend", operation=Operation.COUNT,
                                               windows=[Window(3, TimeUnit.DAYS)])])
    """,
    "joins/c/chained.py": """
        from feature_assets.api import EventSource, Join, JoinPart, Query, select
        from group_bys.c.checkout_spend import v1 as spend
        v1 = Join(left=EventSource(table="data.checkouts",
                                   query=Query(selects=select("request_id", "product_id"), time_column="ts")),
                  right_parts=[JoinPart(group_by=spend)], row_ids=["request_id"])
    """,
}


def test_group_by_over_a_join_output_chains_joins(spark, tmp_path):
    from feature_assets.compiler import compile_configs, load_compiled, write_compiled
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.runs import run_backfill
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.resources import SparkResource, WarehouseResource
    from feature_assets.storage import Warehouse

    repo = tmp_path / "repo"
    write_repo(repo, REPO)
    write_compiled(compile_configs(repo))
    root = str(tmp_path / "warehouse")
    generate_quickstart_data(
        root,
        START,
        END,
        n_users=10,
        purchases_per_day=40,
        checkouts_per_day=30,
        n_products=6,
        tables=["purchases", "checkouts"],
    )
    defs = build_definitions(repo, resources={"spark": SparkResource(), "warehouse": WarehouseResource(root=root)})

    graph = defs.resolve_asset_graph()
    spend_parents = {k.to_user_string() for k in graph.get(AssetKey(["default", "c_checkout_spend_v1"])).parent_keys}
    assert spend_parents == {"default/c_enriched_v1"}

    result = run_backfill(defs, "joins", "c.chained.v1", START, END, instance=DagsterInstance.ephemeral())
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())

    store = Warehouse(spark, root)
    enriched = store.read("default.c_enriched_v1").toPandas()
    chained = store.read("default.c_chained_v1").toPandas().set_index("request_id")
    compiled = load_compiled(repo)
    group_by = compiled["group_bys"]["c.checkout_spend.v1"]
    # The oracle reads the first join's output as the chained group-by's events table.
    events = enriched.rename(columns={"c_purchases_v1_purchase_price_sum_2d": "spend"})[
        ["product_id", "spend", "ts", "ds"]
    ]
    oracle_group_by = {
        **group_by.raw,
        "sources": [
            {
                "events": {
                    "table": "default.c_enriched_v1",
                    "query": {
                        "selects": {"product_id": "product_id", "spend": "spend"},
                        "wheres": [],
                        "timeColumn": "ts",
                        "startPartition": None,
                    },
                }
            }
        ],
    }
    left = store.read("data.checkouts").toPandas().reset_index(drop=True)
    expected = naive_join_part(left, oracle_group_by, {"default.c_enriched_v1": events})
    assert len(chained) == len(left)
    for column in expected.columns:
        got = chained.loc[left["request_id"], f"c_checkout_spend_v1_{column}"].tolist()
        want = expected[column].tolist()
        assert [None if g is None or g != g else g for g in got] == want, column
