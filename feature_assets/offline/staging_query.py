"""Staging queries: a user's Spark SQL with date macros, materialized as a daily-partitioned table."""

from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.model.configs import MACRO, StagingQuery
from feature_assets.storage import Warehouse


def render(query: str, start_ds: str, end_ds: str, latest_ds: str | None = None) -> str:
    values = {"start_date": start_ds, "end_date": end_ds, "latest_date": latest_ds or end_ds}

    def substitute(match: re.Match) -> str:
        if match.group(1) not in values:
            raise ValueError(f"unknown macro {{{{ {match.group(1)} }}}} (known: {sorted(values)})")
        return values[match.group(1)]

    return MACRO.sub(substitute, query)


def run_staging_query(warehouse: Warehouse, staging_query: StagingQuery, start_ds: str, end_ds: str) -> DataFrame:
    """The query's rows for [start_ds, end_ds]; its partition column becomes `ds`."""
    start_ds = max(start_ds, staging_query.start_partition or start_ds)
    warehouse.register(staging_query.referenced_tables)
    for statement in staging_query.setups:
        warehouse.spark.sql(statement)
    frame = warehouse.spark.sql(render(staging_query.query, start_ds, end_ds))
    partition_column = staging_query.partition_column
    if partition_column not in frame.columns:
        raise ValueError(
            f"staging query {staging_query.name!r} must select its partition column "
            f"{partition_column!r}; it selected {frame.columns}"
        )
    if partition_column != "ds":
        frame = frame.withColumnRenamed(partition_column, "ds")
    return frame.withColumn("ds", F.col("ds").cast("string"))
