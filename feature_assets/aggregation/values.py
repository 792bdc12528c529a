"""Plain Python values of Spark-typed cells: what the codec, the IRs and the fetcher work with."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

INTEGRAL = frozenset({"bigint", "int", "smallint", "tinyint", "long", "short", "byte", "integer"})
FLOATING = frozenset({"double", "float"})


def to_python(value, type_name: str):
    """A pandas/numpy cell as a plain Python value of the Spark type (nulls as None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if type_name in INTEGRAL:
        if isinstance(value, float) and math.isnan(value):
            return None
        return int(value)
    if type_name in FLOATING:
        value = float(value)
        return None if math.isnan(value) else value
    if type_name == "string":
        return value if isinstance(value, str) else str(value)
    if type_name == "boolean":
        return bool(value)
    if type_name.startswith("array<"):
        inner = type_name[6:-1]
        return [to_python(v, inner) for v in value]
    if type_name.startswith("map<"):
        inner_key, inner_value = _split_map(type_name)
        items = value.items() if isinstance(value, dict) else value
        return {to_python(k, inner_key): to_python(v, inner_value) for k, v in items}
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _split_map(type_name: str) -> tuple[str, str]:
    body = type_name[4:-1]
    depth = 0
    for index, char in enumerate(body):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            return body[:index], body[index + 1 :]
    return body, "string"


def python_values(series: pd.Series, type_name: str) -> list:
    """`to_python` of every cell, with fast paths for plain numpy columns (no per-cell Python call)."""
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else "?"
    if type_name in INTEGRAL and kind in ("i", "u"):
        return series.tolist()
    if type_name in INTEGRAL and kind == "f":  # an integer column with nulls arrives as floats
        values = series.to_numpy()
        null = np.isnan(values)
        out = np.where(null, 0, values).astype(np.int64).tolist()
        for index in np.flatnonzero(null).tolist():
            out[index] = None
        return out
    if type_name in FLOATING and kind == "f":
        values = series.to_numpy(dtype=np.float64)
        out = values.tolist()
        for index in np.flatnonzero(np.isnan(values)).tolist():
            out[index] = None
        return out
    return [to_python(v, type_name) for v in series.tolist()]
