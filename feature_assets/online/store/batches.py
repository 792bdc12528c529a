"""Batch versions in the online store: loading a day's version, the pointer readers follow, garbage collection.

A version is `<ds>.<digest>`, the digest being a hash of the whole upload partition, so re-loading the same
partition writes the same `_id`s (duplicate-key errors are the idempotent no-op) and a changed partition gets a
new version written beside the old one. The batch pointer of a group-by (`batch/<GROUP_BY>` in the metadata
collection) is `{dataset, versions: {<ds>: {version, rows, loaded_at, schema}}, retired: [{version, at}]}`.

A loader writes every document of a new version, checks that the version holds as many documents as the upload
has rows, and only then sets `versions.<ds>` in the pointer (one atomic `$set`). Readers resolve the pointer
first, so a loader killed halfway leaves them on the previous complete version; the orphaned documents are
overwritten by the next attempt (same `_id`s) or garbage-collected. Replaced and expired versions are listed in
`retired` and deleted by a later load once a grace period (longer than any reader's pointer cache) has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from feature_assets.model import GroupBy
from feature_assets.online.store.base import Document, KVStore, LoadError, batch_pointer_key

RETIRE_GRACE_SECONDS = 60.0


def batch_versions(store: KVStore, group_by_name: str) -> dict[str, Document]:
    """{ds: version info} of the complete batch versions of a group-by."""
    pointer = store.get_metadata(batch_pointer_key(group_by_name)) or {}
    return {ds: info for ds, info in (pointer.get("versions") or {}).items() if info}


def load_batch(
    store: KVStore,
    group_by: GroupBy,
    ds: str,
    version: str,
    rows: int,
    schema: Document,
    write: Callable[[], Any],
    retain_days: int = 3,
    grace_seconds: float = RETIRE_GRACE_SECONDS,
) -> dict[str, Any]:
    """Load one batch version and make it visible: `write()` writes the documents (e.g. a Spark job or
    `store.bulk_put`); the pointer flips only when the version holds `rows` documents.

    Returns {"status": "unchanged" | "loaded", "version", "rows", "seconds"}. Idempotent: a version that
    is already the complete one for `ds` is not written again.
    """
    dataset = group_by.batch_dataset
    current = batch_versions(store, group_by.name).get(ds)
    if current and current.get("version") == version and current.get("rows") == rows:
        return {"status": "unchanged", "version": version, "rows": rows, "seconds": 0.0}
    started = time.monotonic()
    write()
    present = store.count_version(dataset, version)
    if present != rows:
        raise LoadError(
            f"{dataset} version {version}: {present} of {rows} documents present after the load; "
            "the batch pointer was not moved (readers stay on the previous version)"
        )
    retired = []
    if current and current.get("version") != version:
        retired.append({"version": current["version"], "at": time.time()})
    info = {"version": version, "rows": rows, "loaded_at": time.time(), "schema": schema}
    store.set_metadata_fields(
        batch_pointer_key(group_by.name), {f"versions.{ds}": info, "dataset": dataset}, push={"retired": retired}
    )
    collect_garbage(store, group_by, retain_days, grace_seconds)
    return {"status": "loaded", "version": version, "rows": rows, "seconds": round(time.monotonic() - started, 3)}


def collect_garbage(store: KVStore, group_by: GroupBy, retain_days: int, grace_seconds: float) -> None:
    """Retire versions of days beyond the newest `retain_days`, and delete retired versions past the grace."""
    pointer_key = batch_pointer_key(group_by.name)
    pointer = store.get_metadata(pointer_key) or {}
    versions = pointer.get("versions") or {}
    expired = sorted(versions)[:-retain_days] if retain_days and len(versions) > retain_days else []
    if expired:
        now = time.time()
        store.set_metadata_fields(
            pointer_key,
            {},
            unset=[f"versions.{ds}" for ds in expired],
            push={"retired": [{"version": versions[ds]["version"], "at": now} for ds in expired]},
        )
    pointer = store.get_metadata(pointer_key) or {}
    live = {info["version"] for info in (pointer.get("versions") or {}).values() if info}
    for item in pointer.get("retired") or []:
        if time.time() - item["at"] >= grace_seconds and item["version"] not in live:
            store.delete_version(group_by.batch_dataset, item["version"])
            store.pull_metadata_field(pointer_key, "retired", {"version": item["version"]})
