"""A join's logging codec: the Avro key and value schemas of its fetches, their schema hash, and the encoders.

Key record (`key`): the join's left key columns in join-part order (each once), then the contextual fields of
its `online_external_parts`, as the fetcher receives them in a request. Value record (`value`): every column
of a join fetch as served, in the served order (part features with their prefixes, external columns, then the
join's derivations). Every field is a nullable union `["null", T]`; lists and maps have nullable items.

Types come from what the fetcher knows: key types and input column types from the batch schema stored with
each group-by's newest visible batch version (`batch_versions`), aggregation outputs from the operation
registry, external fields from their declared types, derivations from `compile_expression` (a rename keeps its
column's type). Where nothing is known (no batch loaded yet, a type the mapping lacks, a derivation outside the
compiled subset) the field is a string: such values are null in practice (a part with no batch answers nulls;
the fetcher refuses other derivations), and a later batch gives the precise schema under a new hash.

The schema hash is the base64 MD5 of the UTF-8 JSON `{"join_name", "key_schema", "value_schema"}` (the Avro
schemas embedded as JSON objects; `json.dumps(sort_keys=True, separators=(",", ":"))`), which is also the
value of the join's SCHEMA_PUBLISH_EVENT record.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from feature_assets.aggregation.registry import DOUBLE, INPUT, LONG, STRING, TypeExpr, operation_def
from feature_assets.aggregation.values import INTEGRAL
from feature_assets.model import Derivation, GroupBy, Join
from feature_assets.model.configs import derived_names
from feature_assets.online.logging.avro_writer import record_encoder
from feature_assets.sql import types as sql_types
from feature_assets.sql.expressions import UnsupportedExpression, compile_expression

FALLBACK_TYPE = "string"
_REGISTRY_TYPES = {LONG: "bigint", DOUBLE: "double", STRING: "string"}
_AVRO_PRIMITIVES = {
    "bigint": "long",
    "long": "long",
    "int": "int",
    "integer": "int",
    "smallint": "int",
    "short": "int",
    "tinyint": "int",
    "byte": "int",
    "double": "double",
    "float": "float",
    "real": "float",
    "string": "string",
    "boolean": "boolean",
    "binary": "bytes",
}
# Spark types of compile_expression's type names, to read a derivation's output type back.
_SPARK_OF_SQL = {sql_types.LONG: "bigint", sql_types.BYTES: "binary"}

AvroType = str | dict[str, Any]
Converter = Callable[[Any], Any]


# --------------------------------------------------------------------------- Spark type strings


def split_type(type_name: str) -> tuple[str, list[str]]:
    """`map<string,array<bigint>>` -> ("map", ["string", "array<bigint>"]); a primitive -> (name, [])."""
    text = type_name.strip().lower().replace(" ", "")
    if "<" not in text or not text.endswith(">"):
        return text, []
    outer, inner = text[: text.index("<")], text[text.index("<") + 1 : -1]
    parts, depth, start = [], 0, 0
    for position, char in enumerate(inner):
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(inner[start:position])
            start = position + 1
    parts.append(inner[start:])
    return outer, parts


def avro_type(type_name: str | None) -> AvroType:
    """The Avro type of a Spark type string (not nullable itself; container items are)."""
    outer, parts = split_type(type_name or FALLBACK_TYPE)
    if outer == "array" and len(parts) == 1:
        return {"type": "array", "items": ["null", avro_type(parts[0])]}
    if outer == "map" and len(parts) == 2:
        return {"type": "map", "values": ["null", avro_type(parts[1])]}
    return _AVRO_PRIMITIVES.get(outer, _AVRO_PRIMITIVES[FALLBACK_TYPE])


def converter(type_name: str | None) -> Converter | None:
    """Turns a served value into what the Avro type takes (None: the value is taken as it is)."""
    outer, parts = split_type(type_name or FALLBACK_TYPE)
    if outer == "array" and len(parts) == 1:
        item = converter(parts[0])
        if item is None:
            return None
        return lambda value: None if value is None else [None if v is None else item(v) for v in value]
    if outer == "map" and len(parts) == 2:
        entry = converter(parts[1])
        # Avro map keys are strings: a map<bigint,...> (a histogram of a long column) keeps str(key).
        return lambda value: (
            None
            if value is None
            else {str(k): (v if entry is None or v is None else entry(v)) for k, v in dict(value).items()}
        )
    primitive = _AVRO_PRIMITIVES.get(outer, "string")
    if primitive in ("long", "int"):
        return lambda value: None if value is None else int(value)
    if primitive in ("double", "float"):
        return lambda value: None if value is None else float(value)
    if primitive == "string":
        return lambda value: value if value is None or isinstance(value, str) else _text(value)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def registry_type(expr: TypeExpr, input_type: str | None) -> str:
    """A registry type expression as a Spark type string; INPUT is the input column's type, integral as bigint."""
    if isinstance(expr, tuple):
        kind, *parts = expr
        if kind == "list":
            return f"array<{registry_type(parts[0], input_type)}>"
        return f"map<{registry_type(parts[0], input_type)},{registry_type(parts[1], input_type)}>"
    if expr == INPUT:
        if input_type is None:
            return FALLBACK_TYPE
        return "bigint" if input_type in INTEGRAL else input_type
    return _REGISTRY_TYPES[expr]


# --------------------------------------------------------------------------- join types


def group_by_types(group_by: GroupBy, schema: Mapping[str, Any] | None) -> dict[str, str]:
    """{output column: Spark type} of a group-by as the fetcher serves it, from its batch schema."""
    columns = {name: type_name for name, type_name in (schema or {}).get("columns") or []}
    if group_by.aggregations:
        base: dict[str, str] = {}
        for spec in group_by.specs:
            input_type = columns.get(spec.input_column)
            known = input_type if input_type and input_type != "unknown" else None
            definition = operation_def(spec.operation)
            value = registry_type(definition.output_type(known in INTEGRAL), known)
            base[spec.column_name] = f"map<string,{value}>" if spec.bucket else value
        if schema and schema.get("kind") == "snapshot":
            # A snapshot batch records its finished columns' own types: they are what is served.
            base.update({c: t for c, t in columns.items() if c in base and t != "unknown"})
    else:
        base = {c: columns.get(c, FALLBACK_TYPE) for c in group_by.value_columns}
        base = {c: (FALLBACK_TYPE if t == "unknown" else t) for c, t in base.items()}
    return derived_types(base, group_by.derivations)


def derived_types(base: Mapping[str, str], derivations: Sequence[Derivation]) -> dict[str, str]:
    """{column: type} after derivations, in the served order (`derived_names`)."""
    derivations = tuple(derivations)
    if not derivations:
        return dict(base)
    scalar = {}
    for column, type_name in base.items():
        try:
            scalar[column] = sql_types.from_spark(type_name)
        except sql_types.UnsupportedType:
            continue  # arrays and maps: only renames of them are typed (below)
    out = {}
    expressions = {d.name: d.expression for d in derivations if not d.is_star}
    for name in derived_names(list(base), derivations):
        if name not in expressions:
            out[name] = base[name]
            continue
        expression = (expressions[name] or "").strip().strip("`")
        if expression in base:
            out[name] = base[expression]
            continue
        try:
            type_name = compile_expression(expressions[name], scalar).output_type
            out[name] = _SPARK_OF_SQL.get(type_name, type_name)
        except UnsupportedExpression:
            out[name] = FALLBACK_TYPE
    return out


def join_key_types(join: Join, schemas: Mapping[str, Mapping[str, Any] | None]) -> dict[str, str]:
    """{request field: Spark type}: left key columns (join-part order), then contextual fields."""
    keys: dict[str, str] = {}
    for part in join.join_parts:
        schema = schemas.get(part.group_by.name)
        known = {name: type_name for name, type_name in (schema or {}).get("keys") or []}
        for left, gb_key in part.key_pairs:
            if keys.get(left, FALLBACK_TYPE) == FALLBACK_TYPE:
                keys[left] = known.get(gb_key) or FALLBACK_TYPE
    for external in join.external_parts:
        if external.is_contextual:
            for _, request_field, type_name in external.column_fields:
                keys.setdefault(request_field, type_name)
    return keys


def join_value_types(join: Join, schemas: Mapping[str, Mapping[str, Any] | None]) -> dict[str, str]:
    """{served column: Spark type} in the served order."""
    values: dict[str, str] = {}
    for part in join.join_parts:
        for column, type_name in group_by_types(part.group_by, schemas.get(part.group_by.name)).items():
            values[part.feature_prefix + column] = type_name
    for external in join.external_parts:
        for column, _, type_name in external.column_fields:
            values[column] = type_name
    return derived_types(values, join.derivations)


# --------------------------------------------------------------------------- schemas and codec


def record_schema(name: str, types: Mapping[str, str]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": f, "type": ["null", avro_type(t)]} for f, t in types.items()],
    }


def schema_json(join_name: str, key_schema: Mapping[str, Any], value_schema: Mapping[str, Any]) -> str:
    """The text hashed into the schema hash and logged as the value of a SCHEMA_PUBLISH_EVENT."""
    document = {"join_name": join_name, "key_schema": key_schema, "value_schema": value_schema}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def schema_hash(text: str) -> str:
    return base64.b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode("ascii")


def parse_schema_json(text: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(join name, key schema, value schema) of a SCHEMA_PUBLISH_EVENT's value (its UTF-8 text)."""
    document = json.loads(text)
    return document["join_name"], document["key_schema"], document["value_schema"]


@dataclass
class JoinCodec:
    join_name: str
    key_types: dict[str, str]
    value_types: dict[str, str]
    key_schema: dict[str, Any] = field(init=False)
    value_schema: dict[str, Any] = field(init=False)
    schema_json: str = field(init=False)
    schema_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.key_schema = record_schema("key", self.key_types)
        self.value_schema = record_schema("value", self.value_types)
        self.schema_json = schema_json(self.join_name, self.key_schema, self.value_schema)
        self.schema_hash = schema_hash(self.schema_json)
        self._key_parsed = parse_schema(self.key_schema)
        self._value_parsed = parse_schema(self.value_schema)
        self._key_fields = [(name, converter(t)) for name, t in self.key_types.items()]
        self._value_fields = [(name, converter(t)) for name, t in self.value_types.items()]
        self._key_encoder = record_encoder(self.key_schema["fields"])
        self._value_encoder = record_encoder(self.value_schema["fields"])

    @classmethod
    def of(cls, join: Join, schemas: Mapping[str, Mapping[str, Any] | None]) -> JoinCodec:
        """The codec of a join given each part's batch schema ({group-by name: schema or None})."""
        return cls(join.name, join_key_types(join, schemas), join_value_types(join, schemas))

    def encode_key(self, request: Mapping[str, Any]) -> bytes:
        try:
            return self._key_encoder(request)
        except Exception:  # noqa: BLE001 - a value the compiled encoder does not take as it is
            return self.reference_encode_key(request)

    def encode_value(self, values: Mapping[str, Any]) -> bytes:
        try:
            return self._value_encoder(values)
        except Exception:  # noqa: BLE001 - a value the compiled encoder does not take as it is
            return self.reference_encode_value(values)

    # fastavro with the converters: encodes (or refuses) what the compiled encoders leave, and tests them
    def reference_encode_key(self, request: Mapping[str, Any]) -> bytes:
        return _write(self._key_parsed, _record(self._key_fields, request))

    def reference_encode_value(self, values: Mapping[str, Any]) -> bytes:
        return _write(self._value_parsed, _record(self._value_fields, values))

    def decode_key(self, data: bytes) -> dict[str, Any]:
        return schemaless_reader(io.BytesIO(data), self._key_parsed, None)  # type: ignore[return-value]

    def decode_value(self, data: bytes) -> dict[str, Any]:
        return schemaless_reader(io.BytesIO(data), self._value_parsed, None)  # type: ignore[return-value]


def _record(fields: list[tuple[str, Converter | None]], source: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, convert in fields:
        value = source.get(name)
        out[name] = value if convert is None or value is None else convert(value)
    return out


def _write(parsed: Any, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parsed, record)
    return buffer.getvalue()
