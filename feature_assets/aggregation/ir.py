"""Intermediate representations (IRs) of every aggregation, and exact per-key window evaluation online.

Each operation has `init() -> ir`, `update(ir, value, ts) -> ir`, `merge(a, b) -> ir`, `finalize(ir) -> value`
and `to_wire(ir)` / `from_wire(x)` (a value the codec stores: ints, floats, lists, maps, bytes). The
finalized values follow the offline window kernel (`engine/window_kernel.py`) exactly:

- order: events of a key are ordered by (ts, value), so on equal ts the larger value is the later one
  (FIRST, LAST, FIRST_K, LAST_K keep (ts, value) pairs to merge in that order);
- empty: COUNT, UNIQUE_COUNT, BOUNDED_UNIQUE_COUNT, APPROX_UNIQUE_COUNT give 0, every other operation None;
  a bucketed aggregation gives a map of its non-empty buckets, or None;
- VARIANCE/SKEW/KURTOSIS are population moments: variance 0 when all values are equal, skew and kurtosis
  None then. The IR is (n, mean, M2, M3, M4, min, max), updated and merged with Pébay's formulas;
- APPROX_UNIQUE_COUNT and APPROX_PERCENTILE: offline (the kernel) they are exact — the distinct count, and
  the nearest-rank value at rank ceil(p * n). Online, a window over raw events (tail + streaming) computes
  the same exact values; only the IRs of unwindowed aggregations (the batch head, which must merge) are
  sketches: a datasketches CPC sketch (lg_k 12) and a KLL doubles sketch (k from the argMap, default 200),
  serialized on the wire. A KLL sketch that has not compacted yet (n small) still answers the exact nearest
  rank; otherwise both answer within the sketches' documented error.

`evaluate(spec, events, t, head)` computes one feature of one key at time t over the window [t - W, t)
of `events` (unwindowed: all events before t, folded into `head`, the IR of everything older than the
events given). Windowed moments use the kernel's own two-pass formula, so they match it bit for bit on
windows of up to 64 values (beyond that both sides are within float rounding of each other).
"""

from __future__ import annotations

import heapq
import json
import math
from bisect import insort

import datasketches

CPC_LG_K = 12


class Operation:
    """Base: an IR that is a plain value handled by the codec as is."""

    def __init__(self, name: str, args: dict | None = None):
        self.name = name
        self.args = args or {}
        self.k = int(self.args.get("k", 8))

    def init(self):
        raise NotImplementedError

    def update(self, ir, value, ts: int):
        raise NotImplementedError

    def merge(self, a, b):
        raise NotImplementedError

    def finalize(self, ir):
        raise NotImplementedError

    def is_empty(self, ir) -> bool:
        return ir == self.init()

    def to_wire(self, ir):
        return ir

    def from_wire(self, wire):
        return wire

    def fold(self, ir, values, times):
        for value, ts in zip(values, times):
            ir = self.update(ir, value, ts)
        return ir


class Count(Operation):
    def init(self):
        return 0

    def update(self, ir, value, ts):
        return ir + 1

    def merge(self, a, b):
        return a + b

    def finalize(self, ir):
        return ir

    def fold(self, ir, values, times):
        return ir + len(values)


class Sum(Operation):
    """[count, total]: total stays an int for integral inputs."""

    def init(self):
        return [0, 0]

    def update(self, ir, value, ts):
        return [ir[0] + 1, ir[1] + value]

    def merge(self, a, b):
        return [a[0] + b[0], a[1] + b[1]]

    def finalize(self, ir):
        return ir[1] if ir[0] else None

    def fold(self, ir, values, times):
        return [ir[0] + len(values), ir[1] + sum(values)] if values else ir


class Average(Sum):
    def finalize(self, ir):
        return float(ir[1]) / ir[0] if ir[0] else None


class _Extremum(Operation):
    """An IR that keeps the smaller (or the larger) of the items seen, None when empty."""

    smallest_for = ""

    def init(self):
        return None

    def pick(self, a, b):
        if a is None or b is None:
            return b if a is None else a
        return min(a, b) if self.name == self.smallest_for else max(a, b)

    def merge(self, a, b):
        return self.pick(a, b)


class Extreme(_Extremum):
    """MIN / MAX: the value."""

    smallest_for = "MIN"

    def update(self, ir, value, ts):
        return self.pick(ir, value)

    def finalize(self, ir):
        return ir

    def fold(self, ir, values, times):
        if not values:
            return ir
        return self.pick(ir, min(values) if self.name == "MIN" else max(values))


class Edge(_Extremum):
    """FIRST / LAST: the (ts, value) pair that sorts first / last."""

    smallest_for = "FIRST"

    def update(self, ir, value, ts):
        return self.pick(ir, (ts, value))

    def finalize(self, ir):
        return None if ir is None else ir[1]

    def to_wire(self, ir):
        return None if ir is None else [ir[0], ir[1]]

    def from_wire(self, wire):
        return None if wire is None else (wire[0], wire[1])


class EdgeK(Operation):
    """FIRST_K / LAST_K: up to k (ts, value) pairs, sorted ascending."""

    def init(self):
        return []

    def update(self, ir, value, ts):
        k = self.k
        pair = (ts, value)
        if self.name == "FIRST_K":
            if len(ir) < k or pair < ir[-1]:
                insort(ir, pair)
                if len(ir) > k:
                    ir.pop()
        else:
            if len(ir) < k or pair > ir[0]:
                insort(ir, pair)
                if len(ir) > k:
                    ir.pop(0)
        return ir

    def merge(self, a, b):
        both = sorted(a + b)
        return both[: self.k] if self.name == "FIRST_K" else both[-self.k :] if self.k else []

    def fold(self, ir, values, times):
        if len(values) <= 2 * self.k:
            return super().fold(ir, values, times)
        pick = heapq.nsmallest if self.name == "FIRST_K" else heapq.nlargest
        return self.merge(ir, pick(self.k, zip(times, values)))

    def finalize(self, ir):
        if not ir:
            return None
        values = [v for _, v in ir]
        return values if self.name == "FIRST_K" else values[::-1]

    def to_wire(self, ir):
        return [[t for t, _ in ir], [v for _, v in ir]]

    def from_wire(self, wire):
        return list(zip(wire[0], wire[1])) if wire else []


class RankK(Operation):
    """TOP_K / BOTTOM_K: the k largest / smallest values, kept sorted ascending."""

    def init(self):
        return []

    def update(self, ir, value, ts):
        insort(ir, value)
        if len(ir) > self.k:
            ir.pop(0 if self.name == "TOP_K" else -1)
        return ir

    def merge(self, a, b):
        both = sorted(a + b)
        return (both[-self.k :] if self.k else []) if self.name == "TOP_K" else both[: self.k]

    def finalize(self, ir):
        if not ir:
            return None
        return ir[::-1] if self.name == "TOP_K" else list(ir)

    def fold(self, ir, values, times):
        return self.merge(ir, sorted(values)) if values else ir


class Unique(Operation):
    """UNIQUE_COUNT: the set of values; BOUNDED_UNIQUE_COUNT keeps at most k of them."""

    def init(self):
        return set()

    def update(self, ir, value, ts):
        if self.name == "UNIQUE_COUNT" or len(ir) < self.k:
            ir.add(value)
        return ir

    def merge(self, a, b):
        merged = a | b
        if self.name == "BOUNDED_UNIQUE_COUNT" and len(merged) > self.k:
            merged = set(sorted(merged)[: self.k])
        return merged

    def finalize(self, ir):
        return min(len(ir), self.k) if self.name == "BOUNDED_UNIQUE_COUNT" else len(ir)

    def to_wire(self, ir):
        return sorted(ir)

    def from_wire(self, wire):
        return set(wire or [])


class Histogram(Operation):
    def init(self):
        return {}

    def update(self, ir, value, ts):
        ir[value] = ir.get(value, 0) + 1
        return ir

    def merge(self, a, b):
        merged = dict(a)
        for value, count in b.items():
            merged[value] = merged.get(value, 0) + count
        return merged

    def finalize(self, ir):
        return {value: ir[value] for value in sorted(ir)} if ir else None

    def from_wire(self, wire):
        return dict(wire or {})


class Moments(Operation):
    """VARIANCE / SKEW / KURTOSIS: [n, mean, M2, M3, M4, min, max] (central moment sums)."""

    def init(self):
        return [0, 0.0, 0.0, 0.0, 0.0, None, None]

    def update(self, ir, value, ts):
        return self.merge(ir, [1, float(value), 0.0, 0.0, 0.0, value, value])

    def merge(self, a, b):
        na, nb = a[0], b[0]
        if nb == 0:
            return a
        if na == 0:
            return list(b)
        n = na + nb
        delta = b[1] - a[1]
        d_n = delta / n
        mean = a[1] + nb * d_n
        m2 = a[2] + b[2] + delta * d_n * na * nb
        m3 = a[3] + b[3] + delta * d_n * d_n * na * nb * (na - nb) + 3.0 * d_n * (na * b[2] - nb * a[2])
        m4 = (
            a[4]
            + b[4]
            + delta * d_n * d_n * d_n * na * nb * (na * na - na * nb + nb * nb)
            + 6.0 * d_n * d_n * (na * na * b[2] + nb * nb * a[2])
            + 4.0 * d_n * (na * b[3] - nb * a[3])
        )
        return [n, mean, m2, m3, m4, min(a[5], b[5]), max(a[6], b[6])]

    def finalize(self, ir):
        n = ir[0]
        if n == 0:
            return None
        constant = ir[5] == ir[6]
        m2 = 0.0 if constant else max(ir[2] / n, 0.0)
        if self.name == "VARIANCE":
            return m2
        if constant or m2 <= 0:
            return None
        if self.name == "SKEW":
            return (ir[3] / n) / m2**1.5
        return (ir[4] / n) / m2**2 - 3.0

    def is_empty(self, ir) -> bool:
        return ir[0] == 0


class SketchOperation(Operation):
    """An IR that is a datasketches sketch, None until the first value (keeps empty IRs small)."""

    sketch_class_name = ""

    def init(self):
        return None

    def is_empty(self, ir) -> bool:
        return ir is None

    def to_wire(self, ir):
        return None if ir is None else ir.serialize()

    def from_wire(self, wire):
        return None if wire is None else getattr(datasketches, self.sketch_class_name).deserialize(wire)


class ApproxUnique(SketchOperation):
    """APPROX_UNIQUE_COUNT: a CPC sketch."""

    sketch_class_name = "cpc_sketch"

    def update(self, ir, value, ts):
        if ir is None:
            ir = datasketches.cpc_sketch(CPC_LG_K)
        ir.update(value if isinstance(value, (str, float)) else int(value))
        return ir

    def merge(self, a, b):
        if a is None or b is None:
            return b if a is None else a
        union = datasketches.cpc_union(CPC_LG_K)
        union.update(a)
        union.update(b)
        return union.get_result()

    def finalize(self, ir):
        return 0 if ir is None else int(round(ir.get_estimate()))


class ApproxPercentile(SketchOperation):
    """APPROX_PERCENTILE: a KLL doubles sketch; finalizes to the argMap's percentiles."""

    sketch_class_name = "kll_doubles_sketch"

    @property
    def percentiles(self) -> list[float]:
        return [float(p) for p in json.loads(self.args.get("percentiles", "[]"))]

    def update(self, ir, value, ts):
        if ir is None:
            ir = datasketches.kll_doubles_sketch(int(self.args.get("k", 200)))
        ir.update(float(value))
        return ir

    def merge(self, a, b):
        if a is None or b is None:
            return b if a is None else a
        a.merge(b)
        return a

    def finalize(self, ir):
        if ir is None or ir.is_empty():
            return None
        if not ir.is_estimation_mode():
            values = sorted(item for item, weight in ir for _ in range(weight))
            return nearest_ranks(values, self.percentiles)
        return [float(ir.get_quantile(p)) for p in self.percentiles]


def nearest_ranks(sorted_values: list, fractions: list[float]) -> list[float]:
    """The kernel's exact percentiles: the value at rank ceil(p * n) (1-based, at least 1)."""
    n = len(sorted_values)
    return [float(sorted_values[min(max(math.ceil(p * n - 1e-9), 1), n) - 1]) for p in fractions]
