"""Skew: split the events of hot keys by time so that no task holds a hot key's whole history.

A key is hot when it has more than `feature_assets.skew.hotKeyEvents` events (default 2,000,000) in the
range read, which one aggregation of the events' keys learns first (when no key is, nothing below is
planned). The default bounds memory, not balance: the kernel holds some 100-200 bytes per event across its
arrays, so a key under it needs a few hundred MB in its task at most, while splitting costs extra passes
(in benchmarks/backfill.py, forcing the split of its two keys of 250k-530k events made the join ~30%
slower). Its query rows go to the time slice of their ts, slices being as long as the longest window
(one day when every aggregation is unwindowed), and the task of slice q receives:

- the key's events of slice q, and of slice q - 1 when some aggregation is windowed (a query at t in
  slice q sees windows [t - W, t) with W <= slice length, so nothing older): every windowed feature is
  then computed by the window kernel as for any other key;
- for unwindowed aggregations, one *head* row: the intermediate aggregate (the online IRs of
  `feature_assets.aggregation.ir`) of all the key's events before those slices. Heads are built in two steps
  that also never hold more than one slice of events: an IR per (hot key, slice), then, per hot key, a
  running merge over its slice IRs (a few hundred small values at most). The task folds its own events
  into the head in time order and finalizes one value per query row.

So a task holds at most two slices of one hot key's events plus one head per unwindowed aggregation. A
head is constant-size for every operation except UNIQUE_COUNT and HISTOGRAM (the distinct values seen,
which is what their results hold anyway) and BOUNDED_UNIQUE_COUNT (at most k values). For hot keys,
APPROX_UNIQUE_COUNT and APPROX_PERCENTILE come from their CPC / KLL sketch heads, hence within those
sketches' documented error (ordinary keys get their exact values, as everywhere offline). Values of the
other operations are the same as for ordinary keys (float sums and moments within rounding).
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.aggregation import codec
from feature_assets.aggregation.evaluate import (
    Events,
    empty_value,
    finalize_head,
    fold_events,
    ir_from_wire,
    ir_to_wire,
    merge_heads,
    spec_operation,
)
from feature_assets.aggregation.kernel import encode_keys
from feature_assets.aggregation.values import python_values
from feature_assets.model.configs import MILLIS_PER_DAY

SLICE = "__slice"
HEAD = "__head"
HOT_KEY_EVENTS_CONF = "feature_assets.skew.hotKeyEvents"
DEFAULT_HOT_KEY_EVENTS = 2_000_000
MAX_COLLECTED_HOT_KEYS = 10_000
_PARTIAL = "__partial"


def slice_hot_keys(queries: DataFrame, events: DataFrame, keys: list[str], specs):
    """Add SLICE to queries and events (-1 for ordinary keys), copy hot events to the slices that see them,
    and append one head row per (hot key, query slice) to events (column HEAD, null on real events) when
    some spec is unwindowed."""
    threshold = int(events.sparkSession.conf.get(HOT_KEY_EVENTS_CONF, None) or DEFAULT_HOT_KEY_EVENTS)
    # Skew handling off, or no hot key: every key is one group.
    hot_keys = hot_keys_frame(events, keys, threshold) if threshold >= 0 and specs else None
    if hot_keys is None:
        return queries.withColumn(SLICE, F.lit(-1).cast("long")), events.withColumn(SLICE, F.lit(-1).cast("long"))
    windows = [s.window_millis for s in specs if s.window_millis is not None]
    unwindowed = [s for s in specs if s.window_millis is None]
    span = max(windows) if windows else MILLIS_PER_DAY
    reach = 1 if windows else 0  # how many earlier slices a slice's task also holds
    hot = F.broadcast(hot_keys.withColumn("__hot", F.lit(True)))
    queries = queries.join(hot, keys, "left")
    queries = queries.withColumn(
        SLICE, F.when(F.col("__hot"), F.floor(F.col("ts") / span)).otherwise(-1).cast("long")
    ).drop("__hot")
    events = events.join(hot, keys, "left")
    own = F.floor(F.col("ts") / span).cast("long")
    copies = F.array(own, own + 1) if reach else F.array(own)
    events = events.withColumn(
        SLICE, F.explode(F.when(F.col("__hot"), copies).otherwise(F.array(F.lit(-1).cast("long"))))
    ).drop("__hot")
    if not unwindowed:
        return queries, events
    type_names = {f.name: f.dataType.simpleString() for f in events.schema.fields}
    hot_events = events.where(F.col(SLICE) >= 0)
    if reach:  # each event once, in its own slice
        hot_events = hot_events.where(F.col(SLICE) == own)
    heads = _head_rows(hot_events, queries.where(F.col(SLICE) >= 0), keys, unwindowed, reach, type_names)
    heads = heads.select(*[F.col(k).cast(events.schema[k].dataType).alias(k) for k in keys], SLICE, HEAD)
    events = events.withColumn(HEAD, F.lit(None).cast("binary")).unionByName(heads, allowMissingColumns=True)
    return queries, events


def hot_keys_frame(events: DataFrame, keys: list[str], threshold: int) -> DataFrame | None:
    """The keys with more than `threshold` events (key columns only), or None when there are none.

    One aggregation of the events' key columns, run now: when no key is hot, as usual, nothing of the split
    is planned (no join with the hot keys, no copies of events, no pass over them for heads). Hot keys are
    few (at most events / threshold), so they come to the driver and go back as a small literal frame; past
    `MAX_COLLECTED_HOT_KEYS` (a tiny threshold, as tests set) the aggregation is kept as a frame instead.
    """
    hot = events.groupBy(*keys).count().where(F.col("count") > threshold).select(*keys)
    rows = hot.limit(MAX_COLLECTED_HOT_KEYS + 1).collect()
    if not rows:
        return None
    if len(rows) > MAX_COLLECTED_HOT_KEYS:
        return hot
    return events.sparkSession.createDataFrame(rows, T.StructType([events.schema[k] for k in keys]))


def _head_rows(
    hot_events: DataFrame, hot_queries: DataFrame, keys: list[str], specs, reach: int, type_names: dict[str, str]
) -> DataFrame:
    """(keys, SLICE, HEAD): for each slice q with queries of a hot key, the IRs of the key's events in
    slices < q - reach, encoded with `codec.encode_value` as a list in `specs` order."""
    operations = [spec_operation(s) for s in specs]
    columns = sorted({s.input_column for s in specs} | {s.bucket for s in specs if s.bucket})
    query_keys = [hot_queries.schema[k] for k in keys]
    partial_schema = T.StructType(
        query_keys + [T.StructField(SLICE, T.LongType()), T.StructField(_PARTIAL, T.BinaryType())]
    )

    def slice_ir(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("ts", kind="mergesort")
        events = None
        irs = []
        for spec, op in zip(specs, operations):
            if spec.bucket is None:
                ir = op.fold(op.init(), *present_inputs(frame, spec, type_names))
            else:
                events = events or frame_events(frame, columns, type_names)
                ir = fold_events(spec, op, None, events, 0, len(events.ts))
            irs.append(ir_to_wire(spec, ir, op))
        return frame[keys].iloc[:1].assign(**{SLICE: frame[SLICE].iloc[0], _PARTIAL: [codec.encode_value(irs)]})

    def running_heads(queries: pd.DataFrame, partials: pd.DataFrame) -> pd.DataFrame:
        if queries.empty:
            return _key_rows(queries[keys], [], [])
        partials = partials.sort_values(SLICE)
        irs = [None] * len(specs)
        out_slices, out_heads = [], []
        position = 0
        for query_slice in sorted(set(queries[SLICE].tolist())):
            while position < len(partials) and partials[SLICE].iloc[position] < query_slice - reach:
                wires = codec.decode_value(partials[_PARTIAL].iloc[position])
                for index, (spec, op) in enumerate(zip(specs, operations)):
                    item = ir_from_wire(spec, wires[index], op)
                    irs[index] = item if irs[index] is None else merge_heads(spec, op, irs[index], item)
                position += 1
            if position:
                out_slices.append(query_slice)
                out_heads.append(
                    codec.encode_value(
                        [
                            None if ir is None else ir_to_wire(spec, ir, op)
                            for spec, op, ir in zip(specs, operations, irs)
                        ]
                    )
                )
        return _key_rows(queries[keys], out_slices, out_heads)

    partials = (
        hot_events.select(
            *[F.col(k).cast(hot_queries.schema[k].dataType).alias(k) for k in keys], "ts", SLICE, *columns
        )
        .groupBy(*keys, SLICE)
        .applyInPandas(slice_ir, partial_schema)
    )
    head_schema = T.StructType(query_keys + [T.StructField(SLICE, T.LongType()), T.StructField(HEAD, T.BinaryType())])
    return (
        hot_queries.select(*keys, SLICE)
        .distinct()
        .groupBy(*keys)
        .cogroup(partials.groupBy(*keys))
        .applyInPandas(running_heads, head_schema)
    )


def _key_rows(key_frame: pd.DataFrame, slices: list, heads: list) -> pd.DataFrame:
    """One (keys, SLICE, HEAD) row per slice, keys from the frame's first row. Built from the frame itself so
    that even an empty result keeps the key dtypes (Spark cannot convert an untyped empty column)."""
    rows = key_frame.iloc[[0] * len(slices)] if len(key_frame) else key_frame.iloc[:0]
    return rows.reset_index(drop=True).assign(
        **{SLICE: pd.Series(slices, dtype="int64"), HEAD: pd.Series(heads, dtype=object)}
    )


def frame_events(frame: pd.DataFrame, columns: list[str], type_names: dict[str, str]) -> Events:
    """One key's events (a pandas frame with ts and `columns`) as IR `Events`, sorted by ts."""
    frame = frame.sort_values("ts", kind="mergesort")
    return Events([int(t) for t in frame["ts"].tolist()], {c: python_values(frame[c], type_names[c]) for c in columns})


def present_inputs(frame: pd.DataFrame, spec, type_names: dict[str, str]) -> tuple[list, list]:
    """(values, times) of the non-null inputs of an unbucketed spec in a frame sorted by ts."""
    column = frame[spec.input_column]
    keep = column.notna().to_numpy()
    return (
        python_values(column[keep], type_names[spec.input_column]),
        frame["ts"].to_numpy(dtype=np.int64)[keep].tolist(),
    )


def unwindowed_from_heads(
    queries: pd.DataFrame, events: pd.DataFrame, heads: pd.DataFrame, keys: list[str], specs, type_names: dict[str, str]
) -> dict[str, list]:
    """Values of unwindowed `specs` for query rows of hot keys: per key, the head folded with the task's
    events in ts order, finalized at each query time. {column: one Python value per query row}."""
    operations = [spec_operation(s) for s in specs]
    columns = sorted({s.input_column for s in specs} | {s.bucket for s in specs if s.bucket})
    frames = [queries[keys], events[keys], heads[keys]]
    codes = encode_keys(pd.concat(frames, ignore_index=True), keys)
    query_codes = codes[: len(queries)]
    event_codes = codes[len(queries) : len(queries) + len(events)]
    head_codes = codes[len(queries) + len(events) :]
    head_of = {int(code): codec.decode_value(blob) for code, blob in zip(head_codes, heads[HEAD].tolist())}
    query_ts = queries["ts"].to_numpy(dtype=np.int64)
    out = {s.column_name: [None] * len(queries) for s in specs}
    for code in np.unique(query_codes[query_codes >= 0]):
        rows = np.nonzero(query_codes == code)[0]
        rows = rows[np.argsort(query_ts[rows], kind="mergesort")]
        key_frame = events.iloc[np.nonzero(event_codes == code)[0]].sort_values("ts", kind="mergesort")
        key_events = None
        wires = head_of.get(int(code))
        for index, (spec, op) in enumerate(zip(specs, operations)):
            ir = None if wires is None or wires[index] is None else ir_from_wire(spec, wires[index], op)
            folded = 0
            values = out[spec.column_name]
            if spec.bucket is None:  # the non-null inputs once, then plain slices of them
                present, times = present_inputs(key_frame, spec, type_names)
                ir = op.init() if ir is None else ir
                for row in rows:
                    upto = bisect_left(times, int(query_ts[row]))
                    if upto > folded:
                        ir = op.fold(ir, present[folded:upto], times[folded:upto])
                        folded = upto
                    values[row] = op.finalize(ir) if not op.is_empty(ir) else empty_value(spec)
                continue
            key_events = key_events or frame_events(key_frame, columns, type_names)
            for row in rows:
                upto = bisect_left(key_events.ts, int(query_ts[row]))
                if upto > folded:
                    ir = fold_events(spec, op, ir, key_events, folded, upto)
                    folded = upto
                values[row] = finalize_head(spec, ir, op)
    return out


def to_arrow_values(values: list) -> list:
    """Python feature values ready for `pa.array` of the Spark output type (maps as item lists)."""

    def ready(value):
        if isinstance(value, dict):
            return [(k, ready(v)) for k, v in value.items()]
        return value

    return [ready(v) for v in values]
