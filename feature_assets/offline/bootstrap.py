"""Bootstrap: enrich the left rows with precomputed feature data before any backfill.

Bootstrap parts are read in priority order (the first part highest; the join's own flattened log table,
with `bootstrap_from_log`, always lowest) and matched to left rows by their key columns (the join's
`row_ids` by default) within the same `ds`. For each join output column the bootstrap value is the first
non-null value among the matching parts.

Coverage decides what is computed: a left row is covered for a join part when the parts that matched it
together provide every output column of that part (by schema, not by value). Covered rows skip that part's
computation and keep the bootstrap values, nulls included; other rows are computed and take computed values
only where every bootstrap part is null or absent (row- and column-level hole filling).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.model.configs import BootstrapSource, Join, Query
from feature_assets.storage import TableNotFound, Warehouse

MATCH_PREFIX = "_bootstrap_matched_"


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
    provided = [c for c in wanted if c in frame.columns]
    return frame.select(*source.key_columns, "ds", *provided), provided


def _check_unique(frame: DataFrame, source: BootstrapSource) -> None:
    duplicates = frame.groupBy(*source.key_columns, "ds").count().where(F.col("count") > 1).limit(5).collect()
    if duplicates:
        sample = [{k: row[k] for k in (*source.key_columns, "ds")} for row in duplicates]
        raise DuplicateBootstrapRows(
            f"bootstrap table {source.table!r} has several rows for the same row ids {list(source.key_columns)} "
            f"in one ds, e.g. {sample}"
        )


def enrich_left(
    warehouse: Warehouse, join: Join, left: DataFrame, start_ds: str, end_ds: str
) -> tuple[DataFrame, dict]:
    """The left rows plus the bootstrap value of every provided join column and one coverage flag per part.

    Returns the frame and, for metadata, what each source provides.
    """
    wanted = join.feature_columns
    enriched = left
    provided_by: dict[str, list[str]] = {}
    match_columns: list[tuple[str, list[str]]] = []
    per_column: dict[str, list[str]] = {}
    for source in join.bootstrap_sources:
        frame, provided = _read_source(warehouse, source, start_ds, end_ds, wanted)
        if frame is None:
            provided_by[source.label] = []
            continue
        _check_unique(frame, source)
        tag = f"{source.priority}"
        match = f"{MATCH_PREFIX}{tag}"
        renamed = frame.select(
            *[F.col(k).alias(f"__b{tag}_{k}") for k in (*source.key_columns, "ds")],
            *[F.col(c).alias(f"__b{tag}__{c}") for c in provided],
            F.lit(True).alias(match),
        )
        condition = F.col("ds") == F.col(f"__b{tag}_ds")
        for key in source.key_columns:
            condition = condition & (F.col(key) == F.col(f"__b{tag}_{key}"))
        joined_keys = [f"__b{tag}_{k}" for k in (*source.key_columns, "ds")]
        enriched = enriched.join(renamed, condition, "left").drop(*joined_keys)
        enriched = enriched.withColumn(match, F.coalesce(F.col(match), F.lit(False)))
        provided_by[source.label] = provided
        match_columns.append((match, provided))
        for column in provided:
            per_column.setdefault(column, []).append(f"__b{tag}__{column}")
    # First non-null value by priority, per column.
    enriched = enriched.select(
        *left.columns,
        *[m for m, _ in match_columns],
        *[F.coalesce(*[F.col(c) for c in sources]).alias(column) for column, sources in per_column.items()],
    )
    for part in join.join_parts:
        covered = F.lit(True)
        for column in part.columns:
            providers = [F.col(m) for m, provided in match_columns if column in provided]
            has_column = F.lit(False)
            for provider in providers:
                has_column = has_column | provider
            covered = covered & has_column
        enriched = enriched.withColumn(join.coverage_column(part), covered)
    enriched = enriched.drop(*[m for m, _ in match_columns])
    return enriched, {"provided_by": provided_by}
