"""Staging queries: a user's Spark SQL with date macros, materialized as a daily-partitioned table."""
from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.storage import Warehouse

MACRO = re.compile(r"\{\{\s*(\w+)\s*\}\}")
SQL_TABLE = re.compile(r"\b(?:from|join)\s+`?([A-Za-z_][\w]*\.[A-Za-z_][\w]*)`?", re.IGNORECASE)


def render(query: str, start_ds: str, end_ds: str, latest_ds: str | None = None) -> str:
    values = {"start_date": start_ds, "end_date": end_ds, "latest_date": latest_ds or end_ds}

    def substitute(match: re.Match) -> str:
        if match.group(1) not in values:
            raise ValueError(f"unknown macro {{{{ {match.group(1)} }}}} (known: {sorted(values)})")
        return values[match.group(1)]
    return MACRO.sub(substitute, query)


def referenced_tables(query: str) -> list[str]:
    return sorted(set(SQL_TABLE.findall(query)))


def run_staging_query(warehouse: Warehouse, staging_query: dict, start_ds: str, end_ds: str) -> DataFrame:
    """The query's rows for [start_ds, end_ds]; its partition column becomes `ds`."""
    start_ds = max(start_ds, staging_query.get("startPartition") or start_ds)
    warehouse.register(referenced_tables(staging_query["query"]))
    for statement in staging_query.get("setups") or []:
        warehouse.spark.sql(statement)
    frame = warehouse.spark.sql(render(staging_query["query"], start_ds, end_ds))
    partition_column = staging_query.get("partitionColumn") or "ds"
    if partition_column not in frame.columns:
        raise ValueError(f"staging query {staging_query['metaData']['name']!r} must select its partition column "
                         f"{partition_column!r}; it selected {frame.columns}")
    if partition_column != "ds":
        frame = frame.withColumnRenamed(partition_column, "ds")
    return frame.withColumn("ds", F.col("ds").cast("string"))
