"""`ColumnSummary`: a mergeable summary of one column over one time bucket (an hour or a day).

What a summary keeps, by kind (`total` rows and `null_count` always; NaN counts as null):

- numeric: a KLL doubles sketch of the non-null values;
- boolean: the true and false counts;
- categorical (strings and every other type, compared by their string form): a CPC distinct-count sketch
  and a frequent-items sketch of the values;
- list: a KLL sketch of the lengths of the non-null lists, the number of elements and of null elements;
- map: a KLL sketch of the number of keys of each non-null map, the number of keys and a frequent-items
  sketch of the keys.

Summaries of the same column merge (hours into days, days into a week); the sketches keep their error
bounds under merging. KLL k defaults to 200: a normalized rank error of about 1.3% (single rank query,
99% confidence), 1.65% for PMF/CDF queries. Percentiles use the nearest-rank definition: the value at
percentile p is the smallest retained value with at least p of the values at or below it.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasketches
import numpy as np

KINDS = ("numeric", "boolean", "categorical", "list", "map")
DEFAULT_K = 200
CPC_LG_K = 12
# A frequent-items map of 2^8 slots tracks up to 192 items exactly; beyond that, estimates are within
# 3.5 / 256 (1.4%) of the total weight.
FREQUENT_LG_MAP_SIZE = 8
TOP_ITEMS = 20
# 0.01, 0.05, 0.1, 0.15, ..., 0.9, 0.95, 0.99 (rounded so that format(p, "g") gives short keys).
PERCENTILE_POINTS: tuple[float, ...] = (0.01, *(round(step * 0.05, 2) for step in range(1, 20)), 0.99)
FORMAT_VERSION = 1

_KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
_NUMERIC_TYPES = ("tinyint", "smallint", "int", "integer", "bigint", "long", "short", "byte", "float", "double")
_NUMERIC_PREFIXES = ("decimal", "numeric", "dec(")
# version, kind, total, null_count, true_count, false_count, null_elements, total_elements, name length
_HEADER = struct.Struct("<BBqqqqqqH")
_BLOB_LENGTH = struct.Struct("<I")


def kind_of_spark_type(type_string: str) -> str:
    """The summary kind of a Spark simple type string (`DataType.simpleString()`, e.g. "array<bigint>")."""
    text = type_string.strip().lower()
    if text.startswith("array<"):
        return "list"
    if text.startswith("map<"):
        return "map"
    if text == "boolean":
        return "boolean"
    if text in _NUMERIC_TYPES or text.startswith(_NUMERIC_PREFIXES):
        return "numeric"
    return "categorical"


def _frequent_sketch() -> datasketches.frequent_strings_sketch:
    return datasketches.frequent_strings_sketch(FREQUENT_LG_MAP_SIZE)


@dataclass
class ColumnSummary:
    """One column over one bucket. The sketches a kind uses are never None for that kind (they may be
    empty); the ones it does not use are None."""

    column: str
    kind: str
    total: int = 0
    null_count: int = 0
    # numeric: values; list: lengths; map: keys per map.
    quantiles: datasketches.kll_doubles_sketch | None = None
    # categorical: distinct values.
    distinct: datasketches.cpc_sketch | None = None
    # categorical: values; map: keys.
    frequent: datasketches.frequent_strings_sketch | None = None
    true_count: int = 0
    false_count: int = 0
    null_elements: int = 0
    # list: elements of the non-null lists; map: keys of the non-null maps.
    total_elements: int = 0

    @classmethod
    def empty(cls, column: str, kind: str, k: int = DEFAULT_K) -> ColumnSummary:
        if kind not in _KIND_CODES:
            raise ValueError(f"column {column!r}: unknown summary kind {kind!r} (expected one of {', '.join(KINDS)})")
        summary = cls(column=column, kind=kind)
        if kind in ("numeric", "list", "map"):
            summary.quantiles = datasketches.kll_doubles_sketch(k)
        if kind == "categorical":
            summary.distinct = datasketches.cpc_sketch(CPC_LG_K)
        if kind in ("categorical", "map"):
            summary.frequent = _frequent_sketch()
        return summary

    # ------------------------------------------------------------------ derived values

    @property
    def non_null_count(self) -> int:
        return self.total - self.null_count

    @property
    def null_rate(self) -> float | None:
        """Nulls over rows; None for a bucket without rows."""
        return self.null_count / self.total if self.total else None

    def percentiles(self) -> dict[str, float | None]:
        """Value percentiles of a numeric column, keyed by `format(p, "g")` ("0.01" ... "0.99")."""
        if self.kind != "numeric":
            raise ValueError(f"column {self.column!r}: percentiles() needs a numeric column, not {self.kind}")
        return self._sketch_percentiles()

    def length_percentiles(self) -> dict[str, float | None]:
        """Percentiles of the list lengths (list) or of the number of keys per map (map)."""
        if self.kind not in ("list", "map"):
            raise ValueError(
                f"column {self.column!r}: length_percentiles() needs a list or map column, not {self.kind}"
            )
        return self._sketch_percentiles()

    def _sketch_percentiles(self) -> dict[str, float | None]:
        sketch = self.quantiles
        if sketch is None or sketch.is_empty():
            return {format(p, "g"): None for p in PERCENTILE_POINTS}
        values = sketch.get_quantiles(list(PERCENTILE_POINTS), True)
        return {format(p, "g"): float(v) for p, v in zip(PERCENTILE_POINTS, values)}

    @property
    def distinct_estimate(self) -> float | None:
        """Estimated distinct non-null values (categorical; boolean counts its two values exactly)."""
        if self.kind == "categorical" and self.distinct is not None:
            return float(self.distinct.get_estimate())
        if self.kind == "boolean":
            return float((self.true_count > 0) + (self.false_count > 0))
        return None

    def top_items(self, limit: int = TOP_ITEMS) -> list[tuple[str, int]]:
        """The most frequent values (categorical) or keys (map) with their estimated counts, largest first.
        Exact while the sketch holds every distinct item (up to 192 of them)."""
        if self.frequent is None or self.frequent.is_empty():
            return []
        rows = self.frequent.get_frequent_items(datasketches.frequent_items_error_type.NO_FALSE_NEGATIVES)
        ranked = sorted(((item, int(estimate)) for item, estimate, _, _ in rows), key=lambda row: (-row[1], row[0]))
        return ranked[:limit]

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON values (ints, floats, strings, None) for fetch output and reports. Strict JSON has no
        infinities: an infinite percentile, min or max shows as None here (the sketch keeps it)."""
        out: dict[str, Any] = {
            "column": self.column,
            "kind": self.kind,
            "total": int(self.total),
            "null_count": int(self.null_count),
            "null_rate": self.null_rate,
        }
        if self.kind == "numeric":
            out["percentiles"] = _finite_values(self.percentiles())
            empty = self.quantiles is None or self.quantiles.is_empty()
            out["min"] = None if empty else _finite(self.quantiles.get_min_value())  # type: ignore[union-attr]
            out["max"] = None if empty else _finite(self.quantiles.get_max_value())  # type: ignore[union-attr]
        elif self.kind == "boolean":
            out["true_count"] = int(self.true_count)
            out["false_count"] = int(self.false_count)
            non_null = self.true_count + self.false_count
            out["true_rate"] = self.true_count / non_null if non_null else None
            out["distinct_estimate"] = self.distinct_estimate
        elif self.kind == "categorical":
            out["distinct_estimate"] = self.distinct_estimate
            out["top_items"] = [{"value": item, "count": count} for item, count in self.top_items()]
        elif self.kind == "list":
            out["length_percentiles"] = _finite_values(self.length_percentiles())
            out["total_elements"] = int(self.total_elements)
            out["null_elements"] = int(self.null_elements)
        elif self.kind == "map":
            out["length_percentiles"] = _finite_values(self.length_percentiles())
            out["total_keys"] = int(self.total_elements)
            out["top_keys"] = [{"key": item, "count": count} for item, count in self.top_items()]
        return out

    # ------------------------------------------------------------------ merging

    def merge(self, other: ColumnSummary) -> ColumnSummary:
        """A new summary of both buckets (neither input changes)."""
        if other.column != self.column or other.kind != self.kind:
            raise ValueError(
                f"cannot merge summaries of {self.column!r} ({self.kind}) and {other.column!r} ({other.kind})"
            )
        return merge([self, other])  # type: ignore[return-value]

    # ------------------------------------------------------------------ serialization

    def to_bytes(self) -> bytes:
        """Version byte, counters, column name, then each sketch as a length-prefixed blob (0: absent)."""
        name = self.column.encode("utf-8")
        header = _HEADER.pack(
            FORMAT_VERSION,
            _KIND_CODES[self.kind],
            self.total,
            self.null_count,
            self.true_count,
            self.false_count,
            self.null_elements,
            self.total_elements,
            len(name),
        )
        parts = [header, name]
        for sketch in (self.quantiles, self.distinct, self.frequent):
            blob = b"" if sketch is None else bytes(sketch.serialize())
            parts.append(_BLOB_LENGTH.pack(len(blob)))
            parts.append(blob)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> ColumnSummary:
        if not data:
            raise ValueError("column summary bytes are empty")
        version = data[0]
        if version != FORMAT_VERSION:
            raise ValueError(f"column summary format version {version} is not supported (expected {FORMAT_VERSION})")
        (_, kind_code, total, nulls, trues, falses, null_elements, elements, name_length) = _HEADER.unpack_from(data)
        if kind_code >= len(KINDS):
            raise ValueError(f"column summary bytes have an unknown kind code {kind_code}")
        offset = _HEADER.size
        column = bytes(data[offset : offset + name_length]).decode("utf-8")
        offset += name_length
        blobs: list[bytes] = []
        for _ in range(3):
            (length,) = _BLOB_LENGTH.unpack_from(data, offset)
            offset += _BLOB_LENGTH.size
            blobs.append(bytes(data[offset : offset + length]))
            offset += length
        if offset != len(data):
            raise ValueError(f"column summary bytes of {column!r}: {len(data) - offset} trailing bytes")
        quantiles_blob, distinct_blob, frequent_blob = blobs
        return cls(
            column=column,
            kind=KINDS[kind_code],
            total=total,
            null_count=nulls,
            quantiles=datasketches.kll_doubles_sketch.deserialize(quantiles_blob) if quantiles_blob else None,
            distinct=datasketches.cpc_sketch.deserialize(distinct_blob) if distinct_blob else None,
            frequent=datasketches.frequent_strings_sketch.deserialize(frequent_blob) if frequent_blob else None,
            true_count=trues,
            false_count=falses,
            null_elements=null_elements,
            total_elements=elements,
        )


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _finite_values(by_point: dict[str, float | None]) -> dict[str, float | None]:
    return {key: _finite(value) for key, value in by_point.items()}


def merge(summaries: Iterable[ColumnSummary]) -> ColumnSummary | None:
    """One summary of all the given buckets of one column; None for no summaries. Inputs are not changed.
    Summaries with different KLL k merge into the smaller k (the larger error)."""
    items = list(summaries)
    if not items:
        return None
    first = items[0]
    for other in items[1:]:
        if other.column != first.column or other.kind != first.kind:
            raise ValueError(
                f"cannot merge summaries of {first.column!r} ({first.kind}) and {other.column!r} ({other.kind})"
            )
    k = min((s.quantiles.k for s in items if s.quantiles is not None), default=DEFAULT_K)
    merged = ColumnSummary.empty(first.column, first.kind, k)
    union = datasketches.cpc_union(CPC_LG_K) if first.kind == "categorical" else None
    for summary in items:
        merged.total += summary.total
        merged.null_count += summary.null_count
        merged.true_count += summary.true_count
        merged.false_count += summary.false_count
        merged.null_elements += summary.null_elements
        merged.total_elements += summary.total_elements
        if merged.quantiles is not None and summary.quantiles is not None:
            merged.quantiles.merge(summary.quantiles)
        if merged.frequent is not None and summary.frequent is not None:
            merged.frequent.merge(summary.frequent)
        if union is not None and summary.distinct is not None:
            union.update(summary.distinct)
    if union is not None:
        merged.distinct = union.get_result()
    return merged


# ---------------------------------------------------------------------- builders from counted parts


def _as_float_array(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        # pandas nullable arrays (Int64, Float64, boolean) hold pd.NA, which numpy cannot cast.
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def numeric_summary(column: str, values: Any, k: int = DEFAULT_K) -> ColumnSummary:
    """A numeric summary of `values` (anything numpy turns into float64; None and NaN are nulls)."""
    array = _as_float_array(values).ravel()
    summary = ColumnSummary.empty(column, "numeric", k)
    present = array[~np.isnan(array)]
    summary.total = int(array.size)
    summary.null_count = int(array.size - present.size)
    if present.size:
        summary.quantiles.update(np.ascontiguousarray(present))  # type: ignore[union-attr]
    return summary


def boolean_summary(column: str, total: int, true_count: int, false_count: int) -> ColumnSummary:
    if true_count < 0 or false_count < 0 or true_count + false_count > total:
        raise ValueError(f"column {column!r}: true {true_count} + false {false_count} counts exceed total {total}")
    summary = ColumnSummary.empty(column, "boolean")
    summary.total = int(total)
    summary.null_count = int(total - true_count - false_count)
    summary.true_count = int(true_count)
    summary.false_count = int(false_count)
    return summary


def _feed_counts(
    sketch: datasketches.frequent_strings_sketch,
    distinct: datasketches.cpc_sketch | None,
    counts: Iterable[tuple[str, int]],
) -> int:
    """Feed exact (item, count) pairs; returns the total count. The smallest counts go first, so the largest
    items arrive last and survive the sketch's purges with their exact counts."""
    ordered = sorted(counts, key=lambda pair: pair[1])
    total = 0
    for item, count in ordered:
        if count <= 0:
            continue
        sketch.update(item, int(count))
        if distinct is not None:
            distinct.update(item)
        total += int(count)
    return total


def categorical_summary(
    column: str, total: int, null_count: int, counts: Iterable[tuple[str, int]] | Mapping[str, int]
) -> ColumnSummary:
    """A categorical summary from the exact counts of the distinct non-null values (as strings)."""
    pairs = counts.items() if isinstance(counts, Mapping) else counts
    summary = ColumnSummary.empty(column, "categorical")
    counted = _feed_counts(summary.frequent, summary.distinct, pairs)
    if counted + null_count != total:
        raise ValueError(f"column {column!r}: value counts {counted} + nulls {null_count} != total {total}")
    summary.total = int(total)
    summary.null_count = int(null_count)
    return summary


def list_summary(column: str, total: int, lengths: Any, null_elements: int, k: int = DEFAULT_K) -> ColumnSummary:
    """A list summary from the length of every row's list (None or NaN for a null list)."""
    array = _as_float_array(lengths).ravel()
    if array.size != total:
        raise ValueError(f"column {column!r}: {array.size} lengths for {total} rows")
    summary = ColumnSummary.empty(column, "list", k)
    present = array[~np.isnan(array)]
    summary.total = int(total)
    summary.null_count = int(total - present.size)
    summary.total_elements = int(present.sum())
    summary.null_elements = int(null_elements)
    if present.size:
        summary.quantiles.update(np.ascontiguousarray(present))  # type: ignore[union-attr]
    return summary


def map_summary(
    column: str,
    total: int,
    sizes: Any,
    key_counts: Iterable[tuple[str, int]] | Mapping[str, int],
    k: int = DEFAULT_K,
) -> ColumnSummary:
    """A map summary from every row's number of keys (None or NaN for a null map) and the exact counts of
    each key (as a string) over the column."""
    array = _as_float_array(sizes).ravel()
    if array.size != total:
        raise ValueError(f"column {column!r}: {array.size} map sizes for {total} rows")
    summary = ColumnSummary.empty(column, "map", k)
    present = array[~np.isnan(array)]
    summary.total = int(total)
    summary.null_count = int(total - present.size)
    summary.total_elements = int(present.sum())
    pairs = key_counts.items() if isinstance(key_counts, Mapping) else key_counts
    _feed_counts(summary.frequent, None, pairs)
    if present.size:
        summary.quantiles.update(np.ascontiguousarray(present))  # type: ignore[union-attr]
    return summary


# ---------------------------------------------------------------------- builders from Python values


def _is_null(value: Any) -> bool:
    """None, NaN, or pandas' NA (recognized by type name: pandas is not required here)."""
    return (
        value is None
        or (isinstance(value, (float, np.floating)) and math.isnan(value))
        or type(value).__name__ == "NAType"
    )


def _string_counts(counter: Counter[Any]) -> tuple[dict[str, int], int]:
    """(counts keyed by the string form of each non-null value, null count) of counted raw values."""
    counts: dict[str, int] = {}
    nulls = 0
    for value, count in counter.items():
        if _is_null(value):
            nulls += count
            continue
        key = value if isinstance(value, str) else _as_string(value)
        counts[key] = counts.get(key, 0) + count
    return counts, nulls


def _as_string(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _entries(value: Any) -> Iterable[Any]:
    """The keys of a map value: a Mapping, or a sequence of (key, value) pairs as Arrow gives maps."""
    if isinstance(value, Mapping):
        return value.keys()
    return (pair[0] for pair in value)


def summarize(kind: str, values: Sequence[Any] | np.ndarray, column: str = "", k: int = DEFAULT_K) -> ColumnSummary:
    """The summary of one column's values in one bucket.

    numeric: numbers (None/NaN null), vectorized through numpy; boolean: True/False/None; categorical:
    any hashable values, counted exactly first, then fed per distinct value as strings; list: sequences
    (None null; None/NaN elements are null elements); map: Mappings or sequences of (key, value) pairs.
    """
    if kind == "numeric":
        return numeric_summary(column, values, k)
    if kind == "boolean":
        if isinstance(values, np.ndarray) and values.dtype == np.bool_:
            trues = int(np.count_nonzero(values))
            return boolean_summary(column, int(values.size), trues, int(values.size) - trues)
        trues = falses = 0
        for value, count in Counter(values).items():
            if _is_null(value):
                continue
            if not isinstance(value, (bool, np.bool_, int, np.integer)) or value not in (0, 1):
                raise ValueError(f"column {column!r}: {value!r} is not a boolean value")
            if value:
                trues += count
            else:
                falses += count
        return boolean_summary(column, len(values), trues, falses)
    if kind == "categorical":
        counts, nulls = _string_counts(Counter(values))
        return categorical_summary(column, len(values), nulls, counts)
    if kind == "list":
        lengths = np.full(len(values), np.nan)
        null_elements = 0
        for row, value in enumerate(values):
            if value is None:
                continue
            lengths[row] = len(value)
            null_elements += sum(1 for element in value if _is_null(element))
        return list_summary(column, len(values), lengths, null_elements, k)
    if kind == "map":
        sizes = np.full(len(values), np.nan)
        keys: Counter[Any] = Counter()
        for row, value in enumerate(values):
            if value is None:
                continue
            entries = list(_entries(value))
            sizes[row] = len(entries)
            keys.update(entries)
        key_counts, _ = _string_counts(keys)
        return map_summary(column, len(values), sizes, key_counts, k)
    raise ValueError(f"column {column!r}: unknown summary kind {kind!r} (expected one of {', '.join(KINDS)})")
