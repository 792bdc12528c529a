"""Join stats in the online store: loading a stats upload table, fetching buckets, drift between two ranges.

Datasets: `{JOIN}_DAILY_STATS` (the join output's stats) and `{JOIN}_LOGGED_DAILY_STATS` (its log's), named
after the upload table (`default.quickstart_training_set_v2_daily_stats_upload` ->
`QUICKSTART_TRAINING_SET_V2_DAILY_STATS`); one document per (column, bucket) holding the mergeable summary
(see `store.base`). The metadata document `stats/<dataset>` lists the columns and the loaded days.

A fetch answers, per column, the buckets with startTs <= ts < endTs in time order: `{"ts", "total",
"null_count", "null_rate", "percentiles" (numeric), ...}` (`ColumnSummary.to_json_dict` without the column
name). Drift merges each side's buckets per column and compares them (`statistics.drift`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from feature_assets.naming import dataset_name, normalize_name
from feature_assets.online.fetch.daily_documents import replace_days
from feature_assets.online.store import Document, KVStore
from feature_assets.statistics import ColumnSummary, DriftThresholds, drift, merge, severity

UPLOAD_SUFFIX = "_upload"
STATS_SUFFIX = "_DAILY_STATS"
LOGGED_STATS_SUFFIX = "_LOGGED_DAILY_STATS"
STATS_TYPES = {"join-stats": False, "join-log-stats": True}  # fetch type -> the log's stats?


class NoStats(LookupError):
    """No stats of that join are loaded in the store."""


class NotAStatsUploadTable(ValueError):
    pass


def dataset_of_upload_table(table: str) -> str:
    """`default.x_daily_stats_upload` -> `X_DAILY_STATS`."""
    name = table.split(".", 1)[-1]
    if not name.endswith(f"_daily_stats{UPLOAD_SUFFIX}"):
        raise NotAStatsUploadTable(
            f"{table} is not a stats upload table (`<join table>_daily_stats_upload` or "
            "`<join table>_logged_daily_stats_upload`)"
        )
    return name.removesuffix(UPLOAD_SUFFIX).upper()


def join_stats_dataset(join_name: str, logged: bool = False) -> str:
    return dataset_name(normalize_name(join_name)) + (LOGGED_STATS_SUFFIX if logged else STATS_SUFFIX)


def index_key(dataset: str) -> str:
    return f"stats/{dataset}"


def _doc(row: Mapping[str, Any]) -> Document:
    column, ts = row["column_name"], int(row["ts"])
    return {
        "_id": f"{column}|{ts}",
        "k": column,
        "ts": ts,
        "ds": row["ds"],
        "d": {"kind": row["column_kind"], "summary": bytes(row["summary"])},
    }


def load_stats(store: KVStore, dataset: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Put upload rows (column_name, column_kind, ts, summary, ds, ...) into the dataset, each day replacing
    the day's documents; returns the documents written per day. Rows must come grouped by day."""
    return replace_days(store, dataset, index_key(dataset), rows, _doc)


def _summaries(store: KVStore, dataset: str, start_ts: int, end_ts: int) -> dict[str, list[tuple[int, ColumnSummary]]]:
    index = store.get_metadata(index_key(dataset))
    if index is None:
        raise NoStats(f"no stats loaded into {dataset}: run stats-summary (or log-summary), then load --table")
    columns = list(index.get("columns") or [])
    found = store.range_read(dataset, columns, int(start_ts), int(end_ts)) if columns else {}
    return {
        column: [(int(doc["ts"]), ColumnSummary.from_bytes(bytes(doc["d"]["summary"]))) for doc in docs]
        for column, docs in sorted(found.items())
    }


def bucket_json(ts: int, summary: ColumnSummary) -> dict[str, Any]:
    values = summary.to_json_dict()
    values.pop("column", None)
    return {"ts": ts, **values}


def fetch_stats(store: KVStore, dataset: str, start_ts: int, end_ts: int) -> dict[str, list[dict[str, Any]]]:
    """Per column, its buckets with start_ts <= ts < end_ts, in time order."""
    return {
        column: [bucket_json(ts, summary) for ts, summary in buckets]
        for column, buckets in _summaries(store, dataset, start_ts, end_ts).items()
    }


def merged_range(store: KVStore, dataset: str, start_ts: int, end_ts: int) -> dict[str, ColumnSummary]:
    """Per column, one summary of its buckets in [start_ts, end_ts)."""
    merged = {}
    for column, buckets in _summaries(store, dataset, start_ts, end_ts).items():
        summaries = [summary for _, summary in buckets]
        latest = summaries[-1].kind  # a column whose type changed: its latest kind only
        summary = merge(s for s in summaries if s.kind == latest)
        if summary is not None:
            merged[column] = summary
    return merged


def stats_drift(
    store: KVStore,
    dataset: str,
    current: tuple[int, int],
    reference: tuple[int, int],
    thresholds: DriftThresholds | None = None,
) -> dict[str, dict[str, Any]]:
    """Per column with stats in both ranges ([start, end) each): PSI, Jensen-Shannon, Hellinger, KS of the
    current range against the reference, the severity, both null rates and both row counts."""
    now = merged_range(store, dataset, *current)
    then = merged_range(store, dataset, *reference)
    levels = thresholds or DriftThresholds()
    out: dict[str, dict[str, Any]] = {}
    for column, summary in now.items():
        previous = then.get(column)
        if previous is None or previous.kind != summary.kind:
            continue
        metrics = drift(summary, previous)
        out[column] = {
            **metrics,
            "severity": severity(metrics, levels),
            "null_rate": summary.null_rate,
            "reference_null_rate": previous.null_rate,
            "total": summary.total,
            "reference_total": previous.total,
        }
    return out


def time_range(keys: Any) -> tuple[int, int]:
    """(startTs, endTs) of a stats request `{"startTs": ..., "endTs": ...}` (numbers or digit strings)."""
    if not isinstance(keys, Mapping):
        raise ValueError('a stats request is a JSON object {"startTs": <millis>, "endTs": <millis>}')
    bounds = []
    for name in ("startTs", "endTs"):
        value = keys.get(name)
        try:
            bounds.append(int(value))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected epoch millis (a number or a string of digits), got {value!r}") from None
    if bounds[1] < bounds[0]:
        raise ValueError(f"endTs {bounds[1]} is before startTs {bounds[0]}")
    return bounds[0], bounds[1]
