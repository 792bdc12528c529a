"""Column descriptions written from the configs: buckets, derivations, key mappings, external and contextual
fields, bootstrap coverage. Pure: a compiled repo and its graph, no Spark session, no Dagster run."""

from __future__ import annotations

import pytest
from support.repo import write_repo

from feature_assets.compiler import compile_configs, load_compiled, write_compiled
from feature_assets.definitions.columns import UNKNOWN_TYPE, definition_columns, describe_columns
from feature_assets.definitions.graph import build_graph

REPO = {
    "group_bys/shop/spend.py": """
        from feature_assets.api import *
        source = EventSource(table="data.orders", query=Query(selects=select(customer="buyer_id", amount="price * qty",
                                                                             shop="shop_id"),
                                                              time_column="order_ts", wheres=["status = 'paid'"]))
        v1 = GroupBy(sources=[source], keys=["customer"],
                     aggregations=[Aggregation(input_column="amount", operation=Operation.SUM,
                                               windows=[Window(6, TimeUnit.HOURS)], buckets=["shop"]),
                                   Aggregation(input_column="amount", operation=Operation.COUNT,
                                               windows=[Window(1, TimeUnit.DAYS)])],
                     accuracy=Accuracy.TEMPORAL,
                     derivations=[Derivation(name="*", expr="*"),
                                  Derivation(name="big_day", expr="amount_count_1d > 10")])
    """,
    "joins/shop/model.py": """
        from feature_assets.api import *
        from group_bys.shop import spend
        left = EventSource(table="data.visits", query=Query(selects=select("visit_id", user="visitor"),
                                                            time_column="ts"))
        v1 = Join(left=left, right_parts=[JoinPart(group_by=spend.v1, key_mapping={"user": "customer"})],
                  row_ids=["visit_id"], bootstrap_parts=[BootstrapPart(table="boot.visits")],
                  online_external_parts=[
                      ExternalPart(ExternalSource(name="risk", key_fields=[("user", DataType.STRING)],
                                                  value_fields=[("score", DataType.DOUBLE)])),
                      ExternalPart(ContextualSource(fields=[("channel", DataType.STRING)])),
                  ])
    """,
}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_repo(repo, REPO)
    write_compiled(compile_configs(repo))
    return build_graph(load_compiled(repo))


def test_group_by_table_describes_keys_windows_buckets_and_derivations(graph):
    docs = describe_columns(graph["default.shop_spend_v1"])
    assert docs["customer"] == "key: `buyer_id` of data.orders"
    assert docs["amount_sum_by_shop_6h"] == (
        "SUM of amount over 6 hours, as a map by shop, per customer, as of the end of ds"
    )
    assert docs["amount_count_1d"] == "COUNT of amount over 1 day, per customer, as of the end of ds"
    assert docs["big_day"] == "derived feature: `amount_count_1d > 10`, as of the end of ds"


def test_source_table_describes_what_reads_each_column(graph):
    docs = describe_columns(graph["data.orders"])
    assert docs["price"] == docs["qty"] == "in `amount` = `price * qty` by shop.spend.v1"
    assert docs["buyer_id"] == "in `customer` = `buyer_id` by shop.spend.v1"
    assert docs["order_ts"] == "event time of shop.spend.v1 (its time_column)"
    assert docs["status"] == "filtered by `status = 'paid'` in shop.spend.v1"
    assert docs["ds"] == "partition day (YYYY-MM-DD, UTC)"


def test_join_describes_left_columns_features_and_external_fields(graph):
    docs = describe_columns(graph["default.shop_model_v1"])
    assert docs["visit_id"] == "left column: `visit_id` of data.visits (row id)"
    assert docs["user"] == "left column: `visitor` of data.visits"
    assert docs["shop_spend_v1_big_day"] == (
        "derived feature: `amount_count_1d > 10`, as of the left row's ts (group-by shop.spend.v1)"
    )
    assert docs["ext_risk_score"].startswith("external source risk, field `score` (double), fetched online by user")
    assert docs["ext_contextual_channel"].startswith("contextual field `channel` (string): sent with each request")
    part = describe_columns(graph["default.shop_model_v1_shop_spend_v1"])
    assert part["user"] == "join key: left column `user` -> key `customer` of group-by shop.spend.v1"


def test_bootstrap_table_describes_coverage_flags(graph):
    node = graph["default.shop_model_v1_bootstrap"]
    columns = {column.name: column for column in definition_columns(node)}
    flag = columns["_covered_shop_model_v1_shop_spend_v1"]
    assert flag.description.startswith("true when bootstrap (boot.visits) provides every feature of group-by shop.")
    assert (columns["ts"].type, columns["ds"].type, columns["user"].type) == ("bigint", "string", UNKNOWN_TYPE)
    # The values are joined where the output is assembled: the bootstrap table holds none.
    assert "ext_risk_score" not in describe_columns(node)
