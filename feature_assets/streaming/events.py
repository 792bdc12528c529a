"""A decoded source row -> the group-by's event: the query applied exactly as the offline engine applies it.

Offline (`offline.sources.read_query`), Spark filters the source rows with every `wheres` condition, then
evaluates `selects` (every column but `ds` and `ts` when there are none) and the time column cast to
BIGINT as `ts`. Here the same Spark SQL expressions are evaluated in Python (`feature_assets.sql.expressions`,
tested against Spark), so a streamed event and the same row in the table give one event. Rows dropped:
a where that is not true, a null key (dropped offline too), a null time.

The event carries the group-by's keys, `ts` (epoch millis) and the columns its aggregations read (input
and bucket columns); without aggregations, every selected non-key column.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import fastavro

from feature_assets.model import EventSource, GroupBy
from feature_assets.sql.expressions import EvaluationError, Expression, UnsupportedExpression, compile_expression

TIME_COLUMN_DEFAULT = "ts"
PACIFIC = ZoneInfo("America/Los_Angeles")


class RowError(ValueError):
    """A row the query cannot be evaluated on (where Spark would fail the query); sent to the dead-letter topic."""


class QueryNotStreamable(ValueError):
    """A group-by's query that streamed rows cannot be run through; the message names the field."""


@dataclass(frozen=True)
class SelectedEvent:
    key: dict[str, Any]
    ts: int
    values: dict[str, Any]


class EventSelector:
    """The query of one streamed source of a group-by, compiled once against the source's column types."""

    def __init__(self, group_by: GroupBy, source: EventSource, schema: Mapping[str, str]):
        self.group_by = group_by
        query = source.query
        where_field = f"{group_by.name}: sources query.wheres"
        self.wheres = [self._compile(w, schema, f"{where_field}[{i}]") for i, w in enumerate(query.wheres)]
        for index, where in enumerate(self.wheres):
            if where.output_type != "boolean":
                raise QueryNotStreamable(
                    f"{where_field}[{index}]: {where.text!r} is a {where.output_type}, not a condition"
                )
        selects = (
            dict(query.selects)
            if query.selects is not None
            else {c: f"`{c}`" for c in schema if c not in ("ds", TIME_COLUMN_DEFAULT)}
        )
        self.selects = {
            name: self._compile(expr, schema, f"{group_by.name}: query.selects.{name}")
            for name, expr in selects.items()
        }
        time_column = query.time_column or TIME_COLUMN_DEFAULT
        self.time = self._compile(f"CAST(({time_column}) AS BIGINT)", schema, f"{group_by.name}: query.time_column")
        self.key_columns = list(group_by.key_columns)
        self.value_columns = _value_columns(group_by, list(self.selects))
        missing = [c for c in [*self.key_columns, *self.value_columns] if c not in self.selects]
        if missing:
            raise QueryNotStreamable(f"{group_by.name}: columns {missing} are not selected by its query")
        self.key_schema = _record_schema("key", {c: self.selects[c].output_type for c in self.key_columns})
        self.value_schema = _record_schema("value", {c: self.selects[c].output_type for c in self.value_columns})

    @staticmethod
    def _compile(text: str, schema: Mapping[str, str], field: str) -> Expression:
        try:
            return compile_expression(text, schema)
        except UnsupportedExpression as error:
            raise QueryNotStreamable(f"{field}: {error}") from None

    def select(self, row: Mapping[str, Any]) -> SelectedEvent | None:
        """The row's event, or None when a where drops it or its key or time is null; raises RowError."""
        try:
            for where in self.wheres:
                if where.evaluate(row) is not True:
                    return None
            ts = self.time.evaluate(row)
            if ts is None:
                return None
            key = {c: self.selects[c].evaluate(row) for c in self.key_columns}
            if any(v is None for v in key.values()):
                return None
            values = {c: self.selects[c].evaluate(row) for c in self.value_columns}
        except EvaluationError as error:
            raise RowError(str(error)) from None
        return SelectedEvent(key, int(ts), values)

    # ------------------------------------------------------------------ the debug print of local-streaming
    def key_bytes(self, event: SelectedEvent) -> bytes:
        return _avro(self.key_schema, event.key)

    def value_bytes(self, event: SelectedEvent) -> bytes:
        return _avro(self.value_schema, event.values)

    def describe(self, event: SelectedEvent) -> str:
        """What Chronon's local-streaming prints per event."""
        return "\n".join(
            [
                f"streaming dataset: {self.group_by.streaming_dataset}",
                f"keys: {_json_list(event.key[c] for c in self.key_columns)}",
                f"values: {_json_list(event.values[c] for c in self.value_columns)}",
                f"keyBytes: {base64.b64encode(self.key_bytes(event)).decode()}",
                f"valueBytes: {base64.b64encode(self.value_bytes(event)).decode()}",
                f"ts: {event.ts}  |  UTC: {_local_time(event.ts, UTC)} | PST: {_local_time(event.ts, PACIFIC)}",
            ]
        )


def _value_columns(group_by: GroupBy, selected: list[str]) -> list[str]:
    """Aggregation inputs then bucket columns, in order of first use (Chronon's order); without aggregations the
    selected non-key columns."""
    if not group_by.aggregations:
        return [c for c in selected if c not in group_by.key_columns]
    columns: list[str] = []
    for agg in group_by.aggregations:
        for column in [agg.input_column, *agg.buckets]:
            if column not in columns:
                columns.append(column)
    return columns


def _record_schema(name: str, types: dict[str, str]) -> Any:
    """Each field a nullable union, as Chronon encodes key and value rows."""
    return fastavro.parse_schema(
        {
            "type": "record",
            "name": name,
            "fields": [{"name": column, "type": ["null", type_name]} for column, type_name in types.items()],
        }
    )


def _avro(schema: Any, record: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, dict(record))
    return buffer.getvalue()


def _json_list(values: Any) -> str:
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def _local_time(millis: int, zone: Any) -> str:
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC).astimezone(zone)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + f".{millis % 1000:03d}" if millis % 1000 else text
