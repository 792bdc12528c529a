"""The online upload table of a daily quality table (stats, consistency): one factory for both.

No `from __future__ import annotations`: Dagster reads the asset body's annotations as types.
"""

from collections.abc import Callable

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    PartitionsDefinition,
    asset,
)
from pyspark.sql import DataFrame

from feature_assets.definitions.assets import add_rows_per_partition, asset_key, rows_per_day
from feature_assets.model.configs import Join
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import date_range


def daily_upload_asset(
    join: Join,
    table: str,
    source: str,
    source_key: AssetKey,
    partitions_def: PartitionsDefinition,
    description: str,
    to_upload: Callable[[DataFrame], DataFrame],
):
    """`table`: `to_upload` of `source`'s days, written per day; each day's materialization gets its row count."""

    @asset(
        key=asset_key(table),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(source_key)],
        group_name=join.table_name,
        kinds={"spark"},
        description=description,
        metadata={"table": table, "config": join.name},
    )
    def daily_upload(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        keys = context.partition_key_range
        store = warehouse.get(spark.get_session())
        store.write_partitions(to_upload(store.read(source, keys.start, keys.end)), table, keys.start, keys.end)
        rows = rows_per_day(store.read(table, keys.start, keys.end))
        add_rows_per_partition(context, date_range(keys.start, keys.end), rows)
        return MaterializeResult(metadata={"table": table, "range_rows": sum(rows.values())})

    return daily_upload
