"""Per-bucket column summaries of a join output (or any table with a `ds` partition column) in Spark.

`daily_column_stats` summarizes every feature column per time bucket: the hour of `ts` (epoch millis, UTC)
when the frame has `ts` (a row with a null `ts` falls in its `ds` day's bucket), else the day of `ds`
(midnight UTC, in millis). One output row per (ds, bucket, column) carries the counters, the percentiles,
the distinct estimate and the mergeable `ColumnSummary` bytes.

The work runs as one `applyInArrow` per (ds, bucket): Spark first reduces list and map columns to what the
summaries need (sizes, null elements, keys as strings) and casts other columns to double or string; the
Arrow function then counts with pyarrow compute kernels and feeds the sketches vectorized.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.statistics import (
    DEFAULT_K,
    ColumnSummary,
    boolean_summary,
    categorical_summary,
    kind_of_spark_type,
    list_summary,
    map_summary,
    numeric_summary,
)

HOUR_MILLIS = 3_600_000
DAY_MILLIS = 86_400_000
TIME_COLUMNS = ("ts", "ds")
# Sampling keeps a row when its hash, modulo this, falls below sample_percent of it.
SAMPLE_RESOLUTION = 1_000_000

STATS_SCHEMA = T.StructType(
    [
        T.StructField("column_name", T.StringType()),
        T.StructField("column_kind", T.StringType()),
        T.StructField("ts", T.LongType()),
        T.StructField("total", T.LongType()),
        T.StructField("null_count", T.LongType()),
        T.StructField("null_rate", T.DoubleType()),
        T.StructField("percentiles", T.MapType(T.StringType(), T.DoubleType())),
        T.StructField("distinct_estimate", T.DoubleType()),
        T.StructField("summary", T.BinaryType()),
        T.StructField("sample_percent", T.DoubleType()),
        T.StructField("ds", T.StringType()),
    ]
)
_ARROW_SCHEMA = pa.schema(
    [
        ("column_name", pa.string()),
        ("column_kind", pa.string()),
        ("ts", pa.int64()),
        ("total", pa.int64()),
        ("null_count", pa.int64()),
        ("null_rate", pa.float64()),
        ("percentiles", pa.map_(pa.string(), pa.float64())),
        ("distinct_estimate", pa.float64()),
        ("summary", pa.binary()),
        ("sample_percent", pa.float64()),
        ("ds", pa.string()),
    ]
)
_BUCKET = "__stats_bucket"


@dataclass(frozen=True)
class _Feature:
    name: str
    kind: str
    slot: str  # the prepared column (numeric/boolean/categorical values, list lengths, map sizes)

    @property
    def extra(self) -> str:
        """The second prepared column: null elements of a list, keys of a map."""
        return f"{self.slot}_extra"


def _prepared(feature: _Feature, data_type: T.DataType) -> list[Column]:
    """The Spark expressions a feature's summary is computed from, aliased to its slot names."""
    column = F.col(f"`{feature.name}`")
    if feature.kind == "numeric":
        return [column.cast("double").alias(feature.slot)]
    if feature.kind == "boolean":
        return [column.alias(feature.slot)]
    if feature.kind == "categorical":
        text = F.lower(F.hex(column)) if isinstance(data_type, T.BinaryType) else column.cast("string")
        return [text.alias(feature.slot)]
    size = F.when(column.isNull(), F.lit(None)).otherwise(F.size(column)).cast("long")
    if feature.kind == "list":
        assert isinstance(data_type, T.ArrayType)
        floating = isinstance(data_type.elementType, (T.FloatType, T.DoubleType))
        missing = (lambda x: x.isNull() | F.isnan(x)) if floating else (lambda x: x.isNull())
        null_elements = F.when(column.isNull(), F.lit(0)).otherwise(F.size(F.filter(column, missing)))
        return [size.alias(feature.slot), null_elements.cast("long").alias(feature.extra)]
    keys = F.transform(F.map_keys(column), lambda key: key.cast("string"))
    return [size.alias(feature.slot), keys.alias(feature.extra)]


def _hashable(name: str, data_type: T.DataType) -> Column:
    """A column Spark can hash: top-level maps as their entries, nested maps as JSON."""
    column = F.col(f"`{name}`")
    if isinstance(data_type, T.MapType):
        return F.map_entries(column)
    if "map<" in data_type.simpleString():
        return F.to_json(column)
    return column


def _float_array(values: pa.ChunkedArray) -> np.ndarray:
    """float64 values with NaN for nulls."""
    return np.asarray(pc.fill_null(pc.cast(values, pa.float64()), np.nan).to_numpy(), dtype=np.float64)


def _value_counts(values: pa.ChunkedArray | pa.Array) -> list[tuple[str, int]]:
    counted = pc.value_counts(values)
    present = counted.filter(counted.field("values").is_valid())
    return list(zip(present.field("values").to_pylist(), present.field("counts").to_pylist()))


def _summarize_slot(table: pa.Table, feature: _Feature, k: int) -> ColumnSummary:
    values = table.column(feature.slot)
    total = table.num_rows
    if feature.kind == "numeric":
        return numeric_summary(feature.name, _float_array(values), k)
    if feature.kind == "boolean":
        trues = int(pc.sum(values).as_py() or 0)
        return boolean_summary(feature.name, total, trues, int(pc.count(values).as_py()) - trues)
    if feature.kind == "categorical":
        return categorical_summary(feature.name, total, values.null_count, _value_counts(values))
    extra = table.column(feature.extra)
    if feature.kind == "list":
        return list_summary(feature.name, total, _float_array(values), int(pc.sum(extra).as_py() or 0), k)
    return map_summary(feature.name, total, _float_array(values), _value_counts(pc.list_flatten(extra)), k)


def _output_row(summary: ColumnSummary, bucket: int, ds: str | None, sample_percent: float) -> dict[str, Any]:
    percentiles = None
    if summary.quantiles is not None and not summary.quantiles.is_empty():
        by_point = summary.percentiles() if summary.kind == "numeric" else summary.length_percentiles()
        percentiles = list(by_point.items())
    return {
        "column_name": summary.column,
        "column_kind": summary.kind,
        "ts": bucket,
        "total": summary.total,
        "null_count": summary.null_count,
        "null_rate": summary.null_rate,
        "percentiles": percentiles,
        "distinct_estimate": summary.distinct_estimate,
        "summary": summary.to_bytes(),
        "sample_percent": sample_percent,
        "ds": ds,
    }


def _bucket_summarizer(features: list[_Feature], sample_percent: float, k: int) -> Callable[[pa.Table], pa.Table]:
    def summarize_bucket(table: pa.Table) -> pa.Table:
        if table.num_rows == 0:
            return _ARROW_SCHEMA.empty_table()
        ds = table.column("ds")[0].as_py()
        bucket = table.column(_BUCKET)[0].as_py()
        rows = [_output_row(_summarize_slot(table, feature, k), bucket, ds, sample_percent) for feature in features]
        return pa.Table.from_pylist(rows, schema=_ARROW_SCHEMA)

    return summarize_bucket


def daily_column_stats(
    frame: DataFrame,
    feature_columns: Sequence[str] | None = None,
    sample_percent: float = 100.0,
    seed: int = 0,
    exclude: Sequence[str] = (),
    k: int = DEFAULT_K,
) -> DataFrame:
    """Summaries of `frame`'s feature columns per (ds, bucket), in `STATS_SCHEMA`.

    feature_columns: the columns to summarize; by default every column but `exclude` (the key columns),
    `ts` and `ds`. sample_percent: the share of rows kept, chosen by a hash of the whole row and `seed`,
    so a re-run keeps the same rows (identical rows are kept or dropped together); totals and null counts
    then describe the sample. k: the KLL sketch size (see `feature_assets.statistics.summary`).
    """
    if "ds" not in frame.columns:
        raise ValueError(f"column stats need a 'ds' column; the frame has {frame.columns}")
    if not 0 < sample_percent <= 100:
        raise ValueError(f"sample_percent must be in (0, 100], got {sample_percent}")
    types = {field.name: field.dataType for field in frame.schema.fields}
    if feature_columns is None:
        skipped = set(exclude) | set(TIME_COLUMNS)
        names = [name for name in frame.columns if name not in skipped]
    else:
        names = list(feature_columns)
        missing = [name for name in names if name not in types]
        if missing:
            raise ValueError(f"feature_columns not in the frame: {missing} (columns: {frame.columns})")
        reserved = [name for name in names if name in TIME_COLUMNS]
        if reserved:
            raise ValueError(f"feature_columns cannot include the time columns {reserved}")
    features = [
        _Feature(name, kind_of_spark_type(types[name].simpleString()), f"__stats_{index}")
        for index, name in enumerate(names)
    ]

    day_start = F.datediff(F.to_date(F.col("ds")), F.lit("1970-01-01").cast("date")).cast("long") * DAY_MILLIS
    if "ts" in types:
        ts = F.col("ts").cast("long")
        bucket = F.coalesce(ts - F.pmod(ts, F.lit(HOUR_MILLIS)), day_start)
    else:
        bucket = day_start

    rows = frame
    if sample_percent < 100:
        row_hash = F.xxhash64(F.lit(seed), *[_hashable(name, types[name]) for name in frame.columns])
        rows = rows.where(F.pmod(row_hash, F.lit(SAMPLE_RESOLUTION)) < F.lit(sample_percent * SAMPLE_RESOLUTION / 100))

    prepared = rows.select(
        F.col("ds").cast("string").alias("ds"),
        bucket.alias(_BUCKET),
        *[expression for feature in features for expression in _prepared(feature, types[feature.name])],
    )
    return prepared.groupBy("ds", _BUCKET).applyInArrow(
        _bucket_summarizer(features, float(sample_percent), k), STATS_SCHEMA
    )
