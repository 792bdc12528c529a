"""`{join}_comparison`: the join recomputed offline for a sample of its logged requests.

The left rows are the join's logged requests (`{join}_logged`): their row ids, request keys, request time
(`ts`) and `ds`. Each join part is computed by the offline engine as for an event left side (whatever the
join's own left is, a logged request is an event at its request time, as it was served), and the parts are
assembled without bootstrap, so every value is computed, never read back from the log. External and
contextual parts have no offline computation: their columns are not compared and left out, but the row ids
they carry are kept, since rows are matched on them.

APPROX_PERCENTILE columns of parts computed from events (where the online value may come from a KLL sketch)
carry their rank bounds: the exact values at p - eps and p + eps for each listed fraction p (eps: the sketch's
rank error, `kll_rank_error`), in `_rank_bounds_<column>` (a list of [low, high] per fraction, or a map of
them for a bucketed column). A group-by with derivations is computed as it is, without bounds.

Sampling keeps a request when a hash of its row ids (of its keys and `ts` when the join has no row ids), modulo
100,000, falls below `sample_percent` x 1,000: the same requests on every run, and the duplicates of a request
(same keys and time) together.
"""

from __future__ import annotations

import json
from dataclasses import replace

import datasketches
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.model.configs import EventSource, GroupBy, Join, JoinPart, Query
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN
from feature_assets.offline.join import SnapshotReader, assemble_join, compute_join_part
from feature_assets.storage import Warehouse

SAMPLE_BUCKETS = 100_000
RANK_BOUNDS_PREFIX = "_rank_bounds_"
DEFAULT_KLL_K = 200


def kll_rank_error(k: int) -> float:
    """The rank error of a KLL sketch with parameter k: datasketches' a-priori normalized rank error over all
    ranks at once (99% confidence), the wider of its two bounds (k = 200: ~1.65%)."""
    return float(datasketches.kll_doubles_sketch.get_normalized_rank_error(k, True))


def request_key_columns(join: Join) -> list[str]:
    """The left key columns of the join's parts, each once, in part order: the keys of a logged request."""
    keys: list[str] = []
    for part in join.join_parts:
        keys.extend(key for key in part.left_keys if key not in keys)
    return keys


def match_columns(join: Join) -> list[str]:
    """What pairs a logged row with its comparison row: the row ids and `ds`, else `ts`, `ds` and the keys."""
    if join.row_ids:
        return [*join.row_ids, "ds"]
    return ["ts", "ds", *request_key_columns(join)]


def identity_columns(join: Join) -> list[str]:
    """The comparison table's columns before the features: row ids, keys, `ts` (each once); `ds` is last."""
    columns: list[str] = []
    for column in (*join.row_ids, *request_key_columns(join), "ts"):
        if column not in columns:
            columns.append(column)
    return columns


def comparable_columns(join: Join, columns: list[str]) -> list[str]:
    """The columns among `columns` that the comparison computes: join part features and derivations, not
    external or contextual columns, keys, row ids, time or a logged table's bookkeeping columns."""
    excluded = {
        *identity_columns(join),
        "ds",
        SCHEMA_HASH_COLUMN,
        ABSENT_FIELDS_COLUMN,
        *join.external_columns,
        *join.contextual_fields,
    }
    return [column for column in columns if column not in excluded and not column.startswith(RANK_BOUNDS_PREFIX)]


def sampled_requests(logged: DataFrame, join: Join, sample_percent: float) -> DataFrame:
    """The logged rows kept by the deterministic sample (see the module's docstring)."""
    if not 0 <= sample_percent <= 100:
        raise ValueError(f"join {join.name}: consistency sample percent {sample_percent} is not within 0..100")
    by = list(join.row_ids) or ["ts", *request_key_columns(join)]
    missing = [column for column in by if column not in logged.columns]
    if missing:
        raise ValueError(f"join {join.name}: the logged rows lack {missing} (columns: {logged.columns})")
    bucket = F.pmod(F.xxhash64(*[F.col(column) for column in by]), F.lit(SAMPLE_BUCKETS))
    return logged.where(bucket < F.lit(sample_percent * SAMPLE_BUCKETS / 100))


def comparison_join(join: Join) -> Join:
    """The join with its logged requests as an event left side and no bootstrap (every value computed)."""
    left = EventSource(join.logged_table, Query(selects=None, time_column="ts"))
    return replace(join, left=left, bootstrap_parts=(), bootstrap_from_log=False)


def _with_rank_bounds(group_by: GroupBy) -> tuple[GroupBy, dict[str, int]]:
    """The group-by asking each APPROX_PERCENTILE aggregation for p - eps, p and p + eps per listed fraction p,
    and those output columns with their number of listed fractions."""
    if group_by.derivations:
        return group_by, {}
    aggregations = []
    widened: dict[str, int] = {}
    for aggregation in group_by.aggregations:
        if aggregation.operation == "APPROX_PERCENTILE":
            eps = kll_rank_error(int(aggregation.arg_map.get("k", DEFAULT_KLL_K)))
            fractions = [f for p in aggregation.percentiles for f in (max(0.0, p - eps), p, min(1.0, p + eps))]
            aggregation = replace(aggregation, arg_map={**aggregation.arg_map, "percentiles": json.dumps(fractions)})
            widened.update({name: len(aggregation.percentiles) // 3 for name, _, _ in aggregation.columns})
        aggregations.append(aggregation)
    return replace(group_by, aggregations=tuple(aggregations)), widened


def _every_third(values: Column, count: int, offsets: tuple[int, ...]) -> Column:
    """[values[3i + offset] for i < count] (one value per offset, or a list of them per i)."""

    def pick(i: Column) -> Column:
        items = [values[i * 3 + offset] for offset in offsets]
        return items[0] if len(items) == 1 else F.array(*items)

    return F.when(values.isNotNull(), F.transform(F.sequence(F.lit(0), F.lit(count - 1)), pick))


def _split_bounds(column: Column, data_type: T.DataType, count: int, offsets: tuple[int, ...]) -> Column:
    if isinstance(data_type, T.MapType):
        return F.transform_values(column, lambda _, values: _every_third(values, count, offsets))
    return _every_third(column, count, offsets)


def comparison_frame(
    warehouse: Warehouse,
    join: Join,
    start_ds: str,
    end_ds: str,
    sample_percent: float | None = None,
    read_snapshot: SnapshotReader | None = None,
) -> DataFrame:
    """The sampled logged requests of [start_ds, end_ds] with every comparable feature computed offline.

    Columns: row ids, request keys, `ts`, the comparable features (`comparable_columns`) and `ds`.
    `sample_percent` defaults to the join's `consistency_sample_percent`; `read_snapshot` reads the group-bys'
    daily tables (by default they are computed for the days needed).
    """
    percent = join.meta.consistency_sample_percent if sample_percent is None else float(sample_percent)
    logged = warehouse.read(join.logged_table, start_ds, end_ds)
    identity = identity_columns(join)
    missing = [column for column in identity if column not in logged.columns]
    if missing:
        raise ValueError(
            f"join {join.name}: {join.logged_table} lacks {missing}, needed to recompute its requests "
            f"(row ids, request keys, ts)"
        )
    left = sampled_requests(logged, join, percent).select(*identity, "ds")
    recompute = comparison_join(join)
    parts: list[tuple[JoinPart, DataFrame | None]] = []
    widened: dict[str, int] = {}
    for part in recompute.join_parts:
        if not recompute.uses_snapshot_table(part):  # daily values are served as computed offline: exact
            group_by, columns = _with_rank_bounds(part.group_by)
            part = replace(part, group_by=group_by)
            widened.update({part.feature_prefix + name: count for name, count in columns.items()})
        parts.append((part, compute_join_part(warehouse, recompute, part, left, start_ds, end_ds, read_snapshot)))
    recompute = replace(recompute, join_parts=tuple(part for part, _ in parts))
    assembled = assemble_join(recompute, left, parts)
    features = comparable_columns(join, [c for c in assembled.columns if c not in left.columns])
    types = {f.name: f.dataType for f in assembled.schema.fields}
    bounded = [c for c in features if c in widened]
    bounds = {RANK_BOUNDS_PREFIX + c: _split_bounds(F.col(c), types[c], widened[c], (0, 2)) for c in bounded}
    # Bounds first, in their own projection: a select would resolve a column name to an alias made beside it.
    with_bounds = assembled.withColumns(bounds)
    values = {c: _split_bounds(F.col(c), types[c], widened[c], (1,)) for c in bounded}
    return with_bounds.withColumns(values).select(*identity, *features, *bounds, "ds")
