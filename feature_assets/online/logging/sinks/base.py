"""The sink interface of the fetch logger, and an in-memory sink for tests."""

from __future__ import annotations

import threading
from typing import Any, Protocol, TypedDict


class LogRecord(TypedDict):
    """One log record as it is stored (the raw log table's columns)."""

    name: str
    schema_hash: str
    key_base64: str
    value_base64: str
    ts_millis: int
    ds: str


class LogSink(Protocol):
    """Writes batches of records. `write` raises on failure; the logger then retries the same batch with the
    same ids (`ids[i]` belongs to `records[i]`), so a sink can make a retried write idempotent."""

    def write(self, records: list[LogRecord], ids: list[str]) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps records in a list (tests, and a logger that should not write anywhere)."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def write(self, records: list[LogRecord], ids: list[str]) -> None:
        with self._lock:
            for record, record_id in zip(records, ids):
                if record_id not in self._ids:
                    self._ids.add(record_id)
                    self.records.append(record)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"MemorySink({len(self.records)} records)"

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.records]
