"""Exact sliding-window aggregation for many keys at once, vectorized with numpy.

The engine sends one hash bucket of keys to this kernel (events plus query rows). Here every event of a
key is laid out in one sorted array per input column, ordered by (key, ts, value), and every query row
(key, t) finds its window [t - W, t) with two binary searches on a combined (key, ts) integer. Operations
then read that index range [lo, hi):

- COUNT, SUM, AVERAGE, VARIANCE, SKEW, KURTOSIS: differences of prefix sums (O(1) per row);
- MIN, MAX: a sparse table of range minima (O(1) per row after O(n log n) set-up);
- FIRST, LAST, FIRST_K, LAST_K: the ends of the range (ties on equal ts: the larger value is the later one);
- TOP_K, BOTTOM_K, APPROX_PERCENTILE, UNIQUE_COUNT, BOUNDED_UNIQUE_COUNT, APPROX_UNIQUE_COUNT: a wavelet
  matrix answers order statistics and distinct counts of every range at once (O(log values) per row).
  Offline these "approximate" operations are therefore exact: a KLL or CPC sketch (used online, where
  values must be mergeable) answers within its documented error of these values;
- HISTOGRAM: per row over the range.

Windows are exact: an event at exactly t is excluded, one at exactly t - W included. Null input values are
ignored; a query row whose key has a null gets null for every feature (counts included).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from feature_assets.aggregation.wavelet import WaveletMatrix, previous_occurrence

INTEGRAL_TYPES = frozenset({"long", "int", "short", "byte", "bigint", "integer", "smallint", "tinyint"})


def encode_keys(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """An int64 code per row, equal for equal keys; -1 where any key is null."""
    codes = np.zeros(len(frame), dtype=np.int64)
    null = np.zeros(len(frame), dtype=bool)
    for key in keys:
        key_codes, uniques = pd.factorize(frame[key], use_na_sentinel=True)
        null |= key_codes < 0
        codes = codes * (len(uniques) + 1) + key_codes
    if len(keys) > 1:
        codes, _ = pd.factorize(codes)
    codes = codes.astype(np.int64)
    codes[null] = -1
    return codes


class SortedColumn:
    """The non-null values of one input column (for one bucket), sorted by (key, ts, value)."""

    def __init__(self, codes: np.ndarray, ts: np.ndarray, values: pd.Series, integral: bool, tmin: int, span: int):
        keep = (codes >= 0) & values.notna().to_numpy()
        frame = pd.DataFrame({"c": codes[keep], "t": ts[keep], "v": values[keep].to_numpy()})
        frame = frame.sort_values(["c", "t", "v"], kind="mergesort")
        self.values = frame["v"].to_numpy()
        if integral:
            self.values = self.values.astype(np.int64)
        self.integral = integral
        self.numeric = integral or np.issubdtype(self.values.dtype, np.floating) or self.values.dtype == bool
        self.ts = frame["t"].to_numpy(dtype=np.int64)
        self.codes = frame["c"].to_numpy(dtype=np.int64)
        self.combined = self.codes * span + (self.ts - tmin)
        self._prefix: dict[int, np.ndarray] = {}
        self._key_sums: np.ndarray | None = None
        self._sparse: dict[str, list[np.ndarray]] = {}
        self._ranks: tuple[np.ndarray, np.ndarray] | None = None
        self._value_matrix: WaveletMatrix | None = None
        self._previous_matrix: WaveletMatrix | None = None

    def __len__(self) -> int:
        return len(self.values)

    # prefix sums of (value - center) ** power, so moments of a window are differences
    def prefix(self, power: int) -> np.ndarray:
        if power not in self._prefix:
            if power == 1 and self.integral:
                base = self.values
            else:
                base = (self.values.astype(np.float64) - self.center) ** power
            self._prefix[power] = np.concatenate([[0], np.cumsum(base)])
        return self._prefix[power]

    def long_prefix(self, power: int) -> np.ndarray:
        key = -power
        if key not in self._prefix:
            base = (self.values.astype(np.longdouble) - np.longdouble(self.center)) ** power
            self._prefix[key] = np.concatenate([[np.longdouble(0)], np.cumsum(base)])
        return self._prefix[key]

    def float_sums(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sums of [lo, hi) (0 where empty) from running sums restarted at every key: a window's rounding
        error depends only on earlier values of its own key, never on other keys of the bucket or on a
        centering constant, and sums of exactly representable values (e.g. multiples of 0.25) are exact."""
        if self._key_sums is None:
            self._key_sums = (
                pd.Series(self.values.astype(np.float64))
                .groupby(self.codes, sort=False)
                .cumsum()
                .to_numpy(dtype=np.float64)
            )
        out = np.zeros(len(lo))
        rows = np.nonzero(hi > lo)[0]
        if len(rows):
            a, b = lo[rows], hi[rows]
            previous = np.maximum(a - 1, 0)
            same_key = (a > 0) & (self.codes[previous] == self.codes[a])
            out[rows] = self._key_sums[b - 1] - np.where(same_key, self._key_sums[previous], 0.0)
        return out

    @property
    def center(self) -> float:
        return float(np.mean(self.values.astype(np.float64))) if len(self.values) else 0.0

    def order_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Values as int ranks (for MIN/MAX of any ordered type) and the sorted unique values."""
        if self._ranks is None:
            uniques, ranks = np.unique(self.values, return_inverse=True)
            self._ranks = (ranks.astype(np.int64), uniques)
        return self._ranks

    def value_matrix(self) -> WaveletMatrix:
        if self._value_matrix is None:
            self._value_matrix = WaveletMatrix(self.order_codes()[0])
        return self._value_matrix

    def kth_values(self, lo: np.ndarray, hi: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The k-th smallest value (0-based) of each non-empty range."""
        _, uniques = self.order_codes()
        return uniques[self.value_matrix().kth_smallest(lo, hi, k)]

    def distinct_counts(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if self._previous_matrix is None:
            self._previous_matrix = WaveletMatrix(previous_occurrence(self.order_codes()[0]))
        # previous_occurrence stores index + 1, so "no occurrence before lo" is "< lo + 1".
        return self._previous_matrix.count_less(lo, hi, lo + 1)

    def range_extreme(self, lo: np.ndarray, hi: np.ndarray, largest: bool) -> np.ndarray:
        """Rank of the min (or max) value in each non-empty [lo, hi)."""
        name = "max" if largest else "min"
        reduce = np.maximum if largest else np.minimum
        if name not in self._sparse:
            ranks, _ = self.order_codes()
            table = [ranks]
            width = 1
            while width * 2 <= len(ranks):
                previous = table[-1]
                table.append(reduce(previous[:-width], previous[width:]))
                width *= 2
            self._sparse[name] = table
        table = self._sparse[name]
        length = hi - lo
        level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
        result = np.zeros(len(lo), dtype=np.int64)
        for lvl in np.unique(level[length > 0]):
            rows = np.nonzero((level == lvl) & (length > 0))[0]
            row_table = table[lvl]
            result[rows] = reduce(row_table[lo[rows]], row_table[hi[rows] - (1 << lvl)])
        return result


def nullable_int(values: np.ndarray, null: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(null, 0, values).astype(np.int64), null.copy())


def _object_column(items: Iterable, null: np.ndarray) -> np.ndarray:
    out = np.empty(len(null), dtype=object)
    for index, item in enumerate(items):
        out[index] = None if null[index] else item
    return out


@dataclass
class ListColumn:
    """A column of lists kept flat (values + offsets + nulls): Arrow takes it without a Python loop."""

    values: np.ndarray
    offsets: np.ndarray  # len(rows) + 1
    null: np.ndarray

    @classmethod
    def gather(cls, source: np.ndarray, starts: np.ndarray, lengths: np.ndarray, step: int, null: np.ndarray):
        """Row i holds source[starts[i] + step * j] for j < lengths[i] (step -1 walks backwards)."""
        lengths = np.where(null, 0, lengths).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        index = np.repeat(starts, lengths) + step * within
        return cls(source[index] if len(index) else source[:0], offsets, null.copy())

    @classmethod
    def from_matrix(cls, matrix: np.ndarray | None, rows: np.ndarray, lengths: np.ndarray, total_rows: int):
        """Rows `rows` take the first `lengths` entries of their matrix row; every other row is null."""
        null = np.ones(total_rows, dtype=bool)
        null[rows] = False
        all_lengths = np.zeros(total_rows, dtype=np.int64)
        all_lengths[rows] = lengths
        offsets = np.concatenate([[0], np.cumsum(all_lengths)])
        if matrix is None or not len(rows):
            return cls(np.zeros(0), offsets, null)
        keep = np.arange(matrix.shape[1])[None, :] < np.asarray(lengths)[:, None]
        return cls(matrix[keep], offsets, null)

    def with_nulls(self, extra: np.ndarray) -> ListColumn:
        return ListColumn(self.values, self.offsets, self.null | extra)

    def __getitem__(self, row: int):
        return None if self.null[row] else self.values[self.offsets[row] : self.offsets[row + 1]].tolist()

    def to_objects(self) -> np.ndarray:
        out = np.empty(len(self.null), dtype=object)
        flat = self.values.tolist()
        for row in range(len(self.null)):
            out[row] = None if self.null[row] else flat[self.offsets[row] : self.offsets[row + 1]]
        return out

    def to_arrow(self, arrow_type):
        import pyarrow as pa

        values = pa.array(self.values, type=arrow_type.value_type, from_pandas=True)
        return pa.ListArray.from_arrays(
            pa.array(self.offsets, type=pa.int32()), values, type=arrow_type, mask=pa.array(self.null)
        )


# --------------------------------------------------------------------------- kernels
# A kernel computes one feature column for all query rows from the index ranges [lo, hi) of their windows,
# as a pandas-compatible array with nulls where a window is empty (counts: plain int64 arrays).
# `spec` is the output column's AggSpec: operation name, arguments (k, percentiles), window, bucket.


def count_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    return (hi - lo).astype(np.int64)


def sum_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    empty = hi == lo
    if column.integral:
        prefix = column.prefix(1)
        return nullable_int(prefix[hi] - prefix[lo], empty)
    return np.where(empty, np.nan, column.float_sums(lo, hi))


def average_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    count = (hi - lo).astype(np.int64)
    if column.integral:
        prefix = column.prefix(1)
        total = (prefix[hi] - prefix[lo]).astype(np.float64)
    else:
        total = column.float_sums(lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count == 0, np.nan, total / np.maximum(count, 1))


def moments_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    count = (hi - lo).astype(np.int64)
    return _moments(column, spec.operation, lo, hi, count, count == 0)


def extreme_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    """MIN / MAX."""
    empty = hi == lo
    ranks = column.range_extreme(lo, hi, largest=(spec.operation == "MAX"))
    _, uniques = column.order_codes()
    picked = uniques[np.minimum(ranks, max(len(uniques) - 1, 0))] if len(uniques) else np.zeros(len(lo))
    return _typed(column, picked, empty)


def edge_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    """FIRST / LAST: the ends of the range."""
    empty = hi == lo
    index = np.where(empty, 0, lo if spec.operation == "FIRST" else hi - 1)
    picked = column.values[np.minimum(index, max(len(column) - 1, 0))] if len(column) else np.zeros(len(lo))
    return _typed(column, picked, empty)


def edge_k_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    """FIRST_K / LAST_K: up to k values from one end of the range."""
    count = (hi - lo).astype(np.int64)
    lengths = np.minimum(count, spec.k)
    if spec.operation == "FIRST_K":
        return ListColumn.gather(column.values, lo, lengths, 1, count == 0)
    return ListColumn.gather(column.values, hi - 1, lengths, -1, count == 0)


def distinct_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    """UNIQUE_COUNT, APPROX_UNIQUE_COUNT (exact offline) and BOUNDED_UNIQUE_COUNT (at most k)."""
    empty = hi == lo
    distinct = np.where(empty, 0, column.distinct_counts(lo, hi)) if len(column) else np.zeros(len(lo), np.int64)
    return np.minimum(distinct, spec.k) if spec.operation == "BOUNDED_UNIQUE_COUNT" else distinct


def rank_k_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    """TOP_K / BOTTOM_K: the k largest (descending) or smallest (ascending) values."""
    count = hi - lo
    rows = np.nonzero(count > 0)[0]
    k = spec.k
    a, b, n = lo[rows], hi[rows], count[rows]
    ranks = [np.minimum(j, n - 1) if spec.operation == "BOTTOM_K" else np.maximum(n - 1 - j, 0) for j in range(k)]
    picked = (
        np.stack([_as_python_ready(column, column.kth_values(a, b, r)) for r in ranks], axis=1) if len(rows) else None
    )
    return ListColumn.from_matrix(picked, rows, np.minimum(k, n), len(lo))


def percentile_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    """APPROX_PERCENTILE, exact offline: the nearest-rank value at rank ceil(p * n) (1-based, at least 1)."""
    count = hi - lo
    rows = np.nonzero(count > 0)[0]
    fractions = json.loads(spec.args["percentiles"])
    a, b, n = lo[rows], hi[rows], count[rows]
    columns = [
        column.kth_values(a, b, np.maximum(np.ceil(p * n - 1e-9).astype(np.int64), 1) - 1).astype(np.float64)
        for p in fractions
    ]
    picked = np.stack(columns, axis=1) if len(rows) else None
    return ListColumn.from_matrix(picked, rows, np.full(len(rows), len(fractions)), len(lo))


def histogram_kernel(column: SortedColumn, spec, lo: np.ndarray, hi: np.ndarray):
    out = np.empty(len(lo), dtype=object)
    values = column.values
    for row in np.nonzero(hi > lo)[0]:
        uniques, counts = np.unique(values[lo[row] : hi[row]], return_counts=True)
        out[row] = {u: int(c) for u, c in zip(uniques.tolist(), counts.tolist())}
    return out


def _typed(column: SortedColumn, picked: np.ndarray, empty: np.ndarray):
    if column.integral:
        return nullable_int(picked.astype(np.int64), empty)
    if column.numeric and picked.dtype != object:
        return np.where(empty, np.nan, picked.astype(np.float64))
    return _object_column(picked.tolist(), empty)


def _moments(column: SortedColumn, op: str, lo, hi, count, empty):
    """Population moments. Small windows are computed directly (two passes, no cancellation);
    large ones from centered extended-precision prefix sums."""
    out = np.full(len(lo), np.nan)
    small = np.nonzero(~empty & (count <= SMALL_WINDOW))[0]
    values = column.values.astype(np.float64)
    for row in small:
        out[row] = direct_moment(values[lo[row] : hi[row]], op)
    large = np.nonzero(count > SMALL_WINDOW)[0]
    if len(large):
        a, b = lo[large], hi[large]
        n = count[large].astype(np.longdouble)
        s1, s2, s3, s4 = (column.long_prefix(p)[b] - column.long_prefix(p)[a] for p in (1, 2, 3, 4))
        mean = s1 / n
        m2 = s2 / n - mean**2
        m3 = s3 / n - 3 * mean * s2 / n + 2 * mean**3
        m4 = s4 / n - 4 * mean * s3 / n + 6 * mean**2 * s2 / n - 3 * mean**4
        low = column.range_extreme(a, b, largest=False)
        high = column.range_extreme(a, b, largest=True)
        m2 = np.where(low == high, 0.0, np.maximum(m2, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            if op == "VARIANCE":
                result = m2
            elif op == "SKEW":
                result = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1.0) ** 1.5, np.nan)
            else:
                result = np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1.0) ** 2 - 3.0, np.nan)
        out[large] = result.astype(np.float64)
    return out


SMALL_WINDOW = 64


def direct_moment(window: np.ndarray, op: str) -> float:
    """VARIANCE / SKEW / KURTOSIS of one window, two passes (also used online, so both sides agree)."""
    deviations = window - window.mean()
    m2 = float(np.mean(deviations**2))
    if op == "VARIANCE":
        return 0.0 if window.min() == window.max() else m2
    if window.min() == window.max() or m2 <= 0:
        return np.nan
    if op == "SKEW":
        return float(np.mean(deviations**3)) / m2**1.5
    return float(np.mean(deviations**4)) / m2**2 - 3.0


def _as_python_ready(column: SortedColumn, values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) if column.integral else values
