"""Spark output types of aggregations: the registry's type expressions as Spark DataTypes."""

from __future__ import annotations

from pyspark.sql import types as T

from feature_assets.aggregation.registry import DOUBLE, INPUT, LONG, STRING, TypeExpr, operation_def
from feature_assets.aggregation.spec import AggSpec

_NAMED_TYPES: dict[str, T.DataType] = {LONG: T.LongType(), DOUBLE: T.DoubleType(), STRING: T.StringType()}


def is_integral(data_type: T.DataType) -> bool:
    return isinstance(data_type, (T.LongType, T.IntegerType, T.ShortType, T.ByteType))


def spark_type(expr: TypeExpr, input_type: T.DataType) -> T.DataType:
    """A registry type expression as a Spark type; INPUT is the input column's type, integral inputs as long."""
    if isinstance(expr, tuple):
        kind, *parts = expr
        if kind == "list":
            return T.ArrayType(spark_type(parts[0], input_type))
        if kind == "map":
            return T.MapType(spark_type(parts[0], input_type), spark_type(parts[1], input_type))
        raise ValueError(f"unknown type expression {expr!r}")
    if expr == INPUT:
        return T.LongType() if is_integral(input_type) else input_type
    return _NAMED_TYPES[expr]


def output_type(spec: AggSpec, input_type: T.DataType) -> T.DataType:
    """The Spark type of a spec's column; a bucketed column maps bucket values to it."""
    value = spark_type(operation_def(spec.operation).output_type(is_integral(input_type)), input_type)
    return T.MapType(T.StringType(), value) if spec.bucket else value
