"""Fetch log assets: the raw log table (a dump of the log store) and each join's flattened log `_logged`.

- `default/chronon_log_table` (daily): the records the online logger wrote for the day, from the MongoDB
  collection `fetch_log` (default) or, in a run tagged `feature_assets/log_source=kafka`, the Kafka topic
  (`feature_assets/log_topic`, default `fetch_log`). Refilling a day gives the same rows.
- `{join}_logged` (daily): the join's logged rows decoded with the schema table's schemas (see
  `offline.log_tables`); upstream of the join's `_bootstrap` when the join bootstraps from its log. Besides
  the schema check, a schema-change check warns when its columns differ from the previous materialization's
  (a new schema version added or removed fields).

Backfill jobs never include the log dump (it reads the live log store): `log-dump` or the `dump_fetch_log`
job runs it.
"""

# No `from __future__ import annotations`: Dagster reads the asset bodies' annotations as types.
import time

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSelection,
    Failure,
    asset,
    define_asset_job,
)
from pyspark.sql import DataFrame

from feature_assets.definitions.assets import (
    SCHEMA_CHECK,
    _common,
    _Partitioning,
    _range,
    _source_asset,
    asset_key,
    snapshot_table_name,
    written_result,
)
from feature_assets.definitions.columns import expected_columns
from feature_assets.definitions.graph import LOG_TABLE, LOGGED, SOURCE, Node
from feature_assets.model.logs import LOG_COLLECTION, LOG_TOPIC, RAW_LOG_TABLE
from feature_assets.offline.log_tables import (
    LogSchemaConflict,
    UnsupportedLogSchema,
    dump_log,
    flatten_log,
    kafka_log_records,
    log_rows,
    mongo_log_records,
)
from feature_assets.resources.kafka import KafkaResource
from feature_assets.resources.mongo import MongoResource
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource
from feature_assets.storage import PARTITION_COLUMN

LOG_SOURCE_TAG = "feature_assets/log_source"  # mongo (default) or kafka
LOG_TOPIC_TAG = "feature_assets/log_topic"
LOG_TABLE_TAG = "feature_assets/log_table"  # the flattener's inputs, when not the graph's
SCHEMA_TABLE_TAG = "feature_assets/schema_table"
LOG_SOURCES = ("mongo", "kafka")
SCHEMA_CHANGE_CHECK = "schema_unchanged"
DUMP_JOB = "dump_fetch_log"
FLATTEN_JOB = "flatten_fetch_logs"
KAFKA_GROUP = "log-dump"
MAX_MALFORMED_SHOWN = 5


def build_log_asset(node: Node, partitioning: _Partitioning, with_store: bool):
    """The asset of a log node; without the online store's resources the log table is checked as a source."""
    if node.kind == LOG_TABLE:
        if not with_store:
            return _source_asset(Node(node.table, SOURCE, node.team, optional=True), partitioning, snapshot_table_name)
        return _log_table_asset(node, partitioning)
    return _logged_asset(node, partitioning)


def log_jobs(graph: dict[str, Node], with_store: bool) -> list:
    """The dump job (the log table) and the flatten job (every `_logged`)."""
    jobs = []
    if with_store and RAW_LOG_TABLE in graph:
        jobs.append(
            define_asset_job(
                DUMP_JOB,
                selection=AssetSelection.assets(asset_key(RAW_LOG_TABLE)),
                description=f"Dump the fetch log store's days into {RAW_LOG_TABLE}",
            )
        )
    logged = [asset_key(node.table) for node in graph.values() if node.kind == LOGGED]
    if logged:
        jobs.append(
            define_asset_job(
                FLATTEN_JOB,
                selection=AssetSelection.assets(*logged),
                description="Decode the joins' logged fetches into their `_logged` tables",
            )
        )
    return jobs


def _log_table_asset(node: Node, partitioning: _Partitioning):
    expected = expected_columns(node)

    @_asset(
        node,
        partitioning,
        f"Raw fetch log `{node.table}`: the records the online logger wrote (MongoDB collection `{LOG_COLLECTION}`, "
        f"or the Kafka topic `{LOG_TOPIC}` with the run tag `{LOG_SOURCE_TAG}=kafka`), one row per logged fetch "
        "and per published schema. Refilling a day gives the same rows.",
        [(SCHEMA_CHECK, "the log record columns with their types")],
        {"mongodb", "kafka", "spark"},
    )
    def log_table(
        context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource, mongo: MongoResource
    ):
        started = time.monotonic()
        start, end = _range(context)
        source = context.run.tags.get(LOG_SOURCE_TAG, "mongo")
        if source not in LOG_SOURCES:
            raise Failure(f"run tag {LOG_SOURCE_TAG}={source!r}: expected one of {', '.join(LOG_SOURCES)}")
        if source == "kafka":
            topic = context.run.tags.get(LOG_TOPIC_TAG, LOG_TOPIC)
            kafka = KafkaResource.from_environment()
            records = kafka_log_records(kafka.consumer_config(KAFKA_GROUP), topic, start, end)
            origin = f"kafka topic {topic}"
        else:
            records = mongo_log_records(mongo.get_database(), LOG_COLLECTION, start, end)
            origin = f"mongodb {mongo.database}.{LOG_COLLECTION}"
        rows = log_rows(records)
        store = warehouse.get(spark.get_session())
        dump_log(store, rows, node.table, start, end)
        for problem in rows.malformed[:MAX_MALFORMED_SHOWN]:
            context.log.warning(f"skipped a malformed log record: {problem}")
        return written_result(
            store,
            node,
            start,
            end,
            started,
            expected,
            {
                "log_source": origin,
                "records_read": len(records),
                "duplicate_records": rows.duplicates,
                "malformed_records": len(rows.malformed),
            },
        )

    return log_table


def _logged_asset(node: Node, partitioning: _Partitioning):
    join = node.join
    assert join is not None
    log_edge, schema_edge = node.upstream
    expected = expected_columns(node)

    @_asset(
        node,
        partitioning,
        f"Flattened fetch log of `{join.name}`: its logged rows decoded with the schemas of "
        f"`{schema_edge.table}`; `schema_hash`, `ts`, a column per key, contextual and value field of every schema "
        "version seen, `_absent_fields` (fields the row's version lacked: holes for bootstrap) and `ds`. "
        "Undecodable rows are dropped and counted.",
        [
            (SCHEMA_CHECK, "schema_hash, ts, _absent_fields and ds"),
            (SCHEMA_CHANGE_CHECK, "warns when the columns differ from the previous materialization's"),
        ],
        {"spark"},
    )
    def logged(context: AssetExecutionContext, spark: SparkResource, warehouse: WarehouseResource):
        started = time.monotonic()
        start, end = _range(context)
        log_table = context.run.tags.get(LOG_TABLE_TAG, log_edge.table)
        schema_table = context.run.tags.get(SCHEMA_TABLE_TAG, schema_edge.table)
        store = warehouse.get(spark.get_session())
        try:
            flattened = flatten_log(store, join, log_table, schema_table, start, end)
        except (LogSchemaConflict, UnsupportedLogSchema) as error:
            raise Failure(str(error)) from error
        store.write_partitions(flattened.frame, node.table, start, end)
        flattened.release()
        previous = _previous_columns(context, node)
        return written_result(
            store,
            node,
            start,
            end,
            started,
            expected,
            {
                "log_table": log_table,
                "schema_table": schema_table,
                "schema_hashes": flattened.schema_hashes,
                "logged_columns": [f"{name} {data_type}" for name, data_type in flattened.columns],
                "undecodable_rows": flattened.undecodable_rows,
                "undecodable_by_reason": flattened.undecodable,
                "undecodable_by_day": flattened.undecodable_by_day,
                "columns": _columns(flattened.frame),
            },
            lambda frame, rows: [_schema_change(frame, previous)],
        )

    return logged


def _asset(node: Node, partitioning: _Partitioning, description: str, checks: list, kinds: set):
    return asset(**_common(node, partitioning, description, checks, kinds))


def _previous_columns(context: AssetExecutionContext, node: Node) -> list[str] | None:
    """The columns of the asset's latest materialization before this run, if it has one."""
    event = context.instance.get_latest_materialization_event(asset_key(node.table))
    materialization = event.asset_materialization if event is not None else None
    if materialization is None or "columns" not in materialization.metadata:
        return None
    value = materialization.metadata["columns"].value
    return list(value) if isinstance(value, list) else None


def _columns(frame: DataFrame) -> list[str]:
    """`name type` of each column, as the table is written (`ds` last)."""
    fields = [f for f in frame.schema.fields if f.name != PARTITION_COLUMN]
    return [f"{f.name} {f.dataType.simpleString()}" for f in fields] + [f"{PARTITION_COLUMN} string"]


def _schema_change(frame: DataFrame, previous: list[str] | None) -> AssetCheckResult:
    columns = _columns(frame)
    added = [c for c in columns if previous is not None and c not in previous]
    removed = [c for c in previous or [] if c not in columns]
    return AssetCheckResult(
        check_name=SCHEMA_CHANGE_CHECK,
        passed=not added and not removed,
        severity=AssetCheckSeverity.WARN,
        metadata={"columns": columns, "added": added, "removed": removed, "first_materialization": previous is None},
    )
