"""The fetch log offline: the raw log table filled from the log store, and a join's flattened `_logged` table.

Log dump: the records the online logger wrote for some days (a MongoDB collection, or a Kafka topic) become the
partitions of `default.chronon_log_table`. A record is identified by its `_id` (MongoDB) or, without one, by its
content, so a record delivered twice is one row and refilling a day gives the same rows.

Flattener: a join's rows of the log table are decoded with the Avro schemas of their schema hash, read from the
schema table (the schema group-by's output, never table properties), into `{join}_logged`: `schema_hash`, `ts`,
one column per key, contextual and value field (the union over every schema version of the range) and `ds`.
Decoding runs inside Spark (fastavro in `mapInPandas`). A row that cannot be decoded (no schema for its hash, bad
base64, bytes that do not match the schema) is dropped and counted by reason.

Stitching: a row logged under a schema version without some field of the union leaves that column null and names
it in `_absent_fields`; bootstrap treats those fields as not provided by the row (a hole to compute), unlike a
null the logger wrote for a field the schema had.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.model.configs import Join
from feature_assets.model.logs import (
    ABSENT_FIELDS_COLUMN,
    RAW_LOG_COLUMNS,
    SCHEMA_HASH_COLUMN,
    SCHEMA_VALUE_COLUMN,
)
from feature_assets.offline.group_by import read_group_by_sources
from feature_assets.offline.specs import output_type
from feature_assets.online.logging.sinks.mongo import BUNDLE_FIELD, bundle_records
from feature_assets.storage import PARTITION_COLUMN, TableNotFound, Warehouse, date_range

LOG_TABLE_SCHEMA = T.StructType(
    [
        T.StructField("schema_hash", T.StringType()),
        T.StructField("key_base64", T.StringType()),
        T.StructField("value_base64", T.StringType()),
        T.StructField("ts_millis", T.LongType()),
        T.StructField("name", T.StringType()),
        T.StructField(PARTITION_COLUMN, T.StringType()),
    ]
)
UNDECODABLE_COLUMN = "_undecodable"
# Columns of every `_logged` table besides the fields: no logged field may take these names.
RESERVED_COLUMNS = (SCHEMA_HASH_COLUMN, "ts", PARTITION_COLUMN, ABSENT_FIELDS_COLUMN, UNDECODABLE_COLUMN)
PRIMITIVE_TYPES = {
    "long": "bigint",
    "int": "int",
    "double": "double",
    "float": "float",
    "string": "string",
    "boolean": "boolean",
    "bytes": "binary",
}
KAFKA_POLL_SECONDS = 0.5
# A partition is read to the end once the broker reports it drained (an end-of-partition event) at or past its
# end offset of the read's start. If every partition reached that offset but a busy topic gives no such event,
# the read stops this much later; and it fails when nothing at all arrives for KAFKA_STALL_SECONDS.
KAFKA_SETTLE_SECONDS = 5.0
KAFKA_STALL_SECONDS = 30.0
MALFORMED_FIELD = "_malformed"  # the key `_log_row` reads


# --------------------------------------------------------------------------- log dump


class MalformedLogRecord(ValueError):
    pass


def mongo_log_records(database: Any, collection: str, start_ds: str, end_ds: str) -> list[dict]:
    """The records of [start_ds, end_ds] in a MongoDB collection (a pymongo `Database`): the online logger's
    bundle documents (one day each) unpacked, and documents of one record each; every record with its `_id`."""
    projection = {name: 1 for name in (*RAW_LOG_COLUMNS, BUNDLE_FIELD)}
    query = {PARTITION_COLUMN: {"$gte": start_ds, "$lte": end_ds}}
    return [
        {name: record.get(name) for name in ("_id", *RAW_LOG_COLUMNS) if name in record}
        for document in database[collection].find(query, projection)
        for record in bundle_records(document)
    ]


class KafkaLogReadError(RuntimeError):
    """A Kafka topic could not be read to its end."""


def kafka_log_records(consumer_config: Mapping[str, Any], topic: str, start_ds: str, end_ds: str) -> list[dict]:
    """The records of [start_ds, end_ds] in a Kafka topic (JSON message values, each with its message key as
    `_id`), read from the first offsets to at least the end offsets of the moment; no offsets are committed.
    Messages that are not records are returned too (with `_malformed`), whatever the days.

    End offsets from a broker's offset listing can lag (tansu reports the first offset of the last produced
    batch), so a partition counts as read only when the broker's fetch answer says nothing is left: the
    end-of-partition event, at or past that end offset. Bounded in time: see KAFKA_SETTLE_SECONDS and
    KAFKA_STALL_SECONDS (a stalled read raises KafkaLogReadError rather than return part of the topic).
    """
    consumer = Consumer({**consumer_config, "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            return []
        targets = {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            for partition in metadata.topics[topic].partitions
        }
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in targets])
        records = _read_to_end(consumer, topic, targets)
    finally:
        consumer.close()
    return [r for r in records if MALFORMED_FIELD in r or not _has_day(r) or start_ds <= r[PARTITION_COLUMN] <= end_ds]


def _read_to_end(consumer: Consumer, topic: str, targets: dict[int, int]) -> list[dict]:
    records: list[dict] = []
    pending = set(targets)  # partitions without an end-of-partition event at or past their target
    reached = dict.fromkeys(targets, 0)  # the offset after the last message read, per partition
    last_progress = time.monotonic()
    settle_until: float | None = None
    while pending:
        message = consumer.poll(KAFKA_POLL_SECONDS)
        now = time.monotonic()
        error = message.error() if message is not None else None
        if message is not None and (error is None or error.code() == KafkaError._PARTITION_EOF):
            last_progress = now
            partition, offset = message.partition() or 0, message.offset() or 0
            if error is not None:
                if offset >= targets.get(partition, 0):
                    pending.discard(partition)
            else:
                records.append(_kafka_record(message.key(), message.value(), topic, partition, offset))
                reached[partition] = max(reached[partition], offset + 1)
        elif error is not None and error.fatal():
            raise KafkaLogReadError(f"topic {topic!r}: {error.str()}")
        elif now - last_progress > KAFKA_STALL_SECONDS:
            behind = {p: f"{reached[p]}/{targets[p]}" for p in sorted(pending)}
            raise KafkaLogReadError(
                f"topic {topic!r}: nothing read for {KAFKA_STALL_SECONDS:.0f}s with partitions not read to their "
                f"end (offset read/end offset: {behind})"
            )
        if all(reached[p] >= targets[p] for p in pending):
            settle_until = settle_until if settle_until is not None else now + KAFKA_SETTLE_SECONDS
            if now >= settle_until:
                break
    return records


def _has_day(record: Mapping[str, Any]) -> bool:
    return isinstance(record.get(PARTITION_COLUMN), str)


def _kafka_record(key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int) -> dict:
    """A message's record, with the message key (the logger's record id) as `_id`; a message that is not a JSON
    object becomes a record with only `_malformed`, naming where it is."""
    where = f"topic {topic!r} partition {partition} offset {offset}"
    try:
        record = json.loads(value or b"")
    except ValueError:
        return {MALFORMED_FIELD: f"{where}: not JSON"}
    if not isinstance(record, dict):
        return {MALFORMED_FIELD: f"{where}: not a JSON object"}
    if key is not None and record.get("_id") is None:
        record["_id"] = key.decode("utf-8", errors="replace")
    return record


def _log_row(record: Mapping[str, Any]) -> tuple:
    if MALFORMED_FIELD in record:
        raise MalformedLogRecord(record[MALFORMED_FIELD])
    missing = [name for name in RAW_LOG_COLUMNS if record.get(name) is None]
    if missing:
        raise MalformedLogRecord(f"record {record.get('_id', '?')} lacks {missing}")
    try:
        ts = int(record["ts_millis"])
    except (TypeError, ValueError):
        raise MalformedLogRecord(f"record {record.get('_id', '?')}: ts_millis {record['ts_millis']!r}") from None
    return tuple(ts if name == "ts_millis" else str(record[name]) for name in RAW_LOG_COLUMNS)


@dataclass
class LogRows:
    """The distinct rows of some records, in a fixed order, and the records that could not be rows."""

    rows: list[tuple] = field(default_factory=list)
    duplicates: int = 0
    malformed: list[str] = field(default_factory=list)


def log_rows(records: Iterable[Mapping[str, Any]]) -> LogRows:
    """One row per distinct record (by `_id` when it has one, else by content), ordered by day, time and content."""
    result = LogRows()
    seen: set = set()
    for record in records:
        try:
            row = _log_row(record)
        except MalformedLogRecord as error:
            result.malformed.append(str(error))
            continue
        identity = ("_id", str(record["_id"])) if record.get("_id") is not None else row
        if identity in seen:
            result.duplicates += 1
            continue
        seen.add(identity)
        result.rows.append(row)
    day, ts = RAW_LOG_COLUMNS.index(PARTITION_COLUMN), RAW_LOG_COLUMNS.index("ts_millis")
    result.rows.sort(key=lambda row: (row[day], row[ts], row))
    return result


def dump_log(warehouse: Warehouse, rows: LogRows, table: str, start_ds: str, end_ds: str) -> dict[str, int]:
    """Replace the days [start_ds, end_ds] of the raw log table with the rows; rows per day."""
    columns = [f.name for f in LOG_TABLE_SCHEMA.fields]
    in_range = [row for row in rows.rows if start_ds <= row[RAW_LOG_COLUMNS.index(PARTITION_COLUMN)] <= end_ds]
    ordered = [tuple(row[RAW_LOG_COLUMNS.index(name)] for name in columns) for row in in_range]
    frame = warehouse.spark.createDataFrame(ordered, LOG_TABLE_SCHEMA)
    warehouse.write_partitions(frame, table, start_ds, end_ds)
    counts = dict.fromkeys(date_range(start_ds, end_ds), 0)
    for row in in_range:
        counts[row[RAW_LOG_COLUMNS.index(PARTITION_COLUMN)]] += 1
    return counts


# --------------------------------------------------------------------------- schemas


class LogSchemaConflict(ValueError):
    """Two schema versions give one field different types."""


class UnsupportedLogSchema(ValueError):
    pass


@dataclass(frozen=True)
class LogSchema:
    """One schema version of a join's log: its hash, Avro key and value schemas and their fields' Spark types."""

    schema_hash: str
    key_schema: dict
    value_schema: dict
    key_fields: tuple[tuple[str, str], ...]
    value_fields: tuple[tuple[str, str], ...]

    @property
    def fields(self) -> list[tuple[str, str]]:
        return list(self.key_fields) + list(self.value_fields)

    @property
    def field_names(self) -> set[str]:
        return {name for name, _ in self.fields}


def spark_type(avro_type: Any, where: str) -> str:
    """The Spark type (DDL) of an Avro type: nullable unions to their one non-null member."""
    if isinstance(avro_type, list):
        members = [t for t in avro_type if t != "null"]
        if len(members) != 1:
            raise UnsupportedLogSchema(f"{where}: a union of {members} has no single Spark type")
        return spark_type(members[0], where)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "array":
            return f"array<{spark_type(avro_type.get('items'), where)}>"
        if kind == "map":
            return f"map<string,{spark_type(avro_type.get('values'), where)}>"
        return spark_type(kind, where)
    if isinstance(avro_type, str) and avro_type in PRIMITIVE_TYPES:
        return PRIMITIVE_TYPES[avro_type]
    raise UnsupportedLogSchema(f"{where}: Avro type {avro_type!r} is not supported")


def _record_fields(schema: Any, what: str, schema_hash: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise UnsupportedLogSchema(f"schema {schema_hash}: the {what} schema is not an Avro record")
    return tuple(
        (f["name"], spark_type(f["type"], f"schema {schema_hash}, {what} field {f['name']!r}"))
        for f in schema.get("fields", [])
    )


def parse_schema_value(schema_hash: str, schema_json: str) -> tuple[str, LogSchema]:
    """(join name, schema) of a schema record's JSON `{"join_name", "key_schema", "value_schema"}`."""
    try:
        document = json.loads(schema_json)
        join_name = document["join_name"]
        key_schema, value_schema = _as_json(document["key_schema"]), _as_json(document["value_schema"])
    except (ValueError, KeyError, TypeError) as error:
        raise UnsupportedLogSchema(f"schema {schema_hash}: not a log schema JSON ({error})") from None
    schema = LogSchema(
        schema_hash,
        key_schema,
        value_schema,
        _record_fields(key_schema, "key", schema_hash),
        _record_fields(value_schema, "value", schema_hash),
    )
    return join_name, schema


def _as_json(schema: Any) -> Any:
    """An Avro schema given as JSON text or as the parsed JSON."""
    return json.loads(schema) if isinstance(schema, str) else schema


def read_log_schemas(warehouse: Warehouse, schema_table: str, join_name: str, end_ds: str) -> dict[str, LogSchema]:
    """The join's schema versions by hash, from every schema table row up to `end_ds` (a schema never changes
    under its hash: any row of it will do). Schemas of other joins and unreadable ones are left out."""
    frame = warehouse.read(schema_table, None, end_ds)
    rows = frame.select(SCHEMA_HASH_COLUMN, SCHEMA_VALUE_COLUMN).distinct().collect()
    schemas = {}
    for row in sorted(rows, key=lambda r: (r[0] or "", r[1] or "")):
        if row[0] is None or row[1] is None or row[0] in schemas:
            continue
        try:
            name, schema = parse_schema_value(row[0], row[1])
        except UnsupportedLogSchema:
            continue
        if name == join_name:
            schemas[row[0]] = schema
    return schemas


def union_columns(schemas: list[LogSchema], join_name: str) -> list[tuple[str, str]]:
    """Every field of the schema versions (keys first, in the versions' order), each with its one Spark type."""
    typed: dict[str, tuple[str, str]] = {}  # field -> (type, the first hash that has it)
    ordered_keys: list[str] = []
    ordered_values: list[str] = []
    for schema in schemas:
        for fields, ordered in ((schema.key_fields, ordered_keys), (schema.value_fields, ordered_values)):
            for name, data_type in fields:
                if name in RESERVED_COLUMNS:
                    raise UnsupportedLogSchema(
                        f"{join_name}: schema {schema.schema_hash} has a field named {name!r}, a column of every "
                        f"flattened log table ({', '.join(RESERVED_COLUMNS)})"
                    )
                if name in typed:
                    first_type, first_hash = typed[name]
                    if first_type != data_type:
                        raise LogSchemaConflict(
                            f"{join_name}: field {name!r} is {first_type} in schema {first_hash} and {data_type} in "
                            f"schema {schema.schema_hash}"
                        )
                    continue
                typed[name] = (data_type, schema.schema_hash)
                ordered.append(name)
    return [(name, typed[name][0]) for name in ordered_keys + ordered_values]


# --------------------------------------------------------------------------- flattener


@dataclass
class FlattenedLog:
    """The decoded rows of a range and what decoding found; `release()` once the rows are written."""

    frame: DataFrame
    columns: list[tuple[str, str]]
    schema_hashes: list[str]
    undecodable: dict[str, int]  # rows by reason
    undecodable_by_day: dict[str, int] = field(default_factory=dict)
    _cached: DataFrame | None = None

    @property
    def undecodable_rows(self) -> int:
        return sum(self.undecodable.values())

    def release(self) -> None:
        if self._cached is not None:
            self._cached.unpersist()


def _ddl(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"`{name}` {data_type}" for name, data_type in columns)


def flattened_schema(columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The columns of a `_logged` table with these fields."""
    return [
        (SCHEMA_HASH_COLUMN, "string"),
        ("ts", "bigint"),
        *columns,
        (ABSENT_FIELDS_COLUMN, "array<string>"),
        (PARTITION_COLUMN, "string"),
    ]


def flatten_log(
    warehouse: Warehouse, join: Join, log_table: str, schema_table: str, start_ds: str, end_ds: str
) -> FlattenedLog:
    """A join's logged rows of [start_ds, end_ds], decoded: one column per field of the schema versions seen."""
    try:
        logged = warehouse.read(log_table, start_ds, end_ds).where(F.col("name") == join.name)
    except TableNotFound:  # nothing logged yet: an empty table of the fixed columns
        empty = warehouse.spark.createDataFrame([], _ddl(flattened_schema([])))
        return FlattenedLog(empty, [], [], {})
    logged = logged.select(SCHEMA_HASH_COLUMN, "key_base64", "value_base64", "ts_millis", PARTITION_COLUMN)
    seen = logged.groupBy(SCHEMA_HASH_COLUMN).agg(F.min("ts_millis").alias("first")).collect()
    hashes = [row[0] for row in sorted(seen, key=lambda r: (r["first"], r[0] or ""))]
    schemas = read_log_schemas(warehouse, schema_table, join.name, end_ds) if hashes else {}
    versions = [schemas[h] for h in hashes if h in schemas]
    columns = union_columns(versions, join.name)
    output = flattened_schema(columns)[:-1] + [(UNDECODABLE_COLUMN, "string"), (PARTITION_COLUMN, "string")]
    decoder = _Decoder({h: (s.key_schema, s.value_schema) for h, s in schemas.items() if h in hashes}, columns)
    decoded = logged.mapInPandas(decoder, _ddl(output)).persist()
    problems = (
        decoded.where(F.col(UNDECODABLE_COLUMN).isNotNull())
        .groupBy(UNDECODABLE_COLUMN, PARTITION_COLUMN)
        .count()
        .collect()
    )
    by_reason: dict[str, int] = {}
    by_day: dict[str, int] = {}
    for reason, ds, count in sorted(problems):
        by_reason[reason] = by_reason.get(reason, 0) + count
        by_day[ds] = by_day.get(ds, 0) + count
    frame = decoded.where(F.col(UNDECODABLE_COLUMN).isNull()).drop(UNDECODABLE_COLUMN)
    frame = _latest_per_row_id(frame, join, [name for name, _ in columns])
    retyped = _map_key_types(warehouse, join, columns, end_ds)
    if retyped:
        frame = frame.select(*[F.col(c).cast(retyped[c]).alias(c) if c in retyped else F.col(c) for c in frame.columns])
        columns = [(name, retyped[name].simpleString() if name in retyped else t) for name, t in columns]
    hashes_used = [s.schema_hash for s in versions]
    return FlattenedLog(frame, columns, hashes_used, by_reason, by_day, decoded)


def _map_key_types(
    warehouse: Warehouse, join: Join, columns: list[tuple[str, str]], end_ds: str
) -> dict[str, T.DataType]:
    """The join's type of each logged map column whose keys the join does not type as strings.

    Avro map keys are strings, so a map<bigint,...> feature (a histogram of a long column) is logged as
    map<string,...>; its keys are cast back, or bootstrap would mix two types in one column. The join's type
    comes from the part's aggregation and its source's input column type (read for the schema only); a
    column whose type cannot be told (a source table missing, a derivation) keeps the logged type.
    """
    logged_maps = {name: data_type for name, data_type in columns if data_type.startswith("map<string,")}
    retyped: dict[str, T.DataType] = {}
    for part in join.join_parts:
        specs = [s for s in part.group_by.specs if part.feature_prefix + s.column_name in logged_maps]
        if not specs or part.group_by.derivations:
            continue
        try:
            sources = read_group_by_sources(warehouse, part.group_by, None, end_ds)
        except TableNotFound:
            continue
        input_types = {f.name: f.dataType for f in sources.schema.fields}
        for spec in specs:
            if spec.input_column not in input_types:
                continue
            joined = output_type(spec, input_types[spec.input_column])
            name = part.feature_prefix + spec.column_name
            logged = T.MapType(T.StringType(), joined.valueType) if isinstance(joined, T.MapType) else None
            if logged is not None and joined != logged and logged.simpleString() == logged_maps[name]:
                retyped[name] = joined
    return retyped


def _latest_per_row_id(frame: DataFrame, join: Join, fields: list[str]) -> DataFrame:
    """One row per row id and day: a request id fetched twice keeps its latest logged values (the table feeds
    bootstrap, which matches left rows by row id and refuses duplicates). Ties in time keep the greatest hash,
    then the greatest values (as JSON), so a refill gives the same row."""
    row_ids = [r for r in join.row_ids if r in fields]
    if not row_ids or len(row_ids) != len(join.row_ids):
        return frame
    values = F.to_json(F.struct(*[F.col(c) for c in fields]))
    order = Window.partitionBy(*row_ids, PARTITION_COLUMN).orderBy(
        F.col("ts").desc(), F.col(SCHEMA_HASH_COLUMN).desc(), values.desc()
    )
    latest = frame.withColumn("_rank", F.row_number().over(order))
    return latest.where(F.col("_rank") == 1).drop("_rank")


class _Decoder:
    """The `mapInPandas` function: decodes each row's key and value bytes with its hash's Avro schemas.

    Picklable (plain data only): the Avro schemas are parsed once per Python worker, on first use.
    """

    def __init__(self, schemas: dict[str, tuple[dict, dict]], columns: list[tuple[str, str]]) -> None:
        self.schemas = schemas
        self.names = [name for name, _ in columns]
        self._parsed: dict[str, tuple[Any, Any, set[str]]] = {}

    def __getstate__(self) -> dict:
        return {"schemas": self.schemas, "names": self.names}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _parsed={})

    def _schema(self, schema_hash: str) -> tuple[Any, Any, set[str]]:
        if schema_hash not in self._parsed:
            key_schema, value_schema = self.schemas[schema_hash]
            fields = {f["name"] for f in key_schema["fields"]} | {f["name"] for f in value_schema["fields"]}
            self._parsed[schema_hash] = (
                fastavro.parse_schema(key_schema, _write_hint=False),
                fastavro.parse_schema(value_schema, _write_hint=False),
                fields,
            )
        return self._parsed[schema_hash]

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            out: dict[str, list] = {
                name: [] for name in [SCHEMA_HASH_COLUMN, "ts", *self.names, ABSENT_FIELDS_COLUMN, UNDECODABLE_COLUMN]
            }
            for schema_hash, key, value, ts in zip(
                batch[SCHEMA_HASH_COLUMN], batch["key_base64"], batch["value_base64"], batch["ts_millis"]
            ):
                record, absent, problem = self._decode(schema_hash, key, value)
                out[SCHEMA_HASH_COLUMN].append(schema_hash)
                out["ts"].append(int(ts))
                for name in self.names:
                    out[name].append(record.get(name))
                out[ABSENT_FIELDS_COLUMN].append(absent)
                out[UNDECODABLE_COLUMN].append(problem)
            frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in out.items()})
            frame[PARTITION_COLUMN] = batch[PARTITION_COLUMN].to_numpy()
            yield frame

    def _decode(self, schema_hash: str, key: str, value: str) -> tuple[dict, list[str] | None, str | None]:
        if schema_hash not in self.schemas:
            return {}, None, "no schema for its hash in the schema table"
        key_schema, value_schema, fields = self._schema(schema_hash)
        try:
            record = {**_read_avro(value, value_schema), **_read_avro(key, key_schema)}
        except (ValueError, TypeError, EOFError, IndexError, UnicodeDecodeError, KeyError):
            return {}, None, "bytes do not decode with its schema"
        return record, [name for name in self.names if name not in fields], None


def _read_avro(encoded: str, schema: Any) -> dict:
    data = base64.b64decode(encoded, validate=True)
    buffer = io.BytesIO(data)
    record = fastavro.schemaless_reader(buffer, schema, None)
    if buffer.tell() != len(data):  # bytes left over: written with another schema
        raise ValueError(f"{len(data) - buffer.tell()} bytes left after the record")
    if not isinstance(record, dict):
        raise ValueError("not a record")
    return record
