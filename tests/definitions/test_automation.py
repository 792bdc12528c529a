"""What runs by itself, in-process: a config's schedule tick materializes the day that ended, declarative
automation then requests the online upload of that day, and a new source partition is noticed by the sensor.

A small repo (an online TEMPORAL group-by and a join over clicks, no settings file), as a user's would be.
"""

from __future__ import annotations

import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.cli import run_cli

from feature_assets.dev.datagen.parquet_tables import read_table, write_partitioned

pytestmark = pytest.mark.spark

FIRST_DS, LAST_DS = "2024-01-01", "2024-01-08"
GROUP_BY = """
    from feature_assets.api import Accuracy, Aggregation, EventSource, GroupBy, Operation, Query, select
    v1 = GroupBy(sources=[EventSource(table="data.clicks",
                                      query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                 keys=["user_id"], accuracy=Accuracy.TEMPORAL, online=True,
                 aggregations=[Aggregation(input_column="amount", operation=Operation.SUM)])
"""
JOIN = """
    from feature_assets.api import EventSource, Join, JoinPart, Query, select
    from group_bys.shop.clicks import v1 as clicks
    v1 = Join(left=EventSource(table="data.clicks",
                               query=Query(selects=select("click_id", "user_id"), time_column="ts")),
              right_parts=[JoinPart(group_by=clicks)], row_ids=["click_id"])
"""


def clicks(first: str, last: str):
    import pandas as pd

    rows = []
    for ds in pd.date_range(first, last, freq="D").strftime("%Y-%m-%d"):
        start = int(datetime.fromisoformat(ds).replace(tzinfo=UTC).timestamp() * 1000)
        for user, hour, amount in (("a", 1, 1), ("a", 13, 10), ("b", 7, 100)):
            ts = start + hour * 3_600_000
            rows.append({"click_id": f"{ds}-{user}-{hour}", "user_id": user, "amount": amount, "ts": ts, "ds": ds})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def repo_and_defs(tmp_path_factory, spark):
    from feature_assets.definitions import build_definitions
    from feature_assets.resources import SparkResource, WarehouseResource
    from feature_assets.resources.mongo import MongoResource

    root = tmp_path_factory.mktemp("automation")
    repo, warehouse = root / "repo", root / "warehouse"
    for relative, source in {"group_bys/shop/clicks.py": GROUP_BY, "joins/shop/training.py": JOIN}.items():
        path = repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    write_partitioned(clicks(FIRST_DS, LAST_DS), str(warehouse), "data.clicks")
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEATURE_ASSETS_")}
    compiled = run_cli(["compile"], repo, env)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    resources = {
        "spark": SparkResource(),
        "warehouse": WarehouseResource(root=str(warehouse)),
        # Nothing here loads into MongoDB: the load assets are only requested, never run.
        "mongo": MongoResource(uri="mongodb://127.0.0.1:9", database="unused"),
    }
    return repo, warehouse, build_definitions(repo, resources=resources)


def _key(table: str):
    from dagster import AssetKey

    return AssetKey(table.split("."))


def test_schedule_tick_materializes_the_day_and_automation_requests_its_upload(repo_and_defs):
    from dagster import DagsterInstance, build_schedule_context, evaluate_automation_conditions

    _, warehouse, defs = repo_and_defs
    schedule = defs.resolve_schedule_def("join_shop_training_v1_schedule")
    tick_time = datetime(2024, 1, 8, 0, 0, tzinfo=UTC)
    with DagsterInstance.ephemeral() as instance:
        # A running deployment has verified the earlier source days (the sensor did, day by day).
        history = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[_key("data.clicks")],
            tags={"dagster/asset_partition_range_start": FIRST_DS, "dagster/asset_partition_range_end": "2024-01-06"},
        )
        assert history.success
        before = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=tick_time)
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=tick_time, repository_def=defs.get_repository_def()
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
        assert request.partition_key == "2024-01-07"

        job = defs.resolve_job_def(schedule.job_name)
        assert job.execute_in_process(partition_key=request.partition_key, instance=instance).success
        joined = read_table(str(warehouse), "default.shop_training_v1")
        assert sorted(joined["ds"].unique()) == ["2024-01-07"] and len(joined) == 3

        after = evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=tick_time, cursor=before.cursor
        )
        upload = _key("default.shop_clicks_v1_upload")
        assert after.get_requested_partitions(upload) == {"2024-01-07"}
        assert after.get_requested_partitions(_key("default.shop_training_v1_daily_stats")) == {"2024-01-07"}
        # What the automation sensor would launch: the upload of the day.
        run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            partition_key="2024-01-07", instance=instance, asset_selection=[_key("default.shop_clicks_v1_upload")]
        )
        assert run.success
        assert instance.get_materialized_partitions(_key("default.shop_clicks_v1_upload")) == {"2024-01-07"}


def test_a_new_source_partition_is_noticed_and_verified(repo_and_defs, tmp_path: Path):
    from dagster import DagsterInstance, build_sensor_context

    _, warehouse, defs = repo_and_defs
    sensor = defs.resolve_sensor_def("new_source_partitions")
    source = _key("data.clicks")
    with DagsterInstance.ephemeral() as instance:
        # Nothing recorded yet: only the newest day is verified (history stays with backfills).
        first = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
        assert [(r.partition_key, r.asset_selection) for r in first.run_requests] == [(LAST_DS, [source])]
        # A day lands: the next tick asks for it alone.
        write_partitioned(clicks("2024-01-09", "2024-01-09"), str(warehouse), "data.clicks")
        second = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        assert [r.partition_key for r in second.run_requests] == ["2024-01-09"]
        run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            partition_key="2024-01-09", instance=instance, asset_selection=[source]
        )
        assert run.success
        third = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=second.cursor, definitions=defs))
        assert not third.run_requests


def test_a_day_late_online_dataset_or_log_fails_its_freshness_check():
    from dagster import AssetCheckKey, AssetKey, AssetSelection, DagsterInstance, Definitions, define_asset_job

    from feature_assets.definitions import build_definitions

    keys = [AssetKey(["online", "QUICKSTART_PURCHASES_V1_BATCH"]), AssetKey(["default", "chronon_log_table"])]
    checks = [AssetCheckKey(key, "freshness_check") for key in keys]
    job = define_asset_job("freshness_only", selection=AssetSelection.checks(*checks))
    defs = Definitions.merge(
        build_definitions(Path(__file__).resolve().parents[2] / "quickstart"), Definitions(jobs=[job])
    )
    with DagsterInstance.ephemeral() as instance:
        # Nothing was ever loaded or dumped: the latest ended day of each is missing past its deadline.
        result = defs.resolve_job_def("freshness_only").execute_in_process(instance=instance, raise_on_error=False)
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"online/QUICKSTART_PURCHASES_V1_BATCH", "default/chronon_log_table"}
    assert all(not e.passed and e.severity.value == "ERROR" for e in evaluations.values())
