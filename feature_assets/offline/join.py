"""Point-in-time correct joins: the left rows, one table per join part, and the assembled output.

A join part's table holds one row per distinct (row ids, left keys, ts, ds) of the left side with that
part's prefixed feature columns; the output joins them back to every left row, so each left row appears
exactly once. Keyed by the row ids, every join of the output (parts and bootstrap values alike) shares one
partitioning. How a part is computed depends on accuracy and source kinds:

- event left, TEMPORAL event group-by: windows end at the left row's ts (the window kernel on raw events);
- event left, SNAPSHOT group-by or entity group-by: the group-by's daily table of `ds - 1` (end of the
  previous day, i.e. the start of the left row's day);
- entity left: the group-by's daily table of the same `ds` (end of the left row's day);
- event left, TEMPORAL entity group-by with a mutation log: the day's mutations replayed (`mutations.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, NumericType

from feature_assets.model.configs import COVERED_PREFIX, GroupBy, Join, JoinPart
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN
from feature_assets.offline.bootstrap import (
    BootstrapValues,
    bootstrap_types,
    read_bootstrap_values,
    values_in_place,
    with_bootstrap_values,
)
from feature_assets.offline.derivations import apply_derivations
from feature_assets.offline.frames import (
    has_no_rows,
    keys_not_null,
    reads_in_place,
    row_ids_beside,
    row_time_columns,
    same_values,
    union_by_name,
)
from feature_assets.offline.group_by import read_group_by_sources, snapshot_backfill
from feature_assets.offline.mutations import mutation_join_part
from feature_assets.offline.sources import events_start_for, read_source
from feature_assets.offline.windowed import windowed_features
from feature_assets.storage import Warehouse, shift_ds

# Left rows left to compute after bootstrap that are few enough to broadcast their distinct keys and read
# only those keys' events: at most this many, and at most this share of the left rows (beyond it most keys
# are asked for anyway and the extra join costs more than it saves).
FEW_ROWS = 500_000
FEW_ROWS_SHARE = 0.25

LATEST_QUERY = "__latest_query_ts"
# Marks the bootstrap values rows in a part table they were appended to (`values_beside_part`).
FROM_BOOTSTRAP = "__from_bootstrap"

# Reads a group-by's daily table for [start_ds, end_ds].
SnapshotReader = Callable[[GroupBy, str, str], DataFrame]


def read_left(warehouse: Warehouse, join: Join, start_ds: str, end_ds: str) -> DataFrame:
    return read_source(warehouse, join.left, start_ds, end_ds)


def compute_join_part(
    warehouse: Warehouse,
    join: Join,
    part: JoinPart,
    left: DataFrame,
    start_ds: str,
    end_ds: str,
    read_snapshot: SnapshotReader | None = None,
    events_of_left_keys: bool = False,
) -> DataFrame:
    """The part's table: the join's row ids (when the left rows have them), left key columns, ts, ds and the
    part's prefixed feature columns: one row per distinct left row of those columns.

    With `events_of_left_keys` (few left rows, as bootstrap leaves), raw events are first reduced to the
    keys the left rows ask for, up to each key's latest left row, so the window kernel's shuffle and sort
    see only those events.
    """
    if join.uses_mutations(part):
        return mutation_join_part(warehouse, join, part, left, start_ds, end_ds)
    group_by = part.group_by
    left_keys = part.left_keys
    row_time = row_time_columns(left)
    row_ids = row_ids_beside(left, join.row_ids, left_keys + row_time)
    queries = left.select(*row_ids, *left_keys, *row_time)
    if join.uses_snapshot_table(part):
        if read_snapshot is None:  # no stored daily table at hand: compute it for the days needed
            read_snapshot = lambda gb, s, e: snapshot_backfill(warehouse, gb, s, e)  # noqa: E731
        features = _snapshot_features(join, part, queries.distinct(), start_ds, end_ds, read_snapshot)
    else:
        events_start = events_start_for(shift_ds(start_ds, -1), group_by.max_window_millis)
        events = read_group_by_sources(warehouse, group_by, events_start, end_ds)
        if events_of_left_keys:
            events = _events_asked_for(events, queries, part)
        # The kernel drops duplicate query rows itself, saving a shuffle for `distinct`.
        features = windowed_features(
            events, queries, left_keys, group_by.specs, event_keys=[gb_key for _, gb_key in part.key_pairs]
        )
    keep = row_ids + left_keys + row_time
    features = apply_derivations(features, group_by.derivations, group_by.value_columns, keep=keep)
    return features.select(*keep, *[F.col(c).alias(part.feature_prefix + c) for c in group_by.output_columns])


def _events_asked_for(events: DataFrame, queries: DataFrame, part: JoinPart) -> DataFrame:
    """The events of the keys that `queries` ask for, up to each key's latest query: a later event is in no
    window of that key (few queries: their distinct keys are broadcast)."""
    gb_keys = [gb_key for _, gb_key in part.key_pairs]
    asked = queries.groupBy(*[F.col(left).alias(gb_key) for left, gb_key in part.key_pairs]).agg(
        F.max("ts").alias(LATEST_QUERY)
    )
    events = events.join(F.broadcast(asked), gb_keys, "inner")
    return events.where(F.col("ts") <= F.col(LATEST_QUERY)).drop(LATEST_QUERY)


def _snapshot_features(
    join: Join, part: JoinPart, queries: DataFrame, start_ds: str, end_ds: str, read_snapshot: SnapshotReader
) -> DataFrame:
    """The part's base columns from its group-by's daily table, `join.snapshot_offset` days from each row's."""
    base = part.group_by.value_columns
    offset = join.snapshot_offset
    snapshot = read_snapshot(part.group_by, shift_ds(start_ds, offset), shift_ds(end_ds, offset))
    snapshot = snapshot.select(
        *[F.col(gb_key).alias(f"__gb_{gb_key}") for _, gb_key in part.key_pairs],
        *base,
        F.date_add(F.to_date("ds"), -offset).cast("string").alias("__left_ds"),
    )
    condition = F.col("ds") == F.col("__left_ds")
    for left_col, gb_key in part.key_pairs:
        condition = condition & (F.col(left_col) == F.col(f"__gb_{gb_key}"))
    features = queries.join(snapshot, condition, "left").select(*queries.columns, *base)
    return _fill_empty_defaults(features, part.group_by, part.left_keys)


def _fill_empty_defaults(frame: DataFrame, group_by: GroupBy, left_keys: list[str]) -> DataFrame:
    """A key absent from the daily table has empty windows: counts are 0 there (unless a key is null)."""
    keyed = keys_not_null(left_keys)
    count_columns = group_by.count_columns
    return frame.select(
        *[
            F.when(keyed, F.coalesce(F.col(c), F.lit(0).cast("long"))).alias(c) if c in count_columns else F.col(c)
            for c in frame.columns
        ]
    )


def assemble_join(
    join: Join,
    left: DataFrame,
    part_tables: list[tuple[JoinPart, DataFrame | None]],
    add_bootstrap_values: Callable[[DataFrame], DataFrame] | None = None,
) -> DataFrame:
    """Every left row exactly once, with each part's features, external columns and derivations.

    `left` may carry coverage flags (the bootstrap table) and bootstrap values; `add_bootstrap_values`, when
    given, adds the values after the parts are joined, so those joins shuffle the narrow left rows rather
    than rows carrying every bootstrap value. A covered row keeps its bootstrap values; other rows take
    computed values where every bootstrap part is null. A part's table is None when bootstrap covers every
    row for it: that part is not joined at all. A part's table may also hold that part's bootstrap values
    (`values_beside_part`), which then match only covered rows.
    """
    features = join.feature_columns
    row_time = row_time_columns(left)
    output = left
    computed: dict[str, Column] = {}
    joined: list[JoinPart] = []
    for index, (part, table) in enumerate(part_tables):
        if table is None:
            continue
        row = part.left_keys + row_time
        # Older part tables (and joins without row ids) lack them: those are matched on the rest of the row.
        row_ids = list(join.row_ids) if all(c in left.columns and c in table.columns for c in join.row_ids) else []
        keys = list(dict.fromkeys(row_ids + row))
        marker = [FROM_BOOTSTRAP] if FROM_BOOTSTRAP in table.columns else []
        renamed = table.select(*keys, *part.columns, *marker).toDF(
            *[f"__p{index}_{c}" for c in keys], *[f"__c{index}_{c}" for c in part.columns], *marker
        )
        covered = join.coverage_column(part) if marker else None
        output = output.join(renamed, _part_match(index, row, row_ids, covered), "left").drop(*marker)
        joined.append(part)
        computed.update({column: F.col(f"__c{index}_{column}") for column in part.columns})
    if add_bootstrap_values is not None:
        output = add_bootstrap_values(output)
    bootstrapped = set(output.columns) & set(features)
    for part, table in part_tables:
        unprovided = [c for c in part.columns if c not in bootstrapped]
        if table is None and unprovided:
            raise ValueError(
                f"join {join.name}: part {part.group_by.name} was skipped as covered, but bootstrap "
                f"does not provide {unprovided}"
            )
    base_columns = [c for c in left.columns if c not in bootstrapped and not c.startswith(COVERED_PREFIX)]
    # A bootstrap value kept as is stays a column name: an expression per column is a JVM round trip each.
    values: dict[str, Column | str] = {column: column for column in bootstrapped}
    for part in joined:
        covered = join.coverage_column(part)
        flag = covered if covered in left.columns else None
        for column in part.columns:
            values[column] = _part_value(column, computed[column], column in bootstrapped, flag)
    for external in join.external_parts:
        for column, _, spark_type in external.column_fields:
            values.setdefault(column, F.lit(None).cast(spark_type))
    non_ds = [c for c in base_columns if c != "ds"]
    selected = [c for c in features if c in values]
    output = output.select(*non_ds, *[_named(values[c], c) for c in selected], "ds")
    if join.derivations:
        output = apply_derivations(output, join.derivations, selected, keep=non_ds + ["ds"])
        output = output.select(*[c for c in output.columns if c != "ds"], "ds")
    return output


def output_from_stored(
    warehouse: Warehouse,
    join: Join,
    flagged: DataFrame,
    stored_parts: list[tuple[JoinPart, DataFrame]],
    start_ds: str,
    end_ds: str,
) -> DataFrame:
    """The join's output from its stored tables: the bootstrap table (left rows and coverage flags) and every
    part table. Parts bootstrap covers on every row are not joined; the bootstrap values come last, read in
    place when every part is covered and one table provides them (`values_in_place`), or together with the
    one part whose columns they are (`values_beside_part`)."""
    sources = read_bootstrap_values(warehouse, join, start_ds, end_ds)
    parts = without_covered_parts(list(bootstrap_types(sources)), stored_parts)
    if all(table is None for _, table in parts):
        in_place = values_in_place(sources, flagged)
        if in_place is not None:
            return assemble_join(join, in_place, parts)
    beside = values_beside_part(join, sources, parts, flagged)
    if beside is not None:
        return assemble_join(join, flagged, beside)
    values = functools.partial(with_bootstrap_values, warehouse, sources, start_ds=start_ds, end_ds=end_ds)
    return assemble_join(join, flagged, parts, values)


def write_join_output(
    warehouse: Warehouse,
    join: Join,
    flagged: DataFrame,
    stored_parts: list[tuple[JoinPart, DataFrame]],
    table: str,
    start_ds: str,
    end_ds: str,
) -> None:
    """Write `output_from_stored` to `table`; an output that reads its tables in place is written as its tasks
    hold it (whole days each), without a shuffle by day."""
    frame = output_from_stored(warehouse, join, flagged, stored_parts, start_ds, end_ds)
    warehouse.write_partitions(frame, table, start_ds, end_ds, shuffle=not reads_in_place(frame))


def values_beside_part(
    join: Join, sources: list[BootstrapValues], parts: list[tuple[JoinPart, DataFrame | None]], flagged: DataFrame
) -> list[tuple[JoinPart, DataFrame | None]] | None:
    """`parts` with the bootstrap values appended to the table of the one part they are for, or None when
    that is not how they can be joined.

    This holds when one table, keyed by the join's row ids, provides every column of one part and no other
    join column (and is not a flattened log, whose rows may lack some columns): a left row it matches is then
    covered for that part and has no computed row, any other row has no bootstrap values. One join of the
    part's rows and values then does what joining the part, then the values would, and the output joins
    exactly the tables a join without bootstrap does. Each values row is marked (`FROM_BOOTSTRAP`) and
    matches only a covered row (`_part_match`).
    """
    if len(sources) != 1 or not join.row_ids:
        return None
    values = sources[0]
    provided = set(values.provided)
    touched = [index for index, (part, _) in enumerate(parts) if provided & set(part.columns)]
    if (
        ABSENT_FIELDS_COLUMN in values.rows.columns
        or set(values.source.key_columns) != set(join.row_ids)
        or len(touched) != 1
    ):
        return None
    index = touched[0]
    part, table = parts[index]
    if table is None or set(part.columns) != provided or join.coverage_column(part) not in flagged.columns:
        return None
    row = part.left_keys + row_time_columns(flagged)
    keys = list(dict.fromkeys(list(join.row_ids) + row))
    if any(c not in table.columns for c in keys):
        return None
    table_types = {field.name: field.dataType for field in table.schema.fields}
    value_types = {field.name: field.dataType for field in values.rows.schema.fields}
    from_values = set(join.row_ids) | {"ds"}
    if not all(_union_keeps_type(table_types[c], value_types[c]) for c in [*from_values, *part.columns]):
        return None
    rows = values.rows.select(
        *[F.col(c) if c in from_values else F.lit(None).cast(table_types[c]).alias(c) for c in keys],
        *part.columns,
        F.lit(True).alias(FROM_BOOTSTRAP),
    )
    merged = table.select(*keys, *part.columns, F.lit(False).alias(FROM_BOOTSTRAP)).unionByName(rows)
    return [(p, merged if i == index else t) for i, (p, t) in enumerate(parts)]


def _union_keeps_type(computed: DataType, bootstrapped: DataType) -> bool:
    """Whether a union of the two types gives the column the type that joining the values apart would (the
    wider of two numeric types, in both); other pairs are left to that join."""
    return computed == bootstrapped or (isinstance(computed, NumericType) and isinstance(bootstrapped, NumericType))


def without_covered_parts(
    bootstrapped: list[str], part_tables: list[tuple[JoinPart, DataFrame]]
) -> list[tuple[JoinPart, DataFrame | None]]:
    """The part tables for `assemble_join`, None for a part bootstrap covers on every row.

    A stored part table holds a row for every left row bootstrap does not cover, so an empty one whose
    columns all come from bootstrap (`bootstrapped`: the columns some bootstrap part provides) means nothing
    was computed: joining it would only shuffle the left rows. A stored table's emptiness is cheap to learn
    (from its files' footers when they are local, else by reading one row); a part still to be computed is
    not a stored table, so pass only tables read back from the warehouse.
    """
    return [
        (part, None if set(part.columns) <= set(bootstrapped) and has_no_rows(table) else table)
        for part, table in part_tables
    ]


def _part_match(index: int, row: list[str], row_ids: list[str], covered: str | None = None) -> Column:
    """The condition matching a left row to its row of part table `index` (columns `__p{index}_...`).

    With row ids, the join keys are the row ids (null-safe) and ds, the same keys on which bootstrap values
    are matched to left rows, so every join of the output shares one partitioning and the joined rows are
    never shuffled again. The row's other columns (left keys, ts) must match too, in case row ids repeat,
    but as a condition Spark does not take as join keys (`same_values`). Without row ids the keys are the
    part's left keys, ts and ds.
    """
    keys = row_ids or [c for c in row if c != "ds"]
    condition = F.lit(True)
    for column in keys:
        condition = condition & F.col(column).eqNullSafe(F.col(f"__p{index}_{column}"))
    condition = condition & (F.col("ds") == F.col(f"__p{index}_ds"))  # ds is never null: a partition
    rest = [c for c in row if c not in keys and c != "ds"]
    same_rest = same_values(rest, [f"__p{index}_{c}" for c in rest]) if rest else F.lit(True)
    if covered is None:
        return condition & same_rest if rest else condition
    # The table also holds bootstrap values (`values_beside_part`): a covered row takes its values row, any
    # other row its computed row, so a row matches one row of the table even if both have one.
    from_bootstrap = F.col(FROM_BOOTSTRAP)
    return condition & F.when(F.col(covered), from_bootstrap).otherwise(~from_bootstrap & same_rest)


def _named(value: Column | str, name: str) -> Column | str:
    return value if isinstance(value, str) else value.alias(name)


def _part_value(column: str, computed: Column, bootstrapped: bool, covered: str | None) -> Column:
    """A part column's value: computed, or the bootstrap value (kept as is on covered rows, else filled)."""
    if not bootstrapped:
        return computed
    if covered is not None:
        return F.when(F.col(covered), F.col(column)).otherwise(F.coalesce(F.col(column), computed))
    return F.coalesce(F.col(column), computed)


def compute_needed_join_part(
    warehouse: Warehouse,
    join: Join,
    part: JoinPart,
    enriched: DataFrame,
    start_ds: str,
    end_ds: str,
    read_snapshot: SnapshotReader | None,
    stored_as: str | None = None,
) -> tuple[DataFrame, dict]:
    """The part's table for the rows bootstrap does not cover, and what was computed or skipped.

    Only the days with uncovered rows are computed, each run of consecutive days as one job, so the
    sources of fully covered days are never read. `stored_as` names the bootstrap table `enriched` reads
    (its days in range, as stored): its files may then count the covered rows without a Spark job.
    """
    covered = join.coverage_column(part)
    flag = covered if covered in enriched.columns else None
    is_covered = F.col(covered) if flag else F.lit(False)
    needed = enriched.where(~is_covered)
    file_counts = warehouse.day_row_counts(stored_as, start_ds, end_ds, flag) if stored_as else None
    if file_counts is not None:
        left_rows = sum(rows for rows, _ in file_counts.values())
        day_counts = {ds: uncovered for ds, (_, uncovered) in file_counts.items() if uncovered}
    else:
        counts = enriched.groupBy("ds", is_covered.alias("covered")).count().collect()
        left_rows = sum(row["count"] for row in counts)
        day_counts = {row["ds"]: row["count"] for row in counts if not row["covered"]}
    runs = _consecutive_runs(sorted(day_counts))
    stats = {"left_rows": left_rows, "rows_computed": sum(day_counts.values()), "days_computed": len(day_counts)}
    if not runs:
        # Nothing to compute: an empty table typed by the bootstrap values, without reading the part's sources.
        types = bootstrap_types(read_bootstrap_values(warehouse, join, start_ds, end_ds))
        if set(part.columns) <= set(types):
            row = part.left_keys + row_time_columns(enriched)
            empty = enriched.limit(0).select(
                *row_ids_beside(enriched, join.row_ids, row),
                *row,
                *[F.lit(None).cast(types[c]).alias(c) for c in part.columns],
            )
            return empty, stats
        runs = [(start_ds, end_ds)]  # no left rows and no bootstrap values: typed as computed
    few = stats["rows_computed"] <= min(FEW_ROWS, FEW_ROWS_SHARE * stats["left_rows"])
    frames = [
        compute_join_part(
            warehouse,
            join,
            part,
            needed.where(F.col("ds").between(first, last)),
            first,
            last,
            read_snapshot,
            events_of_left_keys=few,
        )
        for first, last in runs
    ]
    return union_by_name(frames), stats


def write_join_part(
    warehouse: Warehouse,
    join: Join,
    part: JoinPart,
    flagged: DataFrame,
    table: str,
    start_ds: str,
    end_ds: str,
    read_snapshot: SnapshotReader | None,
    stored_as: str | None = None,
) -> dict:
    """Compute the part for the rows bootstrap does not cover and write its table; returns the counts of
    `compute_needed_join_part` (`stored_as`: the bootstrap table `flagged` reads, as there). A part with
    nothing to compute gets empty partitions without a Spark job."""
    frame, stats = compute_needed_join_part(
        warehouse, join, part, flagged, start_ds, end_ds, read_snapshot, stored_as=stored_as
    )
    if stats["rows_computed"] == 0:
        warehouse.write_empty_partitions(table, frame.schema, start_ds, end_ds)
    else:
        warehouse.write_partitions(frame, table, start_ds, end_ds)
    return stats


def _consecutive_runs(days: list[str]) -> list[tuple[str, str]]:
    runs: list[tuple[str, str]] = []
    for day in days:
        if runs and shift_ds(runs[-1][1], 1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
