"""Column types of rows handled outside Spark (streaming events): one small vocabulary and its mappings.

The names are Avro's primitive types, which is also how streamed key and value bytes are encoded:
`boolean`, `int`, `long`, `float`, `double`, `string`, `bytes`. Spark's `tinyint`/`smallint` widen to
`int`. Other Spark types (decimal, date, timestamp, arrays, maps, structs) have no streaming form yet:
`from_spark`/`from_arrow` raise `UnsupportedType`, and compile refuses streaming for such a source.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

BOOLEAN, INT, LONG, FLOAT, DOUBLE, STRING, BYTES = "boolean", "int", "long", "float", "double", "string", "bytes"
TYPES = (BOOLEAN, INT, LONG, FLOAT, DOUBLE, STRING, BYTES)
INTEGRAL = (INT, LONG)
FRACTIONAL = (FLOAT, DOUBLE)
NUMERIC = INTEGRAL + FRACTIONAL

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)

_SPARK_NAMES = {
    "boolean": BOOLEAN,
    "tinyint": INT,
    "byte": INT,
    "smallint": INT,
    "short": INT,
    "int": INT,
    "integer": INT,
    "bigint": LONG,
    "long": LONG,
    "float": FLOAT,
    "real": FLOAT,
    "double": DOUBLE,
    "string": STRING,
    "binary": BYTES,
}


class UnsupportedType(ValueError):
    """A column type that streamed rows cannot carry."""


def from_spark(type_name: str) -> str:
    """`bigint` -> `long`, from Spark's simple type strings (`DataType.simpleString()`)."""
    name = type_name.strip().lower()
    if name.startswith(("varchar", "char")):
        return STRING
    if name not in _SPARK_NAMES:
        raise UnsupportedType(f"Spark type {type_name!r} is not supported in streamed rows")
    return _SPARK_NAMES[name]


def from_arrow(data_type: pa.DataType) -> str:
    """The type of a parquet column as pyarrow reads it."""
    if pa.types.is_dictionary(data_type):
        return from_arrow(data_type.value_type)
    if pa.types.is_boolean(data_type):
        return BOOLEAN
    if pa.types.is_int8(data_type) or pa.types.is_int16(data_type) or pa.types.is_int32(data_type):
        return INT
    if pa.types.is_int64(data_type):
        return LONG
    if pa.types.is_float32(data_type):
        return FLOAT
    if pa.types.is_float64(data_type):
        return DOUBLE
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return STRING
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return BYTES
    raise UnsupportedType(f"column type {data_type} is not supported in streamed rows")


def parse_text(text: str, type_name: str) -> Any:
    """A value written as text (a CSV field) as the column type; the empty string is null. Raises ValueError
    with a short reason when the text is not a value of that type."""
    if text == "" or text is None:
        return None
    if type_name == STRING:
        return text
    if type_name in INTEGRAL:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        return check_value(value, type_name)
    if type_name in FRACTIONAL:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if type_name == BOOLEAN:
        lowered = text.strip().lower()
        if lowered in ("true", "t", "1"):
            return True
        if lowered in ("false", "f", "0"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if type_name == BYTES:
        return text.encode()
    raise UnsupportedType(f"unknown column type {type_name!r}")


def check_value(value: Any, type_name: str) -> Any:
    """A decoded value (JSON, or a user decoder's) as the column type; raises ValueError when it is not one.
    Integral numbers must be whole and in range; booleans are not numbers."""
    if value is None:
        return None
    if type_name == STRING:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value
    if type_name in INTEGRAL:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            value = int(value)
        low, high = INT_RANGE if type_name == INT else LONG_RANGE
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for {type_name}")
        return value
    if type_name in FRACTIONAL:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if type_name == BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if type_name == BYTES:
        if isinstance(value, str):
            return value.encode()
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"{value!r} is not bytes")
        return bytes(value)
    raise UnsupportedType(f"unknown column type {type_name!r}")


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
