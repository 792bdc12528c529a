"""The online key-value store: a small interface, MongoDB behind it, and an in-memory fake for unit tests.

Datasets (MongoDB collections) per group-by, `{GROUP_BY}` being the clean upper-cased name
(`quickstart.purchases.v1` -> `QUICKSTART_PURCHASES_V1`):

- `{GROUP_BY}_BATCH`: one document per (batch version, key):
  `{_id: "<version>|<key_json>", b: <value bytes>}`. A version is `<ds>.<digest>`, the digest being a hash
  of the whole upload partition, so re-loading the same partition writes the same `_id`s (duplicate-key
  errors are the idempotent no-op) and a changed partition gets a new version written beside the old one.
  Index: only the default unique `_id` index — point reads are `_id` lookups (`$in` for batches), and
  counting or deleting a version is an `_id` range scan (`"<version>|"` to `"<version>}"`), so bulk loads
  maintain no secondary index.
- `{GROUP_BY}_STREAMING`: one document per event: `{_id, k: <key_json>, ts: <epoch millis>, d: {column:
  value}}`. `_id` is `"<key_json>|<event id>"` when the writer has an event id (a replayed event is a
  duplicate-key no-op), else a fresh ObjectId. Index: `{k: 1, ts: 1}` for the per-key time-range reads.
- `FEATURE_ASSETS_METADATA`: compiled configs (`conf/<kind>/<name>`) and one batch pointer per group-by
  (`batch/<GROUP_BY>`): `{versions: {<ds>: {version, rows, loaded_at, schema}}, retired: [...]}`.

Versioning: a loader writes every document of a new version, checks that the version holds as many
documents as the upload has rows, and only then sets `versions.<ds>` in the pointer (one atomic `$set`).
Readers resolve the pointer first, so a loader killed halfway leaves them on the previous complete
version; the orphaned documents are overwritten by the next attempt (same `_id`s) or garbage-collected.
Replaced and expired versions are listed in `retired` and deleted by a later load once a grace period
(longer than any reader's pointer cache) has passed.

Failures: unordered bulk inserts in chunks; duplicate-key errors are ignored, other write errors and
network errors are retried with back-off and reported (`LoadError`) when they persist. Any failure to
reach the server surfaces to readers as `StoreUnavailable`. The connection string (with credentials)
comes only from the `MongoResource` / `FEATURE_ASSETS_MONGO_URI`.
"""
from __future__ import annotations

import copy
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Iterable, Iterator

from feature_assets.compiler.columns import clean_name

METADATA_COLLECTION = "FEATURE_ASSETS_METADATA"
MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
DEFAULT_DATABASE = "feature_assets"
CHUNK = 1000
RETRIES = 5
RETIRE_GRACE_SECONDS = 60.0


class StoreUnavailable(RuntimeError):
    """The store cannot be reached (or timed out)."""


class LoadError(RuntimeError):
    """A bulk load that could not be completed; the batch pointer was left unchanged."""


def dataset_name(group_by_name: str) -> str:
    return clean_name(group_by_name.replace("/", ".")).upper()


def batch_dataset(group_by_name: str) -> str:
    return f"{dataset_name(group_by_name)}_BATCH"


def streaming_dataset(group_by_name: str) -> str:
    return f"{dataset_name(group_by_name)}_STREAMING"


def batch_pointer_key(group_by_name: str) -> str:
    return f"batch/{dataset_name(group_by_name)}"


def config_key(kind: str, name: str) -> str:
    return f"conf/{kind}/{name}"


def version_range(version: str) -> tuple[str, str]:
    return f"{version}|", f"{version}}}"  # '}' sorts right after '|'


def doc_id(version: str, key_json: str) -> str:
    return f"{version}|{key_json}"


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
    def append(self, dataset: str, events: list[dict]) -> int:
        """Insert event documents `{_id?, k, ts, d}`; duplicates of an `_id` are ignored."""

    @abstractmethod
    def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[dict]]:
        """{key_json: [event documents with start_ts <= ts < end_ts, sorted by ts]}."""

    # metadata
    @abstractmethod
    def get_metadata(self, key: str) -> dict | None: ...

    @abstractmethod
    def put_metadata(self, key: str, doc: dict) -> None: ...

    @abstractmethod
    def set_metadata_fields(self, key: str, fields: dict, push: dict | None = None,
                            unset: list[str] | None = None) -> None:
        """Atomically `$set` dotted fields (`$push` to lists, `$unset` fields) of a metadata document."""

    @abstractmethod
    def pull_metadata_field(self, key: str, field: str, condition: dict) -> None: ...

    @abstractmethod
    def ping(self) -> None: ...

    def async_reads(self) -> "AsyncReads":
        """The fetch path's reads (`multi_get`, `range_read`) as coroutines, for an event loop. This default
        calls the blocking methods directly: right for an in-memory store, whose reads never wait."""
        return _BlockingReads(self)


class AsyncReads:
    """`multi_get` and `range_read` of a store, awaitable; same arguments and results as on `KVStore`."""

    async def multi_get(self, dataset: str, version: str, keys: list[str]) -> dict[str, bytes]:
        raise NotImplementedError

    async def range_read(self, dataset: str, keys: list[str], start_ts: int, end_ts: int) -> dict[str, list[dict]]:
        raise NotImplementedError


class _BlockingReads(AsyncReads):
    def __init__(self, store: KVStore):
        self.store = store

    async def multi_get(self, dataset, version, keys):
        return self.store.multi_get(dataset, version, keys)

    async def range_read(self, dataset, keys, start_ts, end_ts):
        return self.store.range_read(dataset, keys, start_ts, end_ts)


# --------------------------------------------------------------------------- MongoDB


def _unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"MongoDB is unavailable: {type(error).__name__}: {str(error)[:200]}")


def _translate_errors_async(func):
    async def wrapper(*args, **kwargs):
        from pymongo.errors import ConnectionFailure, ExecutionTimeout, ServerSelectionTimeoutError
        try:
            return await func(*args, **kwargs)
        except (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout) as error:
            raise _unavailable(error) from error
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _translate_errors(func):
    def wrapper(*args, **kwargs):
        from pymongo.errors import ConnectionFailure, ExecutionTimeout, ServerSelectionTimeoutError
        try:
            return func(*args, **kwargs)
        except (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout) as error:
            raise _unavailable(error) from error
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class MongoKVStore(KVStore):
    """The store on MongoDB (or any server speaking its protocol) through pymongo."""

    def __init__(self, database, *, client=None, uri: str | None = None, client_options: dict | None = None):
        self.db = database
        self._client = client
        self._uri = uri
        self._client_options = client_options or {}
        self._async: dict[int, _MongoAsyncReads] = {}
        self._indexed: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str, database: str = DEFAULT_DATABASE, **client_options) -> "MongoKVStore":
        from pymongo import MongoClient
        options = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 2000, "socketTimeoutMS": 120_000,
                   "appname": "feature-assets-online"}
        options.update(client_options)
        client = MongoClient(uri, **options)
        return cls(client[database], client=client, uri=uri, client_options=options)

    def async_reads(self) -> "AsyncReads":
        """Reads through pymongo's `AsyncMongoClient` (same URI and options), one client per event loop: the
        fetch service awaits all of a join's reads at once, with no thread per request. A store made from
        an existing database object (no URI) runs its blocking reads in a worker thread instead."""
        import asyncio
        loop = asyncio.get_running_loop()
        reads = self._async.get(id(loop))
        if reads is None or reads.loop is not loop:
            if self._uri is None:
                reads = _ThreadedReads(self, loop)
            else:
                from pymongo import AsyncMongoClient
                client = AsyncMongoClient(self._uri, **self._client_options)
                reads = _MongoAsyncReads(client[self.db.name], loop)
            self._async[id(loop)] = reads
        return reads

    @classmethod
    def from_resource(cls, resource) -> "MongoKVStore":
        return cls(resource.get_database())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._async.clear()  # async clients close with their event loop

    def collection(self, dataset: str):
        return self.db[dataset]

    def ensure_indexes(self, dataset: str) -> None:
        if dataset in self._indexed:
            return
        with self._lock:
            if dataset.endswith("_STREAMING"):
                self.db[dataset].create_index([("k", 1), ("ts", 1)], name="key_ts")
            self._indexed.add(dataset)

    # batch -----------------------------------------------------------------------------------
    @_translate_errors
    def bulk_put(self, dataset, version, items):
        sent = 0
        chunk: list[dict] = []
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
    def multi_get(self, dataset, version, keys):
        collection = self.db[dataset]
        if len(keys) == 1:
            return _batch_values(version, [collection.find_one({"_id": doc_id(version, keys[0])})])
        return _batch_values(version, collection.find(_batch_filter(version, keys)))

    @_translate_errors
    def count_version(self, dataset, version):
        low, high = version_range(version)
        return self.db[dataset].count_documents({"_id": {"$gte": low, "$lt": high}})

    @_translate_errors
    def delete_version(self, dataset, version):
        low, high = version_range(version)
        return self.db[dataset].delete_many({"_id": {"$gte": low, "$lt": high}}).deleted_count

    # streaming -------------------------------------------------------------------------------
    @_translate_errors
    def append(self, dataset, events):
        self.ensure_indexes(dataset)
        if not events:
            return 0
        return _insert_idempotent(self.db[dataset], [dict(e) for e in events])

    @_translate_errors
    def range_read(self, dataset, keys, start_ts, end_ts):
        return _events_by_key(self.db[dataset].find(*_stream_query(keys, start_ts, end_ts)))

    # metadata --------------------------------------------------------------------------------
    @_translate_errors
    def get_metadata(self, key):
        return self.db[METADATA_COLLECTION].find_one({"_id": key})

    @_translate_errors
    def put_metadata(self, key, doc):
        self.db[METADATA_COLLECTION].replace_one({"_id": key}, {**doc, "_id": key}, upsert=True)

    @_translate_errors
    def set_metadata_fields(self, key, fields, push=None, unset=None):
        update: dict[str, Any] = {}
        if fields:
            update["$set"] = fields
        if unset:
            update["$unset"] = {name: "" for name in unset}
        if push:
            update["$push"] = {name: {"$each": list(values)} for name, values in push.items()}
        self.db[METADATA_COLLECTION].update_one({"_id": key}, update, upsert=True)

    @_translate_errors
    def pull_metadata_field(self, key, field, condition):
        self.db[METADATA_COLLECTION].update_one({"_id": key}, {"$pull": {field: condition}})

    @_translate_errors
    def ping(self):
        self.db.client.admin.command("ping")


def _insert_idempotent(collection, docs: list[dict]) -> int:
    """Unordered insert; duplicate `_id`s are ignored, other failures retried, then reported."""
    from pymongo.errors import AutoReconnect, BulkWriteError, NetworkTimeout
    pending = docs
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
        time.sleep(min(0.2 * 2 ** attempt, 5.0))
    raise LoadError(f"{len(pending)} document(s) could not be written to {collection.name} after {RETRIES} "
                    f"attempts: {str(last)[:300]}")


# --------------------------------------------------------------------------- in-memory fake


class _MongoAsyncReads(AsyncReads):
    def __init__(self, database, loop):
        self.db = database
        self.loop = loop

    @_translate_errors_async
    async def multi_get(self, dataset, version, keys):
        collection = self.db[dataset]
        if len(keys) == 1:
            return _batch_values(version, [await collection.find_one({"_id": doc_id(version, keys[0])})])
        return _batch_values(version, await collection.find(_batch_filter(version, keys)).to_list())

    @_translate_errors_async
    async def range_read(self, dataset, keys, start_ts, end_ts):
        return _events_by_key(await self.db[dataset].find(*_stream_query(keys, start_ts, end_ts)).to_list())


def _batch_filter(version: str, keys: list[str]) -> dict:
    return {"_id": {"$in": [doc_id(version, key) for key in dict.fromkeys(keys)]}}


def _batch_values(version: str, docs) -> dict[str, bytes]:
    """{key_json: value} of batch documents (None entries: not found)."""
    prefix = len(version) + 1
    return {doc["_id"][prefix:]: doc["b"] for doc in docs if doc is not None}


def _stream_query(keys: list[str], start_ts: int, end_ts: int) -> tuple[dict, dict]:
    keys = list(dict.fromkeys(keys))
    selector = keys[0] if len(keys) == 1 else {"$in": keys}
    return {"k": selector, "ts": {"$gte": int(start_ts), "$lt": int(end_ts)}}, {"k": 1, "ts": 1, "d": 1}


def _events_by_key(docs) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for doc in docs:
        found.setdefault(doc["k"], []).append(doc)
    for events in found.values():
        events.sort(key=lambda d: d["ts"])
    return found


class _ThreadedReads(AsyncReads):
    def __init__(self, store: KVStore, loop):
        self.store = store
        self.loop = loop

    async def multi_get(self, dataset, version, keys):
        import asyncio
        return await asyncio.to_thread(self.store.multi_get, dataset, version, keys)

    async def range_read(self, dataset, keys, start_ts, end_ts):
        import asyncio
        return await asyncio.to_thread(self.store.range_read, dataset, keys, start_ts, end_ts)


class InMemoryKVStore(KVStore):
    """A dict-backed store with the same behaviour, for unit tests (thread-safe)."""

    def __init__(self):
        self.datasets: dict[str, dict[str, Any]] = {}
        self.metadata: dict[str, dict] = {}
        self.lock = threading.RLock()
        self.available = True
        self.fail_after_puts: int | None = None  # simulate a loader dying after that many pairs

    def _check(self):
        if not self.available:
            raise StoreUnavailable("in-memory store switched off")

    def bulk_put(self, dataset, version, items):
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

    def multi_get(self, dataset, version, keys):
        self._check()
        table = self.datasets.get(dataset, {})
        return {k: table[doc_id(version, k)] for k in keys if doc_id(version, k) in table}

    def count_version(self, dataset, version):
        low, high = version_range(version)
        return sum(1 for key in self.datasets.get(dataset, {}) if low <= key < high)

    def delete_version(self, dataset, version):
        low, high = version_range(version)
        with self.lock:
            table = self.datasets.get(dataset, {})
            doomed = [key for key in table if low <= key < high]
            for key in doomed:
                del table[key]
        return len(doomed)

    def append(self, dataset, events):
        self._check()
        with self.lock:
            table = self.datasets.setdefault(dataset, {})
            for event in events:
                event = dict(event)
                event.setdefault("_id", f"auto-{len(table)}-{time.monotonic_ns()}")
                table.setdefault(event["_id"], event)
        return len(events)

    def range_read(self, dataset, keys, start_ts, end_ts):
        self._check()
        wanted = set(keys)
        found: dict[str, list[dict]] = {}
        for doc in list(self.datasets.get(dataset, {}).values()):
            if doc["k"] in wanted and start_ts <= doc["ts"] < end_ts:
                found.setdefault(doc["k"], []).append(doc)
        for docs in found.values():
            docs.sort(key=lambda d: d["ts"])
        return found

    def get_metadata(self, key):
        self._check()
        doc = self.metadata.get(key)
        return copy.deepcopy(doc) if doc is not None else None

    def put_metadata(self, key, doc):
        self._check()
        with self.lock:
            self.metadata[key] = copy.deepcopy({**doc, "_id": key})

    def set_metadata_fields(self, key, fields, push=None, unset=None):
        self._check()
        with self.lock:
            doc = self.metadata.setdefault(key, {"_id": key})
            for path, value in fields.items():
                target = doc
                *parents, last = path.split(".")
                for part in parents:
                    target = target.setdefault(part, {})
                target[last] = copy.deepcopy(value)
            for path in unset or []:
                target = doc
                *parents, last = path.split(".")
                for part in parents:
                    target = target.get(part, {})
                target.pop(last, None)
            for name, values in (push or {}).items():
                doc.setdefault(name, []).extend(copy.deepcopy(list(values)))

    def pull_metadata_field(self, key, field, condition):
        with self.lock:
            doc = self.metadata.get(key) or {}
            doc[field] = [item for item in doc.get(field, [])
                          if not all(item.get(k) == v for k, v in condition.items())]

    def ping(self):
        self._check()


# --------------------------------------------------------------------------- batch versions


def batch_versions(store: KVStore, group_by_name: str) -> dict[str, dict]:
    """{ds: version info} of the complete batch versions of a group-by."""
    pointer = store.get_metadata(batch_pointer_key(group_by_name)) or {}
    return {ds: info for ds, info in (pointer.get("versions") or {}).items() if info}


def load_batch(store: KVStore, group_by_name: str, ds: str, version: str, rows: int, schema: dict,
               write: callable, retain_days: int = 3, grace_seconds: float = RETIRE_GRACE_SECONDS) -> dict:
    """Load one batch version and make it visible: `write()` writes the documents (e.g. a Spark job or
    `store.bulk_put`); the pointer flips only when the version holds `rows` documents.

    Returns {"status": "unchanged" | "loaded", "version", "rows", "seconds"}. Idempotent: a version that
    is already the complete one for `ds` is not written again.
    """
    dataset = batch_dataset(group_by_name)
    pointer_key = batch_pointer_key(group_by_name)
    current = batch_versions(store, group_by_name).get(ds)
    if current and current.get("version") == version and current.get("rows") == rows:
        return {"status": "unchanged", "version": version, "rows": rows, "seconds": 0.0}
    started = time.monotonic()
    write()
    present = store.count_version(dataset, version)
    if present != rows:
        raise LoadError(f"{dataset} version {version}: {present} of {rows} documents present after the load; "
                        "the batch pointer was not moved (readers stay on the previous version)")
    retired = []
    if current and current.get("version") != version:
        retired.append({"version": current["version"], "at": time.time()})
    info = {"version": version, "rows": rows, "loaded_at": time.time(), "schema": schema}
    store.set_metadata_fields(pointer_key, {f"versions.{ds}": info, "dataset": dataset}, push={"retired": retired})
    _collect_garbage(store, group_by_name, retain_days, grace_seconds)
    return {"status": "loaded", "version": version, "rows": rows, "seconds": round(time.monotonic() - started, 3)}


def _collect_garbage(store: KVStore, group_by_name: str, retain_days: int, grace_seconds: float) -> None:
    """Retire versions of days beyond the newest `retain_days`, and delete retired versions past the grace."""
    pointer_key = batch_pointer_key(group_by_name)
    dataset = batch_dataset(group_by_name)
    pointer = store.get_metadata(pointer_key) or {}
    versions = pointer.get("versions") or {}
    expired = sorted(versions)[:-retain_days] if retain_days and len(versions) > retain_days else []
    if expired:
        now = time.time()
        store.set_metadata_fields(pointer_key, {}, unset=[f"versions.{ds}" for ds in expired],
                                  push={"retired": [{"version": versions[ds]["version"], "at": now} for ds in expired]})
    pointer = store.get_metadata(pointer_key) or {}
    live = {info["version"] for info in (pointer.get("versions") or {}).values() if info}
    for item in pointer.get("retired") or []:
        if time.time() - item["at"] >= grace_seconds and item["version"] not in live:
            store.delete_version(dataset, item["version"])
            store.pull_metadata_field(pointer_key, "retired", {"version": item["version"]})


def iter_chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
