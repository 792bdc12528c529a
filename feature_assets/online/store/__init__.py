"""The online key-value store: the interface and key helpers (`base`), MongoDB (`mongo`), the in-memory fake
for unit tests (`memory`), batch versions and rollbacks (`batches`) and stored configs (`metadata`)."""

from feature_assets.online.store.base import (
    AsyncReads,
    BlockingReads,
    Document,
    KVStore,
    LoadError,
    StoreUnavailable,
    batch_pointer_key,
    canonical_key_json,
    config_key,
    doc_id,
    version_range,
)
from feature_assets.online.store.batches import (
    RETIRE_GRACE_SECONDS,
    EmptyBatchRefused,
    RollbackError,
    batch_versions,
    check_not_emptied,
    collect_garbage,
    held_versions,
    load_batch,
    rollback_batch,
    serving_version,
)
from feature_assets.online.store.memory import InMemoryKVStore
from feature_assets.online.store.metadata import stored_config, upload_metadata
from feature_assets.online.store.mongo import DEFAULT_DATABASE, METADATA_COLLECTION, MONGO_URI_ENV, MongoKVStore

__all__ = [
    "DEFAULT_DATABASE",
    "METADATA_COLLECTION",
    "MONGO_URI_ENV",
    "RETIRE_GRACE_SECONDS",
    "AsyncReads",
    "BlockingReads",
    "Document",
    "EmptyBatchRefused",
    "InMemoryKVStore",
    "KVStore",
    "LoadError",
    "MongoKVStore",
    "RollbackError",
    "StoreUnavailable",
    "batch_pointer_key",
    "batch_versions",
    "canonical_key_json",
    "check_not_emptied",
    "collect_garbage",
    "config_key",
    "doc_id",
    "held_versions",
    "load_batch",
    "rollback_batch",
    "serving_version",
    "stored_config",
    "upload_metadata",
    "version_range",
]
