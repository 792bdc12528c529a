"""Avro binary encoding of the fetch log's key and value records, compiled to one Python function per schema.

The logger encodes each logged fetch's key and values in the fetch's own thread, so this runs on every logged
fetch: a generated function that writes the fields one after the other costs about a quarter of fastavro's
`schemaless_writer` on a record of 21 nullable fields (3 us against 12 us). Arrays and maps get generated
functions too; longs, doubles and strings, the common types, are written inline in them.

It takes the records `codec.record_schema` makes (every field a union of null and a primitive, or an array or a
map of nullable items) and converts values as `codec.converter` does, but only the values it can take exactly:
anything else (a bool where a long is expected aside, a string field holding a list, a long out of range...)
raises, and the codec then hands that record to fastavro, which encodes it or refuses it. So a record encoded
here is always the bytes fastavro writes.
"""

from __future__ import annotations

import struct
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Writer = Callable[[bytearray, Any], None]
RecordEncoder = Callable[[Mapping[str, Any]], bytes]

_INT_RANGE = (-(1 << 31), (1 << 31) - 1)
_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack


class UnsupportedSchema(ValueError):
    pass


def write_varint(out: bytearray, n: int) -> None:
    """A zigzag varint (Avro's int and long)."""
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_int(out: bytearray, value: Any) -> None:
    n = value if value.__class__ is int else int(value)
    if not _INT_RANGE[0] <= n <= _INT_RANGE[1]:
        raise OverflowError(f"{n} is out of the Avro int's range")
    write_varint(out, n)


def _write_float(out: bytearray, value: Any) -> None:
    out += _FLOAT(float(value))


def _write_string(out: bytearray, value: Any) -> None:
    if value.__class__ is not str:
        raise TypeError("not a str")  # converted by the reference path (JSON text)
    data = value.encode("utf-8")
    write_varint(out, len(data))
    out += data


def _write_bytes(out: bytearray, value: Any) -> None:
    if value.__class__ is not bytes:
        raise TypeError("not bytes")
    write_varint(out, len(value))
    out += value


def _write_boolean(out: bytearray, value: Any) -> None:
    if value is True:
        out.append(1)
    elif value is False:
        out.append(0)
    else:
        raise TypeError("not a bool")


# The rarer primitives are called; the common ones are written inline (`_INLINE`).
_PRIMITIVE_WRITERS: dict[str, Writer] = {
    "int": _write_int,
    "float": _write_float,
    "bytes": _write_bytes,
    "boolean": _write_boolean,
}
# Source that writes a present `value` to `out`.
_INLINE = {
    "long": """\
n = value if value.__class__ is int else int(value)
if not -9223372036854775808 <= n <= 9223372036854775807:
    raise OverflowError(n)
n = (n << 1) ^ (n >> 63)
while n > 127:
    out.append((n & 127) | 128)
    n >>= 7
out.append(n)""",
    "double": "out += _DOUBLE(value if value.__class__ is float else float(value))",
    "string": """\
if value.__class__ is not str:
    raise TypeError(value)
data = value.encode("utf-8")
write_varint(out, len(data))
out += data""",
}


def _non_null(union: Any) -> Any:
    if isinstance(union, list) and len(union) == 2 and union[0] == "null":
        return union[1]
    raise UnsupportedSchema(f"expected a union of null and one type, got {union!r}")


def _nullable_value_source(avro_type: Any, namespace: dict[str, Any], indent: int) -> str:
    """Source that writes `value` (None or of `avro_type`) as Avro's union of null and that type; a writer it
    calls goes into `namespace`."""
    if isinstance(avro_type, str) and avro_type in _INLINE:
        write = _INLINE[avro_type]
    else:
        name = f"write_{len(namespace)}"
        namespace[name] = _writer(avro_type)
        write = f"{name}(out, value)"
    source = "if value is None:\n    out.append(0)\nelse:\n    out.append(2)\n" + textwrap.indent(write, "    ")
    return textwrap.indent(source, " " * indent)


def _compiled(lines: list[str], namespace: dict[str, Any]) -> Any:
    exec(compile("\n".join(lines), "<avro encoder>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["write"]


def _base_namespace() -> dict[str, Any]:
    return {"_DOUBLE": _DOUBLE, "write_varint": write_varint, "write_string": _write_string}


def _writer(avro_type: Any) -> Writer:
    """The writer of a (non-null) Avro type as `codec.avro_type` makes them."""
    if isinstance(avro_type, str) and avro_type in _PRIMITIVE_WRITERS:
        return _PRIMITIVE_WRITERS[avro_type]
    if not (isinstance(avro_type, dict) and avro_type.get("type") in ("array", "map")):
        raise UnsupportedSchema(f"Avro type {avro_type!r} is not one the fetch log writes")
    namespace = _base_namespace()
    if avro_type["type"] == "array":
        lines = [
            "def write(out, items):",
            "    if items.__class__ is not list:",
            "        raise TypeError('not a list')",
            "    if items:",
            "        write_varint(out, len(items))",
            "        for value in items:",
            _nullable_value_source(_non_null(avro_type["items"]), namespace, 12),
            "    out.append(0)",
        ]
    else:
        lines = [
            "def write(out, entries):",
            "    if entries.__class__ is not dict:",
            "        raise TypeError('not a dict')",
            "    if not all(key.__class__ is str for key in entries):",
            "        # as the converter does: str(key), the last of keys that read the same wins",
            "        entries = {str(key): value for key, value in entries.items()}",
            "    if entries:",
            "        write_varint(out, len(entries))",
            "        for key, value in entries.items():",
            "            write_string(out, key)",
            _nullable_value_source(_non_null(avro_type["values"]), namespace, 12),
            "    out.append(0)",
        ]
    writer: Writer = _compiled(lines, namespace)
    return writer


def record_encoder(fields: Sequence[Mapping[str, Any]]) -> RecordEncoder:
    """The encoder of a record schema's `fields` (each `{"name": ..., "type": ["null", T]}`): record -> bytes."""
    namespace = _base_namespace()
    lines = ["def write(source):", "    out = bytearray()", "    get = source.get"]
    for field in fields:
        lines.append(f"    value = get({str(field['name'])!r})")
        lines.append(_nullable_value_source(_non_null(field["type"]), namespace, 4))
    lines.append("    return bytes(out)")
    encode: RecordEncoder = _compiled(lines, namespace)
    return encode
