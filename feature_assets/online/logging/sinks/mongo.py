"""The MongoDB sink: each batch of records becomes a few bundle documents of the `fetch_log` collection in the
online store's database.

The log shares its server with the fetches it logs, so a write must cost that server little: one insert of a
1000-record bundle costs a fraction of inserting 1000 documents (one document, one `_id` and one `ds` index
entry instead of a thousand of each). A bundle document:

    {"_id": <the id of its first record>, "ds": "YYYY-MM-DD", "count": <records>,
     "records": Binary(<the records as concatenated BSON documents, each with its record id as `_id`>)}

A bundle holds the records of one day (`ds`, indexed: the log dump reads one day at a time) and stays under
`MAX_BUNDLE_BYTES`. The batch's records and ids are the same on a retry, so are its bundles: a bundle written
before a failure is a duplicate `_id` the retry skips. `bundle_records` reads both bundles and the one document
per record written by earlier versions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import bson
from pymongo.errors import BulkWriteError

from feature_assets.online.logging.sinks.base import LogRecord, LogSink

FETCH_LOG_COLLECTION = "fetch_log"
BUNDLE_FIELD = "records"
COUNT_FIELD = "count"
DS_FIELD = "ds"
DS_INDEX = "ds"
# Far under MongoDB's 16 MiB document limit, so a batch of large values is split into a few bundles.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
_DUPLICATE_KEY = 11000
# A record as the sink stores it: its day, its id, and its BSON (with the id as `_id`), encoded in the fetch's
# thread so that the logger's thread only concatenates bytes.
EncodedRecord = tuple[str, str, bytes]


def bundle_documents(encoded: list[EncodedRecord], max_bytes: int = MAX_BUNDLE_BYTES) -> list[dict[str, Any]]:
    """The bundle documents of a batch: per day in the order of first appearance, split at `max_bytes`."""
    if encoded and len({day for day, _, _ in encoded}) == 1:
        # The usual batch, one day that fits one bundle: built without a Python step per record, since this
        # runs in the logger's thread, which holds the GIL that the fetches need.
        records = [data for _, _, data in encoded]
        if sum(map(len, records)) <= max_bytes:
            return [_bundle(encoded[0][0], encoded[0][1], records)]
    open_bundles: dict[str, tuple[str, list[bytes]]] = {}  # day: (first record id, encoded records)
    sizes: dict[str, int] = {}
    documents: list[dict[str, Any]] = []
    for day, record_id, data in encoded:
        if day in open_bundles and sizes[day] + len(data) > max_bytes:
            documents.append(_bundle(day, *open_bundles.pop(day)))
        if day not in open_bundles:
            open_bundles[day], sizes[day] = (record_id, []), 0
        open_bundles[day][1].append(data)
        sizes[day] += len(data)
    documents.extend(_bundle(day, *bundle) for day, bundle in open_bundles.items())
    return documents


def _bundle(day: str, bundle_id: str, encoded: list[bytes]) -> dict[str, Any]:
    return {"_id": bundle_id, DS_FIELD: day, COUNT_FIELD: len(encoded), BUNDLE_FIELD: bson.Binary(b"".join(encoded))}


def bundle_records(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The records of a `fetch_log` document, each with its record id as `_id`: a bundle's records, or the
    document itself when it is a single record."""
    payload = document.get(BUNDLE_FIELD)
    if isinstance(payload, bytes):
        yield from bson.decode_all(payload)
    else:
        yield dict(document)


class MongoLogSink(LogSink[EncodedRecord]):
    """`insert_many` of a batch's bundle documents (usually one); a retried batch skips the bundles already
    written. The `ds` index is created with the first write."""

    def __init__(self, database: Any, collection: str = FETCH_LOG_COLLECTION, max_bundle_bytes: int = MAX_BUNDLE_BYTES):
        if max_bundle_bytes < 1:
            raise ValueError(f"max_bundle_bytes must be positive, got {max_bundle_bytes}")
        self.collection = database[collection]
        self.max_bundle_bytes = max_bundle_bytes
        self._indexed = False
        self._lock = threading.Lock()

    def encode(self, record: LogRecord, record_id: str) -> EncodedRecord:
        return record["ds"], record_id, bson.encode({"_id": record_id, **record})

    def write_encoded(self, batch: list[EncodedRecord]) -> None:
        documents = bundle_documents(batch, self.max_bundle_bytes)
        if not documents:
            return
        self._ensure_index()
        try:
            self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            others = [e for e in error.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
            if others or error.details.get("writeConcernErrors"):
                raise

    def _ensure_index(self) -> None:
        with self._lock:
            if not self._indexed:
                self.collection.create_index([(DS_FIELD, 1)], name=DS_INDEX)
                self._indexed = True

    # close: nothing to release, the database's client belongs to the online store

    def __repr__(self) -> str:
        return f"MongoLogSink({self.collection.database.name}.{self.collection.name})"
