"""Request keys: validation against the batch schema's key types.

Rules (Spark type of the key column -> accepted JSON values):
- integral (bigint, int, ...): integers, and strings of an integer ("5" -> 5); not booleans, not 5.5;
- floating (double, float): numbers;
- string: strings only (5 is refused: a mistyped key is an error, not a silent miss);
- boolean: true / false;
- null is accepted for any key and yields null features (the offline join's rule for null keys).
Valid keys are then looked up as `store.canonical_key_json`, the form the upload writes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from feature_assets.aggregation.values import FLOATING, INTEGRAL

_INTEGER = re.compile(r"^[+-]?\d+$")


class InvalidKey(ValueError):
    """A request whose key is missing or has the wrong type."""


def coerce_key(name: str, value: Any, type_name: str | None) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # numpy scalars
        value = value.item()
    if value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType":
        return None
    if isinstance(value, (list, dict, tuple, set)):
        raise InvalidKey(f"key {name!r} must be a scalar, got {type(value).__name__} {json.dumps(value, default=str)}")
    if type_name in INTEGRAL:
        if isinstance(value, bool):
            raise InvalidKey(f"key {name!r} must be an integer, got boolean {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            return int(value.strip())
        raise InvalidKey(f"key {name!r} must be an integer ({type_name}), got {type(value).__name__} {value!r}")
    if type_name in FLOATING:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidKey(f"key {name!r} must be a number ({type_name}), got {type(value).__name__} {value!r}")
        return float(value)
    if type_name == "string":
        if not isinstance(value, str):
            raise InvalidKey(f"key {name!r} must be a string, got {type(value).__name__} {value!r}")
        return value
    if type_name == "boolean":
        if not isinstance(value, bool):
            raise InvalidKey(f"key {name!r} must be a boolean, got {type(value).__name__} {value!r}")
        return value
    return value


def request_key(request: Any, key_types: list[list[Any]], source_names: dict[str, str] | None = None) -> dict[str, Any]:
    """The typed key dict of a request; `source_names` maps key columns to request fields (join key mapping).
    Raises InvalidKey naming the missing or mistyped field."""
    if not isinstance(request, dict):
        raise InvalidKey(f"a request must be a JSON object of keys, got {type(request).__name__}")
    key: dict[str, Any] = {}
    for name, type_name in key_types:
        field = (source_names or {}).get(name, name)
        if field not in request:
            raise InvalidKey(
                f"missing key {field!r} (expected keys: "
                f"{', '.join(repr((source_names or {}).get(n, n)) for n, _ in key_types)})"
            )
        key[name] = coerce_key(field, request[field], type_name)
    return key
