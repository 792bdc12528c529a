"""Online batch uploads on Spark: the upload table `{output table}_upload` and its bulk load into the store.

`upload_frame(warehouse, group_by, ds)` builds the partition `ds` of `GroupBy.upload_table`: one row per key,
`key_json`, `value` (see `feature_assets.online.batch_encoding` for what a value holds) and `ds`. SNAPSHOT
and entity group-bys encode their daily table's row of `ds`; TEMPORAL event group-bys the events their
windows can still need at the end of `ds` (read with the offline engine's source readers).

The work runs as `applyInPandas` over key-hash buckets (the pandas encoders of `batch_encoding`): nothing but
one aggregate row (count, digest) reaches the driver. The load writes the partition from the executors
(`foreachPartition`, unordered bulk inserts), then flips the batch pointer (`online.store.load_batch`).

An upload is correct or refused (`UploadRefused`, nothing written): a day whose input partitions are missing
(`upload_inputs`: the daily table's day, or the event partitions of the lookback up to the day) is refused
naming the tables and days, and so is an upload that would be empty, unless `allow_empty`. A load of a day
that has no upload partition is refused too, and an empty one never replaces a non-empty batch by accident.
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
from feature_assets.online.store import (
    KVStore,
    MongoKVStore,
    batch_versions,
    check_not_emptied,
    load_batch,
    upload_metadata,
)
from feature_assets.storage import Warehouse, date_range, shift_ds

__all__ = [
    "EmptyUpload",
    "MissingUploadInputs",
    "UploadRefused",
    "batch_schema",
    "check_load",
    "check_upload",
    "load_upload",
    "missing_upload_inputs",
    "run_upload",
    "upload_frame",
    "upload_inputs",
    "upload_metadata",
]

_ENCODED = T.StructType(
    [T.StructField("key_json", T.StringType(), False), T.StructField("value", T.BinaryType(), False)]
)


class UploadRefused(ValueError):
    """An upload or load that would be wrong; nothing was written."""


class MissingUploadInputs(UploadRefused):
    """Partitions the upload of a day reads (or the upload partition a load reads) are missing."""


class EmptyUpload(UploadRefused):
    """The inputs exist but hold no key: the upload would be empty."""


def _type_names(frame: DataFrame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in frame.schema.fields}


def upload_inputs(group_by: GroupBy, ds: str) -> list[tuple[str, str | None, str]]:
    """(table, first day, last day) of the partitions the upload of `ds` reads; a first day of None: all history.

    SNAPSHOT and entity group-bys encode their daily table's day; TEMPORAL ones the events of the longest
    window's lookback (each source's own start and end partitions narrow it).
    """
    if group_by.online_kind == SNAPSHOT:
        return [(group_by.output_table, ds, ds)]
    start = None if group_by.max_window_millis is None else events_start_for(shift_ds(ds, 1), group_by.tail_millis)
    inputs = []
    for source in group_by.sources:
        first, last = source.query.clip(start, ds)
        if last is not None and (first is None or first <= last):
            inputs.append((source.read_table, first, last))
    return inputs


def missing_upload_inputs(warehouse: Warehouse, group_by: GroupBy, ds: str) -> list[str]:
    """One line per input table with missing partitions, naming the table, the days and where it looked.

    A lookback reaching before a table's first partition is cut there, as a backfill's partitions start where
    the data starts; a day missing after it (a gap, or the day itself) is reported.
    """
    problems = []
    for table, first, last in upload_inputs(group_by, ds):
        present = warehouse.partitions(table)
        start = first or (present[0] if present else last)
        if present:
            start = min(max(start, present[0]), last)
        have = set(present)
        missing = [day for day in date_range(start, last) if day not in have]
        if missing:
            kind = "table" if table == group_by.output_table else "source table"
            held = f"it has {present[0]}..{present[-1]}" if present else "it has no partition"
            shown = f"{missing[:10]}{' ...' if len(missing) > 10 else ''}"
            problems.append(
                f"{kind} {table!r} has no partition for {len(missing)} day(s): {shown} "
                f"({held}; looked in {warehouse.table_path(table)})"
            )
    return problems


def _input_rows(warehouse: Warehouse, group_by: GroupBy, ds: str) -> DataFrame:
    """What the upload of `ds` encodes: the daily table's rows of `ds`, or the events (TEMPORAL); keys not null."""
    if group_by.online_kind == SNAPSHOT:
        keys = list(group_by.key_columns)
        return warehouse.read(group_by.output_table, ds, ds).where(keys_not_null(keys))
    return _temporal_events(warehouse, group_by, ds)


def _temporal_events(warehouse: Warehouse, group_by: GroupBy, ds: str) -> DataFrame:
    """Events before the end of `ds` that a TEMPORAL group-by's batch holds (tail and head), keys not null."""
    keys = list(group_by.key_columns)
    unwindowed = group_by.max_window_millis is None
    start = None if unwindowed else events_start_for(shift_ds(ds, 1), group_by.tail_millis)
    events = read_group_by_sources(warehouse, group_by, start, ds).where(keys_not_null(keys))
    return events.where(F.col("ts") < F.lit(end_of_day_millis(ds))).select(*keys, "ts", *group_by.needed_columns)


def check_upload(warehouse: Warehouse, group_by: GroupBy, ds: str, allow_empty: bool = False) -> None:
    """Raise `UploadRefused` when the upload of `ds` would be wrong: inputs missing, or empty unless allowed."""
    problems = missing_upload_inputs(warehouse, group_by, ds)
    if problems:
        hint = (
            "backfill the group-by for that day first"
            if group_by.online_kind == SNAPSHOT
            else "the source tables need those days first"
        )
        raise MissingUploadInputs(
            f"cannot upload {group_by.name} for {ds}: {'; '.join(problems)}; {hint}. Nothing was written"
        )
    if not allow_empty and _input_rows(warehouse, group_by, ds).limit(1).count() == 0:
        inputs = ", ".join(f"{table} [{first or '...'}..{last}]" for table, first, last in upload_inputs(group_by, ds))
        raise EmptyUpload(
            f"cannot upload {group_by.name} for {ds}: its inputs ({inputs}) hold no row with every key set, so "
            "the upload would be empty and fetches would return empty values. Nothing was written; "
            "allow an empty upload with upload --allow-empty"
        )


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
    rows = _input_rows(warehouse, group_by, ds)
    if schema["kind"] == SNAPSHOT:
        rows = rows.select(*keys, *[c for c, _ in schema["columns"] if c in rows.columns])
        encoder = partial(encode_snapshot_rows, schema=schema)
    else:
        encoder = partial(encode_temporal_rows, schema=schema, group_by=group_by, end_millis=end_of_day_millis(ds))
    buckets = bucket_count(rows)
    bucketed = rows.withColumn("__bucket", F.pmod(F.xxhash64(*[F.col(k) for k in keys]), F.lit(buckets)))
    encoded = bucketed.groupBy("__bucket").applyInPandas(lambda pdf: encoder(pdf.drop(columns=["__bucket"])), _ENCODED)
    return encoded.withColumn("ds", F.lit(ds))


def run_upload(warehouse: Warehouse, group_by: GroupBy, ds: str, allow_empty: bool = False) -> int:
    """Write the upload partition `ds` (after `check_upload`); returns its row count."""
    check_upload(warehouse, group_by, ds, allow_empty)
    table = group_by.upload_table
    warehouse.write_partitions(upload_frame(warehouse, group_by, ds), table, ds, ds)
    return int(warehouse.read(table, ds, ds).count())


def check_load(warehouse: Warehouse, group_by: GroupBy, ds: str, store: KVStore, allow_empty: bool = False) -> None:
    """Raise `UploadRefused` when loading `ds` would be wrong: no upload partition, or an empty one that would
    replace the non-empty batch fetches read (unless allowed)."""
    _require_upload_partition(warehouse, group_by, ds)
    if not allow_empty and warehouse.read(group_by.upload_table, ds, ds).limit(1).count() == 0:
        check_not_emptied(batch_versions(store, group_by.name), group_by.batch_dataset, ds)


def _require_upload_partition(warehouse: Warehouse, group_by: GroupBy, ds: str) -> None:
    table = group_by.upload_table
    if ds not in warehouse.partitions(table):
        raise MissingUploadInputs(
            f"cannot load {group_by.name} for {ds}: table {table!r} has no partition for {ds} (looked in "
            f"{warehouse.table_path(table)}); run the upload of that day first"
        )


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
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Bulk-load the upload partition `ds` into `GroupBy.batch_dataset` and flip the pointer when complete.

    `uri`/`database` reach the executors (which write), `store` is the driver's handle (pointer, counts).
    Refused (`UploadRefused`, `EmptyBatchRefused`; nothing changed) as `check_load` says.
    """
    _require_upload_partition(warehouse, group_by, ds)
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

    return load_batch(
        store, group_by, ds, version, rows, schema, write, retain_days=retain_days, allow_empty=allow_empty
    )
