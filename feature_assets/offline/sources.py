"""Reading a source for a date range: partitions, filters, selects and the event time as `ts`."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.model.configs import MILLIS_PER_DAY, Query, Source
from feature_assets.storage import Warehouse, shift_ds


def read_source(
    warehouse: Warehouse, source: Source, start_ds: str | None, end_ds: str | None, with_time: bool = True
) -> DataFrame:
    """Rows of a source in [start_ds, end_ds]: its selected columns, `ts` (epoch millis, when it has a
    time column) and `ds`."""
    return read_query(warehouse, source.read_table, source.query, start_ds, end_ds, with_time)


def read_query(
    warehouse: Warehouse, table: str, query: Query, start_ds: str | None, end_ds: str | None, with_time: bool = True
) -> DataFrame:
    """`read_source` of a query over any table (a mutation table, say)."""
    for statement in query.setups:
        warehouse.spark.sql(statement)
    start_ds, end_ds = query.clip(start_ds, end_ds)
    frame = warehouse.read(table, start_ds, end_ds)
    for condition in query.wheres:
        frame = frame.where(F.expr(condition))
    columns = (
        [F.expr(expr).alias(name) for name, expr in query.selects.items()]
        if query.selects is not None
        else [F.col(c) for c in frame.columns if c not in ("ds", "ts")]
    )
    if with_time and query.time_column:
        columns.append(F.expr(query.time_column).cast("long").alias("ts"))
    columns.append(F.col("ds"))
    return frame.select(*columns)


def events_start_for(end_of_first_query_day_ds: str, max_window_millis: int | None) -> str | None:
    """First partition whose events can fall in a window ending at the start of the given day + 1."""
    if max_window_millis is None:
        return None
    days = -(-max_window_millis // MILLIS_PER_DAY)
    return shift_ds(end_of_first_query_day_ds, -days)
