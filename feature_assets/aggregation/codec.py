"""Compact, versioned binary encoding of the values stored in the online key-value store.

Every stored value (one per key in a `{GROUP_BY}_BATCH` dataset) is::

    offset  size  field
    0       2     magic b"FA"
    2       1     codec version (CODEC_VERSION, now 1): how the body below is laid out
    3       1     payload kind: 1 = SNAPSHOT row (finished feature values), 2 = TEMPORAL tail + head IRs
    4       4     schema fingerprint: CRC-32 (big-endian) of the canonical JSON of the batch schema
    8       ...   body: one tagged value (below)

The full schema (key and input column types, feature columns, tail length, the specs) is written once
per batch version in the metadata collection (see `kv_store.commit_batch_version`); the fingerprint ties
every value to it, so a value written for another schema (say, a config changed without a re-upload) is
refused with a clear error instead of being misread. A decoder refuses codec versions it does not know;
a new layout gets a new CODEC_VERSION and decoders keep reading the old ones.

Body: a msgpack-like tagged format (one tag byte, then the payload; integers are zig-zag varints):

    0x00 None    0x01 False   0x02 True
    0x03 int     zig-zag varint (any size)
    0x04 float   IEEE-754 double, little-endian
    0x05 str     varint byte length + UTF-8
    0x06 bytes   varint length + raw bytes (serialized datasketches CPC / KLL sketches)
    0x07 list    varint count + items
    0x08 map     varint count + (key, value) pairs (keys of any type)
    0x09 int64[] varint count + little-endian int64s (lists of ints without nulls, e.g. event times)
    0x0A f64[]   varint count + little-endian doubles (lists of floats without nulls)

Payload of kind 1 (SNAPSHOT): the list of base feature values in `group_by_value_columns` order.
Payload of kind 2 (TEMPORAL): [tail event times (int64[]), [one list per needed input/bucket column],
[one IR (or None when empty) per unwindowed aggregation]] — see `feature_assets.online.upload`.
Pure Python with `struct`: no extra dependency, and decoding a value of ~20 features takes microseconds.
"""

from __future__ import annotations

import json
import struct
import zlib
from array import array
from typing import Any

MAGIC = b"FA"
CODEC_VERSION = 1
KIND_SNAPSHOT = 1
KIND_TEMPORAL = 2
HEADER = struct.Struct(">2sBBI")

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _LIST, _MAP, _I64S, _F64S = range(11)
_DOUBLE = struct.Struct("<d")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_LITTLE = array("q").itemsize == 8 and struct.pack("=q", 1) == struct.pack("<q", 1)


class CodecError(ValueError):
    """A stored value that cannot be decoded (unknown version, other schema, corrupt bytes)."""


def schema_fingerprint(schema: dict) -> int:
    return zlib.crc32(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode())


# --------------------------------------------------------------------------- encoding


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return (n << 1) if n >= 0 else ((-n << 1) - 1)


def _encode(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(_NONE)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        out.append(_INT)
        _varint(out, _zigzag(int(value)))
    elif isinstance(value, float):
        out.append(_FLOAT)
        out += _DOUBLE.pack(value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(_STR)
        _varint(out, len(data))
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(_BYTES)
        _varint(out, len(data))
        out += data
    elif isinstance(value, dict):
        out.append(_MAP)
        _varint(out, len(value))
        for key, item in value.items():
            _encode(out, key)
            _encode(out, item)
    elif isinstance(value, (list, tuple)):
        _encode_list(out, value)
    elif hasattr(value, "item"):  # numpy scalars
        _encode(out, value.item())
    elif hasattr(value, "tolist"):  # numpy arrays
        _encode(out, value.tolist())
    else:
        raise CodecError(f"cannot encode a {type(value).__name__}")


def _encode_packed(out: bytearray, tag: int, typecode: str, values) -> None:
    """A homogeneous numeric list as one little-endian array: tag, count, then the raw values."""
    out.append(tag)
    _varint(out, len(values))
    packed = array(typecode, values)
    if not _LITTLE:
        packed.byteswap()
    out += packed.tobytes()


def _encode_list(out: bytearray, values) -> None:
    n = len(values)
    if n >= 4:
        kinds = {type(v) for v in values}
        if kinds == {int} and all(_INT64_MIN <= v <= _INT64_MAX for v in values):
            _encode_packed(out, _I64S, "q", values)
            return
        if kinds == {float}:
            _encode_packed(out, _F64S, "d", values)
            return
    out.append(_LIST)
    _varint(out, n)
    for item in values:
        _encode(out, item)


def encode_value(value: Any) -> bytes:
    """The tagged body of one value (no header)."""
    out = bytearray()
    _encode(out, value)
    return bytes(out)


def encode(kind: int, fingerprint: int, payload: Any) -> bytes:
    out = bytearray(HEADER.pack(MAGIC, CODEC_VERSION, kind, fingerprint & 0xFFFFFFFF))
    _encode(out, payload)
    return bytes(out)


# --------------------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == _NONE:
        return None, pos
    if tag == _FALSE:
        return False, pos
    if tag == _TRUE:
        return True, pos
    if tag == _INT:
        raw, pos = _read_varint(data, pos)
        return (raw >> 1) ^ -(raw & 1), pos
    if tag == _FLOAT:
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if tag in (_STR, _BYTES):
        length, pos = _read_varint(data, pos)
        chunk = data[pos : pos + length]
        if len(chunk) != length:
            raise CodecError("truncated value")
        return (chunk.decode("utf-8") if tag == _STR else bytes(chunk)), pos + length
    if tag == _LIST:
        count, pos = _read_varint(data, pos)
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos)
            items.append(item)
        return items, pos
    if tag == _MAP:
        count, pos = _read_varint(data, pos)
        mapping = {}
        for _ in range(count):
            key, pos = _decode(data, pos)
            mapping[key], pos = _decode(data, pos)
        return mapping, pos
    if tag in (_I64S, _F64S):
        count, pos = _read_varint(data, pos)
        end = pos + 8 * count
        if end > len(data):
            raise CodecError("truncated array")
        packed = array("q" if tag == _I64S else "d")
        packed.frombytes(data[pos:end])
        if not _LITTLE:
            packed.byteswap()
        return packed.tolist(), end
    raise CodecError(f"unknown tag {tag:#x}")


def decode_value(data: bytes) -> Any:
    try:
        value, pos = _decode(data, 0)
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise CodecError(f"corrupt value: {error}") from error
    if pos != len(data):
        raise CodecError("trailing bytes after value")
    return value


def decode(data: bytes, expected_kind: int | None = None, expected_fingerprint: int | None = None) -> Any:
    """The payload of a stored value, after checking its header."""
    if len(data) < HEADER.size:
        raise CodecError("value shorter than its header")
    magic, version, kind, fingerprint = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise CodecError("not a feature-assets value (bad magic)")
    if version != CODEC_VERSION:
        raise CodecError(f"codec version {version} is not supported (this reader knows {CODEC_VERSION})")
    if expected_kind is not None and kind != expected_kind:
        raise CodecError(f"value of kind {kind}, expected {expected_kind}")
    if expected_fingerprint is not None and fingerprint != (expected_fingerprint & 0xFFFFFFFF):
        raise CodecError("value was written for another schema (re-run upload and load)")
    try:
        value, pos = _decode(data, HEADER.size)
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise CodecError(f"corrupt value: {error}") from error
    if pos != len(data):
        raise CodecError("trailing bytes after value")
    return value
