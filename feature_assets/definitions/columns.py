"""What each column of an asset's table means, written from the config that writes or reads the table.

Plain data (no Dagster here): the asset factories put it in Dagster's column schema, on the asset definition
(so the UI shows it before any run, with the types the configs decide) and on every materialization (with the
types of the written data).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from feature_assets.checks import schemas
from feature_assets.compiler.validate import referenced_columns
from feature_assets.definitions.graph import BOOTSTRAP, GROUP_BY, JOIN, JOIN_PART, LOG_TABLE, LOGGED, SOURCE, Node
from feature_assets.model.configs import Aggregation, Derivation, GroupBy, Join, JoinPart, Window
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN
from feature_assets.offline.log_tables import LOG_TABLE_SCHEMA

DS = "ds"
UNKNOWN_TYPE = "unknown"  # decided by the data, not the config: known once the table is materialized
Docs = dict[str, str]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


def describe_columns(node: Node) -> Docs:
    """Column name -> description for a node's table (every column the configs say something about)."""
    describe = {
        SOURCE: _source_docs,
        GROUP_BY: lambda n: _group_by_docs(n.config),
        BOOTSTRAP: lambda n: _bootstrap_docs(n.join),
        JOIN_PART: lambda n: _part_docs(n.join, n.part),
        JOIN: lambda n: _join_docs(n.join),
        LOG_TABLE: lambda n: LOG_TABLE_DOCS,
        LOGGED: lambda n: LOGGED_DOCS,
    }.get(node.kind)
    docs = describe(node) if describe is not None else {}
    docs.setdefault(DS, "partition day (YYYY-MM-DD, UTC)")
    return docs


def expected_columns(node: Node) -> schemas.ExpectedColumns:
    """The columns a node's table has by its config, with the types the config decides (as its schema check)."""
    if node.kind == SOURCE:
        expected: schemas.ExpectedColumns = {}
        for source in node.readers:
            expected.update(schemas.source_table_columns(source))
        return expected
    if node.kind == GROUP_BY and isinstance(node.config, GroupBy):
        return schemas.group_by_table_columns(node.config)
    if node.kind == BOOTSTRAP and node.join is not None:
        join = node.join
        flags = {join.coverage_column(part): T.BooleanType() for part in join.join_parts}  # without parts: false
        return {**schemas.left_columns(join), **flags, DS: T.StringType()}
    if node.kind == JOIN_PART and node.join is not None and node.part is not None:
        return schemas.join_part_table_columns(node.join, node.part)
    if node.kind == JOIN and node.join is not None:
        return schemas.join_output_columns(node.join)
    if node.kind == LOG_TABLE:
        return {f.name: f.dataType for f in LOG_TABLE_SCHEMA.fields}
    if node.kind == LOGGED:
        return {
            SCHEMA_HASH_COLUMN: T.StringType(),
            "ts": T.LongType(),
            ABSENT_FIELDS_COLUMN: T.ArrayType(T.StringType()),
            DS: T.StringType(),
        }
    return {DS: T.StringType()}


def definition_columns(node: Node) -> list[Column]:
    """The columns known before any run: names and types from the config, descriptions."""
    docs = describe_columns(node)
    return [
        Column(name, data_type.simpleString() if data_type is not None else UNKNOWN_TYPE, docs.get(name, ""))
        for name, data_type in expected_columns(node).items()
    ]


# --------------------------------------------------------------------------- fetch logs

LOG_TABLE_DOCS: Docs = {
    "schema_hash": "base64 MD5 of the schema JSON the key and value bytes were written with",
    "key_base64": "base64 Avro binary of the request's keys and contextual fields (a schema record: its hash)",
    "value_base64": "base64 Avro binary of the served values (a schema record: the schema JSON)",
    "ts_millis": "request time, epoch milliseconds",
    "name": "the join's name, or SCHEMA_PUBLISH_EVENT for a schema record",
}
LOGGED_DOCS: Docs = {
    SCHEMA_HASH_COLUMN: "the schema version the row was logged with",
    "ts": "request time, epoch milliseconds",
    ABSENT_FIELDS_COLUMN: "fields of this table the row's schema version did not have (holes bootstrap fills)",
}


# --------------------------------------------------------------------------- sources


def _source_docs(node: Node) -> Docs:
    uses: dict[str, list[str]] = {}
    for config_name, source in node.reads:
        query = source.query
        for alias, expression in (query.selects or {}).items():
            use = f"selected as `{alias}`" if expression.strip("`") == alias else f"in `{alias}` = `{expression}`"
            for column in referenced_columns(expression):
                uses.setdefault(column, []).append(f"{use} by {config_name}")
        if query.time_column:
            for column in referenced_columns(query.time_column):
                uses.setdefault(column, []).append(f"event time of {config_name} (its time_column)")
        for condition in query.wheres:
            for column in referenced_columns(condition):
                uses.setdefault(column, []).append(f"filtered by `{condition}` in {config_name}")
    return {column: "; ".join(dict.fromkeys(found)) for column, found in uses.items()}


# --------------------------------------------------------------------------- group-bys


def window_text(window: Window | None) -> str:
    if window is None:
        return "over all history"
    unit = "hour" if window.time_unit == "HOURS" else "day"
    return f"over {window.length} {unit}{'s' if window.length != 1 else ''}"


def aggregation_text(aggregation: Aggregation, window: Window | None, bucket: str | None, keys: tuple) -> str:
    """`SUM of purchase_price over 3 days, per user_id`, with the operation's arguments and the bucket."""
    arguments = ", ".join(f"{k}={v}" for k, v in sorted(aggregation.arg_map.items()))
    operation = aggregation.operation + (f" ({arguments})" if arguments else "")
    by_bucket = f", as a map by {bucket}" if bucket else ""
    return f"{operation} of {aggregation.input_column} {window_text(window)}{by_bucket}, per {', '.join(keys)}"


def _origin(group_by: GroupBy, column: str) -> str:
    """Where a selected column comes from: `expression` of the source table."""
    source = group_by.sources[0] if group_by.sources else None
    if source is None:
        return f"`{column}`"
    expression = (source.query.selects or {}).get(column, column)
    return f"`{expression}` of {source.read_table}"


def _derived(docs: Docs, derivations: tuple[Derivation, ...], what: str) -> Docs:
    """Derivations replace the columns they are computed from, unless a `*` derivation keeps them."""
    if not derivations:
        return docs
    kept = docs if any(d.is_star for d in derivations) else {}
    return {**kept, **{d.name: f"derived {what}: `{d.expression}`" for d in derivations if not d.is_star}}


def feature_docs(group_by: GroupBy, derived: bool = True) -> Docs:
    """The group-by's feature columns: after derivations, or (`derived=False`) the ones they are computed from."""
    keys = group_by.key_columns
    docs = {
        name: aggregation_text(aggregation, window, bucket, keys)
        for aggregation in group_by.aggregations
        for name, window, bucket in aggregation.columns
    }
    if not group_by.aggregations:
        docs = {column: f"{_origin(group_by, column)}, per {', '.join(keys)}" for column in group_by.value_columns}
    return _derived(docs, group_by.derivations, "feature") if derived else docs


def _group_by_docs(group_by: GroupBy) -> Docs:
    docs = {key: f"key: {_origin(group_by, key)}" for key in group_by.key_columns}
    # The daily table keeps the columns derivations read as well as the derived ones.
    features = {**feature_docs(group_by, derived=False), **feature_docs(group_by)}
    docs.update({column: f"{text}, as of the end of ds" for column, text in features.items()})
    docs[DS] = "day (UTC) whose end the values are as of"
    return docs


# --------------------------------------------------------------------------- joins


def _left_docs(join: Join) -> Docs:
    left = join.left
    query = left.query
    row_ids = set(join.row_ids)
    docs = {
        alias: f"left column: `{expression}` of {left.read_table}" + (" (row id)" if alias in row_ids else "")
        for alias, expression in (query.selects or {}).items()
    }
    if query.time_column:
        docs["ts"] = f"left row time (epoch millis): `{query.time_column}` of {left.read_table}"
    docs[DS] = "day of the left rows"
    return docs


def _as_of(join: Join, part: JoinPart) -> str:
    if not join.uses_snapshot_table(part):
        return "as of the left row's ts"
    return "as of the end of the day before ds" if join.snapshot_offset else "as of the end of ds"


def _part_feature_docs(join: Join, part: JoinPart) -> Docs:
    as_of = _as_of(join, part)
    return {
        part.feature_prefix + column: f"{text}, {as_of} (group-by {part.group_by.name})"
        for column, text in feature_docs(part.group_by).items()
    }


def _part_docs(join: Join | None, part: JoinPart | None) -> Docs:
    assert join is not None and part is not None
    docs = {
        row_id: f"row id of the left row (left column `{row_id}`): the output joins this table on it"
        for row_id in join.row_ids
    }
    docs.update(
        {
            left: f"join key: left column `{left}` -> key `{key}` of group-by {part.group_by.name}"
            for left, key in part.key_pairs
        }
    )
    docs["ts"] = "left row time (epoch millis)"
    docs.update(_part_feature_docs(join, part))
    docs[DS] = "day of the left rows"
    return docs


def _external_docs(join: Join) -> Docs:
    docs = {}
    for part in join.external_parts:
        keys = ", ".join(name for name, _ in part.source.key_fields)
        for column, request_field, data_type in part.column_fields:
            docs[column] = (
                f"contextual field `{request_field}` ({data_type}): sent with each request online, logged "
                "with the features; offline from bootstrap"
                if part.is_contextual
                else f"external source {part.source.name}, field `{request_field}` ({data_type}), fetched online "
                f"by {keys or 'its keys'}; offline from bootstrap"
            )
    return docs


def _features_of_join(join: Join) -> Docs:
    docs: Docs = {}
    for part in join.join_parts:
        docs.update(_part_feature_docs(join, part))
    docs.update(_external_docs(join))
    return docs


def _join_docs(join: Join | None) -> Docs:
    assert join is not None
    left = _left_docs(join)
    features = _derived({**left, **_features_of_join(join)}, join.derivations, "column")
    return {**left, **features, DS: "day of the left rows"}


def _bootstrap_docs(join: Join | None) -> Docs:
    assert join is not None
    docs = _left_docs(join)
    tables = ", ".join(s.table for s in join.bootstrap_sources)
    for part in join.join_parts:
        docs[join.coverage_column(part)] = (
            f"true when bootstrap ({tables}) provides every feature of group-by {part.group_by.name} for the row, "
            "which then skips that join part"
            if tables
            else f"always false: the join has no bootstrap parts, so group-by {part.group_by.name} is computed "
            "for every row"
        )
    return docs
