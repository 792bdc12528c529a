"""Point-in-time correct joins: the left rows, one table per join part, and the assembled output.

A join part's table holds one row per distinct (left keys, ts, ds) of the left side with that part's
prefixed feature columns; the output joins them back to every left row, so each left row appears
exactly once. How a part is computed depends on accuracy and source kinds:

- event left, TEMPORAL event group-by: windows end at the left row's ts (the window kernel on raw events);
- event left, SNAPSHOT group-by or entity group-by: the group-by's daily table of `ds - 1` (end of the
  previous day, i.e. the start of the left row's day);
- entity left: the group-by's daily table of the same `ds` (end of the left row's day).
"""
from __future__ import annotations

from typing import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.compiler.columns import (clean_name, external_part_columns, group_by_output_columns,
                                             group_by_value_columns, join_part_columns, join_part_prefix, source_of)
from feature_assets.engine.derivations import apply_derivations
from feature_assets.engine.group_by import read_group_by_sources
from feature_assets.engine.sources import events_start_for, read_source
from feature_assets.engine.specs import agg_specs, max_window_millis
from feature_assets.engine.windowed import windowed_features
from feature_assets.engine.window_kernel import COUNT_LIKE
from feature_assets.storage import Warehouse, shift_ds

# Reads a group-by's daily table for [start_ds, end_ds].
SnapshotReader = Callable[[dict, str, str], DataFrame]

DATA_TYPES = {"BOOLEAN": "boolean", "SHORT": "short", "INT": "int", "LONG": "long", "FLOAT": "float",
              "DOUBLE": "double", "STRING": "string", "BINARY": "binary"}


def left_kind(join: dict) -> str:
    return next(iter(join["left"]))


def read_left(warehouse: Warehouse, join: dict, start_ds: str, end_ds: str) -> DataFrame:
    kind, payload = next(iter(join["left"].items()))
    return read_source(warehouse, kind, payload, start_ds, end_ds)


def part_key_columns(part: dict) -> list[tuple[str, str]]:
    """(left column, group-by key) pairs of a join part."""
    inverse = {gb_key: left_col for left_col, gb_key in (part.get("keyMapping") or {}).items()}
    return [(inverse.get(key, key), key) for key in part["groupBy"]["keyColumns"]]


def part_name(join: dict, part: dict) -> str:
    return f"{clean_name(join['metaData']['name'])}_{join_part_prefix(part)}{clean_name(part['groupBy']['metaData']['name'])}"


def part_feature_prefix(part: dict) -> str:
    return join_part_prefix(part) + clean_name(part["groupBy"]["metaData"]["name"]) + "_"


def uses_snapshot_table(join: dict, part: dict) -> bool:
    """Whether a join part reads its group-by's daily table instead of raw events (or mutations)."""
    from feature_assets.engine.mutations import uses_mutations
    if uses_mutations(part) and left_kind(join) != "entities":
        return False
    gb_kind, _ = source_of(part["groupBy"])
    return left_kind(join) == "entities" or gb_kind == "entities" or part["groupBy"]["accuracy"] == "SNAPSHOT"


def snapshot_offset(join: dict) -> int:
    """Entity left rows see the end of their own day; event left rows the end of the previous day."""
    return 0 if left_kind(join) == "entities" else -1


def compute_join_part(warehouse: Warehouse, join: dict, part: dict, left: DataFrame, start_ds: str, end_ds: str,
                      read_snapshot: SnapshotReader | None = None) -> DataFrame:
    """The part's table: left key columns, ts, ds and the part's prefixed feature columns."""
    from feature_assets.engine.mutations import mutation_join_part, uses_mutations
    if uses_mutations(part) and left_kind(join) != "entities":
        return mutation_join_part(warehouse, join, part, left, start_ds, end_ds)
    group_by = part["groupBy"]
    pairs = part_key_columns(part)
    left_keys = [left_col for left_col, _ in pairs]
    gb_keys = [gb_key for _, gb_key in pairs]
    row_time = row_time_columns(left)
    queries = left.select(*left_keys, *row_time)
    base = group_by_value_columns(group_by)
    if uses_snapshot_table(join, part):
        queries = queries.distinct()
        offset = snapshot_offset(join)
        if read_snapshot is None:  # no stored daily table at hand: compute it for the days needed
            from feature_assets.engine.group_by import snapshot_backfill
            read_snapshot = lambda gb, s, e: snapshot_backfill(warehouse, gb, s, e)  # noqa: E731
        snapshot = read_snapshot(group_by, shift_ds(start_ds, offset), shift_ds(end_ds, offset))
        snapshot = snapshot.select(*[F.col(k).alias(f"__gb_{k}") for k in gb_keys], *base,
                                   F.date_add(F.to_date("ds"), -offset).cast("string").alias("__left_ds"))
        condition = F.col("ds") == F.col("__left_ds")
        for left_col, gb_key in pairs:
            condition = condition & (F.col(left_col) == F.col(f"__gb_{gb_key}"))
        features = queries.join(snapshot, condition, "left").select(*left_keys, *row_time, *base)
        features = _fill_empty_defaults(features, group_by, left_keys)
    else:
        specs = agg_specs(group_by)
        events_start = events_start_for(shift_ds(start_ds, -1), max_window_millis(specs))
        events = read_group_by_sources(warehouse, group_by, events_start, end_ds)
        # The kernel drops duplicate query rows itself, saving a shuffle for `distinct`.
        features = windowed_features(events, queries, left_keys, specs, event_keys=gb_keys)
    features = apply_derivations(features, group_by.get("derivations") or [], base, keep=left_keys + row_time)
    prefix = part_feature_prefix(part)
    outputs = group_by_output_columns(group_by)
    return features.select(*left_keys, *row_time, *[F.col(c).alias(prefix + c) for c in outputs])


def row_time_columns(frame: DataFrame) -> list[str]:
    """`ts` and `ds`; an entity left without a time column has only `ds` (its rows are per day)."""
    return ["ts", "ds"] if "ts" in frame.columns else ["ds"]


def _fill_empty_defaults(frame: DataFrame, group_by: dict, left_keys: list[str]) -> DataFrame:
    """A key absent from the daily table has empty windows: counts are 0 there (unless a key is null)."""
    keyed = F.lit(True)
    for key in left_keys:
        keyed = keyed & F.col(key).isNotNull()
    count_columns = {spec.column_name for spec in agg_specs(group_by) if spec.operation in COUNT_LIKE and not spec.bucket}
    return frame.select(*[
        F.when(keyed, F.coalesce(F.col(c), F.lit(0).cast("long"))).alias(c) if c in count_columns else F.col(c)
        for c in frame.columns])


def assemble_join(join: dict, left: DataFrame, part_tables: list[tuple[dict, DataFrame]]) -> DataFrame:
    """Every left row exactly once, with each part's features, external columns and derivations.

    `left` may be the bootstrap table (left rows plus bootstrap values and coverage flags): a covered row
    keeps its bootstrap values; other rows take computed values where every bootstrap part is null.
    """
    from feature_assets.engine.bootstrap import COVERED_PREFIX, coverage_column, feature_columns
    features = feature_columns(join)
    bootstrapped = set(left.columns) & set(features)
    base_columns = [c for c in left.columns if c not in bootstrapped and not c.startswith(COVERED_PREFIX)]
    row_time = row_time_columns(left)
    output = left
    values = {column: F.col(column) for column in bootstrapped}
    for index, (part, table) in enumerate(part_tables):
        row = [left_col for left_col, _ in part_key_columns(part)] + row_time
        part_columns = join_part_columns(part)
        renamed = table.select(*[F.col(c).alias(f"__p{index}_{c}") for c in row],
                               *[F.col(c).alias(f"__c{index}_{c}") for c in part_columns])
        condition = F.lit(True)
        for column in row:
            condition = condition & F.col(column).eqNullSafe(F.col(f"__p{index}_{column}"))
        output = output.join(renamed, condition, "left")
        covered = coverage_column(join, part)
        for column in part_columns:
            computed = F.col(f"__c{index}_{column}")
            if column not in bootstrapped:
                values[column] = computed
            elif covered in left.columns:
                values[column] = F.when(F.col(covered), F.col(column)).otherwise(F.coalesce(F.col(column), computed))
            else:
                values[column] = F.coalesce(F.col(column), computed)
    for external in join.get("onlineExternalParts") or []:
        types = dict((name, data_type) for name, data_type in external["source"]["valueFields"])
        for column, (name, _) in zip(external_part_columns(external), external["source"]["valueFields"]):
            values.setdefault(column, F.lit(None).cast(DATA_TYPES.get(types[name], "string")))
    non_ds = [c for c in base_columns if c != "ds"]
    output = output.select(*non_ds, *[values[c].alias(c) for c in features if c in values], "ds")
    derivations = join.get("derivations") or []
    if derivations:
        output = apply_derivations(output, derivations, [c for c in features if c in values], keep=non_ds + ["ds"])
        output = output.select(*[c for c in output.columns if c != "ds"], "ds")
    return output


def compute_needed_join_part(warehouse: Warehouse, join: dict, part: dict, enriched: DataFrame, start_ds: str,
                             end_ds: str, read_snapshot: SnapshotReader) -> tuple[DataFrame, dict]:
    """The part's table for the rows bootstrap does not cover, and what was computed or skipped.

    Only the days with uncovered rows are computed, each run of consecutive days as one job, so the
    sources of fully covered days are never read.
    """
    from feature_assets.engine.bootstrap import coverage_column
    covered = coverage_column(join, part)
    is_covered = F.col(covered) if covered in enriched.columns else F.lit(False)
    needed = enriched.where(~is_covered)
    counts = enriched.groupBy("ds", is_covered.alias("covered")).count().collect()
    day_counts = {row["ds"]: row["count"] for row in counts if not row["covered"]}
    runs = _consecutive_runs(sorted(day_counts))
    stats = {"left_rows": sum(row["count"] for row in counts), "rows_computed": sum(day_counts.values()),
             "days_computed": len(day_counts)}
    if not runs:
        keys = [left_col for left_col, _ in part_key_columns(part)]
        return enriched.select(*keys, *row_time_columns(enriched), *join_part_columns(part)).limit(0), stats
    frames = [compute_join_part(warehouse, join, part, needed.where(F.col("ds").between(first, last)), first, last,
                                read_snapshot) for first, last in runs]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result, stats


def _consecutive_runs(days: list[str]) -> list[tuple[str, str]]:
    runs: list[tuple[str, str]] = []
    for day in days:
        if runs and shift_ds(runs[-1][1], 1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
