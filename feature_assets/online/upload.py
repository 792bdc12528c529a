"""Batch upload tables (Spark) and their bulk load into the online store.

`upload_frame(warehouse, group_by, ds)` builds the partition `ds` of `{namespace}.{group_by}_upload`: one
row per key, `key_json` (canonical JSON of the key dict: sorted keys, no spaces), `value` (binary, see
`codec`) and `ds`. What the value holds depends on how the fetcher answers for the group-by:

- SNAPSHOT group-bys and entity group-bys (served like the offline join, from a daily table): the base
  feature values of the daily table at `ds`, i.e. as of the end of `ds` (payload kind 1). Derivations are
  applied by the fetcher, as the offline join does.
- TEMPORAL event group-bys (windows ending at the request time): with E the batch end (00:00 UTC after
  `ds`) and T the longest window (0 when every aggregation is unwindowed), the raw events of the key with
  E - T <= ts < E (the *tail*: every event a window ending at any time >= E can still need), plus, for each
  unwindowed aggregation, the IR of all the key's events with ts < E - T (the *head*) (payload kind 2:
  `[tail ts, [tail columns], [head IRs]]`). The fetcher adds streaming events with ts >= E and evaluates
  every window exactly at the request time. Events in the batch partitions with ts >= E are left to the
  streaming side (so an event is never counted twice).

The work runs as `applyInPandas` over key-hash buckets (the same pandas encoder serves tests and the
benchmark without Spark): nothing but one aggregate row (count, digest) reaches the driver. The load
writes the partition from the executors (`foreachPartition`, unordered bulk inserts), then flips the
batch pointer (`kv_store.load_batch`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from functools import partial

import numpy as np
import pandas as pd

from feature_assets.compiler.columns import group_by_value_columns, source_of, table_of
from feature_assets.engine.specs import agg_specs
from feature_assets.online import codec
from feature_assets.online.ir import Events, head_ir, ir_to_wire, spec_operation
from feature_assets.online.kv_store import KVStore, batch_dataset, load_batch

MILLIS_PER_DAY = 86_400_000
SNAPSHOT, TEMPORAL = "snapshot", "temporal"
SCHEMA_FORMAT = 1
INTEGRAL = frozenset({"bigint", "int", "smallint", "tinyint", "long", "short", "byte", "integer"})
FLOATING = frozenset({"double", "float"})


def online_kind(group_by: dict) -> str:
    kind, _ = source_of(group_by)
    if kind == "entities" or group_by.get("accuracy") == "SNAPSHOT" or not group_by.get("aggregations"):
        return SNAPSHOT
    return TEMPORAL


def upload_table(group_by: dict) -> str:
    return table_of(group_by["metaData"]["outputNamespace"], group_by["metaData"]["name"]) + "_upload"


def end_of_day_millis(ds: str) -> int:
    day = dt.date.fromisoformat(ds)
    return (day.toordinal() - dt.date(1970, 1, 1).toordinal() + 1) * MILLIS_PER_DAY


def ds_of_millis(millis: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(millis) // MILLIS_PER_DAY)).isoformat()


def canonical_key_json(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tail_millis(specs) -> int:
    return max([s.window_millis for s in specs if s.window_millis is not None] + [0])


def needed_columns(specs) -> list[str]:
    return sorted({s.input_column for s in specs} | {s.bucket for s in specs if s.bucket})


def make_schema(group_by: dict, key_types: dict[str, str], column_types: dict[str, str]) -> dict:
    """The batch schema recorded with every version (and fingerprinted into every value)."""
    kind = online_kind(group_by)
    schema = {"format": SCHEMA_FORMAT, "name": group_by["metaData"]["name"], "kind": kind,
              "keys": [[k, key_types[k]] for k in group_by["keyColumns"]]}
    if kind == SNAPSHOT:
        schema["columns"] = [[c, column_types.get(c, "unknown")] for c in group_by_value_columns(group_by)]
    else:
        specs = agg_specs(group_by)
        schema["columns"] = [[c, column_types[c]] for c in needed_columns(specs)]
        schema["tail_millis"] = tail_millis(specs)
        schema["specs"] = [[s.column_name, s.operation, list(map(list, s.arg_map)), s.window_millis, s.bucket]
                           for s in specs]
    return schema


# --------------------------------------------------------------------------- pandas encoders


def to_python(value, type_name: str):
    """A pandas/numpy cell as a plain Python value of the Spark type (nulls as None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if type_name in INTEGRAL:
        if isinstance(value, float) and math.isnan(value):
            return None
        return int(value)
    if type_name in FLOATING:
        value = float(value)
        return None if math.isnan(value) else value
    if type_name == "string":
        return value if isinstance(value, str) else str(value)
    if type_name == "boolean":
        return bool(value)
    if type_name.startswith("array<"):
        inner = type_name[6:-1]
        return [to_python(v, inner) for v in value]
    if type_name.startswith("map<"):
        inner_key, inner_value = _split_map(type_name)
        items = value.items() if isinstance(value, dict) else value
        return {to_python(k, inner_key): to_python(v, inner_value) for k, v in items}
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _split_map(type_name: str) -> tuple[str, str]:
    body = type_name[4:-1]
    depth = 0
    for index, char in enumerate(body):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            return body[:index], body[index + 1:]
    return body, "string"


def _column_values(frame: pd.DataFrame, name: str, type_name: str) -> list:
    return python_values(frame[name], type_name)


def python_values(series: pd.Series, type_name: str) -> list:
    """`to_python` of every cell, with fast paths for plain numpy columns (no per-cell Python call)."""
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else "?"
    if type_name in INTEGRAL and kind in ("i", "u"):
        return series.tolist()
    if type_name in INTEGRAL and kind == "f":  # an integer column with nulls arrives as floats
        values = series.to_numpy()
        null = np.isnan(values)
        out = np.where(null, 0, values).astype(np.int64).tolist()
        for index in np.flatnonzero(null).tolist():
            out[index] = None
        return out
    if type_name in FLOATING and kind == "f":
        values = series.to_numpy(dtype=np.float64)
        out = values.tolist()
        for index in np.flatnonzero(np.isnan(values)).tolist():
            out[index] = None
        return out
    return [to_python(v, type_name) for v in series.tolist()]


def _key_jsons(frame: pd.DataFrame, key_types: list[list[str]]) -> list[str | None]:
    columns = [(_column_values(frame, k, t), k) for k, t in key_types]
    out = []
    for row in range(len(frame)):
        key = {name: values[row] for values, name in columns}
        out.append(None if any(v is None for v in key.values()) else canonical_key_json(key))
    return out


def encode_snapshot_rows(frame: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Daily-table rows (keys and base columns) -> (key_json, value)."""
    fingerprint = codec.schema_fingerprint(schema)
    keys = _key_jsons(frame, schema["keys"])
    columns = [_column_values(frame, c, t) if c in frame.columns else [None] * len(frame)
               for c, t in schema["columns"]]
    out_keys, values = [], []
    for row, key_json in enumerate(keys):
        if key_json is None:
            continue
        out_keys.append(key_json)
        values.append(codec.encode(codec.KIND_SNAPSHOT, fingerprint, [column[row] for column in columns]))
    return pd.DataFrame({"key_json": pd.Series(out_keys, dtype=object), "value": pd.Series(values, dtype=object)})


def encode_temporal_rows(frame: pd.DataFrame, schema: dict, group_by: dict, end_millis: int) -> pd.DataFrame:
    """Events (keys, ts, needed columns) of some keys -> (key_json, value) with tail events and head IRs."""
    fingerprint = codec.schema_fingerprint(schema)
    specs = agg_specs(group_by)
    unwindowed = [s for s in specs if s.window_millis is None]
    operations = [spec_operation(s) for s in unwindowed]
    split_ts = end_millis - schema["tail_millis"]
    column_names = [c for c, _ in schema["columns"]]
    frame = frame.assign(__key=_key_jsons(frame, schema["keys"]))
    ts_all = frame["ts"].to_numpy(dtype=np.int64)
    keep = frame["__key"].notna().to_numpy() & (ts_all < end_millis)
    frame = frame[keep]
    if frame.empty:
        return pd.DataFrame({"key_json": pd.Series([], dtype=object), "value": pd.Series([], dtype=object)})
    frame = frame.sort_values(["__key", "ts"], kind="mergesort")
    keys = frame["__key"].tolist()
    times = frame["ts"].astype(np.int64).tolist()
    columns = {c: _column_values(frame, c, t) for c, t in schema["columns"]}
    out_keys, values = [], []
    start = 0
    n = len(keys)
    while start < n:
        end = start
        while end < n and keys[end] == keys[start]:
            end += 1
        key_ts = times[start:end]
        split = start
        while split < end and times[split] < split_ts:
            split += 1
        head_events = Events(times[start:split], {c: columns[c][start:split] for c in column_names})
        heads = [ir_to_wire(spec, head_ir(spec, head_events, op), op) for spec, op in zip(unwindowed, operations)]
        payload = [key_ts[split - start:], [columns[c][split:end] for c in column_names], heads]
        out_keys.append(keys[start])
        values.append(codec.encode(codec.KIND_TEMPORAL, fingerprint, payload))
        start = end
    return pd.DataFrame({"key_json": pd.Series(out_keys, dtype=object), "value": pd.Series(values, dtype=object)})


# --------------------------------------------------------------------------- Spark


def _type_names(frame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in frame.schema.fields}


def _daily_table(group_by: dict) -> str:
    return table_of(group_by["metaData"]["outputNamespace"], group_by["metaData"]["name"])


def _temporal_events(warehouse, group_by: dict, ds: str):
    from pyspark.sql import functions as F
    from feature_assets.engine.group_by import keys_not_null, read_group_by_sources
    from feature_assets.engine.sources import events_start_for
    from feature_assets.storage import shift_ds
    specs = agg_specs(group_by)
    keys = group_by["keyColumns"]
    tail = tail_millis(specs)
    start = None if any(s.window_millis is None for s in specs) else events_start_for(shift_ds(ds, 1), tail)
    events = read_group_by_sources(warehouse, group_by, start, ds).where(keys_not_null(keys))
    return events.where(F.col("ts") < F.lit(end_of_day_millis(ds))).select(*keys, "ts", *needed_columns(specs))


def batch_schema(warehouse, group_by: dict, ds: str) -> dict:
    """The schema of the upload for `ds` (types read from the Spark schemas; no data is read)."""
    if online_kind(group_by) == SNAPSHOT:
        types = _type_names(warehouse.read(_daily_table(group_by), ds, ds))
    else:
        types = _type_names(_temporal_events(warehouse, group_by, ds))
    return make_schema(group_by, {k: types[k] for k in group_by["keyColumns"]}, types)


def upload_frame(warehouse, group_by: dict, ds: str):
    """The upload table's partition `ds` as a DataFrame (key_json, value, ds)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from feature_assets.engine.windowed import bucket_count
    schema = batch_schema(warehouse, group_by, ds)
    keys = group_by["keyColumns"]
    if schema["kind"] == SNAPSHOT:
        rows = warehouse.read(_daily_table(group_by), ds, ds)
        rows = rows.select(*keys, *[c for c, _ in schema["columns"] if c in rows.columns])
        encoder = partial(encode_snapshot_rows, schema=schema)
    else:
        rows = _temporal_events(warehouse, group_by, ds)
        encoder = partial(encode_temporal_rows, schema=schema, group_by=group_by, end_millis=end_of_day_millis(ds))
    buckets = bucket_count(rows)
    out_schema = T.StructType([T.StructField("key_json", T.StringType(), False),
                               T.StructField("value", T.BinaryType(), False)])
    bucketed = rows.withColumn("__bucket", F.pmod(F.xxhash64(*[F.col(k) for k in keys]), F.lit(buckets)))
    encoded = bucketed.groupBy("__bucket").applyInPandas(
        lambda pdf: encoder(pdf.drop(columns=["__bucket"])), out_schema)
    return encoded.withColumn("ds", F.lit(ds))


def run_upload(warehouse, group_by: dict, ds: str) -> int:
    """Write the upload partition `ds`; returns its row count."""
    table = upload_table(group_by)
    warehouse.write_partitions(upload_frame(warehouse, group_by, ds), table, ds, ds)
    return warehouse.read(table, ds, ds).count()


def _write_partition(uri: str, database: str, dataset: str, version: str, client_options: dict, rows) -> None:
    from feature_assets.online.kv_store import MongoKVStore
    store = MongoKVStore.from_uri(uri, database, **client_options)
    try:
        store.bulk_put(dataset, version, ((row["key_json"], row["value"]) for row in rows))
    finally:
        store.close()


def load_upload(warehouse, group_by: dict, ds: str, store: KVStore, uri: str, database: str,
                retain_days: int = 3, client_options: dict | None = None) -> dict:
    """Bulk-load the upload partition `ds` into `{GROUP_BY}_BATCH` and flip the pointer when complete.

    `uri`/`database` reach the executors (which write), `store` is the driver's handle (pointer, counts).
    """
    from pyspark.sql import functions as F
    name = group_by["metaData"]["name"]
    frame = warehouse.read(upload_table(group_by), ds, ds).select("key_json", "value")
    schema = batch_schema(warehouse, group_by, ds)
    stats = frame.agg(F.count(F.lit(1)).alias("rows"),
                      F.bit_xor(F.xxhash64("key_json", "value")).alias("digest"),
                      F.first("value", ignorenulls=True).alias("sample")).collect()[0]
    rows = int(stats["rows"])
    if rows and stats["sample"] is not None:
        codec.decode(bytes(stats["sample"]), expected_fingerprint=codec.schema_fingerprint(schema))
    version = f"{ds}.{(int(stats['digest'] or 0) ^ rows) & 0xFFFFFFFFFFFF:012x}"
    dataset = batch_dataset(name)
    write = lambda: frame.foreachPartition(partial(_write_partition, uri, database, dataset, version,
                                                             dict(client_options or {})))  # noqa: E731
    return load_batch(store, name, ds, version, rows, schema, write, retain_days=retain_days)


def load_rows(store: KVStore, group_by: dict, ds: str, rows: pd.DataFrame, schema: dict,
              retain_days: int = 3) -> dict:
    """The same load without Spark, for (key_json, value) rows in memory (tests, benchmarks)."""
    name = group_by["metaData"]["name"]
    digest = hashlib.blake2b(digest_size=6)
    for key_json, value in sorted(zip(rows["key_json"], rows["value"])):
        digest.update(key_json.encode())
        digest.update(b"\0")
        digest.update(bytes(value))
    version = f"{ds}.{digest.hexdigest()}"
    items = list(zip(rows["key_json"], rows["value"]))
    write = lambda: store.bulk_put(batch_dataset(name), version, items)  # noqa: E731
    return load_batch(store, name, ds, version, len(items), schema, write, retain_days=retain_days)


def upload_metadata(store: KVStore, kind: str, config: dict) -> list[str]:
    """Store a compiled join (with each of its group-bys) or group-by in the metadata collection."""
    from feature_assets.online.kv_store import config_key
    import time
    written = []

    def put(kind_: str, conf: dict) -> None:
        key = config_key(kind_, conf["metaData"]["name"])
        store.put_metadata(key, {"kind": kind_, "name": conf["metaData"]["name"],
                                 "config": json.dumps(conf, sort_keys=True), "uploaded_at": time.time()})
        written.append(key)

    if kind == "joins":
        for part in config.get("joinParts") or []:
            put("group_bys", part["groupBy"])
    put(kind, config)
    return written
