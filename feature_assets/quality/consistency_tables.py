"""The consistency tables of a join checked for online/offline consistency, and their online upload.

- `{join}_comparison`: the join recomputed offline with its sampled logged requests as the left rows
  (`quality.comparison.comparison_frame`); the group-bys' daily tables are read where every needed day is
  stored, else computed for the days needed.
- `{join}_consistency`: the logged values against the comparison's, per (ds, hour, column)
  (`quality.consistency.consistency_metrics`).
- `{join}_consistency_upload`: the consistency rows as the online store holds them, one per (column, hour)
  (`feature-assets load --table` puts them into the store, `online.fetch.consistency`).

A join's thresholds are its compiled `metaData.consistencyThresholds` ({"mismatch_rate_fail": 0.02, ...}),
the defaults of `ConsistencyThresholds` for the levels it does not name.
"""

from __future__ import annotations

from collections.abc import Iterator

from pyspark.sql import DataFrame

from feature_assets.model.configs import GroupBy, Join
from feature_assets.offline.group_by import snapshot_backfill
from feature_assets.offline.join import SnapshotReader
from feature_assets.quality.comparison import comparison_frame
from feature_assets.quality.consistency import METRICS_SCHEMA, ConsistencyThresholds, consistency_metrics
from feature_assets.storage import Warehouse, date_range

THRESHOLDS_FIELD = "consistencyThresholds"
UPLOAD_COLUMNS = tuple(field.name for field in METRICS_SCHEMA.fields)


def consistency_upload_table(join: Join) -> str:
    return f"{join.consistency_table}_upload"


def consistency_thresholds(join: Join) -> ConsistencyThresholds:
    """The join's warn and fail levels (its compiled `metaData.consistencyThresholds` over the defaults)."""
    configured = join.meta.consistency_thresholds or join.raw.get("metaData", {}).get(THRESHOLDS_FIELD)
    try:
        return ConsistencyThresholds.from_mapping(configured)
    except ValueError as error:
        raise ValueError(f"join {join.name}: {error}") from None


def stored_or_computed_snapshots(warehouse: Warehouse) -> SnapshotReader:
    """A group-by's daily values for [first, last]: its stored table when it has every one of those days,
    else computed from its sources (as the join would, without a stored table)."""

    def read(group_by: GroupBy, first: str, last: str) -> DataFrame:
        stored = set(warehouse.partitions(group_by.output_table))
        if stored.issuperset(date_range(first, last)):
            return warehouse.read(group_by.output_table, first, last)
        return snapshot_backfill(warehouse, group_by, first, last)

    return read


def compute_comparison(
    warehouse: Warehouse, join: Join, start_ds: str, end_ds: str, sample_percent: float | None = None
) -> DataFrame:
    """The `{join}_comparison` rows of [start_ds, end_ds]; `sample_percent` overrides the join's
    `consistency_sample_percent`."""
    if not warehouse.exists(join.logged_table):
        raise ValueError(
            f"{join.logged_table} does not exist yet: the comparison recomputes its logged requests "
            "(log-dump, then log-flattener, fill it)"
        )
    reader = stored_or_computed_snapshots(warehouse)
    return comparison_frame(warehouse, join, start_ds, end_ds, sample_percent, reader)


def compute_consistency(warehouse: Warehouse, join: Join, start_ds: str, end_ds: str) -> DataFrame:
    """The `{join}_consistency` rows of [start_ds, end_ds], from the stored `_logged` and `_comparison`."""
    for table in (join.logged_table, join.comparison_table):
        if not warehouse.exists(table):
            raise ValueError(f"{table} does not exist yet: materialize it first (the consistency compares it)")
    logged = warehouse.read(join.logged_table, start_ds, end_ds)
    comparison = warehouse.read(join.comparison_table, start_ds, end_ds)
    return consistency_metrics(logged, comparison, join)


def upload_frame(consistency: DataFrame) -> DataFrame:
    """The online upload rows of consistency rows: every metric of each (column, hour)."""
    return consistency.select(*UPLOAD_COLUMNS)


def upload_rows(warehouse: Warehouse, table: str, start_ds: str | None, end_ds: str | None) -> Iterator[dict]:
    """The rows of a consistency upload table (every day, or [start_ds, end_ds]) as dicts, grouped by day
    (as the loader wants them), streamed to the driver."""
    frame = warehouse.read(table, start_ds, end_ds).select(*UPLOAD_COLUMNS).orderBy("ds", "column_name", "ts")
    for row in frame.toLocalIterator():
        yield row.asDict()
