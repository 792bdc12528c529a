"""The online key-value store's interface: what the loader, the streaming writer and the fetcher need.

Datasets (MongoDB collections) per group-by, `{GROUP_BY}` being its dataset name (`GroupBy.dataset`,
`quickstart.purchases.v1` -> `QUICKSTART_PURCHASES_V1`):

- `{GROUP_BY}_BATCH`: one document per (batch version, key): `{_id: "<version>|<key_json>", b: <value bytes>}`
  (versions: see `batches`). Point reads are `_id` lookups (`$in` for batches); counting or deleting a version
  is an `_id` range scan (`"<version>|"` to `"<version>}"`).
- `{GROUP_BY}_STREAMING`: one document per event: `{_id, k: <key_json>, ts: <epoch millis>, d: {column:
  value}}`. `_id` is `"<key_json>|<event id>"` when the writer has an event id (a replayed event is a
  duplicate-key no-op), else a fresh id.
- `{JOIN}_DAILY_STATS` / `{JOIN}_LOGGED_DAILY_STATS` (a stats upload table's name, upper-cased): one document
  per (column, time bucket): `{_id: "<column>|<bucket ts>", k: <column>, ts: <bucket start millis>, ds, d: {...}}`
  with the mergeable summary bytes; a day is replaced as a whole (`replace_partition`), read by column and
  time range (`range_read`).
- the metadata collection: compiled configs (`conf/<kind>/<name>`) and one batch pointer per group-by
  (`batch/<GROUP_BY>`).

Implementations: `mongo.MongoKVStore` (MongoDB or any server speaking its protocol) and
`memory.InMemoryKVStore` (unit tests).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from feature_assets.naming import dataset_name

Document = dict[str, Any]


class StoreUnavailable(RuntimeError):
    """The store cannot be reached (or timed out)."""


class LoadError(RuntimeError):
    """A bulk load that could not be completed; the batch pointer was left unchanged."""


# --------------------------------------------------------------------------- keys


def canonical_key_json(key: dict[str, Any]) -> str:
    """The key as stored: JSON with sorted keys and no spaces, so equal keys meet."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def batch_pointer_key(group_by_name: str) -> str:
    return f"batch/{dataset_name(group_by_name)}"


def config_key(kind: str, name: str) -> str:
    return f"conf/{kind}/{name}"


def version_range(version: str) -> tuple[str, str]:
    return f"{version}|", f"{version}}}"  # '}' sorts right after '|'


def doc_id(version: str, key_json: str) -> str:
    return f"{version}|{key_json}"


# --------------------------------------------------------------------------- interface


class KVStore(ABC):
    """Batch datasets (versioned), streaming datasets (append + per-key time range) and metadata."""

    # batch
    @abstractmethod
    def bulk_put(self, dataset: str, version: str, items: Iterable[tuple[str, bytes]]) -> int:
        """Write (key_json, value) pairs under a version; idempotent. Returns the number of pairs sent."""

    @abstractmethod
    def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        """{key_json: value} for the keys present in that version."""

    @abstractmethod
    def count_version(self, dataset: str, version: str) -> int: ...

    @abstractmethod
    def delete_version(self, dataset: str, version: str) -> int: ...

    # streaming
    @abstractmethod
    def append(self, dataset: str, events: list[Document]) -> int:
        """Insert event documents `{_id?, k, ts, d}`; duplicates of an `_id` are ignored."""

    @abstractmethod
    def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        """{key_json: [event documents with start_ts <= ts < end_ts, sorted by ts]}."""

    @abstractmethod
    def delete_before(self, dataset: str, ts: int) -> int:
        """Remove the event documents with ts < `ts`; returns how many were removed."""

    # partitioned documents (stats)
    @abstractmethod
    def replace_partition(self, dataset: str, ds: str, docs: list[Document]) -> int:
        """Replace the documents whose `ds` field is `ds` by `docs` (each with `_id`, `k`, `ts`, `ds`); returns
        how many were written. Readers may see the day missing while it is replaced."""

    # metadata
    @abstractmethod
    def get_metadata(self, key: str) -> Document | None: ...

    @abstractmethod
    def put_metadata(self, key: str, doc: Document) -> None: ...

    @abstractmethod
    def set_metadata_fields(
        self,
        key: str,
        fields: Document,
        push: dict[str, list[Any]] | None = None,
        unset: list[str] | None = None,
        inc: dict[str, int] | None = None,
    ) -> None:
        """Atomically `$set` dotted fields (`$push` to lists, `$unset` fields, `$inc` counters) of a metadata
        document (created when missing)."""

    @abstractmethod
    def pull_metadata_field(self, key: str, field: str, condition: Document) -> None: ...

    @abstractmethod
    def ping(self) -> None: ...

    def async_reads(self) -> AsyncReads:
        """The fetch path's reads (`multi_get`, `range_read`) as coroutines, for an event loop. This default
        calls the blocking methods directly: right for an in-memory store, whose reads never wait."""
        return BlockingReads(self)


class AsyncReads:
    """`multi_get` and `range_read` of a store, awaitable; same arguments and results as on `KVStore`."""

    async def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        raise NotImplementedError

    async def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        raise NotImplementedError


class BlockingReads(AsyncReads):
    """A store's blocking reads called in place (they must not wait on I/O)."""

    def __init__(self, store: KVStore):
        self.store = store

    async def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        return self.store.multi_get(dataset, version, keys)

    async def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        return self.store.range_read(dataset, keys, start_ts, end_ts)
