"""Small Spark helpers shared by the join, bootstrap, mutation and group-by code."""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from feature_assets.storage import local_path

_SHUFFLE = re.compile(r"(?<!Broadcast)Exchange ")


def row_time_columns(frame: DataFrame) -> list[str]:
    """`ts` and `ds`; an entity left without a time column has only `ds` (its rows are per day)."""
    return ["ts", "ds"] if "ts" in frame.columns else ["ds"]


def keys_not_null(keys: list[str]) -> Column:
    condition = F.lit(True)
    for key in keys:
        condition = condition & F.col(key).isNotNull()
    return condition


def union_by_name(frames: list[DataFrame], allow_missing_columns: bool = False) -> DataFrame:
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame, allowMissingColumns=allow_missing_columns)
    return union


def reads_in_place(frame: DataFrame) -> bool:
    """No shuffle in the frame's plan (broadcasts aside): its tasks are splits of the files it reads, so a
    frame read from ds-partitioned tables holds whole days per task and can be written without a shuffle."""
    return not _SHUFFLE.search(frame._jdf.queryExecution().executedPlan().toString())


def estimated_bytes(frame: DataFrame) -> int:
    """Spark's own size estimate of a frame (what it compares with its broadcast threshold)."""
    return int(str(frame._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))


def has_no_rows(frame: DataFrame) -> bool:
    """Whether `frame` has no rows. A frame that only reads local parquet files, all of which count zero rows
    in their footers (the empty days of a stored table), is known to be empty without a Spark job."""
    if _reads_only_empty_local_files(frame):
        return True
    return frame.isEmpty()


def _reads_only_empty_local_files(frame: DataFrame) -> bool:
    leaves = frame._jdf.queryExecution().analyzed().collectLeaves()
    if any(leaves.apply(i).nodeName() != "LogicalRelation" for i in range(leaves.size())):
        return False  # rows of its own (a literal frame, a range) or a source other than files
    files = frame.inputFiles()
    paths = [local_path(name) if name.startswith("file:") and name.endswith(".parquet") else None for name in files]
    if not paths or None in paths:
        return False
    import pyarrow.parquet as pq  # only here: most frames never get this far

    return all(pq.read_metadata(path).num_rows == 0 for path in paths)
