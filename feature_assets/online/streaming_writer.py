"""Writer API for the streaming side of the online store: raw events into `{GROUP_BY}_STREAMING`.

An event is the group-by's selected columns of one source row (after the query's `selects` and
`wheres`, which the caller — the Kafka job of a later issue — applies): its key columns, `ts` (epoch
millis) and the value columns the aggregations read. Stored as `{_id, k: key_json, ts, d: {column:
value}}` (see `kv_store`). With an `event_id`, `_id` is `"<key_json>|<event_id>"` and writing the same
event again is a no-op (at-least-once consumers stay exact); without one, every write adds an event.

The fetcher reads, per key, the events with batch end <= ts < request time and merges them with the
batch tail and head IRs; events older than the batch end belong to the batch (a late event reaches the
online values with the next daily upload). Events with a null key are dropped, as offline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from feature_assets.online.keys import InvalidKey, coerce_key, key_json
from feature_assets.online.kv_store import KVStore, batch_versions, config_key, streaming_dataset


@dataclass
class StreamingEvent:
    key: dict
    ts: int
    values: dict = field(default_factory=dict)
    event_id: str | None = None


def _plain(value):
    """Numpy scalars as Python values, NaN as null (BSON stores plain values only)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is not None and type(value).__name__ == "NAType":
        return None
    return value


class StreamingWriter:
    """`StreamingWriter(store, group_by)` with a compiled group-by dict, or its name (config read from the
    metadata store). `write(events)` returns how many events were sent."""

    def __init__(self, store: KVStore, group_by: dict | str):
        if isinstance(group_by, str):
            doc = store.get_metadata(config_key("group_bys", group_by.replace("/", ".")))
            if doc is None:
                raise KeyError(f"group-by {group_by!r} is not in the metadata store; run metadata-upload first")
            import json
            group_by = json.loads(doc["config"])
        self.store = store
        self.group_by = group_by
        self.name = group_by["metaData"]["name"]
        self.keys = list(group_by["keyColumns"])
        self.dataset = streaming_dataset(self.name)
        self._key_types: dict[str, str] | None = None

    def key_types(self) -> dict[str, str]:
        if self._key_types is None:
            versions = batch_versions(self.store, self.name)
            latest = versions[max(versions)]["schema"] if versions else {}
            self._key_types = {k: t for k, t in latest.get("keys", [])}
        return self._key_types

    def document(self, event: StreamingEvent | Mapping) -> dict | None:
        if not isinstance(event, StreamingEvent):
            event = StreamingEvent(key=dict(event.get("key") or {k: event.get(k) for k in self.keys}),
                                   ts=event["ts"], values=dict(event.get("values") or {}),
                                   event_id=event.get("event_id"))
        types = self.key_types()
        key = {}
        for name in self.keys:
            if name not in event.key:
                raise InvalidKey(f"streaming event for {self.name} is missing key {name!r}")
            key[name] = coerce_key(name, event.key[name], types.get(name))
        if any(v is None for v in key.values()):
            return None
        doc = {"k": key_json(key), "ts": int(event.ts), "d": {c: _plain(v) for c, v in event.values.items()}}
        if event.event_id is not None:
            doc["_id"] = f"{doc['k']}|{event.event_id}"
        return doc

    def write(self, events: Iterable[StreamingEvent | Mapping]) -> int:
        docs = [d for d in (self.document(e) for e in events) if d is not None]
        if not docs:
            return 0
        return self.store.append(self.dataset, docs)
