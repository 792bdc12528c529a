"""Writer API for the streaming side of the online store: raw events into `{GROUP_BY}_STREAMING`.

An event is the group-by's selected columns of one source row (after the query's `selects` and
`wheres`, which the caller, a stream consumer, applies): its key columns, `ts` (epoch
millis) and the value columns the aggregations read. Stored as `{_id, k: key_json, ts, d: {column:
value}}` (see `store.base`). With an `event_id`, `_id` is `"<key_json>|<event_id>"` and writing the same
event again is a no-op (at-least-once consumers stay exact); without one, every write adds an event.

The fetcher reads, per key, the events with batch end <= ts < request time and merges them with the
batch tail and head IRs; events older than the batch end belong to the batch (a late event reaches the
online values with the next daily upload). Events with a null key are dropped, as offline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from feature_assets.model import GROUP_BYS, GroupBy
from feature_assets.naming import normalize_name
from feature_assets.online.fetch.keys import InvalidKey, coerce_key
from feature_assets.online.store import Document, KVStore, batch_versions, canonical_key_json, stored_config


@dataclass
class StreamingEvent:
    key: dict[str, Any]
    ts: int
    values: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None


def _plain(value: Any) -> Any:
    """Numpy scalars as Python values, NaN as null (BSON stores plain values only)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is not None and type(value).__name__ == "NAType":
        return None
    return value


def _stored_group_by(store: KVStore, name: str) -> GroupBy:
    group_by = stored_config(store, GROUP_BYS, normalize_name(name))
    if not isinstance(group_by, GroupBy):
        raise KeyError(f"group-by {name!r} is not in the metadata store; run metadata-upload first")
    return group_by


class StreamingWriter:
    """`StreamingWriter(store, group_by)` with a group-by model, or its name (config read from the metadata
    store). `write(events)` returns how many events were sent."""

    def __init__(self, store: KVStore, group_by: GroupBy | str):
        if isinstance(group_by, str):
            group_by = _stored_group_by(store, group_by)
        self.store = store
        self.group_by = group_by
        self.name = group_by.name
        self.keys = list(group_by.key_columns)
        self.dataset = group_by.streaming_dataset
        self._key_types: dict[str, str] | None = None

    def key_types(self) -> dict[str, str]:
        if self._key_types is None:
            versions = batch_versions(self.store, self.name)
            latest = versions[max(versions)]["schema"] if versions else {}
            self._key_types = {k: t for k, t in latest.get("keys", [])}
        return self._key_types

    def document(self, event: StreamingEvent | Mapping[str, Any]) -> Document | None:
        if not isinstance(event, StreamingEvent):
            event = StreamingEvent(
                key=dict(event.get("key") or {k: event.get(k) for k in self.keys}),
                ts=event["ts"],
                values=dict(event.get("values") or {}),
                event_id=event.get("event_id"),
            )
        types = self.key_types()
        key = {}
        for name in self.keys:
            if name not in event.key:
                raise InvalidKey(f"streaming event for {self.name} is missing key {name!r}")
            key[name] = coerce_key(name, event.key[name], types.get(name))
        if any(v is None for v in key.values()):
            return None
        doc: Document = {
            "k": canonical_key_json(key),
            "ts": int(event.ts),
            "d": {c: _plain(v) for c, v in event.values.items()},
        }
        if event.event_id is not None:
            doc["_id"] = f"{doc['k']}|{event.event_id}"
        return doc

    def write(self, events: Iterable[StreamingEvent | Mapping[str, Any]]) -> int:
        docs = [d for d in (self.document(e) for e in events) if d is not None]
        if not docs:
            return 0
        return self.store.append(self.dataset, docs)
