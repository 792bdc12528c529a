"""The operation registry: one entry per aggregation operation, read by every layer.

An entry says what an operation is (Chronon name, column suffix, output type, value of an empty window,
its arguments, whether retractions may feed it) and how it is computed: its offline kernel (numpy, over
sorted windows) and its online IR (mergeable state). Validation, schemas, the offline engine, the batch
upload and the fetcher all read this table. Adding an operation means one entry here plus its kernel in
`kernel.py` and its IR class in `ir.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from feature_assets.aggregation import ir, kernel
from feature_assets.aggregation.ir import Operation as IROperation

# Output types as small expressions: a type name, INPUT (the input column's own type; integral inputs
# are widened to long first), ("list", T) or ("map", K, V).
LONG, DOUBLE, STRING = "long", "double", "string"
INPUT = "input"
TypeExpr = str | tuple[Any, ...]


def list_of(element: TypeExpr) -> TypeExpr:
    return ("list", element)


def map_of(key: TypeExpr, value: TypeExpr) -> TypeExpr:
    return ("map", key, value)


def _positive_k(args: Mapping[str, str]) -> str | None:
    try:
        k = int(args.get("k", 0))
    except ValueError:
        return f"k must be an integer, got {args.get('k')!r}"
    return None if k > 0 else "needs k > 0"


def _percentiles(args: Mapping[str, str]) -> str | None:
    try:
        values = [float(p) for p in json.loads(args.get("percentiles", "[]"))]
    except (TypeError, ValueError):
        return f"percentiles must be a list of numbers, got {args.get('percentiles')!r}"
    if not values or any(not 0.0 <= p <= 1.0 for p in values):
        return f"percentiles must lie in [0, 1], got {values}"
    return _positive_k(args)


@dataclass(frozen=True)
class OperationDef:
    name: str  # Chronon's name, as in the compiled JSON
    suffix: str  # output column suffix; "{k}" takes the k argument (LAST_K(10) -> "last10")
    output: TypeExpr  # the finalized value's type
    empty: int | None  # value of an empty window
    kernel: Callable[..., Any]  # offline: (SortedColumn, spec, lo, hi) -> column
    ir: type[IROperation]  # online: mergeable state
    arguments: tuple[str, ...] = ()  # argMap keys
    check_arguments: Callable[[Mapping[str, str]], str | None] | None = None
    retractable: bool = False  # may aggregate an entity source's mutations (a retraction undoes a row)
    integral_output: TypeExpr | None = field(default=None)  # output type when the input is integral

    @property
    def count_like(self) -> bool:
        return self.empty == 0

    def column_suffix(self, args: Mapping[str, str]) -> str:
        return self.suffix.format(k=args.get("k", "")) if "{k}" in self.suffix else self.suffix

    def output_type(self, integral_input: bool) -> TypeExpr:
        if integral_input and self.integral_output is not None:
            return self.integral_output
        return self.output

    def argument_error(self, args: Mapping[str, str]) -> str | None:
        return self.check_arguments(args) if self.check_arguments else None

    def online(self, args: Mapping[str, str] | None = None) -> IROperation:
        """A fresh IR operation with these arguments."""
        return self.ir(self.name, dict(args or {}))


def _entries() -> list[OperationDef]:
    k_args = ("k",)
    return [
        OperationDef("COUNT", "count", LONG, 0, kernel.count_kernel, ir.Count, retractable=True),
        OperationDef("SUM", "sum", DOUBLE, None, kernel.sum_kernel, ir.Sum, retractable=True, integral_output=LONG),
        OperationDef("AVERAGE", "average", DOUBLE, None, kernel.average_kernel, ir.Average, retractable=True),
        OperationDef("VARIANCE", "variance", DOUBLE, None, kernel.moments_kernel, ir.Moments, retractable=True),
        OperationDef("SKEW", "skew", DOUBLE, None, kernel.moments_kernel, ir.Moments),
        OperationDef("KURTOSIS", "kurtosis", DOUBLE, None, kernel.moments_kernel, ir.Moments),
        OperationDef("MIN", "min", INPUT, None, kernel.extreme_kernel, ir.Extreme),
        OperationDef("MAX", "max", INPUT, None, kernel.extreme_kernel, ir.Extreme),
        OperationDef("FIRST", "first", INPUT, None, kernel.edge_kernel, ir.Edge),
        OperationDef("LAST", "last", INPUT, None, kernel.edge_kernel, ir.Edge),
        OperationDef("FIRST_K", "first{k}", list_of(INPUT), None, kernel.edge_k_kernel, ir.EdgeK, k_args, _positive_k),
        OperationDef("LAST_K", "last{k}", list_of(INPUT), None, kernel.edge_k_kernel, ir.EdgeK, k_args, _positive_k),
        OperationDef("TOP_K", "top{k}", list_of(INPUT), None, kernel.rank_k_kernel, ir.RankK, k_args, _positive_k),
        OperationDef(
            "BOTTOM_K", "bottom{k}", list_of(INPUT), None, kernel.rank_k_kernel, ir.RankK, k_args, _positive_k
        ),
        OperationDef("UNIQUE_COUNT", "unique_count", LONG, 0, kernel.distinct_kernel, ir.Unique),
        OperationDef(
            "BOUNDED_UNIQUE_COUNT",
            "bounded_unique_count",
            LONG,
            0,
            kernel.distinct_kernel,
            ir.Unique,
            k_args,
            _positive_k,
        ),
        OperationDef("APPROX_UNIQUE_COUNT", "approx_unique_count", LONG, 0, kernel.distinct_kernel, ir.ApproxUnique),
        OperationDef(
            "APPROX_PERCENTILE",
            "approx_percentile",
            list_of(DOUBLE),
            None,
            kernel.percentile_kernel,
            ir.ApproxPercentile,
            ("percentiles", "k"),
            _percentiles,
        ),
        OperationDef("HISTOGRAM", "histogram", map_of(INPUT, LONG), None, kernel.histogram_kernel, ir.Histogram),
    ]


OPERATIONS: Mapping[str, OperationDef] = {entry.name: entry for entry in _entries()}
RETRACTABLE: frozenset[str] = frozenset(name for name, entry in OPERATIONS.items() if entry.retractable)


def operation_def(name: str) -> OperationDef:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise ValueError(f"unknown operation {name!r}; known: {sorted(OPERATIONS)}") from None


def fixed_output_type(name: str) -> TypeExpr | None:
    """The output type when it does not depend on the input column (None when it does)."""
    entry = OPERATIONS[name]
    if entry.integral_output is not None or _mentions_input(entry.output):
        return None
    return entry.output


def _mentions_input(expr: TypeExpr) -> bool:
    if isinstance(expr, tuple):
        return any(_mentions_input(part) for part in expr[1:])
    return expr == INPUT
