"""Join parts over entity sources with a mutation log (TEMPORAL accuracy): values as of each left row's ts.

Binding (event left): a left row with keys K, time t and day ds sees the key's rows of the end-of-day
snapshot of `ds - 1`, then the mutations of partition `ds` with `mutation_ts < t`, applied in order:

- at equal `mutation_ts` retractions (reversal column true) apply before additions; remaining ties
  (same time and kind) apply in the order of the rows' values, nulls first;
- a retraction removes one row whose selected non-key columns all equal its own (nulls equal nulls),
  the oldest such row; retracting a row that is not there is a no-op; an addition appends a row;
- without aggregations the features are the selected non-key columns of the key's last row (the
  latest addition still present; snapshot rows count as added in the order of their values, nulls
  first, so with duplicate snapshot rows the greatest row wins, as in the group-by's daily table);
  null when the key has no row;
- with aggregations (SUM, COUNT, AVERAGE, VARIANCE, unwindowed; buckets allowed) the aggregate over
  the key's remaining rows: a retraction subtracts what its row added. Empty: COUNT 0, the others null.
- a left row with a null key gets null features (counts included); one without ts sees the snapshot only.

An entity left row (day ds) sees the snapshot of its own day `ds`, without mutations (as other join
parts over entity left sources do).

Spark side: the snapshot and mutation rows are narrowed to the (keys, day) pairs the left side asks for
(semi-join), then co-grouped with the left's distinct (row ids, keys, ts, ds) rows by (key hash bucket,
day). Each group is one pandas call that replays the day per key: sorted once, then one pass over mutations and
queries in time order with running state (O(rows log rows) per key, O(1) per query for aggregations).
No data reaches the driver. A hot key's rows of one day stay in one group; the number of buckets
follows `spark.sql.shuffle.partitions`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.aggregation.kernel import encode_keys
from feature_assets.aggregation.registry import RETRACTABLE
from feature_assets.aggregation.spec import AggSpec
from feature_assets.model.configs import EntitySource, GroupBy, Join, JoinPart
from feature_assets.offline.derivations import apply_derivations
from feature_assets.offline.frames import keys_not_null, row_ids_beside, row_time_columns, union_by_name
from feature_assets.offline.sources import read_query, read_source
from feature_assets.offline.specs import is_integral, output_type
from feature_assets.offline.windowed import bucket_count
from feature_assets.storage import Warehouse, shift_ds

_BUCKET = "__bucket"
_DAY = "__day"
_KIND = "__kind"  # 0: snapshot row, 1: mutation
_MTS = "__mts"
_BEFORE = "__before"
_REVERSAL = "__is_before"
_PASSTHROUGH_TYPES = (T.DoubleType, T.FloatType, T.StringType, T.BooleanType)


def mutation_join_part(
    warehouse: Warehouse, join: Join, part: JoinPart, left: DataFrame, start_ds: str, end_ds: str
) -> DataFrame:
    """The part's table (as `compute_join_part`): left key columns, ts, ds and the prefixed features."""
    group_by = part.group_by
    specs = group_by.specs
    _check_specs(group_by, specs)
    left_keys = part.left_keys
    inner_keys = [f"__k{i}" for i in range(len(left_keys))]
    row_time = row_time_columns(left)
    row_ids = row_ids_beside(left, join.row_ids, left_keys + row_time)
    entity_left = join.entity_left

    queries = left.select(*row_ids, *[F.col(c).alias(k) for c, k in zip(left_keys, inner_keys)], *row_time).distinct()
    keyed = keys_not_null(inner_keys)
    key_types = {k: left.schema[c].dataType for c, k in zip(left_keys, inner_keys)}
    # The snapshot of day d serves left rows of day d + 1 (event left) or of day d (entity left).
    offset = 0 if entity_left else 1
    rows = _read_rows(
        warehouse,
        group_by,
        [gb_key for _, gb_key in part.key_pairs],
        inner_keys,
        key_types,
        shift_ds(start_ds, -offset),
        shift_ds(end_ds, -offset),
        offset,
        None if entity_left else (start_ds, end_ds),
    )
    wanted = queries.where(keyed).select(*inner_keys, F.col("ds").alias(_DAY)).distinct()
    rows = rows.join(wanted, on=[*inner_keys, _DAY], how="left_semi")

    base = group_by.value_columns
    plan, rows, transport_types, restore = _plan(rows, inner_keys, base, specs, "ts" in row_time)
    feature_fields = (
        [T.StructField(s.column_name, output_type(s, plan.input_types[s.input_column]), True) for s in specs]
        if specs
        else [T.StructField(c, transport_types[c], True) for c in base]
    )
    out_schema = T.StructType(list(queries.schema.fields) + feature_fields)

    buckets = bucket_count(queries)
    key_hash = F.pmod(F.xxhash64(*[F.col(k) for k in inner_keys]), F.lit(buckets))
    query_side = queries.where(keyed).withColumn(_BUCKET, key_hash).withColumn(_DAY, F.col("ds"))
    row_side = rows.withColumn(_BUCKET, key_hash)
    names = [f.name for f in out_schema.fields]

    def run_group(query_rows: pd.DataFrame, entity_rows: pd.DataFrame) -> pd.DataFrame:
        result = _bind_group(plan, query_rows.drop(columns=[_BUCKET, _DAY]), entity_rows)
        return result[names]

    bound = (
        query_side.groupBy(_BUCKET, _DAY).cogroup(row_side.groupBy(_BUCKET, _DAY)).applyInPandas(run_group, out_schema)
    )
    null_keyed = queries.where(~keyed).select(
        *queries.columns, *[F.lit(None).cast(f.dataType).alias(f.name) for f in feature_fields]
    )
    features = bound.unionByName(null_keyed)
    features = features.select(
        *row_ids,
        *[F.col(k).alias(c) for k, c in zip(inner_keys, left_keys)],
        *row_time,
        *[(F.col(c) if specs else restore.get(c, F.col(c))).alias(c) for c in base],
    )
    keep = row_ids + left_keys + row_time
    features = apply_derivations(features, group_by.derivations, base, keep=keep)
    return features.select(*keep, *[F.col(c).alias(part.feature_prefix + c) for c in group_by.output_columns])


def _check_specs(group_by: GroupBy, specs: list[AggSpec]) -> None:
    for spec in specs:
        if spec.operation not in RETRACTABLE or spec.window_millis is not None:
            raise ValueError(
                f"group-by {group_by.name!r}: {spec.column_name} is not supported over "
                f"an entity source with mutations (unwindowed {sorted(RETRACTABLE)} only)"
            )


# ------------------------------------------------------------------------------------------------
# reading snapshot and mutation rows
# ------------------------------------------------------------------------------------------------


def _read_rows(
    warehouse: Warehouse,
    group_by: GroupBy,
    gb_keys: list[str],
    inner_keys: list[str],
    key_types: dict,
    snapshot_start: str,
    snapshot_end: str,
    offset: int,
    mutation_range: tuple[str, str] | None,
) -> DataFrame:
    """Snapshot rows (kind 0, `__day` = their day + offset) and mutations (kind 1, `__day` = their day) of
    every source: inner keys (cast to the left key types), the selected non-key columns, `__mts`, `__before`."""
    frames = []
    for source in group_by.sources:
        snapshot = read_source(warehouse, source, snapshot_start, snapshot_end, with_time=False)
        values = [c for c in snapshot.columns if c not in gb_keys and c != "ds"]
        keys = [F.col(g).cast(key_types[k]).alias(k) for g, k in zip(gb_keys, inner_keys)]
        frames.append(
            snapshot.select(
                *keys,
                *values,
                F.date_add(F.to_date("ds"), offset).cast("string").alias(_DAY),
                F.lit(0).alias(_KIND),
                F.lit(None).cast("long").alias(_MTS),
                F.lit(None).cast("boolean").alias(_BEFORE),
            )
        )
        if mutation_range is None or not isinstance(source, EntitySource) or not source.mutation_table:
            continue
        mutations = _read_mutations(warehouse, source, snapshot.columns, *mutation_range)
        frames.append(
            mutations.where(F.col("mutation_ts").isNotNull()).select(
                *keys,
                *values,
                F.col("ds").alias(_DAY),
                F.lit(1).alias(_KIND),
                F.col("mutation_ts").alias(_MTS),
                F.coalesce(F.col(_REVERSAL).cast("boolean"), F.lit(False)).alias(_BEFORE),
            )
        )
    return union_by_name(frames, allow_missing_columns=True).where(keys_not_null(inner_keys))


def _read_mutations(
    warehouse: Warehouse, source: EntitySource, snapshot_columns: list[str], start_ds: str, end_ds: str
) -> DataFrame:
    """The mutation table through the source's query, with `mutation_ts` and the reversal flag selected too."""
    query = source.query
    selects = dict(query.selects) if query.selects is not None else {c: f"`{c}`" for c in snapshot_columns if c != "ds"}
    mutation_time = query.mutation_time_column or "mutation_ts"
    selects.update({_REVERSAL: query.reversal_column or "is_before", "mutation_ts": f"CAST({mutation_time} AS LONG)"})
    return read_query(
        warehouse, source.mutation_table or "", query.with_selects(selects), start_ds, end_ds, with_time=False
    )


# ------------------------------------------------------------------------------------------------
# the plan: which columns travel to pandas and how
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    keys: list[str]  # inner key column names
    values: list[str]  # selected non-key columns: a row's identity (retractions match on them)
    integral: frozenset[str]  # values travelling as strings of integers (exact past 2**53)
    outputs: list[str]  # feature columns (base names)
    specs: list[AggSpec]
    input_types: dict  # value column -> Spark type (before transport)
    bucket_columns: dict  # bucket column -> its string column
    has_ts: bool


def _plan(
    rows: DataFrame, keys: list[str], base: list[str], specs: list[AggSpec], has_ts: bool
) -> tuple[_Plan, DataFrame, dict, dict]:
    """How values travel to pandas and back: integers as strings (pandas would turn them into floats next to
    nulls; the pandas step returns python ints, i.e. longs), doubles, strings and booleans as they are, other
    types as strings (nested ones as JSON). Returns the plan, the rows to send, the Spark type of each value
    column as the pandas step returns it, and `restore`: column -> expression casting it back."""
    fields = {f.name: f.dataType for f in rows.schema.fields}
    values = [c for c in rows.columns if c not in keys and c not in (_DAY, _KIND, _MTS, _BEFORE)]
    integral: set[str] = set()
    restore: dict[str, Column] = {}
    transport_types: dict[str, T.DataType] = {}
    columns: list[Column] = []
    for column in values:
        data_type = fields[column]
        if is_integral(data_type):
            integral.add(column)
            columns.append(F.col(column).cast("string").alias(column))
            transport_types[column] = T.LongType()
            restore[column] = F.col(column).cast(data_type)
        elif isinstance(data_type, _PASSTHROUGH_TYPES):
            columns.append(F.col(column))
            transport_types[column] = data_type
        elif isinstance(data_type, (T.ArrayType, T.MapType, T.StructType)):
            columns.append(F.to_json(F.col(column)).alias(column))
            transport_types[column] = T.StringType()
            restore[column] = F.from_json(F.col(column), data_type)
        else:
            columns.append(F.col(column).cast("string").alias(column))
            transport_types[column] = T.StringType()
            restore[column] = F.col(column).cast(data_type)
    bucket_columns = {}
    for index, bucket in enumerate(sorted({s.bucket for s in specs if s.bucket})):
        bucket_columns[bucket] = f"__bucket_value{index}"
        columns.append(F.col(bucket).cast("string").alias(bucket_columns[bucket]))
    transported = rows.select(*keys, *columns, _DAY, _KIND, _MTS, _BEFORE)
    plan = _Plan(keys, values, frozenset(integral), list(base), list(specs), fields, bucket_columns, has_ts)
    return plan, transported, transport_types, restore


# ------------------------------------------------------------------------------------------------
# the pandas step: replay one (bucket, day)
# ------------------------------------------------------------------------------------------------


def _is_null(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _python_values(series: pd.Series, integral: bool) -> list:
    if integral:
        return [None if _is_null(v) else int(v) for v in series.tolist()]
    return [None if _is_null(v) else v for v in series.tolist()]


def _nulls_first(values: tuple) -> tuple:
    return tuple((0, 0) if v is None else (1, v) for v in values)


def _bind_group(plan: _Plan, queries: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`queries` (inner keys, ts, ds) with one column per feature appended."""
    result = queries.reset_index(drop=True).copy()
    n_queries = len(result)
    if n_queries == 0:
        for name in plan.outputs:
            result[name] = pd.Series([], dtype=object)
        return result
    if len(rows) == 0:  # keys without snapshot rows or mutations that day
        rows = pd.DataFrame(
            {
                c: pd.Series([], dtype=object)
                for c in [*plan.keys, *plan.values, *plan.bucket_columns.values(), _KIND, _MTS, _BEFORE]
            }
        )
    both = pd.concat([result[plan.keys].astype(object), rows[plan.keys].astype(object)], ignore_index=True)
    codes = encode_keys(both, plan.keys)
    query_codes, row_codes = codes[:n_queries].tolist(), codes[n_queries:].tolist()

    identities = (
        list(zip(*[_python_values(rows[c], c in plan.integral) for c in plan.values]))
        if plan.values
        else [()] * len(rows)
    )
    buckets = {b: _python_values(rows[column], False) for b, column in plan.bucket_columns.items()}
    kinds = rows[_KIND].tolist()
    times = rows[_MTS].tolist()
    before = rows[_BEFORE].tolist()

    snapshot_rows: dict[int, list[int]] = {}
    mutation_rows: dict[int, list[int]] = {}
    for index, code in enumerate(row_codes):
        (snapshot_rows if kinds[index] == 0 else mutation_rows).setdefault(code, []).append(index)
    query_times = result["ts"].tolist() if plan.has_ts else [None] * n_queries
    query_rows: dict[int, list[int]] = {}
    for index, code in enumerate(query_codes):
        query_rows.setdefault(code, []).append(index)

    columns = {name: [None] * n_queries for name in plan.outputs}
    for code, indices in query_rows.items():
        state = _AggregateState(plan, identities, buckets) if plan.specs else _LastRowState(plan, identities)
        for row in sorted(snapshot_rows.get(code, []), key=lambda i: _nulls_first(identities[i])):
            state.add(row)
        mutations = sorted(
            mutation_rows.get(code, []),
            key=lambda i: (int(times[i]), 0 if before[i] else 1, _nulls_first(identities[i])),
        )
        applied = 0
        for query in sorted(indices, key=lambda i: (not _is_null(query_times[i]), query_times[i] or 0)):
            t = query_times[query]
            if t is not None and not _is_null(t):
                while applied < len(mutations) and int(times[mutations[applied]]) < t:
                    row = mutations[applied]
                    state.retract(row) if before[row] else state.add(row)
                    applied += 1
            for name, value in state.features().items():
                columns[name][query] = value
    for name in plan.outputs:
        result[name] = pd.Series(columns[name], dtype=object)
    return result


class _LastRowState:
    """The key's rows as FIFO queues per identity: a retraction removes the oldest equal row, so an
    identity's newest row stays while any remains, and the last row is the identity whose newest row is
    the latest."""

    def __init__(self, plan: _Plan, identities: list[tuple]):
        self.identities = identities
        self.queues: dict[tuple, deque] = {}
        self.position = 0
        self.last: tuple | None = None
        self.stale = False
        self.positions = [plan.values.index(c) for c in plan.outputs]
        self.outputs = plan.outputs

    def add(self, row: int) -> None:
        identity = self.identities[row]
        self.position += 1
        self.queues.setdefault(identity, deque()).append(self.position)
        self.last, self.stale = identity, False

    def retract(self, row: int) -> None:
        identity = self.identities[row]
        queue = self.queues.get(identity)
        if not queue:
            return
        queue.popleft()
        if not queue:
            del self.queues[identity]
            if identity == self.last:
                self.stale = True

    def features(self) -> dict:
        if self.stale:
            self.last = max(self.queues, key=lambda i: self.queues[i][-1]) if self.queues else None
            self.stale = False
        if self.last is None:
            return {name: None for name in self.outputs}
        return {name: self.last[p] for name, p in zip(self.outputs, self.positions)}


class _Moments:
    """Count, sum and shifted sums of squares of one input (exact for integers: python ints)."""

    __slots__ = ("n", "total", "shift", "s1", "s2")

    def __init__(self):
        self.n, self.total, self.shift, self.s1, self.s2 = 0, 0, None, 0, 0

    def update(self, value, sign: int) -> None:
        if self.shift is None:
            self.shift = value  # centering on a value of the key keeps float variance stable
        d = value - self.shift
        self.n += sign
        self.total += sign * value
        self.s1 += sign * d
        self.s2 += sign * d * d

    def value(self, operation: str, integral: bool):
        if operation == "COUNT":
            return self.n
        if self.n <= 0:
            return None
        if operation == "SUM":
            return int(self.total) if integral else float(self.total)
        if operation == "AVERAGE":
            return self.total / self.n
        if isinstance(self.s1, int) and isinstance(self.s2, int):
            return (self.n * self.s2 - self.s1 * self.s1) / (self.n * self.n)
        return max(0.0, (self.s2 - self.s1 * self.s1 / self.n) / self.n)


class _AggregateState:
    """Running moments per (input column, bucket column) and bucket value; rows counted per identity so
    that only retractions of present rows subtract."""

    def __init__(self, plan: _Plan, identities: list[tuple], buckets: dict):
        self.identities = identities
        self.buckets = buckets
        self.counts: dict[tuple, int] = {}
        self.specs = plan.specs
        self.groups = sorted({(s.input_column, s.bucket) for s in plan.specs}, key=repr)
        self.positions = {c: plan.values.index(c) for c, _ in self.groups}
        self.integral = {c: c in plan.integral for c, _ in self.groups}
        self.moments: dict[tuple, dict] = {group: {} for group in self.groups}

    def _apply(self, row: int, sign: int) -> None:
        identity = self.identities[row]
        for group in self.groups:
            column, bucket = group
            value = identity[self.positions[column]]
            if value is None:
                continue
            if not self.integral[column] and not isinstance(value, (int, float)):
                value = 0  # COUNT of a non-numeric column: only n matters
            bucket_value = None if bucket is None else self.buckets[bucket][row]
            if bucket is not None and bucket_value is None:
                continue
            per_bucket = self.moments[group]
            moments = per_bucket.get(bucket_value)
            if moments is None:
                moments = per_bucket[bucket_value] = _Moments()
            moments.update(value, sign)
            if moments.n == 0:
                del per_bucket[bucket_value]  # a bucket exists while it holds a non-null value

    def add(self, row: int) -> None:
        identity = self.identities[row]
        self.counts[identity] = self.counts.get(identity, 0) + 1
        self._apply(row, 1)

    def retract(self, row: int) -> None:
        identity = self.identities[row]
        count = self.counts.get(identity, 0)
        if count == 0:
            return
        if count == 1:
            del self.counts[identity]
        else:
            self.counts[identity] = count - 1
        self._apply(row, -1)

    def features(self) -> dict:
        out = {}
        for spec in self.specs:
            per_bucket = self.moments[(spec.input_column, spec.bucket)]
            integral = self.integral[spec.input_column]
            if spec.bucket is None:
                moments = per_bucket.get(None)
                out[spec.column_name] = (moments or _Moments()).value(spec.operation, integral)
            else:
                out[spec.column_name] = {b: m.value(spec.operation, integral) for b, m in per_bucket.items()} or None
        return out
