"""Stats assets: each join's `{join}_daily_stats` and, when it has a flattened log, `{join}_logged_daily_stats`,
with their online upload tables `{stats table}_upload`.

A stats asset summarizes the days of the table it follows (`quality.stats_tables`), compares each day with its
reference (the join's `drift_reference`) and reports: per day, every number as a float (rows, each column's
null rate and drift metrics), a chart (`{stats table path}_charts/<ds>.png`, local warehouses) and a markdown
table of the worst-drifting columns; and the checks `drift`, `null_rate_spike` and `row_count_change`.
The run tag `feature_assets/stats_sample_percent` overrides the join's sample share (`stats-summary
--sample-percent`). The logged stats follow `_logged`: their days run through today.
"""

# No `from __future__ import annotations`: Dagster reads the asset bodies' annotations as types.
import time
from datetime import date, timedelta
from pathlib import Path

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    TableColumn,
    TableSchema,
    asset,
    define_asset_job,
)

from feature_assets.checks.drift import CHECKS, day_metadata, stats_checks
from feature_assets.definitions.assets import asset_key
from feature_assets.definitions.graph import JOIN, LOGGED, Node
from feature_assets.definitions.upload_assets import daily_upload_asset
from feature_assets.model.configs import Join
from feature_assets.quality.charts import render_day_chart
from feature_assets.quality.column_stats import STATS_SCHEMA
from feature_assets.quality.drift_report import day_report, markdown_table, reference_days
from feature_assets.quality.stats_tables import (
    join_stats,
    read_day_summaries,
    stats_table,
    summarized_table,
    upload_frame,
    upload_table,
)
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import Warehouse, date_range

SAMPLE_PERCENT_TAG = "feature_assets/stats_sample_percent"
STATS_JOB = "compute_stats"
LOGGED_STATS_JOB = "compute_log_stats"
CHART_DAYS = 14  # days of percentile bands shown up to the charted day


def stats_asset_key(join: Join, logged: bool) -> AssetKey:
    return asset_key(stats_table(join, logged))


def upload_asset_key(join: Join, logged: bool) -> AssetKey:
    return asset_key(upload_table(join, logged))


def stats_nodes(graph: dict[str, Node]) -> list[tuple[Join, bool]]:
    """(join, logged) of every stats asset: one per join output, one per flattened log."""
    found = []
    for node in graph.values():
        if node.kind in (JOIN, LOGGED) and node.join is not None:
            found.append((node.join, node.kind == LOGGED))
    return found


def stats_assets(graph: dict[str, Node], partitions_def: PartitionsDefinition, log_partitions_def) -> list:
    assets = []
    for join, logged in stats_nodes(graph):
        partitions = log_partitions_def if logged else partitions_def
        assets += [_stats_asset(join, logged, partitions), _upload_asset(join, logged, partitions)]
    return assets


def stats_jobs(graph: dict[str, Node]) -> list:
    """The stats of every join output, and of every flattened log (whose days run through today)."""
    jobs = []
    for job, description, want_logged in (
        (STATS_JOB, "Summarize the join outputs' days, grade their drift and write the upload tables", False),
        (LOGGED_STATS_JOB, "Summarize the flattened logs' days, grade their drift and write the upload tables", True),
    ):
        keys = [
            key
            for join, logged in stats_nodes(graph)
            if logged == want_logged
            for key in (stats_asset_key(join, logged), upload_asset_key(join, logged))
        ]
        if keys:
            jobs.append(define_asset_job(job, selection=AssetSelection.assets(*keys), description=description))
    return jobs


def charts_folder(warehouse: Warehouse, table: str) -> Path | None:
    """Where a stats table's charts go: beside the table, on a local warehouse only."""
    path = warehouse.table_path(table)
    if "://" in path and not path.startswith("file://"):
        return None
    return Path(path.removeprefix("file://") + "_charts")


STATS_COLUMN_DOCS = {
    "column_name": "the summarized column of the join output (or log)",
    "column_kind": "numeric, boolean, categorical, list or map: what the summary keeps",
    "ts": "the bucket's start, epoch millis: the hour of the row's ts (the day without ts)",
    "total": "rows of the bucket (of the sample)",
    "null_count": "null (or NaN) values",
    "null_rate": "null_count / total",
    "percentiles": "0.01, 0.05 ... 0.95, 0.99 percentiles of the values (numeric) or lengths (list, map)",
    "distinct_estimate": "estimated distinct values (categorical, boolean)",
    "summary": "the mergeable summary (KLL, CPC and frequent-items sketches), ColumnSummary.to_bytes",
    "sample_percent": "the share of rows summarized",
    "ds": "the day of the summarized rows",
}


def _schema() -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(field.name, field.dataType.simpleString(), STATS_COLUMN_DOCS[field.name])
            for field in STATS_SCHEMA.fields
        ]
    )


def _sample_percent(context: AssetExecutionContext) -> float | None:
    value = context.run.tags.get(SAMPLE_PERCENT_TAG)
    if value is None:
        return None
    try:
        percent = float(value)
    except ValueError:
        raise Failure(f"run tag {SAMPLE_PERCENT_TAG}={value!r} is not a number") from None
    if not 0 < percent <= 100:
        raise Failure(f"run tag {SAMPLE_PERCENT_TAG}={value!r}: a sample share lies in (0, 100]")
    return percent


def _stats_asset(join: Join, logged: bool, partitions_def: PartitionsDefinition):
    table = stats_table(join, logged)
    source = summarized_table(join, logged)
    key = asset_key(table)
    kind, start_ds, end_ds = join.drift_reference
    reference_text = f"pinned {start_ds}..{end_ds}" if kind == "pinned" else kind
    thresholds = join.drift_thresholds

    @asset(
        key=key,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(asset_key(source))],
        group_name=join.table_name,
        kinds={"spark"},
        description=(
            f"Daily column stats of `{source}`: per feature column and hour of `ts` (per day without `ts`), the "
            "rows, nulls, percentiles, distinct estimates and mergeable sketches of "
            f"{join.stats_sample_percent:g}% of the rows (the join's `stats_sample_percent`). Each day is "
            f"compared with its reference ({reference_text}) by PSI, Jensen-Shannon, Hellinger and KS."
        ),
        check_specs=[AssetCheckSpec(name, asset=key, description=text) for name, text in CHECKS],
        metadata={
            "table": table,
            "config": join.name,
            "drift_reference": reference_text,
            "drift_thresholds": MetadataValue.json(thresholds.__dict__),
            "dagster/column_schema": MetadataValue.table_schema(_schema()),
        },
    )
    def daily_stats(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        keys = context.partition_key_range
        start, end = keys.start, keys.end
        store = warehouse.get(spark.get_session())
        if not store.exists(source):
            raise Failure(f"{source} does not exist yet: materialize it first (stats summarize its days)")
        percent = _sample_percent(context)
        store.write_partitions(join_stats(store, join, start, end, logged, percent), table, start, end)
        days = date_range(start, end)
        needed = sorted({d for ds in days for d in reference_days(join.drift_reference, ds)} | set(days))
        if charts := charts_folder(store, table):
            needed = sorted(set(needed) | set(date_range(_minus(start, CHART_DAYS - 1), start)))
        summaries = read_day_summaries(store, table, needed)
        reports = [day_report(ds, summaries, join.drift_reference, thresholds) for ds in days]
        for report in reports:
            metadata: dict = {"dagster/row_count": report.rows, **day_metadata(report)}
            metadata["worst_drift"] = MetadataValue.md(markdown_table(report))
            if charts is not None:
                window = [d for d in date_range(_minus(report.ds, CHART_DAYS - 1), report.ds) if d in summaries]
                chart = render_day_chart(charts / f"{report.ds}.png", table, report, summaries, window, thresholds)
                metadata["chart"] = MetadataValue.path(str(chart))
                metadata["chart_url"] = MetadataValue.url(chart.resolve().as_uri())
            context.add_asset_metadata(metadata, partition_key=report.ds)
        summary: dict = {
            "table": table,
            "path": MetadataValue.path(store.table_path(table)),
            "partition_range": f"{start}..{end}",
            "summarized_table": source,
            "sample_percent": float(join.stats_sample_percent if percent is None else percent),
            "drift_reference": reference_text,
            "seconds": round(time.monotonic() - started, 2),
        }
        if charts is not None:
            summary["charts"] = MetadataValue.path(str(charts))
        return MaterializeResult(metadata=summary, check_results=stats_checks(reports))

    return daily_stats


def _minus(ds: str, days: int) -> str:
    return (date.fromisoformat(ds) - timedelta(days=days)).isoformat()


def _upload_asset(join: Join, logged: bool, partitions_def: PartitionsDefinition):
    table, source = upload_table(join, logged), stats_table(join, logged)
    description = (
        f"Online upload of `{source}`: per column and bucket, the mergeable summary bytes and counters; "
        f"`feature-assets load --table {table}` puts them into the online store."
    )
    return daily_upload_asset(join, table, source, asset_key(source), partitions_def, description, upload_frame)
