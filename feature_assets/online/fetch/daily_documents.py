"""Loading an upload table's rows into an online dataset a day at a time (stats and consistency uploads)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from feature_assets.online.store import Document, KVStore


def replace_days(
    store: KVStore,
    dataset: str,
    index: str,
    rows: Iterable[Mapping[str, Any]],
    to_document: Callable[[Mapping[str, Any]], Document],
) -> dict[str, int]:
    """Put rows (with `column_name` and `ds`) into the dataset, each day replacing the day's documents, and
    record the columns and loaded days under the metadata key `index`; returns the documents written per
    day. Rows must come grouped by day."""
    written: dict[str, int] = {}
    columns: set[str] = set()
    day: str | None = None
    pending: list[Document] = []

    def flush() -> None:
        if day is not None:
            written[day] = store.replace_partition(dataset, day, pending)

    for row in rows:
        if row["ds"] != day:
            flush()
            if row["ds"] in written:
                raise ValueError(f"upload rows of {dataset}: day {row['ds']} comes twice (rows must be grouped by day)")
            day, pending = row["ds"], []
        pending.append(to_document(row))
        columns.add(row["column_name"])
    flush()
    if written:
        known = store.get_metadata(index) or {}
        days = {
            **(known.get("days") or {}),
            **{ds: {"documents": n, "loaded_at": time.time()} for ds, n in written.items()},
        }
        all_columns = sorted(set(known.get("columns") or []) | columns)
        store.put_metadata(index, {"dataset": dataset, "columns": all_columns, "days": days})
    return written
