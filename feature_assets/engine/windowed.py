"""Spark side of the window kernel: hash-bucket keys, co-group events with query rows, run the kernel.

Each bucket holds all events and query rows of its keys, so no event or query data reaches the driver.
A bucket is one pandas call: the kernel works on all its keys at once with numpy, which is far cheaper
than one Python call per key. Skew: a hot key's events stay in one bucket (bounded by that key's events
within the range read); the number of buckets follows `spark.sql.shuffle.partitions`, so raising it spreads
the other keys away from hot ones.
"""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.engine.specs import is_integral, output_type
from feature_assets.engine.window_kernel import AggSpec, compute_features

BUCKET = "__bucket"


def bucket_count(frame: DataFrame) -> int:
    return int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions", "8"))


def windowed_features(events: DataFrame, queries: DataFrame, keys: list[str], specs: list[AggSpec],
                      event_keys: list[str] | None = None) -> DataFrame:
    """`queries` (any columns, including `keys` and `ts`) with one feature column per spec appended.

    `events` has `event_keys` (named like `keys` by default), `ts` and the specs' input and bucket columns.
    """
    event_keys = event_keys or keys
    needed = sorted({s.input_column for s in specs} | {s.bucket for s in specs if s.bucket})
    events = events.select(*[F.col(e).alias(k) for e, k in zip(event_keys, keys)], "ts", *needed)
    input_types = {f.name: f.dataType for f in events.schema.fields}
    integral = frozenset(c for c in needed if is_integral(input_types[c]))
    out_schema = T.StructType(list(queries.schema.fields) + [
        T.StructField(s.column_name, output_type(s, input_types[s.input_column]), True) for s in specs])
    buckets = bucket_count(queries)
    key_hash = lambda: F.pmod(F.xxhash64(*[F.col(k) for k in keys]), F.lit(buckets))
    query_columns = queries.columns

    def run_bucket(query_rows: pd.DataFrame, event_rows: pd.DataFrame) -> pd.DataFrame:
        if query_rows.empty:
            return pd.DataFrame({f.name: pd.Series(dtype=object) for f in out_schema.fields})
        # One result per distinct query row: callers may send duplicates (the same keys and ts twice).
        query_rows = query_rows[query_columns].drop_duplicates(ignore_index=True)
        result = compute_features(event_rows, query_rows, keys, specs, integral)
        return result[[f.name for f in out_schema.fields]]

    return (queries.withColumn(BUCKET, key_hash()).groupBy(BUCKET)
            .cogroup(events.withColumn(BUCKET, key_hash()).groupBy(BUCKET))
            .applyInPandas(lambda q, e: run_bucket(q.drop(columns=[BUCKET]), e.drop(columns=[BUCKET])), out_schema))
