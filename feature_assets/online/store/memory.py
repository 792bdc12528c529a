"""A dict-backed online store with MongoDB's behaviour, for unit tests (thread-safe)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable
from typing import Any

from feature_assets.online.store.base import Document, KVStore, LoadError, StoreUnavailable, doc_id, version_range


class InMemoryKVStore(KVStore):
    """`available = False` simulates an outage; `fail_after_puts = n` a loader dying after n pairs."""

    def __init__(self) -> None:
        self.datasets: dict[str, dict[str, Any]] = {}
        self.metadata: dict[str, Document] = {}
        self.lock = threading.RLock()
        self.available = True
        self.fail_after_puts: int | None = None

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("in-memory store switched off")

    # batch
    def bulk_put(self, dataset: str, version: str, items: Iterable[tuple[str, bytes]]) -> int:
        self._check()
        sent = 0
        with self.lock:
            table = self.datasets.setdefault(dataset, {})
            for key_json, value in items:
                if self.fail_after_puts is not None and sent >= self.fail_after_puts:
                    raise LoadError("simulated loader failure")
                table.setdefault(doc_id(version, key_json), bytes(value))
                sent += 1
        return sent

    def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        self._check()
        table = self.datasets.get(dataset, {})
        return {k: table[doc_id(version, k)] for k in keys if doc_id(version, k) in table}

    def count_version(self, dataset: str, version: str) -> int:
        low, high = version_range(version)
        return sum(1 for key in self.datasets.get(dataset, {}) if low <= key < high)

    def delete_version(self, dataset: str, version: str) -> int:
        low, high = version_range(version)
        with self.lock:
            table = self.datasets.get(dataset, {})
            doomed = [key for key in table if low <= key < high]
            for key in doomed:
                del table[key]
        return len(doomed)

    # streaming
    def append(self, dataset: str, events: list[Document]) -> int:
        self._check()
        with self.lock:
            table = self.datasets.setdefault(dataset, {})
            for event in events:
                event = dict(event)
                event.setdefault("_id", f"auto-{len(table)}-{time.monotonic_ns()}")
                table.setdefault(event["_id"], event)
        return len(events)

    def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        self._check()
        wanted = set(keys)
        found: dict[str, list[Document]] = {}
        for doc in list(self.datasets.get(dataset, {}).values()):
            if doc["k"] in wanted and start_ts <= doc["ts"] < end_ts:
                found.setdefault(doc["k"], []).append(doc)
        for docs in found.values():
            docs.sort(key=lambda d: d["ts"])
        return found

    def delete_before(self, dataset: str, ts: int) -> int:
        self._check()
        with self.lock:
            table = self.datasets.get(dataset, {})
            doomed = [doc_id for doc_id, doc in table.items() if doc["ts"] < ts]
            for doc_id in doomed:
                del table[doc_id]
        return len(doomed)

    # partitioned documents
    def replace_partition(self, dataset: str, ds: str, docs: list[Document]) -> int:
        self._check()
        with self.lock:
            table = self.datasets.setdefault(dataset, {})
            for doc_id in [key for key, doc in table.items() if doc.get("ds") == ds]:
                del table[doc_id]
            for doc in docs:
                table[doc["_id"]] = copy.deepcopy(dict(doc))
        return len(docs)

    # metadata
    def get_metadata(self, key: str) -> Document | None:
        self._check()
        doc = self.metadata.get(key)
        return copy.deepcopy(doc) if doc is not None else None

    def put_metadata(self, key: str, doc: Document) -> None:
        self._check()
        with self.lock:
            self.metadata[key] = copy.deepcopy({**doc, "_id": key})

    def set_metadata_fields(
        self,
        key: str,
        fields: Document,
        push: dict[str, list[Any]] | None = None,
        unset: list[str] | None = None,
        inc: dict[str, int] | None = None,
    ) -> None:
        self._check()
        with self.lock:
            doc = self.metadata.setdefault(key, {"_id": key})
            for path, amount in (inc or {}).items():
                parent = _parent(doc, path, create=True)
                name = path.rsplit(".", 1)[-1]
                parent[name] = parent.get(name, 0) + amount
            for path, value in fields.items():
                _parent(doc, path, create=True)[path.rsplit(".", 1)[-1]] = copy.deepcopy(value)
            for path in unset or []:
                _parent(doc, path, create=False).pop(path.rsplit(".", 1)[-1], None)
            for name, values in (push or {}).items():
                doc.setdefault(name, []).extend(copy.deepcopy(list(values)))

    def pull_metadata_field(self, key: str, field: str, condition: Document) -> None:
        with self.lock:
            doc = self.metadata.get(key) or {}
            doc[field] = [
                item for item in doc.get(field, []) if not all(item.get(k) == v for k, v in condition.items())
            ]

    def ping(self) -> None:
        self._check()


def _parent(doc: Document, path: str, create: bool) -> Document:
    """The dict holding a dotted path's last field (created on the way when `create`)."""
    target = doc
    for part in path.split(".")[:-1]:
        target = target.setdefault(part, {}) if create else target.get(part, {})
    return target
