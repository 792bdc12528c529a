"""The online batch's values: schemas, the pandas encoders of upload rows, and their load without Spark.

An upload row is one key: `key_json` (`canonical_key_json` of the key dict) and `value` (binary, see `codec`).
What the value holds depends on how the fetcher answers for the group-by (`GroupBy.online_kind`):

- "snapshot" (SNAPSHOT and entity group-bys, served like the offline join, from a daily table): the base
  feature values of the daily table at `ds`, i.e. as of the end of `ds` (payload kind 1). Derivations are
  applied by the fetcher, as the offline join does.
- "temporal" (TEMPORAL event group-bys, windows ending at the request time): with E the batch end (00:00 UTC
  after `ds`) and T the longest window (0 when every aggregation is unwindowed), the raw events of the key with
  E - T <= ts < E (the *tail*: every event a window ending at any time >= E can still need), plus, for each
  unwindowed aggregation, the IR of all the key's events with ts < E - T (the *head*) (payload kind 2:
  `[tail ts, [tail columns], [head IRs]]`). The fetcher adds streaming events with ts >= E and evaluates
  every window exactly at the request time. Events with ts >= E are left to the streaming side (so an event
  is never counted twice).

The Spark job that builds and loads upload tables (`feature_assets.offline.upload`) runs these same encoders
in `applyInPandas`; tests and the fetch benchmark call them directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import numpy as np
import pandas as pd

from feature_assets.aggregation import codec
from feature_assets.aggregation.evaluate import Events, head_ir, ir_to_wire, spec_operation
from feature_assets.aggregation.values import python_values
from feature_assets.model import MILLIS_PER_DAY, GroupBy
from feature_assets.online.store.base import Document, KVStore, canonical_key_json
from feature_assets.online.store.batches import load_batch

SNAPSHOT, TEMPORAL = "snapshot", "temporal"  # GroupBy.online_kind
SCHEMA_FORMAT = 1
_EPOCH = dt.date(1970, 1, 1)

__all__ = [
    "SCHEMA_FORMAT",
    "SNAPSHOT",
    "TEMPORAL",
    "canonical_key_json",
    "ds_of_millis",
    "encode_snapshot_rows",
    "encode_temporal_rows",
    "end_of_day_millis",
    "load_rows",
    "make_schema",
]


def end_of_day_millis(ds: str) -> int:
    """Epoch millis of 00:00 UTC on the day after `ds`."""
    day = dt.date.fromisoformat(ds)
    return (day.toordinal() - _EPOCH.toordinal() + 1) * MILLIS_PER_DAY


def ds_of_millis(millis: int) -> str:
    """The UTC day of an epoch millis instant."""
    return (_EPOCH + dt.timedelta(days=int(millis) // MILLIS_PER_DAY)).isoformat()


def make_schema(group_by: GroupBy, key_types: dict[str, str], column_types: dict[str, str]) -> Document:
    """The batch schema recorded with every version (and fingerprinted into every value)."""
    kind = group_by.online_kind
    schema: Document = {
        "format": SCHEMA_FORMAT,
        "name": group_by.name,
        "kind": kind,
        "keys": [[k, key_types[k]] for k in group_by.key_columns],
    }
    if kind == SNAPSHOT:
        schema["columns"] = [[c, column_types.get(c, "unknown")] for c in group_by.value_columns]
    else:
        specs = group_by.specs
        schema["columns"] = [[c, column_types[c]] for c in group_by.needed_columns]
        schema["tail_millis"] = group_by.tail_millis
        schema["specs"] = [
            [s.column_name, s.operation, list(map(list, s.arg_map)), s.window_millis, s.bucket] for s in specs
        ]
    return schema


# --------------------------------------------------------------------------- pandas encoders


def _key_jsons(frame: pd.DataFrame, key_types: list[list[str]]) -> list[str | None]:
    columns = [(python_values(frame[k], t), k) for k, t in key_types]
    out: list[str | None] = []
    for row in range(len(frame)):
        key = {name: values[row] for values, name in columns}
        out.append(None if any(v is None for v in key.values()) else canonical_key_json(key))
    return out


def _rows(keys: list[str], values: list[bytes]) -> pd.DataFrame:
    return pd.DataFrame({"key_json": pd.Series(keys, dtype=object), "value": pd.Series(values, dtype=object)})


def encode_snapshot_rows(frame: pd.DataFrame, schema: Document) -> pd.DataFrame:
    """Daily-table rows (keys and base columns) -> (key_json, value)."""
    fingerprint = codec.schema_fingerprint(schema)
    keys = _key_jsons(frame, schema["keys"])
    columns = [python_values(frame[c], t) if c in frame.columns else [None] * len(frame) for c, t in schema["columns"]]
    out_keys, values = [], []
    for row, key_json in enumerate(keys):
        if key_json is None:
            continue
        out_keys.append(key_json)
        values.append(codec.encode(codec.KIND_SNAPSHOT, fingerprint, [column[row] for column in columns]))
    return _rows(out_keys, values)


def encode_temporal_rows(frame: pd.DataFrame, schema: Document, group_by: GroupBy, end_millis: int) -> pd.DataFrame:
    """Events (keys, ts, needed columns) of some keys -> (key_json, value) with tail events and head IRs."""
    fingerprint = codec.schema_fingerprint(schema)
    unwindowed = [s for s in group_by.specs if s.window_millis is None]
    operations = [spec_operation(s) for s in unwindowed]
    split_ts = end_millis - schema["tail_millis"]
    column_names = [c for c, _ in schema["columns"]]
    frame = frame.assign(__key=pd.Series(_key_jsons(frame, schema["keys"]), index=frame.index, dtype=object))
    ts_all = frame["ts"].to_numpy(dtype=np.int64)
    frame = frame[frame["__key"].notna().to_numpy() & (ts_all < end_millis)]
    if frame.empty:
        return _rows([], [])
    frame = frame.sort_values(["__key", "ts"], kind="mergesort")
    keys = frame["__key"].tolist()
    times = frame["ts"].astype(np.int64).tolist()
    columns = {c: python_values(frame[c], t) for c, t in schema["columns"]}
    out_keys, values = [], []
    start, n = 0, len(keys)
    while start < n:
        end = start
        while end < n and keys[end] == keys[start]:
            end += 1
        split = start
        while split < end and times[split] < split_ts:
            split += 1
        head_events = Events(times[start:split], {c: columns[c][start:split] for c in column_names})
        heads = [ir_to_wire(spec, head_ir(spec, head_events, op), op) for spec, op in zip(unwindowed, operations)]
        payload = [times[split:end], [columns[c][split:end] for c in column_names], heads]
        out_keys.append(keys[start])
        values.append(codec.encode(codec.KIND_TEMPORAL, fingerprint, payload))
        start = end
    return _rows(out_keys, values)


# --------------------------------------------------------------------------- load without Spark


def load_rows(
    store: KVStore, group_by: GroupBy, ds: str, rows: pd.DataFrame, schema: Document, retain_days: int = 3
) -> dict[str, Any]:
    """The Spark load's equivalent for (key_json, value) rows in memory (tests, benchmarks)."""
    digest = hashlib.blake2b(digest_size=6)
    for key_json, value in sorted(zip(rows["key_json"], rows["value"])):
        digest.update(key_json.encode())
        digest.update(b"\0")
        digest.update(bytes(value))
    version = f"{ds}.{digest.hexdigest()}"
    items = list(zip(rows["key_json"], rows["value"]))

    def write() -> int:
        return store.bulk_put(group_by.batch_dataset, version, items)

    return load_batch(store, group_by, ds, version, len(items), schema, write, retain_days=retain_days)
