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
