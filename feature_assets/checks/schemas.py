"""Expected table schemas from compiled configs, checked with pandera on the written partitions.

Each table's expected columns come from its config alone (never from the data), so a check fails when
the engine, a user's table or a config drift apart. Types are checked where the config decides them
(counts are long, averages double, ts long, ds string); other columns are checked for presence.
"""
from __future__ import annotations

import re
from typing import Optional

import pandera.pyspark as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from feature_assets.compiler.columns import (external_part_columns, group_by_output_columns, group_by_value_columns,
                                             join_part_columns, source_of)
from feature_assets.engine.specs import agg_specs

FIXED_TYPES = {"COUNT": T.LongType(), "UNIQUE_COUNT": T.LongType(), "APPROX_UNIQUE_COUNT": T.LongType(),
               "BOUNDED_UNIQUE_COUNT": T.LongType(), "AVERAGE": T.DoubleType(), "VARIANCE": T.DoubleType(),
               "SKEW": T.DoubleType(), "KURTOSIS": T.DoubleType(),
               "APPROX_PERCENTILE": T.ArrayType(T.DoubleType())}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ExpectedColumns = dict[str, Optional[T.DataType]]


def group_by_feature_types(group_by: dict, prefix: str = "") -> ExpectedColumns:
    fixed = {spec.column_name: FIXED_TYPES.get(spec.operation) for spec in agg_specs(group_by) if not spec.bucket}
    return {prefix + c: fixed.get(c) for c in group_by_output_columns(group_by)}


def group_by_table_columns(group_by: dict) -> ExpectedColumns:
    columns: ExpectedColumns = {k: None for k in group_by["keyColumns"]}
    base = {c: None for c in group_by_value_columns(group_by)}
    columns.update(base)
    columns.update(group_by_feature_types(group_by))
    columns["ds"] = T.StringType()
    return columns


def left_columns(join: dict) -> ExpectedColumns:
    kind, payload = next(iter(join["left"].items()))
    selects = payload["query"].get("selects") or {}
    columns: ExpectedColumns = {c: None for c in selects}
    if payload["query"].get("timeColumn"):
        columns["ts"] = T.LongType()
    return columns


def join_part_table_columns(join: dict, part: dict) -> ExpectedColumns:
    from feature_assets.engine.join import part_feature_prefix, part_key_columns
    columns: ExpectedColumns = {left_col: None for left_col, _ in part_key_columns(part)}
    columns["ts"] = T.LongType()
    columns.update(group_by_feature_types(part["groupBy"], part_feature_prefix(part)))
    columns["ds"] = T.StringType()
    return columns


def join_output_columns(join: dict) -> ExpectedColumns:
    from feature_assets.engine.join import part_feature_prefix
    columns = left_columns(join)
    for part in join["joinParts"]:
        columns.update(group_by_feature_types(part["groupBy"], part_feature_prefix(part)))
    for external in join.get("onlineExternalParts") or []:
        columns.update({c: None for c in external_part_columns(external)})
    derivations = join.get("derivations") or []
    if derivations:
        names = [d["name"] for d in derivations if d["name"] != "*"]
        if not any(d["name"] == "*" for d in derivations):
            columns = {c: t for c, t in columns.items() if c in left_columns(join)}
        columns.update({n: None for n in names})
    columns["ds"] = T.StringType()
    return columns


def source_table_columns(kind: str, payload: dict) -> ExpectedColumns:
    """Raw columns a source's query reads by plain name (expressions are checked by running them)."""
    query = payload["query"]
    columns: ExpectedColumns = {}
    for expression in list((query.get("selects") or {}).values()) + [query.get("timeColumn")]:
        if expression and IDENTIFIER.match(expression):
            columns[expression] = None
    columns["ds"] = T.StringType()
    return columns


def pandera_schema(name: str, expected: ExpectedColumns) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({column: pa.Column(data_type, nullable=True) for column, data_type in expected.items()},
                              name=name, strict=False)


def validate_schema(frame: DataFrame, name: str, expected: ExpectedColumns) -> tuple[bool, dict]:
    """(passed, metadata) of a pandera validation; pandera.pyspark reports errors instead of raising."""
    validated = pandera_schema(name, expected).validate(frame)
    errors = validated.pandera.errors
    missing = [c for c in expected if c not in frame.columns]
    messages = []
    for level in (errors or {}).values():
        for category in level.values():
            for entry in category:
                messages.append(f"{entry.get('column')}: {entry.get('error')}")
    passed = not messages and not missing
    return passed, {"missing_columns": missing, "errors": messages[:20],
                    "checked_columns": len(expected)}
