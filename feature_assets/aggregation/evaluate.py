"""Per-key evaluation of features from events and IRs: the online side of every aggregation.

`evaluate(spec, events, t, head)` computes one feature of one key at time t over the window [t - W, t)
of `events` (unwindowed: all events before t, folded into `head`, the IR of everything older than the
events given). The values follow the offline kernel exactly (see `ir.py` for the semantics); windowed
moments use the kernel's own two-pass formula, so they match it bit for bit on windows of up to 64 values.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from feature_assets.aggregation.ir import ApproxPercentile, Operation, nearest_ranks
from feature_assets.aggregation.kernel import direct_moment
from feature_assets.aggregation.spec import AggSpec

MOMENTS = frozenset({"VARIANCE", "SKEW", "KURTOSIS"})


@dataclass
class Events:
    """One key's events sorted by ts: `ts` and one list per needed column (None for nulls)."""

    ts: list
    columns: dict

    @staticmethod
    def empty(columns) -> Events:
        return Events([], {c: [] for c in columns})

    def extend(self, ts: list, columns: dict) -> Events:
        """These events followed by later ones (all of whose ts are >= the last ts here)."""
        return Events(self.ts + list(ts), {c: self.columns[c] + list(columns[c]) for c in self.columns})


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _selected(spec, events: Events, lo: int, hi: int) -> dict:
    """{bucket value (None without buckets): (values, times)} of the non-null inputs in [lo, hi)."""
    column = events.columns[spec.input_column]
    times = events.ts
    if spec.bucket is None:
        values, picked = [], []
        for i in range(lo, hi):
            value = column[i]
            if _present(value):
                values.append(value)
                picked.append(times[i])
        return {None: (values, picked)}
    buckets = events.columns[spec.bucket]
    grouped: dict = {}
    for i in range(lo, hi):
        value, bucket = column[i], buckets[i]
        if _present(value) and _present(bucket):
            entry = grouped.setdefault(bucket, ([], []))
            entry[0].append(value)
            entry[1].append(times[i])
    return grouped


def spec_operation(spec: AggSpec) -> Operation:
    return spec.definition.online(spec.args)


def empty_value(spec: AggSpec):
    return spec.empty_value


def _window_value(op: Operation, spec, values: list, times: list):
    if isinstance(op, ApproxPercentile):
        return nearest_ranks(sorted(float(v) for v in values), op.percentiles)
    if spec.operation == "APPROX_UNIQUE_COUNT":
        return len(set(values))
    if spec.operation in MOMENTS and spec.window_millis is not None:
        result = direct_moment(np.asarray(values, dtype=np.float64), spec.operation)
        return None if math.isnan(result) else float(result)
    return op.finalize(op.fold(op.init(), values, times))


def evaluate(spec, events: Events, t: int, head=None, op: Operation | None = None):
    """One feature of one key at time t (see the module docstring). `head` is the IR (bucketed: a map of
    bucket -> IR) of the events before `events`, for unwindowed specs only."""
    op = op or spec_operation(spec)
    hi = bisect_left(events.ts, t)
    lo = 0 if spec.window_millis is None else bisect_left(events.ts, t - spec.window_millis, 0, hi)
    selected = _selected(spec, events, lo, hi)
    if spec.window_millis is not None:
        if spec.bucket is None:
            values, times = selected[None]
            return _window_value(op, spec, values, times) if values else empty_value(spec)
        result = {_bucket_key(b): _window_value(op, spec, v, tm) for b, (v, tm) in selected.items() if v}
        return dict(sorted(result.items())) or None
    return finalize_head(spec, fold_selected(spec, op, head, selected), op)


def fold_selected(spec, op: Operation, ir, selected: dict):
    """`ir` (bucketed: {bucket: IR}; None: empty) with the `_selected` values folded in."""
    if spec.bucket is None:
        values, times = selected[None]
        return op.fold(ir if ir is not None else op.init(), values, times)
    irs = dict(ir or {})
    for bucket, (values, times) in selected.items():
        irs[bucket] = op.fold(irs.get(bucket, op.init()), values, times)
    return irs


def fold_events(spec, op: Operation, ir, events: Events, lo: int, hi: int):
    """`ir` with the events [lo, hi) of `events` folded in (an unwindowed spec's running IR)."""
    return fold_selected(spec, op, ir, _selected(spec, events, lo, hi))


def finalize_head(spec, ir, op: Operation | None = None):
    """The feature value of an unwindowed spec's IR (bucketed: a map of the non-empty buckets, or None)."""
    op = op or spec_operation(spec)
    if spec.bucket is None:
        return empty_value(spec) if ir is None or op.is_empty(ir) else op.finalize(ir)
    result = {_bucket_key(b): op.finalize(item) for b, item in (ir or {}).items() if not op.is_empty(item)}
    return dict(sorted(result.items())) or None


def merge_heads(spec, op: Operation, a, b):
    """Two IRs of one unwindowed spec (bucketed: bucket-wise), a's events before b's."""
    if spec.bucket is None:
        return op.merge(a, b)
    merged = dict(a)
    for bucket, item in b.items():
        merged[bucket] = op.merge(merged[bucket], item) if bucket in merged else item
    return merged


def _bucket_key(bucket):
    return bucket if isinstance(bucket, str) else str(bucket)


def head_ir(spec, events: Events, op: Operation | None = None):
    """The IR of all `events` for an unwindowed spec (bucketed: {bucket: IR}), for the batch upload."""
    op = op or spec_operation(spec)
    selected = _selected(spec, events, 0, len(events.ts))
    if spec.bucket is None:
        values, times = selected[None]
        return op.fold(op.init(), values, times)
    return {bucket: op.fold(op.init(), values, times) for bucket, (values, times) in selected.items()}


def ir_to_wire(spec, ir, op: Operation | None = None):
    op = op or spec_operation(spec)
    if spec.bucket is None:
        return None if op.is_empty(ir) else op.to_wire(ir)
    return {bucket: op.to_wire(item) for bucket, item in ir.items() if not op.is_empty(item)} or None


def ir_from_wire(spec, wire, op: Operation | None = None):
    op = op or spec_operation(spec)
    if spec.bucket is None:
        return op.init() if wire is None else op.from_wire(wire)
    return {bucket: op.from_wire(item) for bucket, item in (wire or {}).items()}
