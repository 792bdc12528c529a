"""Avro binary encoding of the fetch log's key and value records, compiled to one Python function per schema.

The logger encodes each logged fetch's key and values in the fetch's own thread, so this runs on every logged
fetch: a generated function that writes the fields one after the other costs about a quarter of fastavro's
`schemaless_writer` on a record of 21 nullable fields (3 us against 12 us).

It takes the records `codec.record_schema` makes (every field a union of null and a primitive, or an array or a
map of nullable items) and converts values as `codec.converter` does, but only the values it can take exactly:
anything else (a bool where a long is expected aside, a string field holding a list, a long out of range...)
raises, and the codec then hands that record to fastavro, which encodes it or refuses it. So a record encoded
here is always the bytes fastavro writes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Writer = Callable[[bytearray, Any], None]
RecordEncoder = Callable[[Mapping[str, Any]], bytes]

_LONG_RANGE = (-(1 << 63), (1 << 63) - 1)
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


def _integer_writer(low: int, high: int) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        n = value if value.__class__ is int else int(value)
        if not low <= n <= high:
            raise OverflowError(f"{n} is out of the Avro type's range")
        write_varint(out, n)

    return write


def _write_double(out: bytearray, value: Any) -> None:
    out += _DOUBLE(value if value.__class__ is float else float(value))


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


def _array_writer(item: Writer) -> Writer:
    if item is _write_long:
        return _write_long_array

    def write(out: bytearray, value: Any) -> None:
        if value.__class__ is not list:
            raise TypeError("not a list")
        if value:
            write_varint(out, len(value))
            for element in value:
                if element is None:
                    out.append(0)
                else:
                    out.append(2)
                    item(out, element)
        out.append(0)

    return write


def _write_long_array(out: bytearray, value: Any) -> None:
    """An array of nullable longs (the last-k features), the commonest container: written in one loop."""
    if value.__class__ is not list:
        raise TypeError("not a list")
    if value:
        write_varint(out, len(value))
        for element in value:
            if element is None:
                out.append(0)
                continue
            n = element if element.__class__ is int else int(element)
            if not -9223372036854775808 <= n <= 9223372036854775807:
                raise OverflowError(n)
            out.append(2)
            n = (n << 1) ^ (n >> 63)
            while n > 127:
                out.append((n & 127) | 128)
                n >>= 7
            out.append(n)
    out.append(0)


def _map_writer(item: Writer) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if value.__class__ is not dict:
            raise TypeError("not a dict")
        if not all(key.__class__ is str for key in value):
            # as the converter does: str(key), the last of keys that read the same wins
            value = {str(key): element for key, element in value.items()}
        if value:
            write_varint(out, len(value))
            for key, element in value.items():
                _write_string(out, key)
                if element is None:
                    out.append(0)
                else:
                    out.append(2)
                    item(out, element)
        out.append(0)

    return write


_write_long = _integer_writer(*_LONG_RANGE)
_PRIMITIVE_WRITERS: dict[str, Writer] = {
    "long": _write_long,
    "int": _integer_writer(*_INT_RANGE),
    "double": _write_double,
    "float": _write_float,
    "string": _write_string,
    "bytes": _write_bytes,
    "boolean": _write_boolean,
}


def writer(avro_type: Any) -> Writer:
    """The writer of a (non-null) Avro type as `codec.avro_type` makes them."""
    if isinstance(avro_type, str) and avro_type in _PRIMITIVE_WRITERS:
        return _PRIMITIVE_WRITERS[avro_type]
    if isinstance(avro_type, dict) and avro_type.get("type") in ("array", "map"):
        inner = avro_type["items" if avro_type["type"] == "array" else "values"]
        item = writer(_non_null(inner))
        return _array_writer(item) if avro_type["type"] == "array" else _map_writer(item)
    raise UnsupportedSchema(f"Avro type {avro_type!r} is not one the fetch log writes")


def _non_null(union: Any) -> Any:
    if isinstance(union, list) and len(union) == 2 and union[0] == "null":
        return union[1]
    raise UnsupportedSchema(f"expected a union of null and one type, got {union!r}")


# The hot types are written inline in the generated function; the others call their writer.
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
    "double": """\
        out += _DOUBLE(value if value.__class__ is float else float(value))""",
    "string": """\
        if value.__class__ is not str:
            raise TypeError(value)
        data = value.encode("utf-8")
        write_varint(out, len(data))
        out += data""",
}


def record_encoder(fields: Sequence[Mapping[str, Any]]) -> RecordEncoder:
    """The encoder of a record schema's `fields` (each `{"name": ..., "type": ["null", T]}`): record -> bytes."""
    namespace: dict[str, Any] = {"_DOUBLE": _DOUBLE, "write_varint": write_varint}
    lines = ["def encode(source):", "    out = bytearray()", "    get = source.get"]
    for index, field in enumerate(fields):
        avro_type = _non_null(field["type"])
        lines += [f"    value = get({str(field['name'])!r})", "    if value is None:", "        out.append(0)"]
        lines += ["    else:", "        out.append(2)"]
        if isinstance(avro_type, str) and avro_type in _INLINE:
            lines.append(_INLINE[avro_type])
        else:
            namespace[f"write_{index}"] = writer(avro_type)
            lines.append(f"        write_{index}(out, value)")
    lines.append("    return bytes(out)")
    exec(compile("\n".join(lines), "<avro record encoder>", "exec"), namespace)  # noqa: S102 - our own source
    encode: RecordEncoder = namespace["encode"]
    return encode
