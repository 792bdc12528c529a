"""API objects -> plain JSON-ready dicts (camelCase keys, like Chronon's thrift JSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from feature_assets.api import (
    BootstrapPart,
    EntitySource,
    EventSource,
    ExternalPart,
    GroupBy,
    Join,
    JoinSource,
    Query,
    StagingQuery,
)
from feature_assets.api.sources import unwrap_source

# Version of the compiled JSON layout; bump when the layout changes incompatibly.
SCHEMA_VERSION = 1


def query_dict(query: Query) -> dict:
    return {
        "selects": query.selects,
        "wheres": query.wheres,
        "startPartition": query.start_partition,
        "endPartition": query.end_partition,
        "timeColumn": query.time_column,
        "setups": query.setups,
        "mutationTimeColumn": query.mutation_time_column,
        "reversalColumn": query.reversal_column,
    }


def source_dict(source: Any, join_of: Callable[[Any], dict]) -> dict:
    source = unwrap_source(source)
    if isinstance(source, EventSource):
        return {
            "events": {
                "table": source.table,
                "topic": source.topic,
                "isCumulative": source.is_cumulative,
                "query": query_dict(source.query),
            }
        }
    if isinstance(source, EntitySource):
        return {
            "entities": {
                "snapshotTable": source.snapshot_table,
                "mutationTable": source.mutation_table,
                "mutationTopic": source.mutation_topic,
                "query": query_dict(source.query),
            }
        }
    if isinstance(source, JoinSource):
        return {"joinSource": {"join": join_of(source.join), "query": query_dict(source.query)}}
    raise TypeError(f"unknown source type {type(source).__name__}")


def team_of(name: str, explicit: str | None) -> str:
    return explicit or name.split(".")[0]


def meta_data(obj: Any, name: str, source_file: str) -> dict:
    meta = {
        "name": name,
        "team": team_of(name, getattr(obj, "team", None)),
        "outputNamespace": getattr(obj, "output_namespace", None) or "default",
        "online": bool(getattr(obj, "online", False)),
        "production": bool(getattr(obj, "production", False)),
        "sourceFile": source_file,
        "tableProperties": getattr(obj, "table_properties", {}) or {},
        "dependencies": getattr(obj, "dependencies", []) or [],
        "schemaVersion": SCHEMA_VERSION,
    }
    # Set only when given, so configs that leave them at their defaults compile to the same JSON as before.
    if getattr(obj, "offline_schedule", None):
        meta["offlineSchedule"] = obj.offline_schedule
    if getattr(obj, "tags", None):
        meta["tags"] = dict(obj.tags)
    return meta


def group_by_dict(group_by: GroupBy, name: str, source_file: str, join_of: Callable[[Any], dict]) -> dict:
    aggregations = None
    if group_by.aggregations:
        aggregations = [
            {
                "inputColumn": agg.input_column,
                "operation": agg.operation.name if agg.operation is not None else None,
                "argMap": agg.operation.arg_map if agg.operation is not None else {},
                "windows": [{"length": w.length, "timeUnit": w.time_unit.value} for w in agg.windows],
                "buckets": agg.buckets,
                **({"tags": dict(agg.tags)} if agg.tags else {}),
            }
            for agg in group_by.aggregations
        ]
    return {
        "metaData": meta_data(group_by, name, source_file),
        "sources": [source_dict(s, join_of) for s in group_by.sources],
        "keyColumns": group_by.keys,
        "aggregations": aggregations,
        "accuracy": group_by.accuracy.value,
        "backfillStartDate": group_by.backfill_start_date,
        "derivations": [{"name": d.name, "expression": d.expression} for d in group_by.derivations],
    }


def external_part_dict(part: ExternalPart) -> dict:
    source = part.source
    return {
        "source": {
            "name": source.name,
            "team": source.team,
            "keyFields": [[n, t] for n, t in source.key_fields],
            "valueFields": [[n, t] for n, t in source.value_fields],
            "customJson": source.custom_json,
        },
        "keyMapping": part.key_mapping,
        "prefix": part.prefix,
    }


def bootstrap_part_dict(part: BootstrapPart, row_ids: list[str]) -> dict:
    table = part.table if "." in part.table else f"default.{part.table}"
    return {"table": table, "query": query_dict(part.query), "keyColumns": part.key_columns or row_ids}


def join_dict(
    join: Join, name: str, source_file: str, group_by_of: Callable[[Any], dict], join_of: Callable[[Any], dict]
) -> dict:
    meta = {
        **meta_data(join, name, source_file),
        "samplePercent": join.sample_percent,
        "consistencySamplePercent": join.consistency_sample_percent,
    }
    if join.check_consistency is not None:
        meta["consistencyCheck"] = bool(join.check_consistency)
    # Stats settings only when given: joins at the defaults compile to the same JSON as before.
    if join.stats_sample_percent is not None:
        meta["statsSamplePercent"] = join.stats_sample_percent
    if join.drift_reference is not None:
        meta["driftReference"] = join.drift_reference
    if join.drift_thresholds is not None:
        meta["driftThresholds"] = join.drift_thresholds
    if join.consistency_thresholds is not None:
        meta["consistencyThresholds"] = join.consistency_thresholds
    return {
        "metaData": meta,
        "left": source_dict(join.left, join_of),
        "joinParts": [
            {
                "groupBy": group_by_of(part.group_by),
                "keyMapping": part.key_mapping,
                "prefix": part.prefix,
                **({"tags": dict(part.tags)} if part.tags else {}),
            }
            for part in join.right_parts
        ],
        "rowIds": join.row_ids,
        "bootstrapParts": [bootstrap_part_dict(p, join.row_ids) for p in join.bootstrap_parts],
        "bootstrapFromLog": join.bootstrap_from_log,
        "onlineExternalParts": [external_part_dict(p) for p in join.online_external_parts],
        "derivations": [{"name": d.name, "expression": d.expression} for d in join.derivations],
    }


def staging_query_dict(staging_query: StagingQuery, name: str, source_file: str) -> dict:
    return {
        "metaData": meta_data(staging_query, name, source_file),
        "query": staging_query.query,
        "startPartition": staging_query.start_partition,
        "setups": staging_query.setups,
        "partitionColumn": staging_query.partition_column,
    }
