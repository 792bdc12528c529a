"""Bootstrap: enrich the left rows with precomputed feature data before any backfill.

Bootstrap parts are read in priority order (the first part highest; the join's own flattened log table,
with `bootstrap_from_log`, always lowest) and matched to left rows by their key columns (the join's
`row_ids` by default) within the same `ds`. For each join output column the bootstrap value is the first
non-null value among the matching parts.

Coverage decides what is computed: a left row is covered for a join part when the parts that matched it
together provide every output column of that part (by schema, not by value). Covered rows skip that part's
computation and keep the bootstrap values, nulls included; other rows are computed and take computed values
only where every bootstrap part is null or absent (row- and column-level hole filling).

The bootstrap table keeps the left rows and one coverage flag per join part (`coverage_flags`); the values
are joined once, into the output (`with_bootstrap_values`), rather than written there and read back. A part
covered on every row is neither computed nor joined; when every part is and a single table provides the
values, they are read where they are stored and the narrow left rows are broadcast to them
(`values_in_place`), so nothing is shuffled. When a single table provides exactly one part's columns, its
rows join the output together with that part's computed rows (`feature_assets.offline.join.values_beside_part`).

A flattened log table names, per row, the fields its schema version did not have (`_absent_fields`): the row
does not provide those columns, so a row logged before a feature was added is not covered for that feature.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.types import DataType

from feature_assets.model.configs import BootstrapSource, Join, Query
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN
from feature_assets.offline.frames import estimated_bytes, keys_not_null, reads_in_place
from feature_assets.storage import TableNotFound, Warehouse, date_range

MATCH_PREFIX = "_bootstrap_matched_"
# A shuffled hash join keeps its build side in memory, one shuffle partition at a time, and saves the sort
# of both sides that a sort-merge join needs. It builds on a bootstrap table (its keys, or its values) when
# the table's stored size in range is at most this per shuffle partition; larger tables are sort-merged,
# which spills to disk instead.
HASH_BUILD_BYTES_PER_PARTITION = 32 * 1024 * 1024
# Narrow rows (a bootstrap table's keys; the left rows of a join one bootstrap table covers on every row) are
# broadcast when Spark estimates them at most this size, so the other side is read in place, never shuffled,
# and written as read. Larger ones are joined like any other (shuffled).
BROADCAST_NARROW_BYTES = 64 * 1024 * 1024


class DuplicateBootstrapRows(ValueError):
    pass


def _read_source(
    warehouse: Warehouse, source: BootstrapSource, start_ds: str, end_ds: str, wanted: list[str]
) -> tuple[DataFrame | None, list[str]]:
    """Rows of one bootstrap source in range: key columns, ds and the join columns it provides."""
    try:
        frame = warehouse.read(source.table, start_ds, end_ds)
    except TableNotFound:
        if source.query is None:  # the log table appears once fetches are logged; until then it is empty
            return None, []
        raise
    query = source.query or Query(selects=None)
    for condition in query.wheres:
        frame = frame.where(F.expr(condition))
    if query.selects:
        keep = dict(query.selects)
        for key in list(source.key_columns) + ["ds"]:
            keep.setdefault(key, key)
        frame = frame.select(*[F.expr(expr).alias(name) for name, expr in keep.items()])
    missing_keys = [k for k in source.key_columns if k not in frame.columns]
    if missing_keys:
        raise ValueError(
            f"bootstrap table {source.table!r} lacks key column(s) {missing_keys}; its columns: {frame.columns}"
        )
    # A null key matches no left row (an unknown row id is not a match), whatever the join condition.
    frame = frame.where(keys_not_null(list(source.key_columns)))
    provided = [c for c in wanted if c in frame.columns]
    absent = [ABSENT_FIELDS_COLUMN] if ABSENT_FIELDS_COLUMN in frame.columns else []
    return frame.select(*source.key_columns, "ds", *provided, *absent), provided


def _duplicate_sample(frame: DataFrame, source: BootstrapSource) -> list[dict]:
    duplicates = frame.groupBy(*source.key_columns, "ds").count().where(F.col("count") > 1).limit(5).collect()
    return [{k: row[k] for k in (*source.key_columns, "ds")} for row in duplicates]


def coverage_flags(
    warehouse: Warehouse, join: Join, left: DataFrame, start_ds: str, end_ds: str
) -> tuple[DataFrame, dict]:
    """The left rows plus one coverage flag per join part: what the bootstrap table stores.

    Only the sources' key columns are joined here (and the absent fields of flattened logs): the values are
    joined once, when the output is assembled (`with_bootstrap_values`), so they are not written and read
    back in between. Returns the frame and, for metadata, what each source provides.
    """
    flagged = left
    provided_by: dict[str, list[str]] = {}
    # Per join column, the sources that provide it: (match flag, absent-fields column or None).
    providers: dict[str, list[tuple[str, str | None]]] = {}
    for source in join.bootstrap_sources:
        frame, provided = _read_source(warehouse, source, start_ds, end_ds, join.feature_columns)
        provided_by[source.label] = provided
        if frame is None:
            continue
        if not provided:  # matching it would decide nothing
            continue
        tag = f"{source.priority}"
        match = f"{MATCH_PREFIX}{tag}"
        absent = f"__b{tag}_absent" if ABSENT_FIELDS_COLUMN in frame.columns else None
        matched = frame.select(
            *[F.col(k).alias(f"__b{tag}_{k}") for k in (*source.key_columns, "ds")],
            F.lit(True).alias(match),
            *([F.col(ABSENT_FIELDS_COLUMN).alias(absent)] if absent else []),
        )
        # Keys small enough to broadcast leave the left rows where they are read.
        broadcast = _broadcastable(matched)
        flagged = _join_source(warehouse, source, tag, matched, flagged, start_ds, end_ds, broadcast).drop(
            *[f"__b{tag}_{k}" for k in (*source.key_columns, "ds")]
        )
        for column in provided:
            providers.setdefault(column, []).append((match, absent))
    flags = []
    for part in join.join_parts:
        # Columns with the same providers have the same condition: each distinct one is built once (one
        # provider table typically provides every column, and building Spark expressions is not free).
        conditions: dict[tuple, Column] = {}
        for column in part.columns:
            found = tuple((match, absent, column if absent else None) for match, absent in providers.get(column, []))
            if found not in conditions:
                has_column = F.lit(False)
                for match, absent, _ in found:
                    has_column = has_column | _provides(match, absent, column)
                conditions[found] = has_column
        covered = F.lit(True)
        for condition in conditions.values():
            covered = covered & condition
        flags.append(covered.alias(join.coverage_column(part)))
    return flagged.select(*left.columns, *flags), {"provided_by": provided_by}


def write_bootstrap_table(
    warehouse: Warehouse, join: Join, left: DataFrame, table: str, start_ds: str, end_ds: str
) -> dict:
    """Write the bootstrap table (left rows and coverage flags) for [start_ds, end_ds] and check it.

    Bootstrap rows are matched to left rows without first checking that their row ids are unique (a
    separate pass over every source); a duplicate instead shows as more rows written than the left has,
    in which case the written days are removed and the duplicates named. Both counts (and the covered rows
    per part) are observed while writing, with no pass of their own. Returns, for metadata, what each
    source provides and the covered rows per part.
    """
    flags = [join.coverage_column(part) for part in join.join_parts]
    left_seen, written_seen = Observation("bootstrap left rows"), Observation("bootstrap rows written")
    flagged, info = coverage_flags(
        warehouse, join, left.observe(left_seen, F.count(F.lit(1)).alias("rows")), start_ds, end_ds
    )
    flagged = flagged.observe(
        written_seen, F.count(F.lit(1)).alias("rows"), *[F.sum(F.col(c).cast("long")).alias(c) for c in flags]
    )
    warehouse.write_partitions(flagged, table, start_ds, end_ds, shuffle=not reads_in_place(flagged))
    left_rows, written = left_seen.get.get("rows") or 0, written_seen.get
    if (written.get("rows") or 0) != left_rows:
        warehouse.drop_partitions(table, date_range(start_ds, end_ds))
        for source in join.bootstrap_sources:
            frame, _ = _read_source(warehouse, source, start_ds, end_ds, join.feature_columns)
            sample = _duplicate_sample(frame, source) if frame is not None else []
            if sample:
                raise DuplicateBootstrapRows(
                    f"bootstrap table {source.table!r} has several rows for the same row ids "
                    f"{list(source.key_columns)} in one ds, e.g. {sample}"
                )
        raise RuntimeError(f"bootstrap table {table}: {written.get('rows')} rows written for {left_rows} left rows")
    info["covered_rows_by_part"] = {c: int(written.get(c) or 0) for c in flags} if join.bootstrap_sources else {}
    return info


@dataclass(frozen=True)
class BootstrapValues:
    """One bootstrap source's rows in range (key columns, ds and the join columns it provides) and those columns."""

    source: BootstrapSource
    rows: DataFrame
    provided: list[str]

    @property
    def tag(self) -> str:
        return f"{self.source.priority}"


def read_bootstrap_values(warehouse: Warehouse, join: Join, start_ds: str, end_ds: str) -> list[BootstrapValues]:
    """The bootstrap sources that provide some join column in range, in priority order, each read once for the
    functions below."""
    found = []
    for source in join.bootstrap_sources:
        rows, provided = _read_source(warehouse, source, start_ds, end_ds, join.feature_columns)
        if rows is not None and provided:
            found.append(BootstrapValues(source, rows, provided))
    return found


def with_bootstrap_values(
    warehouse: Warehouse, sources: list[BootstrapValues], frame: DataFrame, start_ds: str, end_ds: str
) -> DataFrame:
    """`frame` (left rows, with or without coverage flags) plus the bootstrap value of every provided join
    column: the first non-null value by priority (null where no matching part has one)."""
    per_column: dict[str, list[str]] = {}
    enriched = frame
    for values in sources:
        renamed = _renamed(values.rows, values.source, values.tag, values.provided)
        enriched = _join_source(warehouse, values.source, values.tag, renamed, enriched, start_ds, end_ds)
        for column in values.provided:
            per_column.setdefault(column, []).append(f"__b{values.tag}__{column}")
    if not per_column:
        return frame
    return enriched.select(
        *frame.columns,
        *[F.coalesce(*[F.col(c) for c in names]).alias(column) for column, names in per_column.items()],
    )


def values_in_place(sources: list[BootstrapValues], flagged: DataFrame) -> DataFrame | None:
    """`flagged` (the bootstrap table of a join covered for every part on every row) plus every bootstrap value,
    read where it is stored.

    When a single bootstrap table provides values, full coverage means it matched every left row, exactly
    once (the bootstrap table refuses duplicate row ids), so an inner join with it loses no row. Its wide
    rows are then read in place and the narrow left rows broadcast to them: nothing is shuffled, and each
    task keeps the day files it read. None when several tables provide values or the left rows are too
    large to broadcast (`with_bootstrap_values` then joins them).
    """
    if len(sources) != 1 or not _broadcastable(flagged):
        return None
    values = sources[0]
    tag = values.tag
    renamed = _renamed(values.rows, values.source, tag, values.provided)
    joined = renamed.join(F.broadcast(flagged), _match_condition(values.source, tag), "inner")
    return joined.select(*flagged.columns, *[f"__b{tag}__{c}" for c in values.provided]).toDF(
        *flagged.columns, *values.provided
    )


def _renamed(values: DataFrame, source: BootstrapSource, tag: str, provided: list[str]) -> DataFrame:
    """A source's key columns, ds and provided values, renamed apart from the left rows they are joined to
    (renamed in one call: a Spark expression per column costs a round trip to the JVM each)."""
    keys = [*source.key_columns, "ds"]
    return values.select(*keys, *provided).toDF(*[f"__b{tag}_{k}" for k in keys], *[f"__b{tag}__{c}" for c in provided])


def _broadcastable(narrow: DataFrame) -> bool:
    """Whether to broadcast narrow rows: small enough by Spark's estimate, and broadcasts are not turned off
    (`spark.sql.autoBroadcastJoinThreshold` = -1)."""
    conf = narrow.sparkSession._jsparkSession.sessionState().conf()
    return conf.autoBroadcastJoinThreshold() >= 0 and estimated_bytes(narrow) <= BROADCAST_NARROW_BYTES


def bootstrap_types(sources: list[BootstrapValues]) -> dict[str, DataType]:
    """The join columns some bootstrap part provides (what `with_bootstrap_values` adds), each with its type in
    the highest-priority part that provides it."""
    provided: dict[str, DataType] = {}
    for values in sources:
        types = {field.name: field.dataType for field in values.rows.schema.fields}
        for column in values.provided:
            provided.setdefault(column, types[column])
    return provided


def _join_source(
    warehouse: Warehouse,
    source: BootstrapSource,
    tag: str,
    rows: DataFrame,
    frame: DataFrame,
    start_ds: str,
    end_ds: str,
    broadcast: bool = False,
) -> DataFrame:
    """`rows` of a bootstrap source (columns renamed `__b{tag}_...`) right-joined to `frame` on the source's
    key columns and ds: every row of `frame` once, with the matching source row's columns or nulls.

    `broadcast` rows are broadcast. Otherwise a source under Spark's broadcast threshold is left to Spark,
    which broadcasts it; a larger one that is still small per shuffle partition is the build side of a
    shuffled hash join, which sorts neither side (a right outer join can build only on the source's side);
    the largest are sort-merged.
    """
    if broadcast:
        return F.broadcast(rows).join(frame, _match_condition(source, tag), "right")
    condition = _match_condition(source, tag, null_safe=True)
    conf = rows.sparkSession._jsparkSession.sessionState().conf()  # the settings as Spark parsed them
    size = warehouse.size_bytes(source.table, start_ds, end_ds)
    if conf.autoBroadcastJoinThreshold() < size <= HASH_BUILD_BYTES_PER_PARTITION * conf.numShufflePartitions():
        rows = rows.hint("shuffle_hash")
    return rows.join(frame, condition, "right")


def _match_condition(source: BootstrapSource, tag: str, null_safe: bool = False) -> Column:
    """The source's key columns and ds. Sources hold no null keys (`_read_source`), so `null_safe` matches the
    same rows: it gives the join the keys on which the output joins row-id keyed part tables, so that a
    shuffled join of the values shares their partitioning. A broadcast needs plain keys, cheaper to hash."""
    condition = F.lit(True)
    for key in source.key_columns:
        other = F.col(f"__b{tag}_{key}")
        condition = condition & (F.col(key).eqNullSafe(other) if null_safe else F.col(key) == other)
    return condition & (F.col("ds") == F.col(f"__b{tag}_ds"))


def _provides(match: str, absent: str | None, column: str) -> Column:
    """Whether a matched source row provides the column: a flattened log row not when its schema lacked it."""
    matched = F.coalesce(F.col(match), F.lit(False))
    if absent is None:
        return matched
    return matched & ~F.coalesce(F.array_contains(F.col(absent), column), F.lit(False))
