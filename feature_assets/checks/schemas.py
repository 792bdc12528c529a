"""Expected table schemas from compiled configs, checked with pandera on the written partitions.

Each table's expected columns come from its config alone (never from the data), so a check fails when
the engine, a user's table or a config drift apart. Types are checked where the config decides them
(counts are long, averages double, ts long, ds string: the operation registry's fixed output types);
other columns are checked for presence.
"""

from __future__ import annotations

import re
from typing import Any

import pandera.pyspark as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from feature_assets.aggregation.registry import TypeExpr, fixed_output_type
from feature_assets.model.configs import EntitySource, EventSource, GroupBy, Join, JoinPart

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ATOMIC_TYPES = {
    "long": T.LongType(),
    "double": T.DoubleType(),
    "string": T.StringType(),
    "int": T.IntegerType(),
    "boolean": T.BooleanType(),
    "float": T.FloatType(),
    "short": T.ShortType(),
    "binary": T.BinaryType(),
}

ExpectedColumns = dict[str, T.DataType | None]


def spark_type(expr: TypeExpr) -> T.DataType:
    """The Spark type of a registry type expression: `"long"`, `("list", T)` or `("map", K, V)`."""
    if isinstance(expr, tuple):
        if expr[0] == "list":
            return T.ArrayType(spark_type(expr[1]))
        if expr[0] == "map":
            return T.MapType(spark_type(expr[1]), spark_type(expr[2]))
        raise ValueError(f"unknown type expression {expr!r}")
    return ATOMIC_TYPES[expr]


def _fixed_type(operation: str) -> T.DataType | None:
    expr = fixed_output_type(operation)
    return None if expr is None else spark_type(expr)


def group_by_feature_types(group_by: GroupBy, prefix: str = "") -> ExpectedColumns:
    fixed = {spec.column_name: _fixed_type(spec.operation) for spec in group_by.specs if not spec.bucket}
    return {prefix + c: fixed.get(c) for c in group_by.output_columns}


def group_by_table_columns(group_by: GroupBy) -> ExpectedColumns:
    columns: ExpectedColumns = {k: None for k in group_by.key_columns}
    columns.update({c: None for c in group_by.value_columns})
    columns.update(group_by_feature_types(group_by))
    columns["ds"] = T.StringType()
    return columns


def left_columns(join: Join) -> ExpectedColumns:
    query = join.left.query
    columns: ExpectedColumns = {c: None for c in query.selects or {}}
    if query.time_column:
        columns["ts"] = T.LongType()
    return columns


def join_part_table_columns(join: Join, part: JoinPart) -> ExpectedColumns:
    columns: ExpectedColumns = {row_id: None for row_id in join.row_ids}
    columns.update({left_column: None for left_column in part.left_keys})
    columns["ts"] = T.LongType()
    columns.update(group_by_feature_types(part.group_by, part.feature_prefix))
    columns["ds"] = T.StringType()
    return columns


def join_output_columns(join: Join) -> ExpectedColumns:
    columns = left_columns(join)
    for part in join.join_parts:
        columns.update(group_by_feature_types(part.group_by, part.feature_prefix))
    columns.update({c: None for c in join.external_columns})
    if join.derivations:
        if not any(d.is_star for d in join.derivations):
            columns = {c: t for c, t in columns.items() if c in left_columns(join)}
        columns.update({d.name: None for d in join.derivations if not d.is_star})
    columns["ds"] = T.StringType()
    return columns


def source_table_columns(source: EventSource | EntitySource) -> ExpectedColumns:
    """Raw columns a source's query reads by plain name (expressions are checked by running them)."""
    query = source.query
    columns: ExpectedColumns = {}
    for expression in list((query.selects or {}).values()) + [query.time_column]:
        if expression and IDENTIFIER.match(expression):
            columns[expression] = None
    columns["ds"] = T.StringType()
    return columns


def pandera_schema(name: str, expected: ExpectedColumns) -> pa.DataFrameSchema:
    columns = {
        column: pa.Column(data_type, nullable=True)  # type: ignore[arg-type]  # pandera takes Spark types
        for column, data_type in expected.items()
    }
    return pa.DataFrameSchema(columns, name=name, strict=False)


def validate_schema(frame: DataFrame, name: str, expected: ExpectedColumns) -> tuple[bool, dict]:
    """(passed, metadata) of a pandera validation; pandera.pyspark reports errors instead of raising."""
    validated = pandera_schema(name, expected).validate(frame)
    errors: dict[str, dict[str, list[dict[str, Any]]]] = validated.pandera.errors or {}
    missing = [c for c in expected if c not in frame.columns]
    messages: list[str] = []
    for level in errors.values():
        for category in level.values():
            for entry in category:
                messages.append(f"{entry.get('column')}: {entry.get('error')}")
    passed = not messages and not missing
    return passed, {"missing_columns": missing, "errors": messages[:20], "checked_columns": len(expected)}
