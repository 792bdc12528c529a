"""Exact sliding windows for many keys at once: the offline driver of the kernels in `kernel.py`.

Every event of a key is laid out in one sorted array per input column, ordered by (key, ts, value), and
every query row (key, t) finds its window [t - W, t) with two binary searches on a combined (key, ts)
integer; each output column's kernel (from the operation registry) then reads those index ranges. Windows
are exact: an event at exactly t is excluded, one at exactly t - W included. Null input values are ignored;
a query row whose key has a null gets null for every feature (counts included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from feature_assets.aggregation.kernel import ListColumn, SortedColumn, encode_keys, nullable_int
from feature_assets.aggregation.spec import AggSpec


def compute_features(
    events: pd.DataFrame,
    queries: pd.DataFrame,
    keys: list[str],
    specs: list[AggSpec],
    integral_inputs: frozenset[str] = frozenset(),
    event_keys: list[str] | None = None,
) -> pd.DataFrame:
    """`queries` (keys and `ts`, the query time) with one column per spec appended (lists as Python lists)."""
    features = compute_feature_columns(events, queries, keys, specs, integral_inputs, event_keys)
    features = {
        name: (values.to_objects() if isinstance(values, ListColumn) else values) for name, values in features.items()
    }
    # One concat rather than many inserts: pandas fragments a frame that grows column by column.
    return (
        pd.concat([queries.reset_index(drop=True), pd.DataFrame(features)], axis=1)
        .set_axis(list(queries.columns) + list(features), axis=1)
        .set_index(queries.index)
    )


def compute_feature_columns(
    events: pd.DataFrame,
    queries: pd.DataFrame,
    keys: list[str],
    specs: list[AggSpec],
    integral_inputs: frozenset[str] = frozenset(),
    event_keys: list[str] | None = None,
) -> dict[str, object]:
    """`queries` (keys and `ts`, the query time) with one column per spec appended.

    `events` holds `event_keys` (default: `keys`), `ts` and the input columns.
    """
    event_keys = event_keys or keys
    both = pd.concat([queries[keys], events[event_keys].set_axis(keys, axis=1)], ignore_index=True)
    codes = encode_keys(both, keys)
    query_codes, event_codes = codes[: len(queries)], codes[len(queries) :]
    query_ts = queries["ts"].to_numpy(dtype=np.int64)
    event_ts = events["ts"].to_numpy(dtype=np.int64)
    max_window = max([s.window_millis or 0 for s in specs] + [0])
    candidates = [
        event_ts.min(initial=0) if len(event_ts) else 0,
        (query_ts.min() - max_window) if len(query_ts) else 0,
    ]
    tmin = int(min(candidates)) - 1
    tmax = int(max([event_ts.max(initial=0) if len(event_ts) else 0, query_ts.max(initial=0) if len(query_ts) else 0]))
    span = tmax - tmin + 2
    if (int(codes.max(initial=0)) + 2) * span >= 2**62:
        raise OverflowError("too many keys for the time span in one bucket; raise the number of buckets")
    null_query = query_codes < 0
    base = np.where(null_query, -1, query_codes) * span
    features: dict[str, Any] = {}
    columns: dict[str, Any] = {}
    for (input_column, bucket), group in _group_specs(specs).items():
        bucket_values = [None] if bucket is None else pd.unique(events[bucket].dropna()).tolist()
        per_bucket: dict[Any, dict[str, tuple[Any, np.ndarray]]] = {}
        for bucket_value in bucket_values:
            mask = np.ones(len(events), dtype=bool) if bucket is None else (events[bucket] == bucket_value).to_numpy()
            column = SortedColumn(
                np.where(mask, event_codes, -1),
                event_ts,
                events[input_column],
                input_column in integral_inputs,
                tmin,
                span,
            )
            hi = np.searchsorted(column.combined, base + (query_ts - tmin), side="left")
            for spec in group:
                if spec.window_millis is None:
                    lo = np.searchsorted(column.combined, base, side="left")
                else:
                    lo = np.searchsorted(column.combined, base + (query_ts - spec.window_millis - tmin), side="left")
                lo = np.where(null_query, 0, lo)
                hi_rows = np.where(null_query, 0, hi)
                per_bucket.setdefault(bucket_value, {})[spec.column_name] = (
                    spec.definition.kernel(column, spec, lo, hi_rows),
                    hi_rows - lo,
                )
        for spec in group:
            if bucket is None:
                values, _ = per_bucket[None][spec.column_name]
                columns[spec.column_name] = values
            else:
                columns[spec.column_name] = _bucket_maps(per_bucket, spec.column_name, len(queries))
    for spec in specs:
        features[spec.column_name] = _null_where_key_is_null(spec, columns[spec.column_name], null_query)
    return features


def _null_where_key_is_null(spec: AggSpec, values: Any, null_query: np.ndarray) -> Any:
    """A query row with a null key gets null for every feature, counts included."""
    if spec.definition.count_like and spec.bucket is None:
        return nullable_int(np.asarray(values, dtype=np.int64), null_query)
    if isinstance(values, ListColumn):
        return values.with_nulls(null_query)
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.copy()
        values[null_query] = None
        return values
    if isinstance(values, pd.arrays.IntegerArray):
        values = values.copy()
        values[null_query] = pd.NA
        return values
    return np.where(null_query, np.nan, values)


def _group_specs(specs: list[AggSpec]) -> dict[tuple[str, str | None], list[AggSpec]]:
    grouped: dict[tuple[str, str | None], list[AggSpec]] = {}
    for spec in specs:
        grouped.setdefault((spec.input_column, spec.bucket), []).append(spec)
    return grouped


def _bucket_maps(per_bucket: dict, column_name: str, rows: int) -> np.ndarray:
    out = np.empty(rows, dtype=object)
    for row in range(rows):
        entry = {}
        for bucket_value, computed in per_bucket.items():
            values, counts = computed[column_name]
            if counts[row] > 0:
                value = values[row]
                entry[bucket_value] = (
                    None if value is pd.NA or value is None else value.item() if hasattr(value, "item") else value
                )
        out[row] = entry or None
    return out
