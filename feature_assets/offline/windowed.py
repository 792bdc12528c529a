"""Spark side of the window kernel: hash-bucket keys, co-group events with query rows, run the kernel.

Each bucket holds all events and query rows of its keys, so no event or query data reaches the driver.
A bucket is one pandas call: the kernel works on all its keys at once with numpy, which is far cheaper
than one Python call per key. The number of buckets follows `spark.sql.shuffle.partitions`.

Skew: hot keys are split by time (see `feature_assets.offline.hot_keys`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from feature_assets.aggregation.kernel import ListColumn
from feature_assets.aggregation.spec import AggSpec
from feature_assets.aggregation.windows import compute_feature_columns
from feature_assets.offline.hot_keys import HEAD, SLICE, slice_hot_keys, to_arrow_values, unwindowed_from_heads
from feature_assets.offline.specs import is_integral, output_type

BUCKET = "__bucket"


def bucket_count(frame: DataFrame) -> int:
    return int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions", None) or 8)


def windowed_features(
    events: DataFrame, queries: DataFrame, keys: list[str], specs: list[AggSpec], event_keys: list[str] | None = None
) -> DataFrame:
    """`queries` (any columns, including `keys` and `ts`) with one feature column per spec appended.

    `events` has `event_keys` (named like `keys` by default), `ts` and the specs' input and bucket columns.
    """
    event_keys = event_keys or keys
    needed = sorted({s.input_column for s in specs} | {s.bucket for s in specs if s.bucket})
    events = events.select(*[F.col(e).alias(k) for e, k in zip(event_keys, keys)], "ts", *needed)
    input_types = {f.name: f.dataType for f in events.schema.fields}
    integral = frozenset(c for c in needed if is_integral(input_types[c]))
    out_schema = T.StructType(
        list(queries.schema.fields)
        + [T.StructField(s.column_name, output_type(s, input_types[s.input_column]), True) for s in specs]
    )
    buckets = bucket_count(queries)
    key_hash = lambda: F.pmod(F.xxhash64(*[F.col(k) for k in keys]), F.lit(buckets))  # noqa: E731
    query_columns = queries.columns
    queries, events = slice_hot_keys(queries, events, keys, specs)
    queries, events = queries.withColumn(BUCKET, key_hash()), events.withColumn(BUCKET, key_hash())
    unwindowed = [s for s in specs if s.window_millis is None]
    type_names = {f.name: f.dataType.simpleString() for f in events.schema.fields}

    arrow_schema = to_arrow_schema(out_schema)

    def run_bucket(query_table: pa.Table, event_table: pa.Table) -> pa.Table:
        # Arrow in and out: list-valued features go to Arrow as flat arrays, without a per-row Python loop.
        if query_table.num_rows == 0:
            return arrow_schema.empty_table()
        query_rows = query_table.select(query_columns).to_pandas()
        # One result per distinct query row: callers may send duplicates (the same keys and ts twice).
        query_rows = query_rows.drop_duplicates(ignore_index=True)
        hot = query_table.column(SLICE)[0].as_py() >= 0
        heads = None
        if HEAD in event_table.column_names:
            is_head = event_table.column(HEAD).combine_chunks().is_valid()
            heads = event_table.filter(is_head).select(keys + [HEAD]).to_pandas()
            event_table = event_table.filter(pc.invert(is_head)).drop_columns([HEAD])
        event_rows = event_table.drop_columns([BUCKET, SLICE]).to_pandas()
        features = compute_feature_columns(event_rows, query_rows, keys, specs, integral)
        arrays = [pa.Array.from_pandas(query_rows[name], type=arrow_schema.field(name).type) for name in query_columns]
        if hot and unwindowed:  # the kernel saw only the task's slices: fold those into the heads instead
            if heads is None:
                heads = pd.DataFrame({**{k: query_rows[k].iloc[:0] for k in keys}, HEAD: []})
            values = unwindowed_from_heads(query_rows, event_rows, heads, keys, unwindowed, type_names)
            for spec in unwindowed:
                features[spec.column_name] = pa.array(
                    to_arrow_values(values[spec.column_name]), type=arrow_schema.field(spec.column_name).type
                )
        arrays += [to_arrow(features[spec.column_name], arrow_schema.field(spec.column_name).type) for spec in specs]
        return pa.Table.from_arrays(arrays, schema=arrow_schema)

    return queries.groupBy(BUCKET, SLICE).cogroup(events.groupBy(BUCKET, SLICE)).applyInArrow(run_bucket, out_schema)


def to_arrow(values, arrow_type):
    """One kernel output column as an Arrow array of the Spark output type."""
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, ListColumn):
        return values.to_arrow(arrow_type)
    if isinstance(values, pd.arrays.IntegerArray):
        return pa.array(values.to_numpy(dtype="int64", na_value=0), type=arrow_type, mask=values.isna())
    if isinstance(values, np.ndarray) and values.dtype != object:
        return pa.array(values, type=arrow_type, from_pandas=True)
    return pa.array(list(values), type=arrow_type, from_pandas=True)
