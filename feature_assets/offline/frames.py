"""Small Spark helpers shared by the join, bootstrap, mutation and group-by code."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from feature_assets.storage import local_path


def row_time_columns(frame: DataFrame) -> list[str]:
    """`ts` and `ds`; an entity left without a time column has only `ds` (its rows are per day)."""
    return ["ts", "ds"] if "ts" in frame.columns else ["ds"]


def row_ids_beside(frame: DataFrame, row_ids: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The row-id columns a join part's rows carry beside its key columns `keys` (left keys, ts, ds): the
    join's row ids not among those, or none when `frame` lacks one of them (they identify no row then)."""
    if not row_ids or any(column not in frame.columns for column in row_ids):
        return []
    return [column for column in row_ids if column not in keys]


def same_values(left: Sequence[str], right: Sequence[str]) -> Column:
    """Whether the columns `left` hold the values of the columns `right`, nulls equal to nulls.

    Unlike `==` or `<=>`, this is not an equality of one side's columns with the other's, so Spark does not
    take these columns as join keys: a join on other keys plus this condition stays partitioned by those
    keys alone (each side's columns as one struct: equal when `array_distinct` keeps one of the two)."""

    def as_struct(columns: Sequence[str]) -> Column:
        return F.struct(*[F.col(column).alias(f"_{index}") for index, column in enumerate(columns)])

    return F.size(F.array_distinct(F.array(as_struct(left), as_struct(right)))) == 1


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
    return shuffle_count(frame) == 0


def shuffle_count(frame: DataFrame) -> int:
    """The shuffles (exchanges other than broadcasts) Spark plans for the frame's own rows. Subqueries, such
    as dynamic partition pruning's, are not counted: they filter what is read, they do not move rows."""
    plan = frame._jdf.queryExecution().executedPlan()
    if plan.nodeName() == "AdaptiveSparkPlan":
        plan = plan.executedPlan()  # the plan as Spark would run it now (before any stage has run)
    count, stack = 0, [plan]
    while stack:
        node = stack.pop()
        count += node.nodeName() == "Exchange"
        children = node.children()
        stack.extend(children.apply(index) for index in range(children.size()))
    return count


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
