"""Group-by backfills: one row per key per `ds`, holding the values as of the end of that day."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from feature_assets.model.configs import MILLIS_PER_DAY, GroupBy
from feature_assets.offline.derivations import apply_derivations
from feature_assets.offline.frames import keys_not_null, union_by_name
from feature_assets.offline.sources import events_start_for, read_source
from feature_assets.offline.windowed import windowed_features
from feature_assets.storage import Warehouse


def end_of_day_millis(ds_column: str = "ds"):
    """Epoch millis of 00:00 UTC on the day after `ds`: the end of that day."""
    return F.unix_timestamp(F.to_date(F.col(ds_column)).cast("timestamp")).cast("long") * 1000 + MILLIS_PER_DAY


def read_group_by_sources(warehouse: Warehouse, group_by: GroupBy, start_ds: str | None, end_ds: str) -> DataFrame:
    """The union of a group-by's sources over a range (all sources are of one kind)."""
    return union_by_name(
        [read_source(warehouse, source, start_ds, end_ds) for source in group_by.sources], allow_missing_columns=True
    )


def snapshot_backfill(warehouse: Warehouse, group_by: GroupBy, start_ds: str, end_ds: str) -> DataFrame:
    """The group-by's daily table for [start_ds, end_ds]: keys, base and derived feature columns, ds."""
    if group_by.source_kind == "entities":
        frame = _entity_snapshot(warehouse, group_by, start_ds, end_ds)
    else:
        frame = _event_snapshot(warehouse, group_by, start_ds, end_ds)
    return apply_derivations(
        frame, group_by.derivations, group_by.value_columns, keep=[*group_by.key_columns, "ds"], keep_base=True
    )


def _event_snapshot(warehouse: Warehouse, group_by: GroupBy, start_ds: str, end_ds: str) -> DataFrame:
    keys = list(group_by.key_columns)
    specs = group_by.specs
    max_window = group_by.max_window_millis
    events_start = events_start_for(start_ds, max_window)
    backfill_start = group_by.backfill_start_date
    if backfill_start and (events_start is None or backfill_start > events_start):
        events_start = backfill_start
    events = read_group_by_sources(warehouse, group_by, events_start, end_ds)
    events = events.where(keys_not_null(keys))
    # A key gets a row on day d when one of its events lies inside a window ending at the end of d: an event
    # at ts is in [end(d) - W, end(d)) for the days from day(ts) to day(ts + W - 1 day) (none when W < 1 day
    # and ts is earlier than W before the end of its day). Events are first reduced to the last ts per key
    # and event day, which gives the same days.
    per_day = events.groupBy(*keys, _day_of(F.col("ts")).alias("event_day")).agg(F.max("ts").alias("last_ts"))
    first_day = F.greatest(F.lit(start_ds).cast("date"), F.col("event_day"))
    last_day = (
        F.lit(end_ds).cast("date")
        if max_window is None
        else F.least(F.lit(end_ds).cast("date"), _day_of(F.col("last_ts") + F.lit(max_window - MILLIS_PER_DAY)))
    )
    query_days = (
        per_day.select(*keys, first_day.alias("first"), last_day.alias("last"))
        .where(F.col("first") <= F.col("last"))
        .select(*keys, F.explode(F.sequence("first", "last")).alias("day"))
        .select(*keys, F.col("day").cast("string").alias("ds"))
        .distinct()
    )
    queries = query_days.withColumn("ts", end_of_day_millis())
    return windowed_features(events, queries, keys, specs).drop("ts")


def _day_of(millis):
    """The UTC date of epoch millis (independent of the session time zone)."""
    return F.date_add(F.lit("1970-01-01").cast("date"), F.floor(millis / F.lit(MILLIS_PER_DAY)).cast("int"))


def _entity_snapshot(warehouse: Warehouse, group_by: GroupBy, start_ds: str, end_ds: str) -> DataFrame:
    keys = list(group_by.key_columns)
    rows = read_group_by_sources(warehouse, group_by, start_ds, end_ds)
    if not group_by.aggregations:
        # One row per key and day: with duplicate snapshot rows the greatest row (by its columns) wins.
        values = [c for c in rows.columns if c not in keys and c != "ds" and c != "ts"]
        order = [F.col(c).desc_nulls_last() for c in values]
        per_key_day = Window.partitionBy(*keys, "ds")
        ranked = rows.withColumn(
            "__rank", F.row_number().over(per_key_day.orderBy(*order) if order else per_key_day.orderBy("ds"))
        )
        return ranked.where("__rank = 1").select(*keys, *values, "ds")
    specs = group_by.specs
    # Aggregate each day's snapshot on its own: the day is part of the key; rows sit at the day's last millisecond.
    events = rows.withColumn("ts", end_of_day_millis() - 1)
    queries = rows.select(*keys, "ds").distinct().withColumn("ts", end_of_day_millis())
    return windowed_features(events, queries, keys + ["ds"], specs).drop("ts")
