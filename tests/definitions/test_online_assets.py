"""The online assets in the Dagster graph (keys, dependencies, kinds), and a metadata-upload materialization
against the real MongoDB-protocol server."""

from __future__ import annotations

import warnings

import pytest
from dagster import AssetKey, DailyPartitionsDefinition, materialize
from support.paths import QUICKSTART

from feature_assets.definitions.online_assets import metadata_asset_key, online_assets, online_group_bys
from feature_assets.online.store import MongoKVStore, config_key

warnings.filterwarnings("ignore", category=Warning, module="dagster")


def _graph(quickstart_compiled):
    from feature_assets.definitions import build_definitions

    return build_definitions(QUICKSTART).resolve_asset_graph()


def test_upload_load_and_metadata_assets(quickstart_compiled):
    graph = _graph(quickstart_compiled)
    parents = lambda key: {p.to_user_string() for p in graph.get(AssetKey.from_user_string(key)).parent_keys}  # noqa
    assert parents("default/quickstart_purchases_v1_upload") == {"default/quickstart_purchases_v1"}
    assert parents("default/quickstart_returns_v1_upload") == {"data/returns"}
    assert parents("online/QUICKSTART_PURCHASES_V1_BATCH") == {"default/quickstart_purchases_v1_upload"}
    assert parents("online/QUICKSTART_RETURNS_V1_BATCH") == {"default/quickstart_returns_v1_upload"}
    load = graph.get(AssetKey.from_user_string("online/QUICKSTART_RETURNS_V1_BATCH"))
    assert load.partitions_def is not None and "mongodb" in load.kinds
    for key in ("online/metadata/quickstart_training_set_v2", "online/metadata/quickstart_purchases_v1"):
        assert graph.has(AssetKey.from_user_string(key))
    assert sorted(online_group_bys(quickstart_compiled)) == [
        "quickstart.purchases.v1",
        "quickstart.returns.v1",
        "quickstart.users.v1",
    ]


def test_no_online_assets_without_a_mongo_resource(quickstart_compiled):
    from feature_assets.definitions import build_definitions
    from feature_assets.resources import SparkResource, WarehouseResource

    defs = build_definitions(QUICKSTART, resources={"spark": SparkResource(), "warehouse": WarehouseResource()})
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert not any(k.startswith("online/") for k in keys)


@pytest.mark.services
def test_metadata_asset_materializes(quickstart_compiled, tmp_path):
    from feature_assets.dev.services.local import start_mongo
    from feature_assets.resources.mongo import MongoResource

    mongo = start_mongo(tmp_path / "mongo", log_path=tmp_path / "mongo.log")
    try:
        assets = online_assets(quickstart_compiled, DailyPartitionsDefinition(start_date="2023-11-01"))
        wanted = [a for a in assets if a.key == metadata_asset_key("quickstart.training_set.v2")]
        result = materialize(wanted, resources={"mongo": MongoResource(uri=mongo.url, database="assets_test")})
        assert result.success
        store = MongoKVStore.from_uri(mongo.url, "assets_test")
        for name in ("joins/quickstart.training_set.v2", "group_bys/quickstart.returns.v1"):
            kind, config_name = name.split("/")
            assert store.get_metadata(config_key(kind, config_name)) is not None
        store.close()
    finally:
        mongo.stop()


def _quickstart_definitions(warehouse: str, mongo_uri: str):
    from feature_assets.definitions import build_definitions
    from feature_assets.resources import SparkResource, WarehouseResource
    from feature_assets.resources.mongo import MongoResource

    resources = {
        "spark": SparkResource(),
        "warehouse": WarehouseResource(root=warehouse),
        "mongo": MongoResource(uri=mongo_uri, database="runner_test"),
    }
    return build_definitions(QUICKSTART, resources=resources)


@pytest.mark.services
def test_the_cli_runner_materializes_the_metadata_asset_and_reports_what_it_stored(tmp_path):
    from dagster import DagsterInstance

    from feature_assets.definitions.online_runs import NotAPartition, materialize_online
    from feature_assets.dev.services.local import start_mongo

    mongo = start_mongo(tmp_path / "mongo", log_path=tmp_path / "mongo.log")
    try:
        defs = _quickstart_definitions(str(tmp_path / "warehouse"), mongo.url)
        with DagsterInstance.ephemeral() as instance:
            run = materialize_online(defs, [metadata_asset_key("quickstart.training_set.v2")], instance=instance)
            assert run.success and run.errors == []
            [item] = run.materialized
            assert item.asset == "online/metadata/quickstart_training_set_v2" and item.partition is None
            assert "conf/joins/quickstart.training_set.v2" in item.metadata["documents"]
            assert instance.get_run_by_id(run.run_id).job_name == "upload_metadata"  # the UI's job
            upload = AssetKey.from_user_string("default/quickstart_purchases_v1_upload")
            with pytest.raises(NotAPartition, match=r"2022-01-01 is not a day of the assets' daily partitions"):
                materialize_online(defs, [upload], "2022-01-01", instance=instance)
    finally:
        mongo.stop()


@pytest.mark.spark
def test_an_upload_run_without_its_input_fails_with_the_cause_in_one_line(spark, tmp_path, quickstart_compiled):
    from dagster import DagsterInstance

    from feature_assets.definitions.online_assets import upload_asset_key
    from feature_assets.definitions.online_runs import materialize_online

    purchases = online_group_bys(quickstart_compiled)["quickstart.purchases.v1"]
    defs = _quickstart_definitions(str(tmp_path / "warehouse"), "mongodb://127.0.0.1:9/")  # not reached
    with DagsterInstance.ephemeral() as instance:
        run = materialize_online(defs, [upload_asset_key(purchases)], "2023-11-30", instance=instance)
    assert not run.success and run.materialized == []
    [error] = run.errors
    assert error.startswith("cannot upload quickstart.purchases.v1 for 2023-11-30: table ")
    assert "'default.quickstart_purchases_v1' has no partition for 1 day(s): ['2023-11-30']" in error
