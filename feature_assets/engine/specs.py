"""Compiled group-by aggregations -> kernel specs and Spark output types."""
from __future__ import annotations

from pyspark.sql import types as T

from feature_assets.compiler.columns import aggregation_columns, window_millis
from feature_assets.engine.window_kernel import AggSpec


def agg_specs(group_by: dict) -> list[AggSpec]:
    specs = []
    for agg in group_by.get("aggregations") or []:
        arg_map = tuple(sorted((agg.get("argMap") or {}).items()))
        for name, window, bucket in aggregation_columns(agg):
            specs.append(AggSpec(name, agg["inputColumn"], agg["operation"], arg_map,
                                 window_millis(window) if window else None, bucket))
    return specs


def max_window_millis(specs: list[AggSpec]) -> int | None:
    """The longest window, or None when some aggregation is unwindowed (it needs all history)."""
    if any(s.window_millis is None for s in specs):
        return None
    return max(s.window_millis for s in specs)


def is_integral(data_type: T.DataType) -> bool:
    return isinstance(data_type, (T.LongType, T.IntegerType, T.ShortType, T.ByteType))


def output_type(spec: AggSpec, input_type: T.DataType) -> T.DataType:
    op = spec.operation
    if op in ("COUNT", "UNIQUE_COUNT", "APPROX_UNIQUE_COUNT", "BOUNDED_UNIQUE_COUNT"):
        value: T.DataType = T.LongType()
    elif op == "SUM":
        value = T.LongType() if is_integral(input_type) else T.DoubleType()
    elif op in ("AVERAGE", "VARIANCE", "SKEW", "KURTOSIS"):
        value = T.DoubleType()
    elif op in ("MIN", "MAX", "FIRST", "LAST"):
        value = T.LongType() if is_integral(input_type) else input_type
    elif op in ("FIRST_K", "LAST_K", "TOP_K", "BOTTOM_K"):
        value = T.ArrayType(T.LongType() if is_integral(input_type) else input_type)
    elif op == "HISTOGRAM":
        value = T.MapType(T.LongType() if is_integral(input_type) else input_type, T.LongType())
    elif op == "APPROX_PERCENTILE":
        value = T.ArrayType(T.DoubleType())
    else:
        raise ValueError(f"unsupported operation {op}")
    if spec.bucket:
        return T.MapType(T.StringType(), value)
    return value
