"""Online assets: batch uploads, their bulk loads into MongoDB and the metadata uploads.

For every online group-by (online itself, or a part of an online join):
- `{namespace}/{group_by}_upload` (daily): the upload table partition (see `offline.upload`); it depends on
  the group-by's daily table (SNAPSHOT and entity group-bys) or on its event sources with the longest
  window's lookback (TEMPORAL group-bys);
- `online/{GROUP_BY}_BATCH` (daily, kind mongodb): the bulk load of that partition into MongoDB; readers
  switch to it only when it is complete.
For every online join and group-by, `online/metadata/{clean name}` (unpartitioned, kind mongodb) stores the
compiled config in the metadata collection. A partition backfill of the upload and load assets in the UI
refreshes the online store for those days; the CLI's upload, load and metadata-upload materialize these same
assets (`online_runs`).

An upload or load that would be wrong fails its run with the cause (see `offline.upload`): missing input
partitions, an empty upload, an empty batch replacing a non-empty one. A run tagged
`feature_assets/allow_empty=true` (the CLI's `--allow-empty`) lets the empty ones through.
"""

# No `from __future__ import annotations`: Dagster reads the asset bodies' annotations as types.
import time

from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    PartitionsDefinition,
    asset,
)

from feature_assets.definitions.assets import asset_key, dependency
from feature_assets.definitions.graph import Edge, source_edges
from feature_assets.model.configs import GROUP_BYS, CompiledRepo, GroupBy, Join
from feature_assets.naming import clean_name, dataset_name
from feature_assets.offline.upload import UploadRefused, load_upload, run_upload
from feature_assets.online.store import EmptyBatchRefused, MongoKVStore, upload_metadata
from feature_assets.resources.mongo import MongoResource
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import date_range
from feature_assets.streaming.schemas import record_source_schemas

ALLOW_EMPTY_TAG = "feature_assets/allow_empty"


def online_group_bys(compiled: CompiledRepo) -> dict[str, GroupBy]:
    """Online group-bys by name: those marked online and every group-by of an online join."""
    return compiled.online_group_bys()


def upload_asset_key(group_by: GroupBy) -> AssetKey:
    return asset_key(group_by.upload_table)


def load_asset_key(group_by: GroupBy) -> AssetKey:
    return AssetKey(["online", group_by.batch_dataset])


def metadata_asset_key(name: str) -> AssetKey:
    return AssetKey(["online", "metadata", clean_name(name)])


def online_assets(compiled: CompiledRepo, partitions_def: PartitionsDefinition) -> list:
    assets = []
    for group_by in online_group_bys(compiled).values():
        assets += [
            _upload_asset(group_by, partitions_def),
            _load_asset(group_by, partitions_def),
            _metadata_asset(group_by),
        ]
    for join in compiled.joins.values():
        if join.online:
            assets.append(_metadata_asset(join))
    return assets


def _range(context: AssetExecutionContext) -> list[str]:
    keys = context.partition_key_range
    return date_range(keys.start, keys.end)


def _allow_empty(context: AssetExecutionContext) -> bool:
    return context.run.tags.get(ALLOW_EMPTY_TAG, "").lower() == "true"


def _upload_asset(group_by: GroupBy, partitions_def: PartitionsDefinition):
    if group_by.online_kind == "snapshot":
        edges = [Edge(group_by.output_table, 0, 0, "group-by daily values")]
        what = "the finished values of the daily table at the end of the day"
    else:
        edges = source_edges(group_by)
        what = (
            "per key, the raw events of the longest window before the day's end and the IRs of unwindowed "
            "aggregations over older events"
        )

    @asset(
        key=upload_asset_key(group_by),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[dependency(edge) for edge in edges],
        group_name=group_by.team,
        kinds={"spark"},
        description=f"Online upload of `{group_by.name}`: one row per key (key_json, value) holding {what}.",
        metadata={"table": group_by.upload_table, "config": group_by.name},
    )
    def upload(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        store = warehouse.get(spark.get_session())
        try:
            rows = {ds: run_upload(store, group_by, ds, _allow_empty(context)) for ds in _range(context)}
        except UploadRefused as error:
            raise Failure(str(error)) from error
        for ds, count in rows.items():  # each day's materialization: its own row count (the UI's "Row count")
            context.add_asset_metadata({"dagster/row_count": count}, partition_key=ds)
        return MaterializeResult(
            metadata={
                "range_rows": sum(rows.values()),
                "rows_per_day": rows,
                "table": group_by.upload_table,
                "seconds": round(time.monotonic() - started, 2),
            }
        )

    return upload


def _load_asset(group_by: GroupBy, partitions_def: PartitionsDefinition):
    dataset = group_by.batch_dataset

    @asset(
        key=load_asset_key(group_by),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[upload_asset_key(group_by)],
        group_name=group_by.team,
        kinds={"mongodb"},
        description=f"Bulk load of `{group_by.upload_table}` into the MongoDB dataset `{dataset}`; "
        "readers switch to a day's new version only once it is complete.",
        metadata={"dataset": dataset, "config": group_by.name},
    )
    def load(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource, mongo: MongoResource):
        store = warehouse.get(spark.get_session())
        kv = MongoKVStore.from_resource(mongo)
        results = {}
        for ds in _range(context):
            try:
                results[ds] = load_upload(
                    store,
                    group_by,
                    ds,
                    kv,
                    mongo.uri,
                    mongo.database,
                    client_options=_credentials(mongo),
                    allow_empty=_allow_empty(context),
                )
            except (UploadRefused, EmptyBatchRefused) as error:
                raise Failure(str(error)) from error
            context.log.info(f"{dataset} {ds}: {results[ds]}")
        # The config beside its batch, as Chronon's upload carries its serving info: a loaded group-by can be
        # fetched without a separate metadata upload.
        documents = upload_metadata(kv, GROUP_BYS, group_by) + record_source_schemas(kv, group_by)
        for ds, result in results.items():  # each day's materialization: its own row count
            context.add_asset_metadata({"dagster/row_count": result["rows"]}, partition_key=ds)
        return MaterializeResult(metadata={**_load_metadata(results), "dataset": dataset, "documents": documents})

    return load


def _load_metadata(results: dict) -> dict:
    """What the loads of a range did, day by day (the CLI prints it), and the newest day fetches now read."""
    return {
        "range_rows": sum(r["rows"] for r in results.values()),
        "rows_per_day": {ds: r["rows"] for ds, r in results.items()},
        "versions": {ds: r["version"] for ds, r in results.items()},
        "statuses": {ds: r["status"] for ds, r in results.items()},
        "seconds": {ds: r["seconds"] for ds, r in results.items()},
        "keys_per_second": {ds: round(r["rows"] / r["seconds"], 1) for ds, r in results.items() if r["seconds"]},
        "latest_day": max(r["latest"] for r in results.values()),
    }


def _credentials(mongo: MongoResource) -> dict:
    return {k: v for k, v in (("username", mongo.username), ("password", mongo.password)) if v}


def _metadata_asset(config: GroupBy | Join):
    label = "join" if isinstance(config, Join) else "group-by"

    @asset(
        key=metadata_asset_key(config.name),
        group_name=config.team,
        kinds={"mongodb"},
        description=f"The compiled config of {label} `{config.name}` in the online metadata collection "
        "(fetchers read configs from there).",
        metadata={"config": config.name, "dataset_prefix": dataset_name(config.name)},
    )
    def metadata_upload(context: AssetExecutionContext, mongo: MongoResource):
        store = MongoKVStore.from_resource(mongo)
        written = upload_metadata(store, config.kind, config)
        # The column types of streamed sources, so a streaming process reads them without the warehouse.
        for group_by in config.group_bys if isinstance(config, Join) else [config]:
            written += record_source_schemas(store, group_by)
        return MaterializeResult(metadata={"documents": written})

    return metadata_upload
