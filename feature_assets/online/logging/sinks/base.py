"""The sink interface of the fetch logger, and an in-memory sink for tests."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Generic, TypedDict, TypeVar


class LogRecord(TypedDict):
    """One log record as it is stored (the raw log table's columns)."""

    name: str
    schema_hash: str
    key_base64: str
    value_base64: str
    ts_millis: int
    ds: str


Encoded = TypeVar("Encoded")


class LogSink(ABC, Generic[Encoded]):
    """Writes batches of records in two steps, so that the logger's background thread holds Python's GIL (which
    it shares with the fetches) as little as possible:

    - `encode(record, record_id)` runs in the fetch's own thread, once per record: a few microseconds of C code
      (BSON, JSON) that turn the record into what the store takes;
    - `write_encoded(batch)` runs in the logger's thread with a batch of those; it raises on failure and the
      logger then retries the same batch (the same record ids), so a sink can make a retried write idempotent.

    `write(records, ids)` does both at once (`ids[i]` belongs to `records[i]`)."""

    @abstractmethod
    def encode(self, record: LogRecord, record_id: str) -> Encoded: ...

    @abstractmethod
    def write_encoded(self, batch: list[Encoded]) -> None: ...

    def write(self, records: list[LogRecord], ids: list[str]) -> None:
        self.write_encoded([self.encode(record, record_id) for record, record_id in zip(records, ids)])

    def close(self) -> None:
        """Release what the sink owns (the default: nothing)."""


class MemorySink(LogSink[tuple[str, LogRecord]]):
    """Keeps records in a list (tests, and a logger that should not write anywhere)."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def encode(self, record: LogRecord, record_id: str) -> tuple[str, LogRecord]:
        return record_id, record

    def write_encoded(self, batch: list[tuple[str, LogRecord]]) -> None:
        with self._lock:
            for record_id, record in batch:
                if record_id not in self._ids:
                    self._ids.add(record_id)
                    self.records.append(record)

    def __repr__(self) -> str:
        return f"MemorySink({len(self.records)} records)"

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.records]
