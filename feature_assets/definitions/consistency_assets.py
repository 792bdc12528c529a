"""Consistency assets of every join with `check_consistency=True` and a flattened log `_logged`:

`{join}_logged` -> `{join}_comparison` -> `{join}_consistency` -> `{join}_consistency_upload`.

- `{join}_comparison`: the join recomputed offline with its sampled logged requests as the left rows; it reads
  what the join's parts read (their group-bys' daily tables, or their source events and snapshots), which are
  upstream of it. The run tag `feature_assets/consistency_sample_percent` overrides the join's
  `consistency_sample_percent` (`consistency-metrics-compute --sample-percent`).
- `{join}_consistency`: per day, hour and feature column, the logged values against the comparison's (totals,
  nulls, mismatches, smape, differences); its check `consistency_drift` (`checks.consistency`) grades them by
  the join's thresholds.
- `{join}_consistency_upload`: the rows the online store holds (`feature-assets load --table ...`).

Their days follow `_logged`'s: they run through today.
"""

# No `from __future__ import annotations`: Dagster reads the asset bodies' annotations as types.
import time

from dagster import (
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
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
)

from feature_assets.checks.consistency import (
    consistency_check,
    consistency_check_spec,
    consistency_trend_check,
    consistency_trend_check_spec,
    report_metadata,
    trend_metadata,
)
from feature_assets.definitions.assets import add_rows_per_partition, asset_key, rows_per_day
from feature_assets.definitions.columns import DS, UNKNOWN_TYPE, definition_columns
from feature_assets.definitions.graph import BOOTSTRAP, JOIN_PART, LOGGED, Edge, Node
from feature_assets.definitions.upload_assets import daily_upload_asset
from feature_assets.model.configs import Join
from feature_assets.quality.comparison import RANK_BOUNDS_PREFIX, comparable_columns, identity_columns
from feature_assets.quality.consistency import ALL_COLUMNS, METRICS_SCHEMA, consistency_severity
from feature_assets.quality.consistency_tables import (
    compute_comparison,
    compute_consistency,
    consistency_thresholds,
    consistency_upload_table,
    upload_frame,
)
from feature_assets.quality.consistency_trend import consistency_trend, trailing_days
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import date_range

SAMPLE_PERCENT_TAG = "feature_assets/consistency_sample_percent"
CONSISTENCY_JOB = "compute_consistency"


def comparison_asset_key(join: Join) -> AssetKey:
    return asset_key(join.comparison_table)


def consistency_asset_key(join: Join) -> AssetKey:
    return asset_key(join.consistency_table)


def consistency_upload_asset_key(join: Join) -> AssetKey:
    return asset_key(consistency_upload_table(join))


def consistency_asset_keys(join: Join) -> list[AssetKey]:
    return [comparison_asset_key(join), consistency_asset_key(join), consistency_upload_asset_key(join)]


def consistency_joins(graph: dict[str, Node]) -> list[tuple[Join, Node]]:
    """(join, its `_logged` node) of every join checked for consistency that has a flattened log."""
    return [
        (node.join, node)
        for node in graph.values()
        if node.kind == LOGGED and node.join is not None and node.join.meta.check_consistency
    ]


def comparison_inputs(graph: dict[str, Node], join: Join) -> list[Edge]:
    """What the comparison reads besides the log: each part's inputs (a group-by's daily table, or source
    events or snapshots), each table once with the widest day offsets any part needs."""
    widest: dict[str, Edge] = {}
    for part in join.join_parts:
        node = graph.get(join.part_table(part))
        if node is None or node.kind != JOIN_PART:
            continue
        for edge in node.upstream:
            if graph.get(edge.table) is not None and graph[edge.table].kind == BOOTSTRAP:
                continue
            known = widest.get(edge.table)
            if known is not None:
                edge = Edge(
                    edge.table,
                    min(edge.start_offset, known.start_offset),
                    max(edge.end_offset, known.end_offset),
                    f"{known.description}; {edge.description}",
                )
            widest[edge.table] = edge
    return list(widest.values())


CONSISTENCY_COLUMN_DOCS = {
    "ts": "the bucket's start, epoch millis: the hour of the logged requests' ts",
    "column_name": f"the compared feature column (`{ALL_COLUMNS}`: every column of the hour together)",
    "comparison": "the column's equality rule: exact, float, approx_unique_count or approx_percentile",
    "total": "values compared (logged requests with a comparison row whose schema version served the column)",
    "both_null": "values null online and offline",
    "left_null": "values null online (served)",
    "right_null": "values null offline (recomputed)",
    "mismatch": "values that disagree: exactly one side null, or both set and unequal by the column's rule",
    "mismatch_rate": "mismatch / total",
    "both_present": "values set on both sides",
    "smape": "numeric columns: mean of 2|online - offline| / (|online| + |offline|) over both_present",
    "length_mismatch": "list columns: values whose lists differ in length",
    DS: "the day of the logged requests",
}


def _consistency_schema() -> TableSchema:
    def doc(name: str) -> str:
        if name.startswith("diff_p"):
            return f"numeric columns: the {name[6:]}th percentile of online - offline"
        if name.startswith("edit_distance_p"):
            return f"list columns: the {name[15:]}th percentile of the edit distance between the lists"
        return CONSISTENCY_COLUMN_DOCS[name]

    return TableSchema(
        columns=[TableColumn(f.name, f.dataType.simpleString(), doc(f.name)) for f in METRICS_SCHEMA.fields]
    )


def _comparison_schema(graph: dict[str, Node], join: Join) -> TableSchema:
    """The join output's identity and comparable columns (types and descriptions from the join's config), the
    rank bounds of approximate percentiles computed from events, and `ds`."""
    columns = {c.name: c for c in definition_columns(graph[join.output_table])}
    identity = identity_columns(join)
    features = comparable_columns(join, list(columns))
    bounds = [
        part.feature_prefix + spec.column_name
        for part in join.join_parts
        if not join.uses_snapshot_table(part) and not part.group_by.derivations
        for spec in part.group_by.specs
        if spec.operation == "APPROX_PERCENTILE"
    ]
    table = [
        TableColumn(name, columns[name].type if name in columns else UNKNOWN_TYPE, columns[name].description or None)
        for name in [*identity, *features]
        if name in columns
    ]
    table += [
        TableColumn(
            RANK_BOUNDS_PREFIX + name,
            UNKNOWN_TYPE,
            f"the exact offline values of `{name}` at p - eps and p + eps for each fraction p (eps: the sketch's "
            "rank error): where a served sketch answer may lie",
        )
        for name in bounds
        if name in features
    ]
    table.append(TableColumn(DS, "string", "the day of the logged requests"))
    return TableSchema(columns=table)


def _input_dependency(edge: Edge) -> AssetDep:
    # The comparison's days run through today, past the end of the feature tables' partitions: an upstream
    # day that is no partition is not an error (the log's days are compared with what exists).
    mapping = TimeWindowPartitionMapping(
        start_offset=edge.start_offset, end_offset=edge.end_offset, allow_nonexistent_upstream_partitions=True
    )
    return AssetDep(asset_key(edge.table), partition_mapping=mapping)


def consistency_assets(
    graph: dict[str, Node], log_partitions_def: PartitionsDefinition, blocking: bool = False
) -> list:
    """The three consistency assets of every checked join; `blocking`: the check stops downstream assets of the
    run when it fails with ERROR (see `checks.consistency`)."""
    assets = []
    for join, logged in consistency_joins(graph):
        inputs = [AssetDep(asset_key(logged.table))] + [_input_dependency(e) for e in comparison_inputs(graph, join)]
        assets += [
            _comparison_asset(join, inputs, log_partitions_def, _comparison_schema(graph, join)),
            _consistency_asset(join, log_partitions_def, blocking),
            _upload_asset(join, log_partitions_def),
        ]
    return assets


def consistency_jobs(graph: dict[str, Node]) -> list:
    keys = [key for join, _ in consistency_joins(graph) for key in consistency_asset_keys(join)]
    if not keys:
        return []
    return [
        define_asset_job(
            CONSISTENCY_JOB,
            selection=AssetSelection.assets(*keys),
            description="Recompute the joins' logged requests offline, compare them with the served values, "
            "grade the mismatches and write the upload tables",
        )
    ]


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


def _comparison_asset(join: Join, deps: list[AssetDep], partitions_def: PartitionsDefinition, schema: TableSchema):
    table = join.comparison_table

    @asset(
        key=asset_key(table),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=deps,
        group_name=join.table_name,
        kinds={"spark"},
        description=(
            f"`{join.name}` recomputed offline for {join.meta.consistency_sample_percent:g}% of its logged "
            f"requests (`{join.logged_table}`, the join's `consistency_sample_percent`, a deterministic hash "
            "sample): row ids, request keys, `ts`, every feature the offline engine computes (approximate "
            "percentiles with their sketch rank bounds) and `ds`. Nothing is read back from the log."
        ),
        metadata={
            "table": table,
            "config": join.name,
            "logged_table": join.logged_table,
            "dagster/column_schema": MetadataValue.table_schema(schema),
        },
    )
    def comparison(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        keys = context.partition_key_range
        start, end = keys.start, keys.end
        store = warehouse.get(spark.get_session())
        percent = _sample_percent(context)
        try:
            frame = compute_comparison(store, join, start, end, percent)
        except ValueError as error:
            raise Failure(str(error)) from None
        store.write_partitions(frame, table, start, end)
        rows = rows_per_day(store.read(table, start, end))
        add_rows_per_partition(context, date_range(start, end), rows)
        logged = rows_per_day(store.read(join.logged_table, start, end))
        return MaterializeResult(
            metadata={
                "table": table,
                "path": MetadataValue.path(store.table_path(table)),
                "partition_range": f"{start}..{end}",
                "range_rows": sum(rows.values()),
                "logged_rows": sum(logged.values()),
                "sample_percent": float(join.meta.consistency_sample_percent if percent is None else percent),
                "seconds": round(time.monotonic() - started, 2),
            }
        )

    return comparison


def _consistency_asset(join: Join, partitions_def: PartitionsDefinition, blocking: bool):
    table = join.consistency_table
    key = asset_key(table)
    thresholds = consistency_thresholds(join)

    @asset(
        key=key,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(comparison_asset_key(join)), AssetDep(asset_key(join.logged_table))],
        group_name=join.table_name,
        kinds={"spark"},
        description=(
            f"Online/offline consistency of `{join.name}`: per day, hour of the logged `ts` and feature column, "
            f"the served values of `{join.logged_table}` against the recomputed ones of `{join.comparison_table}`: "
            "values compared, nulls on either side, mismatches (by the column's equality rule: exact, float, or "
            "within the sketch bound of approximate aggregations), smape and percentiles of the differences; "
            f"`{ALL_COLUMNS}` rows sum every column."
        ),
        check_specs=[consistency_check_spec(key, blocking), consistency_trend_check_spec(key)],
        metadata={
            "table": table,
            "config": join.name,
            "consistency_thresholds": MetadataValue.json(thresholds.__dict__),
            "dagster/column_schema": MetadataValue.table_schema(_consistency_schema()),
        },
    )
    def consistency(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        keys = context.partition_key_range
        start, end = keys.start, keys.end
        store = warehouse.get(spark.get_session())
        try:
            metrics = compute_consistency(store, join, start, end)
        except ValueError as error:
            raise Failure(str(error)) from None
        store.write_partitions(metrics, table, start, end)
        # A row per (day, hour, column), from the week before the range on: each day's trailing week.
        history = [row.asDict() for row in store.read(table, trailing_days(start)[0], end).collect()]
        rows = [row for row in history if row["ds"] >= start]
        per_day = {ds: [row for row in rows if row["ds"] == ds] for ds in date_range(start, end)}
        reports = {ds: consistency_severity(day_rows, thresholds) for ds, day_rows in per_day.items()}
        trends = {}
        for ds, report in reports.items():
            first, last = trailing_days(ds)
            trailing = [row for row in history if first <= row["ds"] <= last]
            trends[ds] = consistency_trend(ds, per_day[ds], trailing, join.drift_thresholds)
            metadata: dict = {"dagster/row_count": len(per_day[ds]), **report_metadata(report)}
            metadata.update(trend_metadata(trends[ds]))
            metadata["consistency"] = report.level
            context.add_asset_metadata(metadata, partition_key=ds)
        overall = consistency_severity(rows, thresholds)
        return MaterializeResult(
            metadata={
                "table": table,
                "path": MetadataValue.path(store.table_path(table)),
                "partition_range": f"{start}..{end}",
                "range_rows": len(rows),
                "consistency": overall.level,
                "summary": overall.description,
                "seconds": round(time.monotonic() - started, 2),
            },
            check_results=[consistency_check(overall, thresholds, reports), consistency_trend_check(trends)],
        )

    return consistency


def _upload_asset(join: Join, partitions_def: PartitionsDefinition):
    table, source = consistency_upload_table(join), join.consistency_table
    description = (
        f"Online upload of `{source}`: per feature column and hour, its consistency metrics; "
        f"`feature-assets load --table {table}` puts them into the online store, `feature-assets fetch "
        f"--type join-consistency --name {join.name}` reads them back."
    )
    return daily_upload_asset(
        join, table, source, consistency_asset_key(join), partitions_def, description, upload_frame
    )
