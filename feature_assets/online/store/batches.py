"""Batch versions in the online store: loading a day's version, the pointer readers follow, rollbacks, garbage
collection.

A version is `<ds>.<digest>`, the digest being a hash of the whole upload partition, so re-loading the same
partition writes the same `_id`s (duplicate-key errors are the idempotent no-op) and a changed partition gets a
new version written beside the old one. The batch pointer of a group-by (`batch/<GROUP_BY>` in the metadata
collection) is `{dataset, versions: {<ds>: {version, rows, loaded_at, schema}}, held: {<ds>: ...},
retired: [{version, at}]}`.

A loader writes every document of a new version, checks that the version holds as many documents as the upload
has rows, and only then sets `versions.<ds>` in the pointer (one atomic `$set`). Readers resolve the pointer
first, so a loader killed halfway leaves them on the previous complete version; the orphaned documents are
overwritten by the next attempt (same `_id`s) or garbage-collected. Replaced and expired versions are listed in
`retired` and deleted by a later load once a grace period (longer than any reader's pointer cache) has passed.

Which batch a fetch reads: the version of the latest day in `versions` at or before the day it needs (see the
fetcher). A rollback to day D moves the versions of the days after D to `held`: readers no longer see them and
fall back to D, and their documents stay (garbage collection keeps held versions) so a rollback to a held day
restores it, with the held days before it. A load of a held day makes it visible again. An empty version never
replaces a non-empty one by accident: `load_batch` refuses it unless `allow_empty`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from feature_assets.model import GroupBy
from feature_assets.online.store.base import Document, KVStore, LoadError, batch_pointer_key

RETIRE_GRACE_SECONDS = 60.0


class EmptyBatchRefused(LoadError):
    """An empty upload would have replaced the non-empty batch that fetches read."""


class RollbackError(LookupError):
    """The day to roll back to has no batch version retained in the store."""


def batch_versions(store: KVStore, group_by_name: str) -> dict[str, Document]:
    """{ds: version info} of the complete batch versions of a group-by that readers see (held ones excluded)."""
    return _days(store.get_metadata(batch_pointer_key(group_by_name)) or {}, "versions")


def held_versions(store: KVStore, group_by_name: str) -> dict[str, Document]:
    """{ds: version info} of the versions a rollback holds back (complete, invisible to readers)."""
    return _days(store.get_metadata(batch_pointer_key(group_by_name)) or {}, "held")


def _days(pointer: Document, field: str) -> dict[str, Document]:
    return {ds: info for ds, info in (pointer.get(field) or {}).items() if info}


def serving_version(versions: dict[str, Document], ds: str) -> tuple[str, Document] | None:
    """The (day, info) of the version that fetches needing day `ds` read: the latest day at or before it."""
    eligible = [day for day in versions if day <= ds]
    return (max(eligible), versions[max(eligible)]) if eligible else None


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
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Load one batch version and make it visible: `write()` writes the documents (e.g. a Spark job or
    `store.bulk_put`); the pointer flips only when the version holds `rows` documents.

    Returns {"status": "unchanged" | "loaded", "version", "rows", "seconds", "latest"} (`latest`: the newest
    visible day, which fetches after it read). Idempotent: a version that is already the complete one for
    `ds` is not written again. An empty version is refused (`EmptyBatchRefused`, nothing changed) when the
    version fetches would read instead holds rows, unless `allow_empty`.
    """
    dataset = group_by.batch_dataset
    pointer = store.get_metadata(batch_pointer_key(group_by.name)) or {}
    versions, held = _days(pointer, "versions"), _days(pointer, "held")
    current = versions.get(ds)
    if current and current.get("version") == version and current.get("rows") == rows:
        return _result("unchanged", version, rows, 0.0, versions)
    if rows == 0 and not allow_empty:
        check_not_emptied(versions, dataset, ds)
    started = time.monotonic()
    write()
    present = store.count_version(dataset, version)
    if present != rows:
        raise LoadError(
            f"{dataset} version {version}: {present} of {rows} documents present after the load; "
            "the batch pointer was not moved (readers stay on the previous version)"
        )
    replaced = [info["version"] for info in (current, held.get(ds)) if info and info.get("version") != version]
    info = {"version": version, "rows": rows, "loaded_at": time.time(), "schema": schema}
    store.set_metadata_fields(
        batch_pointer_key(group_by.name),
        {f"versions.{ds}": info, "dataset": dataset},
        push={"retired": [{"version": old, "at": time.time()} for old in replaced]},
        unset=[f"held.{ds}"] if ds in held else None,
    )
    collect_garbage(store, group_by, retain_days, grace_seconds)
    return _result("loaded", version, rows, round(time.monotonic() - started, 3), {**versions, ds: info})


def _result(status: str, version: str, rows: int, seconds: float, versions: dict[str, Document]) -> dict[str, Any]:
    return {"status": status, "version": version, "rows": rows, "seconds": seconds, "latest": max(versions)}


def check_not_emptied(versions: dict[str, Document], dataset: str, ds: str) -> None:
    """Raise `EmptyBatchRefused` when an empty version of `ds` would replace the non-empty one fetches read."""
    serving = serving_version(versions, ds)
    if serving is not None and serving[1].get("rows"):
        day, info = serving
        raise EmptyBatchRefused(
            f"{dataset} [{ds}]: the upload has 0 rows; loading it would replace the batch of {day} "
            f"({info['rows']} rows) and every fetch would return empty values. Nothing was changed; "
            "check the upload's inputs, or allow an empty batch (load --allow-empty)"
        )


def rollback_batch(store: KVStore, group_by: GroupBy, ds: str) -> dict[str, Any]:
    """Make the version of `ds` the one fetches after `ds` read: the versions of later days are held back
    (kept in the store, invisible to readers) and held versions of days up to `ds` are restored.

    Returns {"ds", "version", "rows", "held": {ds: info}, "restored": {ds: info}}. Raises `RollbackError`
    when `ds` has no retained version (expired or never loaded: load it again).
    """
    pointer_key = batch_pointer_key(group_by.name)
    pointer = store.get_metadata(pointer_key) or {}
    versions, held = _days(pointer, "versions"), _days(pointer, "held")
    target = versions.get(ds) or held.get(ds)
    if target is None:
        raise RollbackError(
            f"{group_by.batch_dataset}: no batch of {ds} is retained in the store (visible: "
            f"{', '.join(sorted(versions)) or 'none'}; held: {', '.join(sorted(held)) or 'none'}); "
            f"load that day again to serve it"
        )
    hold = {day: info for day, info in versions.items() if day > ds}
    restore = {day: info for day, info in held.items() if day <= ds}
    if hold or restore:
        store.set_metadata_fields(
            pointer_key,
            {f"held.{day}": info for day, info in hold.items()} | {f"versions.{day}": i for day, i in restore.items()},
            unset=[f"versions.{day}" for day in hold] + [f"held.{day}" for day in restore],
        )
    return {"ds": ds, "version": target["version"], "rows": target["rows"], "held": hold, "restored": restore}


def collect_garbage(store: KVStore, group_by: GroupBy, retain_days: int, grace_seconds: float) -> None:
    """Retire versions of days beyond the newest `retain_days`, and delete retired versions past the grace.

    Held versions count as neither: they stay until a rollback restores them or a load replaces them.
    """
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
    live = {info["version"] for field in ("versions", "held") for info in _days(pointer, field).values()}
    for item in pointer.get("retired") or []:
        if time.time() - item["at"] >= grace_seconds and item["version"] not in live:
            store.delete_version(group_by.batch_dataset, item["version"])
            store.pull_metadata_field(pointer_key, "retired", {"version": item["version"]})
