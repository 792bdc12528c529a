"""The Dagster side: the asset graph snapshot, loading Definitions, and in-process range backfills."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest
from dagster import AssetKey, DagsterInstance
from support.paths import QUICKSTART, SNAPSHOTS

SNAPSHOT = SNAPSHOTS / "quickstart_asset_graph.json"


def partitions_end(partitions_def) -> str | None:
    """The last partition, or "today" for partitions that run through the current day (the log-side tables)."""
    if partitions_def is None:
        return None
    if getattr(partitions_def, "end_offset", 0) == 1 and partitions_def.end is None:
        return "today"
    return partitions_def.get_last_partition_key()


def graph_snapshot(defs) -> dict:
    graph = defs.resolve_asset_graph()
    snapshot = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        snapshot[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "partitions_start": node.partitions_def.start.strftime("%Y-%m-%d") if node.partitions_def else None,
            "partitions_end": partitions_end(node.partitions_def),
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
        }
    return snapshot


def test_asset_graph_matches_snapshot():
    from feature_assets.definitions import build_definitions

    snapshot = graph_snapshot(build_definitions(QUICKSTART))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text())


def test_quickstart_partitions_end_where_its_data_ends():
    """The last partition is the settings' end_date (inclusive): the day the quickstart uploads, not today."""
    from feature_assets.definitions import partitions_for
    from feature_assets.definitions.factory import repo_settings
    from feature_assets.dev.datagen.quickstart import END_DS, START_DS

    assert repo_settings(QUICKSTART)["end_date"] == END_DS == "2023-12-01"
    keys = partitions_for(QUICKSTART).get_partition_keys()
    assert (keys[0], keys[-1], len(keys)) == (START_DS, END_DS, 31)


def test_log_side_tables_are_partitioned_through_today():
    """Fetches are logged now: the raw log table, the schema group-by and `_logged` run through today whatever the
    repo's end_date, and feature backfills read them as they are (their jobs do not include them)."""
    import datetime as dt

    from feature_assets.definitions import build_definitions, job_name

    defs = build_definitions(QUICKSTART)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for job in ("dump_fetch_log", "flatten_fetch_logs", job_name("group_by", "quickstart.schema.v1")):
        assert defs.resolve_job_def(job).partitions_def.get_last_partition_key() == today, job
    join_job = defs.resolve_job_def(job_name("join", "quickstart.training_set.v2"))
    assert join_job.partitions_def.get_last_partition_key() == "2023-12-01"


def test_each_join_has_its_own_group_of_steps():
    """Two joins' parts over one group-by have table names that differ only in a long prefix: their groups,
    named after the join, tell them apart in the lineage view."""
    from feature_assets.definitions import build_definitions

    graph = build_definitions(QUICKSTART).resolve_asset_graph()

    def group(table: str) -> str:
        return graph.get(AssetKey(["default", table])).group_name

    for join in ("quickstart_training_set_v1", "quickstart_training_set_v2"):
        steps = [join, f"{join}_bootstrap", f"{join}_quickstart_purchases_v1", f"{join}_quickstart_returns_v1"]
        assert {group(step) for step in steps} == {join}
    assert group("quickstart_purchases_v1") == "quickstart"
    assert graph.get(AssetKey(["data", "purchases"])).group_name == "sources"


def column_schema(metadata) -> dict[str, tuple[str, str | None]]:
    return {c.name: (c.type, c.description) for c in metadata["dagster/column_schema"].schema.columns}


def test_every_table_asset_describes_its_columns_before_any_run():
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.columns import UNKNOWN_TYPE

    graph = build_definitions(QUICKSTART).resolve_asset_graph()
    tables = [key for key in graph.get_all_asset_keys() if key.path[0] in ("data", "default")]
    for key in tables:
        node = graph.get(key)
        if key.path[-1].endswith("_upload"):
            continue  # the upload step's table belongs to the online assets
        columns = column_schema(node.metadata)
        assert columns["ds"][1], key
        assert all(description for _, description in columns.values()), (key, columns)
    part = column_schema(graph.get(AssetKey(["default", "quickstart_training_set_v2_quickstart_returns_v1"])).metadata)
    assert part["user_id"] == (
        UNKNOWN_TYPE,
        "join key: left column `user_id` -> key `user_id` of group-by quickstart.returns.v1",
    )
    assert part["quickstart_returns_v1_refund_amt_count_3d"] == (
        "bigint",
        "COUNT of refund_amt over 3 days, per user_id, as of the left row's ts (group-by quickstart.returns.v1)",
    )
    purchases = column_schema(graph.get(AssetKey(["default", "quickstart_purchases_v1"])).metadata)
    assert purchases["purchase_price_last10"][1] == (
        "LAST_K (k=10) of purchase_price over all history, per user_id, as of the end of ds"
    )
    source = column_schema(graph.get(AssetKey(["data", "checkouts"])).metadata)
    assert "selected as `request_id` by quickstart.training_set.v1" in source["request_id"][1]
    assert "event time of quickstart.training_set.v2" in source["ts"][1]


def test_repo_defs_loads_with_jobs_and_in_process_executor():
    import repo_defs

    defs = repo_defs.defs
    names = {job.name for job in defs.jobs}
    assert "backfill_join_quickstart_training_set_v1" in names
    assert "backfill_group_by_quickstart_purchases_v1" in names
    job = defs.resolve_job_def("backfill_join_quickstart_training_set_v1")
    assert job.executor_def.name == "in_process"


NEW_REPO = {
    "group_bys/shop/clicks.py": """
from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, select
v1 = GroupBy(sources=[EventSource(table="data.clicks", query=Query(selects=select("user_id", "amount"),
                                                                   time_column="ts"))],
             keys=["user_id"], aggregations=[Aggregation(input_column="amount", operation=Operation.SUM)])
""",
}


@pytest.fixture
def new_repo(tmp_path, monkeypatch):
    """A compiled feature repo without feature_repo.yaml, and a warehouse holding its source from 2024-01-03."""
    from feature_assets.compiler import compile_configs, write_compiled

    monkeypatch.delenv("FEATURE_ASSETS_START_DATE", raising=False)
    repo = tmp_path / "repo"
    for relative, text in NEW_REPO.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    write_compiled(compile_configs(repo))
    warehouse = tmp_path / "warehouse"
    for ds in ("2024-01-05", "2024-01-03", "2024-01-04"):
        (warehouse / "data" / "clicks" / f"ds={ds}").mkdir(parents=True)
    (warehouse / "data" / "clicks" / "_SUCCESS").touch()
    return repo, str(warehouse)


def _partitions_start(defs) -> str:
    graph = defs.resolve_asset_graph()
    starts = {
        graph.get(key).partitions_def.start.strftime("%Y-%m-%d")
        for key in graph.get_all_asset_keys()
        if graph.get(key).partitions_def is not None
    }
    assert len(starts) == 1
    return starts.pop()


def test_start_without_settings_is_the_earliest_source_partition(new_repo):
    from feature_assets.definitions import build_definitions
    from feature_assets.resources import SparkResource, WarehouseResource

    repo, warehouse = new_repo
    defs = build_definitions(repo, resources={"spark": SparkResource(), "warehouse": WarehouseResource(root=warehouse)})
    assert _partitions_start(defs) == "2024-01-03"
    note = defs.metadata["partitions_start"].value
    assert "2024-01-03" in note and "start_date in feature_repo.yaml or FEATURE_ASSETS_START_DATE" in note
    node = defs.resolve_asset_graph().get(AssetKey(["default", "shop_clicks_v1"]))
    assert "FEATURE_ASSETS_START_DATE" in str(node.metadata["partitions_start"])


def test_start_comes_from_the_request_then_the_environment_then_the_settings(new_repo, monkeypatch):
    from feature_assets.definitions import build_definitions
    from feature_assets.resources import SparkResource, WarehouseResource

    repo, warehouse = new_repo
    resources = {"spark": SparkResource(), "warehouse": WarehouseResource(root=warehouse)}
    (repo / "feature_repo.yaml").write_text('start_date: "2024-01-02"\n')
    assert _partitions_start(build_definitions(repo, resources=resources)) == "2024-01-02"
    monkeypatch.setenv("FEATURE_ASSETS_START_DATE", "2024-01-04")
    assert _partitions_start(build_definitions(repo, resources=resources)) == "2024-01-04"
    assert _partitions_start(build_definitions(repo, start_date="2024-01-01", resources=resources)) == "2024-01-01"


def test_start_without_settings_or_data_is_today(new_repo, tmp_path):
    from feature_assets.compiler import load_compiled
    from feature_assets.definitions.factory import resolve_start_date
    from feature_assets.definitions.graph import build_graph

    repo, _ = new_repo
    start = resolve_start_date(repo, build_graph(load_compiled(repo)), str(tmp_path / "empty"))
    assert start.ds == date.today().isoformat() and "today" in start.note


def test_dagster_home_defaults_to_the_current_folder(tmp_path, monkeypatch):
    from feature_assets.definitions.runs import default_instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    instance = default_instance()
    try:
        assert os.environ["DAGSTER_HOME"] == str(tmp_path / ".dagster_home")
        assert (tmp_path / ".dagster_home" / "dagster.yaml").exists()
    finally:
        instance.dispose()


@pytest.fixture
def quickstart_defs(spark, tmp_path):
    from feature_assets.definitions import build_definitions
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.resources import SparkResource, WarehouseResource

    root = str(tmp_path / "warehouse")
    generate_quickstart_data(
        root, "2023-11-01", "2023-11-06", n_users=20, purchases_per_day=60, returns_per_day=15, checkouts_per_day=25
    )
    defs = build_definitions(
        QUICKSTART, resources={"spark": SparkResource(), "warehouse": WarehouseResource(root=root)}
    )
    return defs, root


@pytest.mark.spark
def test_range_backfill_is_one_run_with_passing_checks_and_idempotent(spark, quickstart_defs):
    from feature_assets.definitions.runs import run_backfill
    from feature_assets.storage import Warehouse

    defs, root = quickstart_defs
    instance = DagsterInstance.ephemeral()
    result = run_backfill(defs, "joins", "quickstart.training_set.v1", "2023-11-02", "2023-11-05", instance=instance)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    failed = [(e.asset_key, e.check_name) for e in evaluations if not e.passed]
    assert evaluations and not failed, failed
    materialized = {
        (
            e.event_specific_data.materialization.asset_key.to_user_string(),
            e.event_specific_data.materialization.partition,
        )
        for e in result.get_asset_materialization_events()
    }
    assert ("default/quickstart_training_set_v1", "2023-11-05") in materialized
    assert ("data/purchases", "2023-11-02") in materialized
    # Every materialization's column schema has the data's types and the configs' descriptions.
    output = next(
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key == AssetKey(["default", "quickstart_training_set_v1"])
    )
    columns = column_schema(output.metadata)
    assert columns["quickstart_purchases_v1_purchase_price_sum_3d"] == (
        "bigint",
        "SUM of purchase_price over 3 days, per user_id, as of the end of the day before ds "
        "(group-by quickstart.purchases.v1)",
    )
    assert columns["request_id"] == ("string", "left column: `request_id` of data.checkouts (row id)")
    # One run covers all four days of every asset.
    assert len({p for k, p in materialized if k == "default/quickstart_training_set_v1"}) == 4

    store = Warehouse(spark, root)
    first = sorted(map(tuple, store.read("default.quickstart_training_set_v1").collect()))
    left_rows = store.read("data.checkouts", "2023-11-02", "2023-11-05").count()
    assert len(first) == left_rows
    again = run_backfill(defs, "joins", "quickstart.training_set.v1", "2023-11-02", "2023-11-05", instance=instance)
    assert again.success
    second = sorted(map(tuple, store.read("default.quickstart_training_set_v1").collect()))
    assert first == second
    assert store.partitions("default.quickstart_training_set_v1") == [
        "2023-11-02",
        "2023-11-03",
        "2023-11-04",
        "2023-11-05",
    ]


@pytest.mark.spark
def test_missing_source_partition_fails_with_the_table_named(spark, quickstart_defs):
    from feature_assets.definitions.runs import run_backfill

    defs, _ = quickstart_defs
    result = run_backfill(
        defs, "group_bys", "quickstart.purchases.v1", "2023-11-05", "2023-11-08", instance=DagsterInstance.ephemeral()
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure and e.step_failure_data)
    message = failure.step_failure_data.error.to_string()
    assert "data.purchases" in message and "2023-11-07" in message
