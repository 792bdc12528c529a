"""Asset factories: one daily-partitioned Dagster asset per node of the compiled repo's graph.

Asset bodies only orchestrate: they call the engine for a DataFrame and the warehouse to write it,
then report metadata and check results. A range of days runs as one Spark job (single-run backfills).
"""

# No `from __future__ import annotations`: Dagster reads the asset bodies' annotations as types.
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    TableColumn,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.checks import schemas
from feature_assets.definitions.columns import definition_columns, describe_columns, expected_columns
from feature_assets.definitions.graph import BOOTSTRAP, GROUP_BY, JOIN, JOIN_PART, SOURCE, STAGING_QUERY, Edge, Node
from feature_assets.model.configs import GroupBy, Join, StagingQuery
from feature_assets.offline.bootstrap import write_bootstrap_table
from feature_assets.offline.group_by import snapshot_backfill
from feature_assets.offline.join import read_left, write_join_output, write_join_part
from feature_assets.offline.staging_query import run_staging_query
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import Warehouse, date_range

SCHEMA_CHECK = "schema"
ROW_COUNT_CHECK = "one_row_per_left_row"
ROW_ID_CHECK = "unique_row_ids"
PARTITIONS_CHECK = "partitions_present"


def asset_key(table: str) -> AssetKey:
    return AssetKey(table.split(".", 1))


def dependency(edge: Edge) -> AssetDep:
    mapping = None
    if (edge.start_offset, edge.end_offset) != (0, 0):
        mapping = TimeWindowPartitionMapping(
            start_offset=edge.start_offset, end_offset=edge.end_offset, allow_nonexistent_upstream_partitions=True
        )
    return AssetDep(asset_key(edge.table), partition_mapping=mapping)


def _range(context: AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key_range
    return keys.start, keys.end


def _table_schema(node: Node, frame: DataFrame | None = None) -> TableSchema:
    """The column schema, described from the configs: of the written data (its columns and types), or, on the
    asset's definition before any run, the columns and the types its config decides."""
    if frame is None:
        columns = [TableColumn(c.name, c.type, c.description or None) for c in definition_columns(node)]
        return TableSchema(columns=columns)
    docs = describe_columns(node)
    return TableSchema(
        columns=[TableColumn(f.name, f.dataType.simpleString(), docs.get(f.name)) for f in frame.schema.fields]
    )


def rows_per_day(frame: DataFrame) -> dict[str, int]:
    """Rows per `ds` of a frame; days without rows are absent."""
    return {row["ds"]: row["count"] for row in frame.groupBy("ds").count().collect()}


def add_rows_per_partition(context: AssetExecutionContext, days: list[str], rows: dict[str, int]) -> None:
    """Give each day's materialization its own row count (the range's metadata is shared by all its days)."""
    for ds in days:
        context.add_asset_metadata({"dagster/row_count": rows.get(ds, 0)}, partition_key=ds)


def written_result(
    warehouse: Warehouse,
    node: Node,
    start: str,
    end: str,
    started: float,
    expected: schemas.ExpectedColumns,
    extra_metadata: dict | None = None,
    extra_checks: Callable[[DataFrame, dict[str, int]], list[AssetCheckResult]] | None = None,
) -> MaterializeResult:
    """Metadata and check results for the just-written range, read back from the warehouse.

    Each day's materialization gets that day's own row count (`dagster/row_count`, the UI's "Row count");
    the range as a whole is described under other names (`range_rows`, `partition_range`).
    """
    frame = warehouse.read(node.table, start, end)
    rows = rows_per_day(frame)
    add_rows_per_partition(AssetExecutionContext.get(), date_range(start, end), rows)
    passed, schema_metadata = schemas.validate_schema(frame, node.table, expected)
    checks = [AssetCheckResult(check_name=SCHEMA_CHECK, passed=passed, metadata=schema_metadata)]
    if extra_checks:
        checks += extra_checks(frame, rows)
    metadata: dict[str, Any] = {
        "range_rows": sum(rows.values()),
        "dagster/column_schema": _table_schema(node, frame),
        "table": node.table,
        "path": MetadataValue.path(warehouse.table_path(node.table)),
        "partition_range": f"{start}..{end}",
        "days": len(date_range(start, end)),
        "empty_days": [ds for ds in date_range(start, end) if not rows.get(ds)],
        "seconds": round(time.monotonic() - started, 2),
    }
    metadata.update(extra_metadata or {})
    return MaterializeResult(metadata=metadata, check_results=checks)


def _check_specs(node: Node, names: list[tuple[str, str]]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=asset_key(node.table), description=description) for name, description in names]


SnapshotTableOf = Callable[[GroupBy], str]


def build_asset(
    node: Node, partitions_def: PartitionsDefinition, snapshot_table_of: SnapshotTableOf, partitions_note: str = ""
):
    """The Dagster asset for one node; `partitions_note` says where the first day comes from."""
    builders = {
        SOURCE: _source_asset,
        STAGING_QUERY: _staging_query_asset,
        GROUP_BY: _group_by_asset,
        BOOTSTRAP: _bootstrap_asset,
        JOIN_PART: _join_part_asset,
        JOIN: _join_asset,
    }
    return builders[node.kind](node, _Partitioning(partitions_def, partitions_note), snapshot_table_of)


@dataclass(frozen=True)
class _Partitioning:
    """The daily partitions every asset shares, and the note on how their first day was chosen."""

    definition: PartitionsDefinition
    note: str = ""


def _common(
    node: Node, partitioning: _Partitioning, description: str, checks: list[tuple[str, str]], kinds: set[str]
) -> dict:
    metadata: dict = {"table": node.table}
    if node.config is not None:
        metadata["config"] = node.name
    if node.upstream:
        metadata["upstream"] = MetadataValue.md(
            "\n".join(f"- `{e.table}`: {e.description} (days {e.start_offset}..{e.end_offset})" for e in node.upstream)
        )
    if partitioning.note:
        metadata["partitions_start"] = partitioning.note
    metadata["dagster/column_schema"] = MetadataValue.table_schema(_table_schema(node))
    return dict(
        key=asset_key(node.table),
        partitions_def=partitioning.definition,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[dependency(edge) for edge in node.upstream],
        group_name=node.group,
        kinds=kinds,
        description=description,
        check_specs=_check_specs(node, checks),
        metadata=metadata,
    )


def _source_asset(node: Node, partitioning: _Partitioning, _):
    expected: schemas.ExpectedColumns = {}
    for source in node.readers:
        expected.update(schemas.source_table_columns(source))
    expected.setdefault("ds", None)

    @asset(
        **_common(
            node,
            partitioning,
            f"Source table `{node.table}`, brought by its owners. Materializing a "
            "day verifies the partition exists and records its rows and schema.",
            [(SCHEMA_CHECK, "the columns that configs read exist")],
            {"parquet", "spark"},
        )
    )
    def source_table(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        store = warehouse.get(spark.get_session())
        present = set(store.partitions(node.table))
        missing = [ds for ds in date_range(start, end) if ds not in present]
        if missing and node.optional and not present:
            context.log.info(f"{node.table} does not exist yet; readers treat it as empty")
            return MaterializeResult(
                metadata={"table": node.table, "dagster/row_count": 0, "exists": False},
                check_results=[
                    AssetCheckResult(check_name=SCHEMA_CHECK, passed=True, metadata={"note": "table not created yet"})
                ],
            )
        if missing and not node.optional:
            raise Failure(
                f"source table {node.table!r} has no partition for {len(missing)} day(s): {missing[:10]} "
                f"(looked in {store.table_path(node.table)})"
            )
        if missing:  # a log table's day not dumped: nothing logged to stitch, the readers compute those rows
            context.log.warning(f"{node.table} has no partition for {missing[:10]}; readers treat them as empty")
        extra = {"days_without_partition": missing} if missing else None
        return written_result(store, node, start, end, started, expected, extra_metadata=extra)

    return source_table


def _staging_query_asset(node: Node, partitioning: _Partitioning, _):
    config = node.config
    assert isinstance(config, StagingQuery)

    @asset(
        **_common(
            node,
            partitioning,
            f"Staging query `{node.name}`: Spark SQL with date macros.",
            [(SCHEMA_CHECK, "has the ds partition column")],
            {"spark"},
        )
    )
    def staging_query(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        store = warehouse.get(spark.get_session())
        store.write_partitions(run_staging_query(store, config, start, end), node.table, start, end)
        return written_result(store, node, start, end, started, {"ds": None})

    return staging_query


def _group_by_asset(node: Node, partitioning: _Partitioning, _):
    group_by = node.config
    assert isinstance(group_by, GroupBy)
    expected = schemas.group_by_table_columns(group_by)

    @asset(
        **_common(
            node,
            partitioning,
            f"Group-by `{node.name}` ({group_by.accuracy}): one row per key per "
            "day with the values as of the end of that day.",
            [(SCHEMA_CHECK, "keys and feature columns with their types")],
            {"spark"},
        )
    )
    def group_by_backfill(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        store = warehouse.get(spark.get_session())
        store.write_partitions(snapshot_backfill(store, group_by, start, end), node.table, start, end)
        return written_result(store, node, start, end, started, expected)

    return group_by_backfill


def _bootstrap_asset(node: Node, partitioning: _Partitioning, _):
    join = node.join
    assert join is not None
    sources = join.bootstrap_sources
    priority = (
        "\n".join(f"{s.priority}. `{s.table}`" + (" (log, always lowest)" if s.is_log else "") for s in sources)
        or "no bootstrap parts: the left rows as they are, every coverage flag false"
    )
    expected = expected_columns(node)  # left columns, one boolean coverage flag per part, ds

    @asset(
        **_common(
            node,
            partitioning,
            f"Bootstrap step of `{node.name}`: the left rows and, per join part, whether "
            "precomputed feature values cover them (the values, first non-null by priority, are joined "
            f"into the output):\n\n{priority}",
            [(SCHEMA_CHECK, "left columns and coverage flags")],
            {"spark"},
        )
    )
    def bootstrap(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        store = warehouse.get(spark.get_session())
        left = read_left(store, join, start, end)
        info = write_bootstrap_table(store, join, left, node.table, start, end)
        return written_result(
            store,
            node,
            start,
            end,
            started,
            expected,
            {
                "bootstrap_priority": [s.table for s in sources],
                "columns_by_source": MetadataValue.json(info["provided_by"]),
                "covered_rows_by_part": MetadataValue.json(info["covered_rows_by_part"]),
            },
        )

    return bootstrap


def _join_part_asset(node: Node, partitioning: _Partitioning, snapshot_table_of: SnapshotTableOf):
    join, part = node.join, node.part
    assert join is not None and part is not None
    expected = schemas.join_part_table_columns(join, part)

    @asset(
        **_common(
            node,
            partitioning,
            f"Join part of `{join.name}`: the features of "
            f"`{part.group_by.name}` for each distinct ({'row ids, ' if join.row_ids else ''}keys, ts) of the "
            "left rows that bootstrap does not cover.",
            [(SCHEMA_CHECK, f"{'row ids, ' if join.row_ids else ''}keys, ts and prefixed features with their types")],
            {"spark"},
        )
    )
    def join_part(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        store = warehouse.get(spark.get_session())
        enriched = store.read(join.bootstrap_table, start, end)

        def read_daily_table(group_by: GroupBy, first: str, last: str) -> DataFrame:
            return store.read(snapshot_table_of(group_by), first, last)

        stats = write_join_part(
            store, join, part, enriched, node.table, start, end, read_daily_table, stored_as=join.bootstrap_table
        )
        return written_result(
            store,
            node,
            start,
            end,
            started,
            expected,
            {
                "left_rows": stats["left_rows"],
                "rows_computed": stats["rows_computed"],
                "rows_from_bootstrap": stats["left_rows"] - stats["rows_computed"],
                "days_computed": stats["days_computed"],
            },
        )

    return join_part


def _join_checks(join: Join, left_rows: dict[str, int], start: str, end: str):
    """The row-count check (one output row per left row) and, with row ids, the unique-id check."""

    def checks(frame: DataFrame, rows: dict[str, int]) -> list[AssetCheckResult]:
        mismatched = {
            ds: {"left": left_rows.get(ds, 0), "output": rows.get(ds, 0)}
            for ds in date_range(start, end)
            if left_rows.get(ds, 0) != rows.get(ds, 0)
        }
        results = [
            AssetCheckResult(
                check_name=ROW_COUNT_CHECK,
                passed=not mismatched,
                metadata={"mismatched_days": mismatched, "left_rows": sum(left_rows.values())},
            )
        ]
        if join.row_ids:
            duplicates = frame.groupBy(*join.row_ids).count().where(F.col("count") > 1).limit(5).collect()
            results.append(
                AssetCheckResult(
                    check_name=ROW_ID_CHECK,
                    passed=not duplicates,
                    metadata={"duplicate_sample": [str(row.asDict()) for row in duplicates]},
                )
            )
        return results

    return checks


def _join_asset(node: Node, partitioning: _Partitioning, _):
    join = node.config
    assert isinstance(join, Join)
    part_tables = [join.part_table(part) for part in join.join_parts]
    expected = schemas.join_output_columns(join)
    checks = [
        (SCHEMA_CHECK, "left columns, features and derivations with their types"),
        (ROW_COUNT_CHECK, "every left row appears exactly once in its day"),
    ]
    if join.row_ids:
        checks.append((ROW_ID_CHECK, f"no duplicate row ids ({', '.join(join.row_ids)})"))

    @asset(
        **_common(
            node,
            partitioning,
            f"Join `{node.name}`: the left rows with point-in-time correct features from every join part.",
            checks,
            {"spark"},
        )
    )
    def join_output(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        store = warehouse.get(spark.get_session())
        flagged = store.read(join.bootstrap_table, start, end)
        stored = [(part, store.read(table, start, end)) for part, table in zip(join.join_parts, part_tables)]
        write_join_output(store, join, flagged, stored, node.table, start, end)
        left_rows = rows_per_day(flagged)
        return written_result(
            store,
            node,
            start,
            end,
            started,
            expected,
            {"left_rows": sum(left_rows.values()), "join_parts": part_tables},
            _join_checks(join, left_rows, start, end),
        )

    return join_output


def snapshot_table_name(group_by: GroupBy) -> str:
    """The daily table a join part reads: the group-by's own output table."""
    return group_by.output_table
