"""Online assets: batch uploads, their bulk loads into MongoDB and the metadata uploads.

For every online group-by (online itself, or a part of an online join):
- `{namespace}/{group_by}_upload` (daily): the upload table partition (see `online.upload`); it depends on
  the group-by's daily table (SNAPSHOT and entity group-bys) or on its event sources with the longest
  window's lookback (TEMPORAL group-bys);
- `online/{GROUP_BY}_BATCH` (daily, kind mongodb): the bulk load of that partition into MongoDB; readers
  switch to it only when it is complete.
For every online join and group-by, `online/metadata/{clean name}` (unpartitioned, kind mongodb) stores the
compiled config in the metadata collection. A partition backfill of the upload and load assets in the UI
refreshes the online store for those days.
"""

import time

from dagster import (AssetExecutionContext, AssetKey, BackfillPolicy, MaterializeResult, PartitionsDefinition,
                     asset)

from feature_assets.compiler.columns import clean_name, table_of
from feature_assets.definitions.assets import _dep, asset_key
from feature_assets.definitions.graph import Edge, _source_edges
from feature_assets.online.kv_store import MongoKVStore, batch_dataset, dataset_name
from feature_assets.online.upload import SNAPSHOT, load_upload, online_kind, run_upload, upload_metadata, upload_table
from feature_assets.resources.mongo import MongoResource
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import date_range


def online_group_bys(compiled: dict) -> dict[str, dict]:
    """Online group-bys by name: those marked online and every group-by of an online join."""
    found: dict[str, dict] = {}
    for join in (compiled.get("joins") or {}).values():
        if join["metaData"].get("online"):
            for part in join["joinParts"]:
                found.setdefault(part["groupBy"]["metaData"]["name"], part["groupBy"])
    for name, group_by in (compiled.get("group_bys") or {}).items():
        if group_by["metaData"].get("online"):
            found[name] = group_by
    return dict(sorted(found.items()))


def upload_asset_key(group_by: dict) -> AssetKey:
    return asset_key(upload_table(group_by))


def load_asset_key(group_by: dict) -> AssetKey:
    return AssetKey(["online", batch_dataset(group_by["metaData"]["name"])])


def metadata_asset_key(name: str) -> AssetKey:
    return AssetKey(["online", "metadata", clean_name(name)])


def online_assets(compiled: dict, partitions_def: PartitionsDefinition) -> list:
    assets = []
    for group_by in online_group_bys(compiled).values():
        assets += [_upload_asset(group_by, partitions_def), _load_asset(group_by, partitions_def),
                   _metadata_asset("group_bys", group_by)]
    for join in (compiled.get("joins") or {}).values():
        if join["metaData"].get("online"):
            assets.append(_metadata_asset("joins", join))
    return assets


def _range(context: AssetExecutionContext) -> list[str]:
    keys = context.partition_key_range
    return date_range(keys.start, keys.end)


def _upload_asset(group_by: dict, partitions_def):
    name = group_by["metaData"]["name"]
    if online_kind(group_by) == SNAPSHOT:
        edges = [Edge(table_of(group_by["metaData"]["outputNamespace"], name), 0, 0, "group-by daily values")]
        what = "the finished values of the daily table at the end of the day"
    else:
        edges = _source_edges(group_by)
        what = "per key, the raw events of the longest window before the day's end and the IRs of unwindowed aggregations over older events"

    @asset(key=upload_asset_key(group_by), partitions_def=partitions_def, backfill_policy=BackfillPolicy.single_run(),
           deps=[_dep(edge) for edge in edges], group_name=group_by["metaData"]["team"], kinds={"spark"},
           description=f"Online upload of `{name}`: one row per key (key_json, value) holding {what}.",
           metadata={"table": upload_table(group_by), "config": name})
    def upload(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        store = warehouse.get(spark.get_session())
        rows = {ds: run_upload(store, group_by, ds) for ds in _range(context)}
        return MaterializeResult(metadata={"dagster/row_count": sum(rows.values()), "rows_per_day": rows,
                                           "table": upload_table(group_by),
                                           "seconds": round(time.monotonic() - started, 2)})

    return upload


def _load_asset(group_by: dict, partitions_def):
    name = group_by["metaData"]["name"]

    @asset(key=load_asset_key(group_by), partitions_def=partitions_def, backfill_policy=BackfillPolicy.single_run(),
           deps=[upload_asset_key(group_by)], group_name=group_by["metaData"]["team"], kinds={"mongodb"},
           description=f"Bulk load of `{upload_table(group_by)}` into the MongoDB dataset `{batch_dataset(name)}`; "
                       "readers switch to a day's new version only once it is complete.",
           metadata={"dataset": batch_dataset(name), "config": name})
    def load(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource,
             mongo: MongoResource):
        store = warehouse.get(spark.get_session())
        kv = MongoKVStore.from_resource(mongo)
        results = {}
        for ds in _range(context):
            results[ds] = load_upload(store, group_by, ds, kv, mongo.uri, mongo.database,
                                      client_options=_credentials(mongo))
            context.log.info(f"{batch_dataset(name)} {ds}: {results[ds]}")
        return MaterializeResult(metadata={
            "dagster/row_count": sum(r["rows"] for r in results.values()),
            "versions": {ds: r["version"] for ds, r in results.items()},
            "statuses": {ds: r["status"] for ds, r in results.items()},
            "keys_per_second": {ds: round(r["rows"] / r["seconds"], 1) for ds, r in results.items() if r["seconds"]},
            "dataset": batch_dataset(name)})

    return load


def _credentials(mongo: MongoResource) -> dict:
    return {k: v for k, v in (("username", mongo.username), ("password", mongo.password)) if v}


def _metadata_asset(kind: str, config: dict):
    name = config["metaData"]["name"]
    label = "join" if kind == "joins" else "group-by"

    @asset(key=metadata_asset_key(name), group_name=config["metaData"]["team"], kinds={"mongodb"},
           description=f"The compiled config of {label} `{name}` in the online metadata collection "
                       "(fetchers read configs from there).",
           metadata={"config": name, "dataset_prefix": dataset_name(name)})
    def metadata_upload(context: AssetExecutionContext, mongo: MongoResource):
        written = upload_metadata(MongoKVStore.from_resource(mongo), kind, config)
        return MaterializeResult(metadata={"documents": written})

    return metadata_upload
