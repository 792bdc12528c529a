"""Online batch uploads on Spark: the upload table `{output table}_upload` and its bulk load into the store.

`upload_frame(warehouse, group_by, ds)` builds the partition `ds` of `GroupBy.upload_table`: one row per key,
`key_json`, `value` (see `feature_assets.online.batch_encoding` for what a value holds) and `ds`. SNAPSHOT
and entity group-bys encode their daily table's row of `ds`; TEMPORAL event group-bys the events their
windows can still need at the end of `ds` (read with the offline engine's source readers).

The work runs as `applyInPandas` over key-hash buckets (the pandas encoders of `batch_encoding`): nothing but
one aggregate row (count, digest) reaches the driver. The load writes the partition from the executors
(`foreachPartition`, unordered bulk inserts), then flips the batch pointer (`online.store.load_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.aggregation import codec
from feature_assets.model import GroupBy
from feature_assets.offline.frames import keys_not_null
from feature_assets.offline.group_by import read_group_by_sources
from feature_assets.offline.sources import events_start_for
from feature_assets.offline.windowed import bucket_count
from feature_assets.online.batch_encoding import (
    SNAPSHOT,
    encode_snapshot_rows,
    encode_temporal_rows,
    end_of_day_millis,
    make_schema,
)
from feature_assets.online.store import KVStore, MongoKVStore, load_batch, upload_metadata
from feature_assets.storage import Warehouse, shift_ds

__all__ = ["batch_schema", "load_upload", "run_upload", "upload_frame", "upload_metadata"]

_ENCODED = T.StructType(
    [T.StructField("key_json", T.StringType(), False), T.StructField("value", T.BinaryType(), False)]
)


def _type_names(frame: DataFrame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in frame.schema.fields}


def _temporal_events(warehouse: Warehouse, group_by: GroupBy, ds: str) -> DataFrame:
    """Events before the end of `ds` that a TEMPORAL group-by's batch holds (tail and head), keys not null."""
    keys = list(group_by.key_columns)
    unwindowed = group_by.max_window_millis is None
    start = None if unwindowed else events_start_for(shift_ds(ds, 1), group_by.tail_millis)
    events = read_group_by_sources(warehouse, group_by, start, ds).where(keys_not_null(keys))
    return events.where(F.col("ts") < F.lit(end_of_day_millis(ds))).select(*keys, "ts", *group_by.needed_columns)


def batch_schema(warehouse: Warehouse, group_by: GroupBy, ds: str) -> dict[str, Any]:
    """The schema of the upload for `ds` (types read from the Spark schemas; no data is read)."""
    if group_by.online_kind == SNAPSHOT:
        types = _type_names(warehouse.read(group_by.output_table, ds, ds))
    else:
        types = _type_names(_temporal_events(warehouse, group_by, ds))
    return make_schema(group_by, {k: types[k] for k in group_by.key_columns}, types)


def upload_frame(warehouse: Warehouse, group_by: GroupBy, ds: str) -> DataFrame:
    """The upload table's partition `ds` as a DataFrame (key_json, value, ds)."""
    schema = batch_schema(warehouse, group_by, ds)
    keys = list(group_by.key_columns)
    if schema["kind"] == SNAPSHOT:
        rows = warehouse.read(group_by.output_table, ds, ds)
        rows = rows.select(*keys, *[c for c, _ in schema["columns"] if c in rows.columns])
        encoder = partial(encode_snapshot_rows, schema=schema)
    else:
        rows = _temporal_events(warehouse, group_by, ds)
        encoder = partial(encode_temporal_rows, schema=schema, group_by=group_by, end_millis=end_of_day_millis(ds))
    buckets = bucket_count(rows)
    bucketed = rows.withColumn("__bucket", F.pmod(F.xxhash64(*[F.col(k) for k in keys]), F.lit(buckets)))
    encoded = bucketed.groupBy("__bucket").applyInPandas(lambda pdf: encoder(pdf.drop(columns=["__bucket"])), _ENCODED)
    return encoded.withColumn("ds", F.lit(ds))


def run_upload(warehouse: Warehouse, group_by: GroupBy, ds: str) -> int:
    """Write the upload partition `ds`; returns its row count."""
    table = group_by.upload_table
    warehouse.write_partitions(upload_frame(warehouse, group_by, ds), table, ds, ds)
    return int(warehouse.read(table, ds, ds).count())


def _write_partition(
    uri: str, database: str, dataset: str, version: str, client_options: dict[str, Any], rows: Iterable[Row]
) -> None:
    store = MongoKVStore.from_uri(uri, database, **client_options)
    try:
        store.bulk_put(dataset, version, ((row["key_json"], row["value"]) for row in rows))
    finally:
        store.close()


def load_upload(
    warehouse: Warehouse,
    group_by: GroupBy,
    ds: str,
    store: KVStore,
    uri: str,
    database: str,
    retain_days: int = 3,
    client_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bulk-load the upload partition `ds` into `GroupBy.batch_dataset` and flip the pointer when complete.

    `uri`/`database` reach the executors (which write), `store` is the driver's handle (pointer, counts).
    """
    frame = warehouse.read(group_by.upload_table, ds, ds).select("key_json", "value")
    schema = batch_schema(warehouse, group_by, ds)
    stats = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        F.bit_xor(F.xxhash64("key_json", "value")).alias("digest"),
        F.first("value", ignorenulls=True).alias("sample"),
    ).collect()[0]
    rows = int(stats["rows"])
    if rows and stats["sample"] is not None:
        codec.decode(bytes(stats["sample"]), expected_fingerprint=codec.schema_fingerprint(schema))
    version = f"{ds}.{(int(stats['digest'] or 0) ^ rows) & 0xFFFFFFFFFFFF:012x}"
    write_partition = partial(
        _write_partition, uri, database, group_by.batch_dataset, version, dict(client_options or {})
    )

    def write() -> None:
        frame.foreachPartition(write_partition)

    return load_batch(store, group_by, ds, version, rows, schema, write, retain_days=retain_days)
