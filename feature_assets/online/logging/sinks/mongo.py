"""The MongoDB sink: records as documents of the `fetch_log` collection in the online store's database."""

from __future__ import annotations

from typing import Any

from pymongo.errors import BulkWriteError

from feature_assets.online.logging.sinks.base import LogRecord

FETCH_LOG_COLLECTION = "fetch_log"
_DUPLICATE_KEY = 11000


class MongoLogSink:
    """`insert_many` of documents with exactly the record's fields plus `_id` (the record's id): a retried
    batch that was partly written before its failure skips the documents already there."""

    def __init__(self, database: Any, collection: str = FETCH_LOG_COLLECTION):
        self.collection = database[collection]

    def write(self, records: list[LogRecord], ids: list[str]) -> None:
        documents = [{"_id": record_id, **record} for record, record_id in zip(records, ids)]
        try:
            self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            others = [e for e in error.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
            if others or error.details.get("writeConcernErrors"):
                raise

    def close(self) -> None:
        pass  # the database's client belongs to the online store

    def __repr__(self) -> str:
        return f"MongoLogSink({self.collection.database.name}.{self.collection.name})"
