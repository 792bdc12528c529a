"""Reading a compiled source for a date range: partitions, filters, selects and the event time as `ts`."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from feature_assets.compiler.columns import table_of
from feature_assets.storage import Warehouse, shift_ds

MILLIS_PER_DAY = 86_400_000


def source_table(kind: str, payload: dict) -> str:
    if kind == "events":
        return payload["table"]
    if kind == "entities":
        return payload["snapshotTable"]
    join = payload["join"]
    return table_of(join["metaData"]["outputNamespace"], join["metaData"]["name"])


def clip_range(query: dict, start_ds: str | None, end_ds: str | None) -> tuple[str | None, str | None]:
    """The query's own start/end partitions narrow the requested range."""
    if query.get("startPartition") and (start_ds is None or query["startPartition"] > start_ds):
        start_ds = query["startPartition"]
    if query.get("endPartition") and (end_ds is None or query["endPartition"] < end_ds):
        end_ds = query["endPartition"]
    return start_ds, end_ds


def run_setups(spark: SparkSession, query: dict) -> None:
    for statement in query.get("setups") or []:
        spark.sql(statement)


def read_source(warehouse: Warehouse, kind: str, payload: dict, start_ds: str | None, end_ds: str | None,
                with_time: bool = True) -> DataFrame:
    """Rows of a source in [start_ds, end_ds]: its selected columns, `ts` (epoch millis, when it has a
    time column) and `ds`."""
    query = payload["query"]
    run_setups(warehouse.spark, query)
    start_ds, end_ds = clip_range(query, start_ds, end_ds)
    frame = warehouse.read(source_table(kind, payload), start_ds, end_ds)
    for condition in query.get("wheres") or []:
        frame = frame.where(F.expr(condition))
    selects = query.get("selects")
    columns = ([F.expr(expr).alias(name) for name, expr in selects.items()] if selects is not None
               else [F.col(c) for c in frame.columns if c not in ("ds", "ts")])
    time_column = query.get("timeColumn")
    if with_time and time_column:
        columns.append(F.expr(time_column).cast("long").alias("ts"))
    columns.append(F.col("ds"))
    return frame.select(*columns)


def events_start_for(end_of_first_query_day_ds: str, max_window_millis: int | None) -> str | None:
    """First partition whose events can fall in a window ending at the start of the given day + 1."""
    if max_window_millis is None:
        return None
    days = -(-max_window_millis // MILLIS_PER_DAY)
    return shift_ds(end_of_first_query_day_ds, -days)
