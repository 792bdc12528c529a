"""The online store on MongoDB (or any server speaking its protocol) through pymongo.

Indexes: batch datasets keep only the default unique `_id` index (bulk loads maintain no secondary index);
streaming datasets get `{k: 1, ts: 1}` for the per-key time-range reads.

Failures: unordered bulk inserts in chunks; duplicate-key errors are ignored, other write errors and network
errors are retried with back-off and reported (`LoadError`) when they persist. Any failure to reach the
server surfaces to readers as `StoreUnavailable`. The connection string (with credentials) comes only from
the `MongoResource` / `FEATURE_ASSETS_MONGO_URI`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar

from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)

from feature_assets.online.store.base import (
    AsyncReads,
    Document,
    KVStore,
    LoadError,
    StoreUnavailable,
    doc_id,
    version_range,
)

METADATA_COLLECTION = "FEATURE_ASSETS_METADATA"
MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
DEFAULT_DATABASE = "feature_assets"
CHUNK = 1000
RETRIES = 5
_UNREACHABLE = (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout)
T = TypeVar("T")
P = ParamSpec("P")


def _unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"MongoDB is unavailable: {type(error).__name__}: {str(error)[:200]}")


def _translate_errors(func: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except _UNREACHABLE as error:
            raise _unavailable(error) from error

    return wrapper


def _translate_errors_async(func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except _UNREACHABLE as error:
            raise _unavailable(error) from error

    return wrapper


class MongoKVStore(KVStore):
    """The store on MongoDB through pymongo; `from_uri` for a client of its own, `from_resource` in Dagster."""

    def __init__(
        self,
        database: Any,
        *,
        client: MongoClient[Document] | None = None,
        uri: str | None = None,
        client_options: dict[str, Any] | None = None,
    ):
        self.db = database
        self._client = client
        self._uri = uri
        self._client_options = client_options or {}
        self._async: dict[int, _MongoAsyncReads | _ThreadedReads] = {}
        self._indexed: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str, database: str = DEFAULT_DATABASE, **client_options: Any) -> MongoKVStore:
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": 5000,
            "connectTimeoutMS": 2000,
            "socketTimeoutMS": 120_000,
            "appname": "feature-assets-online",
        }
        options.update(client_options)
        client: MongoClient[Document] = MongoClient(uri, **options)
        return cls(client[database], client=client, uri=uri, client_options=options)

    @classmethod
    def from_resource(cls, resource: Any) -> MongoKVStore:
        return cls(resource.get_database())

    def async_reads(self) -> AsyncReads:
        """Reads through pymongo's `AsyncMongoClient` (same URI and options), one client per event loop: the
        fetch service awaits all of a join's reads at once, with no thread per request. A store made from
        an existing database object (no URI) runs its blocking reads in a worker thread instead."""
        loop = asyncio.get_running_loop()
        reads = self._async.get(id(loop))
        if reads is None or reads.loop is not loop:
            if self._uri is None:
                reads = _ThreadedReads(self, loop)
            else:
                client: AsyncMongoClient[Document] = AsyncMongoClient(self._uri, **self._client_options)
                reads = _MongoAsyncReads(client[self.db.name], loop)
            self._async[id(loop)] = reads
        return reads

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._async.clear()  # async clients close with their event loop

    def collection(self, dataset: str) -> Any:
        return self.db[dataset]

    def ensure_indexes(self, dataset: str) -> None:
        if dataset in self._indexed:
            return
        with self._lock:
            if dataset.endswith(("_STREAMING", "_STATS")):
                self.db[dataset].create_index([("k", 1), ("ts", 1)], name="key_ts")
                self.db[dataset].create_index([("ts", 1)], name="ts")  # retention deletes by time
            if dataset.endswith("_STATS"):
                self.db[dataset].create_index([("ds", 1)], name="ds")  # a reload replaces a day
            self._indexed.add(dataset)

    # batch -----------------------------------------------------------------------------------
    @_translate_errors
    def bulk_put(self, dataset: str, version: str, items: Iterable[tuple[str, bytes]]) -> int:
        sent = 0
        chunk: list[Document] = []
        collection = self.db[dataset]
        for key_json, value in items:
            chunk.append({"_id": doc_id(version, key_json), "b": bytes(value)})
            if len(chunk) >= CHUNK:
                sent += _insert_idempotent(collection, chunk)
                chunk = []
        if chunk:
            sent += _insert_idempotent(collection, chunk)
        return sent

    @_translate_errors
    def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        collection = self.db[dataset]
        if len(keys) == 1:
            return _batch_values(version, [collection.find_one({"_id": doc_id(version, keys[0])})])
        return _batch_values(version, collection.find(_batch_filter(version, keys)))

    @_translate_errors
    def count_version(self, dataset: str, version: str) -> int:
        low, high = version_range(version)
        return int(self.db[dataset].count_documents({"_id": {"$gte": low, "$lt": high}}))

    @_translate_errors
    def delete_version(self, dataset: str, version: str) -> int:
        low, high = version_range(version)
        return int(self.db[dataset].delete_many({"_id": {"$gte": low, "$lt": high}}).deleted_count)

    # streaming -------------------------------------------------------------------------------
    @_translate_errors
    def append(self, dataset: str, events: list[Document]) -> int:
        self.ensure_indexes(dataset)
        if not events:
            return 0
        return _insert_idempotent(self.db[dataset], [dict(e) for e in events])

    @_translate_errors
    def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        return _events_by_key(self.db[dataset].find(*_stream_query(keys, start_ts, end_ts)))

    @_translate_errors
    def delete_before(self, dataset: str, ts: int) -> int:
        return int(self.db[dataset].delete_many({"ts": {"$lt": int(ts)}}).deleted_count)

    # partitioned documents -------------------------------------------------------------------
    @_translate_errors
    def replace_partition(self, dataset: str, ds: str, docs: list[Document]) -> int:
        self.ensure_indexes(dataset)
        self.db[dataset].delete_many({"ds": ds})
        if not docs:
            return 0
        return _insert_idempotent(self.db[dataset], [dict(doc) for doc in docs])

    # metadata --------------------------------------------------------------------------------
    @_translate_errors
    def get_metadata(self, key: str) -> Document | None:
        doc: Document | None = self.db[METADATA_COLLECTION].find_one({"_id": key})
        return doc

    @_translate_errors
    def put_metadata(self, key: str, doc: Document) -> None:
        self.db[METADATA_COLLECTION].replace_one({"_id": key}, {**doc, "_id": key}, upsert=True)

    @_translate_errors
    def set_metadata_fields(
        self,
        key: str,
        fields: Document,
        push: dict[str, list[Any]] | None = None,
        unset: list[str] | None = None,
        inc: dict[str, int] | None = None,
    ) -> None:
        update: Document = {}
        if inc:
            update["$inc"] = dict(inc)
        if fields:
            update["$set"] = fields
        if unset:
            update["$unset"] = {name: "" for name in unset}
        if push:
            update["$push"] = {name: {"$each": list(values)} for name, values in push.items()}
        self.db[METADATA_COLLECTION].update_one({"_id": key}, update, upsert=True)

    @_translate_errors
    def pull_metadata_field(self, key: str, field: str, condition: Document) -> None:
        self.db[METADATA_COLLECTION].update_one({"_id": key}, {"$pull": {field: condition}})

    @_translate_errors
    def ping(self) -> None:
        self.db.client.admin.command("ping")


def _insert_idempotent(collection: Any, docs: list[Document]) -> int:
    """Unordered insert; duplicate `_id`s are ignored, other failures retried, then reported."""
    pending = docs
    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            collection.insert_many(pending, ordered=False)
            return len(docs)
        except BulkWriteError as error:
            failed = {e["index"] for e in error.details.get("writeErrors", []) if e.get("code") != 11000}
            concern = error.details.get("writeConcernErrors") or []
            if not failed and not concern:
                return len(docs)
            if concern:
                failed = set(range(len(pending)))
            pending = [pending[i] for i in sorted(failed)]
            last = error
        except (AutoReconnect, NetworkTimeout) as error:
            last = error
        time.sleep(min(0.2 * 2**attempt, 5.0))
    raise LoadError(
        f"{len(pending)} document(s) could not be written to {collection.name} after {RETRIES} "
        f"attempts: {str(last)[:300]}"
    )


def _batch_filter(version: str, keys: list[str]) -> Document:
    return {"_id": {"$in": [doc_id(version, key) for key in dict.fromkeys(keys)]}}


def _batch_values(version: str, docs: Iterable[Document | None]) -> dict[str, bytes]:
    """{key_json: value} of batch documents (None entries: not found)."""
    prefix = len(version) + 1
    return {doc["_id"][prefix:]: doc["b"] for doc in docs if doc is not None}


def _stream_query(keys: list[str], start_ts: int, end_ts: int) -> tuple[Document, Document]:
    keys = list(dict.fromkeys(keys))
    selector: Any = keys[0] if len(keys) == 1 else {"$in": keys}
    return {"k": selector, "ts": {"$gte": int(start_ts), "$lt": int(end_ts)}}, {"k": 1, "ts": 1, "d": 1}


def _events_by_key(docs: Iterable[Document]) -> dict[str, list[Document]]:
    found: dict[str, list[Document]] = {}
    for doc in docs:
        found.setdefault(doc["k"], []).append(doc)
    for events in found.values():
        events.sort(key=lambda d: d["ts"])
    return found


# --------------------------------------------------------------------------- async reads


class _MongoAsyncReads(AsyncReads):
    """Reads through an `AsyncMongoClient` bound to one event loop."""

    def __init__(self, database: Any, loop: asyncio.AbstractEventLoop):
        self.db = database
        self.loop = loop

    @_translate_errors_async
    async def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        collection = self.db[dataset]
        if len(keys) == 1:
            return _batch_values(version, [await collection.find_one({"_id": doc_id(version, keys[0])})])
        return _batch_values(version, await collection.find(_batch_filter(version, keys)).to_list())

    @_translate_errors_async
    async def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        return _events_by_key(await self.db[dataset].find(*_stream_query(keys, start_ts, end_ts)).to_list())


class _ThreadedReads(AsyncReads):
    """A store's blocking reads run in a worker thread (a store without a URI to open an async client)."""

    def __init__(self, store: KVStore, loop: asyncio.AbstractEventLoop):
        self.store = store
        self.loop = loop

    async def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        return await asyncio.to_thread(self.store.multi_get, dataset, version, keys)

    async def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[Document]]:
        return await asyncio.to_thread(self.store.range_read, dataset, keys, start_ts, end_ts)
