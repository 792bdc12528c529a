"""A wavelet matrix over an integer array: exact order statistics of any index range, vectorized.

`kth_smallest(lo, hi, k)` and `count_less(lo, hi, x)` answer a whole batch of ranges with numpy in
O(bits) array operations per batch, instead of sorting each window. The window kernel uses it for exact
percentiles, TOP_K/BOTTOM_K and distinct counts (a value is new in [lo, hi) when its previous occurrence
lies before lo, so distinct = count_less over the `previous occurrence` array).
"""

from __future__ import annotations

import numpy as np


class WaveletMatrix:
    def __init__(self, values: np.ndarray):
        values = np.asarray(values, dtype=np.int64)
        if len(values) and values.min() < 0:
            raise ValueError("wavelet matrix values must be non-negative")
        self.size = len(values)
        self.bits = max(int(values.max()).bit_length() if len(values) else 1, 1)
        self.zero_prefix: list[np.ndarray] = []  # zeros before each position, per level
        self.zero_total: list[int] = []
        current = values
        for level in range(self.bits):
            bit = (current >> (self.bits - 1 - level)) & 1
            is_zero = bit == 0
            self.zero_prefix.append(np.concatenate([[0], np.cumsum(is_zero, dtype=np.int64)]))
            self.zero_total.append(int(is_zero.sum()))
            current = np.concatenate([current[is_zero], current[~is_zero]])  # stable partition

    def kth_smallest(self, lo: np.ndarray, hi: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The k-th smallest (0-based) value in each [lo, hi); k must be < hi - lo."""
        lo, hi, k = (np.asarray(a, dtype=np.int64).copy() for a in (lo, hi, k))
        result = np.zeros(len(lo), dtype=np.int64)
        for level in range(self.bits):
            zeros = self.zero_prefix[level]
            zero_lo, zero_hi = zeros[lo], zeros[hi]
            zeros_in_range = zero_hi - zero_lo
            go_zero = k < zeros_in_range
            result = (result << 1) | (~go_zero).astype(np.int64)
            k = np.where(go_zero, k, k - zeros_in_range)
            offset = self.zero_total[level]
            lo = np.where(go_zero, zero_lo, offset + lo - zero_lo)
            hi = np.where(go_zero, zero_hi, offset + hi - zero_hi)
        return result

    def count_less(self, lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
        """How many values in each [lo, hi) are < x."""
        lo, hi, x = (np.asarray(a, dtype=np.int64).copy() for a in (lo, hi, x))
        count = np.zeros(len(lo), dtype=np.int64)
        too_big = x >= (1 << self.bits)
        everything = hi - lo
        for level in range(self.bits):
            zeros = self.zero_prefix[level]
            zero_lo, zero_hi = zeros[lo], zeros[hi]
            bit = (x >> (self.bits - 1 - level)) & 1
            # Where x has a 1 here, every value with a 0 at this level (and equal prefix) is smaller.
            count += np.where(bit == 1, zero_hi - zero_lo, 0)
            offset = self.zero_total[level]
            lo = np.where(bit == 1, offset + lo - zero_lo, zero_lo)
            hi = np.where(bit == 1, offset + hi - zero_hi, zero_hi)
        return np.where(too_big, everything, count)


def previous_occurrence(codes: np.ndarray) -> np.ndarray:
    """For each position, 1 + the index of the previous equal code (0 when none): non-negative for the matrix."""
    previous = np.zeros(len(codes), dtype=np.int64)
    if len(codes) == 0:
        return previous
    order = np.lexsort((np.arange(len(codes)), codes))
    sorted_codes = codes[order]
    same = np.concatenate([[False], sorted_codes[1:] == sorted_codes[:-1]])
    previous[order[same]] = order[np.nonzero(same)[0] - 1] + 1
    return previous
