"""The daily stats tables of a join and of its log, their upload tables, and reading them back.

- `{join}_daily_stats`: `daily_column_stats` of the join output's feature columns (the left's keys and row
  ids, `ts` and `ds` left out), on the join's `stats_sample_percent` of the rows.
- `{join}_logged_daily_stats`: the same over the join's flattened log `_logged` (its bookkeeping columns
  `schema_hash` and `_absent_fields` left out too).
- `{stats table}_upload`: what the online store holds per (column, bucket): the mergeable summary bytes and
  the counters, one row each (`load --table` puts them into the store).
"""

from __future__ import annotations

from collections.abc import Iterator

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.model.configs import Join
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN
from feature_assets.offline.log_tables import UNDECODABLE_COLUMN
from feature_assets.quality.column_stats import daily_column_stats
from feature_assets.quality.drift_report import DaySummaries, day_summaries
from feature_assets.storage import Warehouse

UPLOAD_COLUMNS = ("column_name", "column_kind", "ts", "total", "null_count", "summary", "ds")
LOGGED_BOOKKEEPING = (SCHEMA_HASH_COLUMN, ABSENT_FIELDS_COLUMN, UNDECODABLE_COLUMN)


def excluded_columns(join: Join) -> list[str]:
    """Key-like columns no stats describe: the parts' left keys, the row ids, and the external parts' keys."""
    keys = [left for part in join.join_parts for left in part.left_keys]
    keys += list(join.row_ids)
    keys += [part.key_mapping.get(name, name) for part in join.external_parts for name, _ in part.source.key_fields]
    contextual = [column for part in join.external_parts if part.is_contextual for column in part.columns]
    return list(dict.fromkeys(keys + contextual))


def stats_table(join: Join, logged: bool) -> str:
    return join.logged_daily_stats_table if logged else join.daily_stats_table


def upload_table(join: Join, logged: bool) -> str:
    return join.logged_daily_stats_upload_table if logged else join.daily_stats_upload_table


def summarized_table(join: Join, logged: bool) -> str:
    return join.logged_table if logged else join.output_table


def join_stats(
    warehouse: Warehouse, join: Join, start_ds: str, end_ds: str, logged: bool, sample_percent: float | None = None
) -> DataFrame:
    """The stats rows of the join's output (or log) for [start_ds, end_ds]; `sample_percent` overrides the
    join's `stats_sample_percent`."""
    frame = warehouse.read(summarized_table(join, logged), start_ds, end_ds)
    exclude = excluded_columns(join) + (list(LOGGED_BOOKKEEPING) if logged else [])
    percent = join.stats_sample_percent if sample_percent is None else float(sample_percent)
    return daily_column_stats(frame, sample_percent=percent, exclude=[c for c in exclude if c in frame.columns])


def upload_frame(stats: DataFrame) -> DataFrame:
    """The online upload rows of a stats table's rows."""
    return stats.select(*UPLOAD_COLUMNS)


def read_day_summaries(warehouse: Warehouse, table: str, days: list[str]) -> DaySummaries:
    """A stats table's summaries of the given days (those it has), merged per day and column."""
    present = sorted(set(days) & set(warehouse.partitions(table)))
    if not present:
        return {}
    frame = warehouse.read(table, present[0], present[-1]).where(F.col("ds").isin(present))
    rows = frame.select("ds", "column_name", "summary").toLocalIterator()
    return day_summaries((row["ds"], row["column_name"], bytes(row["summary"])) for row in rows)


def upload_rows(warehouse: Warehouse, table: str, start_ds: str | None, end_ds: str | None) -> Iterator[dict]:
    """The rows of an upload table (every day, or [start_ds, end_ds]) as dicts, streamed to the driver."""
    frame = warehouse.read(table, start_ds, end_ds).select(*UPLOAD_COLUMNS)
    for row in frame.toLocalIterator():
        values = row.asDict()
        values["summary"] = bytes(values["summary"])
        yield values
