"""A join's online/offline consistency in the online store: loading its upload table, fetching its buckets.

Dataset: `{JOIN}_CONSISTENCY`, named after the upload table
(`default.quickstart_training_set_v2_consistency_upload` -> `QUICKSTART_TRAINING_SET_V2_CONSISTENCY`); one
document per (column, hourly bucket): `{_id: "<column>|<ts>", k: <column>, ts: <bucket start millis>, ds,
d: {total, mismatch, both_null, left_null, right_null, smape, mismatch_rate, ...}}` (the `{join}_consistency`
row's metrics). A load replaces each of its days as a whole. The metadata document `consistency/<dataset>`
lists the columns and the loaded days.

A fetch answers, per compared feature column, its buckets with startTs <= ts < endTs in time order:
`{"ts", "total", "mismatch", "both_null", "left_null", "right_null", "smape", "mismatch_rate", ...}`. The
overall bucket of every column together (`__all__`) is left out unless asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from feature_assets.naming import dataset_name, normalize_name
from feature_assets.online.fetch.daily_documents import replace_days
from feature_assets.online.store import Document, KVStore

UPLOAD_SUFFIX = "_consistency_upload"
DATASET_SUFFIX = "_CONSISTENCY"
CONSISTENCY_TYPE = "join-consistency"
ALL_COLUMNS = "__all__"  # the metrics table's row of every column together (quality.consistency)
BUCKET_FIELDS = ("total", "mismatch", "both_null", "left_null", "right_null", "smape")
ROW_FIELDS = ("column_name", "ts", "ds")


class NoConsistency(LookupError):
    """No consistency metrics of that join are loaded in the store."""


class NotAConsistencyUploadTable(ValueError):
    pass


def is_consistency_upload_table(table: str) -> bool:
    return table.split(".", 1)[-1].endswith(UPLOAD_SUFFIX)


def dataset_of_consistency_upload_table(table: str) -> str:
    """`default.x_consistency_upload` -> `X_CONSISTENCY`."""
    if not is_consistency_upload_table(table):
        raise NotAConsistencyUploadTable(f"{table} is not a consistency upload table (`<join table>{UPLOAD_SUFFIX}`)")
    return table.split(".", 1)[-1].removesuffix("_upload").upper()


def join_consistency_dataset(join_name: str) -> str:
    """`quickstart/training_set.v2` (or `quickstart.training_set.v2`) -> `QUICKSTART_TRAINING_SET_V2_CONSISTENCY`."""
    return dataset_name(normalize_name(join_name)) + DATASET_SUFFIX


def index_key(dataset: str) -> str:
    return f"consistency/{dataset}"


def _plain_number(value: Any) -> Any:
    """NaN stored as null (JSON has no NaN)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _doc(row: Mapping[str, Any]) -> Document:
    column, ts = row["column_name"], int(row["ts"])
    metrics = {name: _plain_number(value) for name, value in row.items() if name not in ROW_FIELDS}
    return {"_id": f"{column}|{ts}", "k": column, "ts": ts, "ds": row["ds"], "d": metrics}


def load_consistency(store: KVStore, dataset: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Put consistency upload rows (column_name, ts, ds and the metrics) into the dataset, each day replacing
    the day's documents; returns the documents written per day. Rows must come grouped by day."""

    def checked(row: Mapping[str, Any]) -> Document:
        missing = [name for name in ROW_FIELDS if row.get(name) is None]
        if missing:
            raise ValueError(f"upload row of {dataset} lacks {missing}: {dict(row)}")
        return _doc(row)

    return replace_days(store, dataset, index_key(dataset), rows, checked)


def bucket_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A bucket as fetched: its start, the counts and smape first, then the other metrics."""
    metrics = dict(doc["d"])
    first = {name: metrics.pop(name, None) for name in BUCKET_FIELDS}
    return {"ts": int(doc["ts"]), **first, **metrics}


def fetch_consistency(
    store: KVStore, dataset: str, start_ts: int, end_ts: int, include_overall: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Per compared column, its buckets with start_ts <= ts < end_ts, in time order (`include_overall`: also
    `__all__`, every column together). Raises `NoConsistency` when nothing of the dataset is loaded."""
    index = store.get_metadata(index_key(dataset))
    if index is None:
        raise NoConsistency(
            f"no consistency metrics loaded into {dataset}: run consistency-metrics-compute, then load --table"
        )
    columns = [c for c in index.get("columns") or [] if include_overall or c != ALL_COLUMNS]
    found = store.range_read(dataset, columns, int(start_ts), int(end_ts)) if columns else {}
    return {column: [bucket_json(doc) for doc in docs] for column, docs in sorted(found.items())}
