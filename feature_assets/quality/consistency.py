"""`{join}_consistency`: logged (online, "left") values against the comparison's (offline, "right") values.

Rows are paired on `match_columns` (row ids and `ds`, else `ts`, `ds` and the request keys; the comparison
side is made unique on them, so duplicated requests each meet their one offline row). Only logged rows with a
comparison row count, i.e. the sampled ones. A logged row whose `_absent_fields` names a column is not
compared for that column: its schema version did not serve it.

Per (ds, hour of the logged `ts`, column) one row: `total` (values compared), `both_null`, `left_null` (the
online value is null), `right_null` (the offline value is null), `mismatch` (the two disagree: exactly one is
null, or both are set and unequal by the column's rule), `mismatch_rate` = mismatch / total, `both_present`,
and for numeric columns `smape` = the mean over rows with both values of 2|l-r| / (|l|+|r|) (0 where both are
0) and `diff_pNN`, exact percentiles (linear interpolation) of `l - r`; for list columns `length_mismatch`
(rows whose lists differ in length) and `edit_distance_pNN`, percentiles of the Levenshtein distance between
the lists, elements equal by the column's rule. An hour without logged requests has no rows. The overall rate
is in rows with `column_name = '__all__'`: the sums of every column's counts in that hour (one cell per row
and column), their mismatch rate, and no value metrics. `comparison` names each column's equality rule.

Equality rules (`comparison`):
- `exact`: integers, strings, booleans, bytes: equal values.
- `float`: a floating value (or a list or map holding them): |l - r| <= 1e-12 + 1e-9 max(|l|, |r|), which
  covers sums accumulated in another order online (the streaming and batch IRs) than offline (the kernel);
  NaN equals NaN, infinities equal themselves.
- `approx_unique_count` (APPROX_UNIQUE_COUNT): the online value may come from a CPC sketch (lg_k
  `CPC_LG_K` = 12): |l - r| <= 1 + `CPC_RELATIVE_BOUND` max(|l|, |r|), three standard errors of the sketch
  (relative standard error at most 0.7/sqrt(2^lg_k) ~ 1.1%, so ~3.3%) plus 1 for rounding the estimate.
- `approx_percentile` (APPROX_PERCENTILE): the online values may come from a KLL sketch, whose answer at
  fraction p has a true rank within p +- eps, eps = `kll_rank_error(k)` of the argMap's `k` (datasketches'
  a-priori normalized rank error over all ranks, 99% confidence; k = 200: eps ~ 1.65%). The comparison table
  carries the exact offline values at p - eps and p + eps (`_rank_bounds_<column>`); an online value agrees
  when it is float-equal to the offline value at p or lies within those bounds. Without a bounds column (a
  group-by with derivations, a daily-table part, a hand-made comparison) the `float` rule applies.
- Lists elementwise (same length) and maps by keys and then values, with the rule of their elements;
  bucketed approximate columns (maps) apply the approximate rule to each bucket's value.
Approximate rules apply to the group-by spec's own output column; a derivation of it is compared by type.

Severity (`consistency_severity`): per column over the rows given, the mismatch rate (sum of mismatches over
sum of totals) and the smape (weighted by `both_present`) against `ConsistencyThresholds`; the smape of
approximate columns is not judged (sketch error is expected there and already bounded by their rule).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feature_assets.aggregation.ir import CPC_LG_K
from feature_assets.model.configs import DEFAULT_CONSISTENCY_THRESHOLDS, Join
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN
from feature_assets.quality.comparison import (
    DEFAULT_KLL_K,
    RANK_BOUNDS_PREFIX,
    comparable_columns,
    kll_rank_error,
    match_columns,
)

HOUR_MILLIS = 3_600_000
ALL_COLUMNS = "__all__"
FLOAT_RELATIVE_TOLERANCE = 1e-9
FLOAT_ABSOLUTE_TOLERANCE = 1e-12
CPC_RELATIVE_BOUND = 3 * 0.7 / math.sqrt(2**CPC_LG_K)
DIFF_PERCENTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
EDIT_DISTANCE_PERCENTILES = (0.5, 0.95, 0.99)
EXACT, FLOAT, APPROX_UNIQUE_COUNT, APPROX_PERCENTILE = "exact", "float", "approx_unique_count", "approx_percentile"
SEVERITIES = ("PASS", "WARN", "ERROR")


def _percentile_name(prefix: str, fraction: float) -> str:
    return f"{prefix}_p{round(fraction * 100):02d}"


COUNT_COLUMNS = ("total", "both_null", "left_null", "right_null", "mismatch")
METRICS_SCHEMA = T.StructType(
    [
        T.StructField("ts", T.LongType()),
        T.StructField("column_name", T.StringType()),
        T.StructField("comparison", T.StringType()),
        *[T.StructField(name, T.LongType()) for name in COUNT_COLUMNS],
        T.StructField("mismatch_rate", T.DoubleType()),
        T.StructField("both_present", T.LongType()),
        T.StructField("smape", T.DoubleType()),
        *[T.StructField(_percentile_name("diff", p), T.DoubleType()) for p in DIFF_PERCENTILES],
        T.StructField("length_mismatch", T.LongType()),
        *[T.StructField(_percentile_name("edit_distance", p), T.DoubleType()) for p in EDIT_DISTANCE_PERCENTILES],
        T.StructField("ds", T.StringType()),
    ]
)
# One compared cell (row x column): what the aggregation per (ds, hour, column) sums and ranks.
CELL_SCHEMA = T.StructType(
    [
        T.StructField("ds", T.StringType()),
        T.StructField("ts", T.LongType()),
        T.StructField("column_name", T.StringType()),
        T.StructField("left_null", T.BooleanType()),
        T.StructField("right_null", T.BooleanType()),
        T.StructField("mismatch", T.BooleanType()),
        T.StructField("smape_term", T.DoubleType()),
        T.StructField("diff", T.DoubleType()),
        T.StructField("length_mismatch", T.BooleanType()),
        T.StructField("edit_distance", T.LongType()),
    ]
)


# --------------------------------------------------------------------------- equality


@dataclass(frozen=True)
class EqualityRule:
    """How two values of a column are judged equal (see the module's docstring)."""

    name: str
    rank_error: float = 0.0  # approx_percentile: the sketch's rank error its bounds were computed with


EXACT_RULE, FLOAT_RULE = EqualityRule(EXACT), EqualityRule(FLOAT)


def floats_agree(left: float, right: float) -> bool:
    if math.isnan(left) or math.isnan(right):
        return math.isnan(left) and math.isnan(right)
    if math.isinf(left) or math.isinf(right):
        return left == right
    tolerance = FLOAT_ABSOLUTE_TOLERANCE + FLOAT_RELATIVE_TOLERANCE * max(abs(left), abs(right))
    return abs(left - right) <= tolerance


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers_agree(left: Any, right: Any) -> bool:
    if isinstance(left, int) and isinstance(right, int):
        return left == right
    return floats_agree(float(left), float(right))


def _element_agrees(
    left: Sequence[Any], i: int, right: Sequence[Any], j: int, rule: EqualityRule, bounds: Sequence[Any] | None
) -> bool:
    """Whether element i of a left list equals element j of a right list under the column's rule."""
    return values_agree(left[i], right[j], rule, bounds[j] if bounds is not None and j < len(bounds) else None)


def _within(value: Any, bounds: Any) -> bool:
    """Whether a number lies within [low, high] (bounds with a null end bound nothing)."""
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2 or None in bounds or not _is_number(value):
        return False
    return float(bounds[0]) <= float(value) <= float(bounds[1])


def values_agree(left: Any, right: Any, rule: EqualityRule = EXACT_RULE, bounds: Any = None) -> bool:
    """Whether two values (None for null; lists; maps as dicts) are equal under a rule. `bounds` (shaped like
    `right`, each number's [low, high]) are the rank bounds of an approximate percentile column."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        nested = bounds if isinstance(bounds, Mapping) else {}
        return left.keys() == right.keys() and all(values_agree(left[k], right[k], rule, nested.get(k)) for k in left)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        listed = bounds if isinstance(bounds, (list, tuple)) and len(bounds) == len(right) else None
        return len(left) == len(right) and all(
            _element_agrees(left, i, right, i, rule, listed) for i in range(len(left))
        )
    if _is_number(left) and _is_number(right):
        if rule.name == APPROX_UNIQUE_COUNT:
            return abs(left - right) <= 1 + CPC_RELATIVE_BOUND * max(abs(left), abs(right))
        return _numbers_agree(left, right) or (rule.name == APPROX_PERCENTILE and _within(left, bounds))
    if isinstance(left, float) or isinstance(right, float):
        return False
    return bool(left == right)


def smape_term(left: float, right: float) -> float:
    """2|l - r| / (|l| + |r|), 0 when both are 0."""
    denominator = abs(left) + abs(right)
    return 0.0 if denominator == 0 else 2 * abs(left - right) / denominator


def edit_distance(
    left: Sequence[Any], right: Sequence[Any], rule: EqualityRule = EXACT_RULE, bounds: Sequence[Any] | None = None
) -> int:
    """The Levenshtein distance between two lists: insertions, deletions and substitutions of elements, elements
    equal under the rule."""
    previous = list(range(len(right) + 1))
    for i in range(1, len(left) + 1):
        current = [i] + [0] * len(right)
        for j in range(1, len(right) + 1):
            same = _element_agrees(left, i - 1, right, j - 1, rule, bounds)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (0 if same else 1))
        previous = current
    return previous[-1]


def _contains(data_type: T.DataType, kinds: tuple[type, ...]) -> bool:
    if isinstance(data_type, T.ArrayType):
        return _contains(data_type.elementType, kinds)
    if isinstance(data_type, T.MapType):
        return _contains(data_type.valueType, kinds)
    return isinstance(data_type, kinds)


def equality_rules(join: Join, types: Mapping[str, T.DataType]) -> dict[str, EqualityRule]:
    """Each column's rule: approximate for the APPROX_* specs of the join's group-bys, else by its type."""
    approximate: dict[str, EqualityRule] = {}
    for part in join.join_parts:
        for spec in part.group_by.specs:
            name = part.feature_prefix + spec.column_name
            if spec.operation == "APPROX_UNIQUE_COUNT":
                approximate[name] = EqualityRule(APPROX_UNIQUE_COUNT)
            elif spec.operation == "APPROX_PERCENTILE":
                k = int(spec.args.get("k", DEFAULT_KLL_K))
                approximate[name] = EqualityRule(APPROX_PERCENTILE, kll_rank_error(k))
    rules = {}
    for column, data_type in types.items():
        if column in approximate:
            rules[column] = approximate[column]
        elif _contains(data_type, (T.FloatType, T.DoubleType, T.DecimalType)):
            rules[column] = FLOAT_RULE
        else:
            rules[column] = EXACT_RULE
    return rules


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class _Column:
    name: str
    rule: EqualityRule
    numeric: bool
    is_list: bool
    has_bounds: bool = False


def _plain(value: Any) -> Any:
    """A collected Arrow value as plain python: maps (lists of pairs) to dicts, recursively."""
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {k: _plain(v) for k, v in value}
        return [_plain(item) for item in value]
    return value


def compare_cell(left: Any, right: Any, column: _Column, bounds: Any = None) -> dict[str, Any]:
    """The cell's flags and value metrics (the `CELL_SCHEMA` fields besides ds, ts and column_name)."""
    left_null, right_null = left is None, right is None
    cell: dict[str, Any] = {
        "left_null": left_null,
        "right_null": right_null,
        "mismatch": not values_agree(left, right, column.rule, bounds),
        "smape_term": None,
        "diff": None,
        "length_mismatch": None,
        "edit_distance": None,
    }
    if left_null or right_null:
        return cell
    if column.numeric and _is_number(left) and _is_number(right):
        cell["smape_term"] = smape_term(float(left), float(right))
        cell["diff"] = float(left - right)
    if column.is_list:
        cell["length_mismatch"] = len(left) != len(right)
        cell["edit_distance"] = edit_distance(left, right, column.rule, bounds)
    return cell


class _CellComparer:
    """The `mapInArrow` function: one output row per compared (row, column) cell."""

    def __init__(self, columns: list[_Column]) -> None:
        self.columns = columns
        self.schema = pa.schema(
            [
                ("ds", pa.string()),
                ("ts", pa.int64()),
                ("column_name", pa.string()),
                ("left_null", pa.bool_()),
                ("right_null", pa.bool_()),
                ("mismatch", pa.bool_()),
                ("smape_term", pa.float64()),
                ("diff", pa.float64()),
                ("length_mismatch", pa.bool_()),
                ("edit_distance", pa.int64()),
            ]
        )

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            data = batch.to_pydict()
            out: dict[str, list] = {name: [] for name in self.schema.names}
            for row in range(batch.num_rows):
                ds, ts = data["__ds"][row], data["__ts"][row]
                hour = None if ts is None else ts - ts % HOUR_MILLIS
                absent = set(data["__absent"][row] or ())
                for index, column in enumerate(self.columns):
                    if column.name in absent:
                        continue
                    left, right = _plain(data[f"__l{index}"][row]), _plain(data[f"__r{index}"][row])
                    bounds = _plain(data[f"__b{index}"][row]) if column.has_bounds else None
                    cell = compare_cell(left, right, column, bounds)
                    out["ds"].append(ds)
                    out["ts"].append(hour)
                    out["column_name"].append(column.name)
                    for name, value in cell.items():
                        out[name].append(value)
            yield pa.RecordBatch.from_pydict(out, schema=self.schema)


def _null_safe_join(left: DataFrame, right: DataFrame, on: list[str]) -> DataFrame:
    renamed = right.select(*[F.col(c).alias(f"__m_{c}") for c in on], *[c for c in right.columns if c not in on])
    condition = F.lit(True)
    for column in on:
        condition = condition & F.col(column).eqNullSafe(F.col(f"__m_{column}"))
    return left.join(renamed, condition, "inner").drop(*[f"__m_{c}" for c in on])


def comparison_cells(logged: DataFrame, comparison: DataFrame, join: Join) -> tuple[DataFrame, dict[str, str]]:
    """One row per compared cell (`CELL_SCHEMA`), and each column's rule name."""
    on = match_columns(join)
    for side, frame in (("logged", logged), ("comparison", comparison)):
        missing = [c for c in [*on, "ts"] if c not in frame.columns]
        if missing:
            raise ValueError(f"join {join.name}: the {side} rows lack {missing} to match rows on")
    names = [c for c in comparable_columns(join, comparison.columns) if c in logged.columns]
    types = {f.name: f.dataType for f in comparison.schema.fields if f.name in names}
    rules = equality_rules(join, types)
    columns = [
        _Column(
            name,
            rules[name],
            isinstance(types[name], T.NumericType),
            isinstance(types[name], T.ArrayType),
            rules[name].name == APPROX_PERCENTILE and RANK_BOUNDS_PREFIX + name in comparison.columns,
        )
        for name in names
    ]
    absent = (
        F.col(ABSENT_FIELDS_COLUMN)
        if ABSENT_FIELDS_COLUMN in logged.columns
        else F.lit(None).cast(T.ArrayType(T.StringType()))
    )
    left = logged.select(
        *on,
        F.col("ds").alias("__ds"),
        F.col("ts").alias("__ts"),
        absent.alias("__absent"),
        *[F.col(c.name).alias(f"__l{i}") for i, c in enumerate(columns)],
    )
    right = comparison.dropDuplicates(on).select(
        *on,
        *[F.col(c.name).alias(f"__r{i}") for i, c in enumerate(columns)],
        *[F.col(RANK_BOUNDS_PREFIX + c.name).alias(f"__b{i}") for i, c in enumerate(columns) if c.has_bounds],
    )
    paired = _null_safe_join(left, right, on).drop(*on)
    cells = paired.mapInArrow(_CellComparer(columns), CELL_SCHEMA)
    return cells, {c.name: c.rule.name for c in columns}


# --------------------------------------------------------------------------- metrics


def _percentiles(column: str, fractions: tuple[float, ...], prefix: str) -> list:
    exact = F.percentile(F.col(column), F.array(*[F.lit(p) for p in fractions]))
    return [exact[i].alias(_percentile_name(prefix, p)) for i, p in enumerate(fractions)]


def _count(condition: str) -> Any:
    return F.sum(F.when(F.col(condition), 1).otherwise(0)).cast("long")


def consistency_metrics(logged: DataFrame, comparison: DataFrame, join: Join) -> DataFrame:
    """The `{join}_consistency` rows (`METRICS_SCHEMA`) of the logged rows against their comparison rows."""
    cells, rules = comparison_cells(logged, comparison, join)
    rule_of = F.create_map(*[F.lit(v) for item in sorted(rules.items()) for v in item]) if rules else None
    per_column = (
        cells.withColumn("both_null", F.col("left_null") & F.col("right_null"))
        .withColumn("both_present", ~F.col("left_null") & ~F.col("right_null"))
        .groupBy("ds", "ts", "column_name")
        .agg(
            F.count(F.lit(1)).alias("total"),
            *[_count(name).alias(name) for name in COUNT_COLUMNS[1:]],
            _count("both_present").alias("both_present"),
            F.avg("smape_term").alias("smape"),
            *_percentiles("diff", DIFF_PERCENTILES, "diff"),
            F.sum(F.col("length_mismatch").cast("long")).alias("length_mismatch"),
            *_percentiles("edit_distance", EDIT_DISTANCE_PERCENTILES, "edit_distance"),
        )
        .withColumn("comparison", rule_of[F.col("column_name")] if rule_of is not None else F.lit(None))
    )
    overall = (
        per_column.groupBy("ds", "ts")
        .agg(*[F.sum(c).alias(c) for c in (*COUNT_COLUMNS, "both_present")])
        .withColumn("column_name", F.lit(ALL_COLUMNS))
    )
    rows = per_column.unionByName(overall, allowMissingColumns=True)
    rows = rows.withColumn("mismatch_rate", F.when(F.col("total") > 0, F.col("mismatch") / F.col("total")))
    return rows.select(
        *[
            (F.col(f.name) if f.name in rows.columns else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in METRICS_SCHEMA.fields
        ]
    )


# --------------------------------------------------------------------------- severity


@dataclass(frozen=True)
class ConsistencyThresholds:
    """Warn and fail levels (a value at or above a level reaches it) of a column's mismatch rate and smape.

    Defaults: mismatch rate 0.001 / 0.01 (one request in a thousand, in a hundred, served a value the offline
    engine does not give), smape 0.001 / 0.01 (values off by 0.1% / 1% on average).
    """

    mismatch_rate_warn: float = DEFAULT_CONSISTENCY_THRESHOLDS["mismatch_rate_warn"]
    mismatch_rate_fail: float = DEFAULT_CONSISTENCY_THRESHOLDS["mismatch_rate_fail"]
    smape_warn: float = DEFAULT_CONSISTENCY_THRESHOLDS["smape_warn"]
    smape_fail: float = DEFAULT_CONSISTENCY_THRESHOLDS["smape_fail"]

    def __post_init__(self) -> None:
        for metric in ("mismatch_rate", "smape"):
            warn, fail = getattr(self, f"{metric}_warn"), getattr(self, f"{metric}_fail")
            if not 0 <= warn <= fail:
                raise ValueError(f"consistency thresholds for {metric}: need 0 <= warn ({warn}) <= fail ({fail})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ConsistencyThresholds:
        """Thresholds from a join's settings ({"mismatch_rate_warn": 0.002, ...}); unnamed levels keep defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values or {}) - known)
        if unknown:
            raise ValueError(f"consistency thresholds: unknown {unknown} (expected some of {sorted(known)})")
        try:
            return cls(**{name: float(value) for name, value in (values or {}).items()})
        except (TypeError, ValueError) as error:
            raise ValueError(f"consistency thresholds: {error}") from None


@dataclass(frozen=True)
class ColumnConsistency:
    column: str
    level: str
    total: int
    mismatch: int
    mismatch_rate: float | None
    smape: float | None
    comparison: str | None

    def text(self) -> str:
        parts = [f"mismatch rate {_number(self.mismatch_rate)} ({self.mismatch}/{self.total})"]
        if self.smape is not None:
            parts.append(f"smape {_number(self.smape)}")
        return f"{self.column}: {', '.join(parts)}"


@dataclass(frozen=True)
class ConsistencyReport:
    """The worst level over the columns, each column's numbers, the overall rate and a short description."""

    level: str
    columns: list[ColumnConsistency] = field(default_factory=list)
    overall: ColumnConsistency | None = None
    description: str = ""

    @property
    def failing(self) -> list[ColumnConsistency]:
        return [c for c in self.columns if c.level != "PASS"]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _level(value: float | None, warn: float, fail: float) -> int:
    if value is None:
        return 0
    return 2 if value >= fail else 1 if value >= warn else 0


def _rows(metrics: DataFrame | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(metrics, DataFrame):
        return [row.asDict() for row in metrics.collect()]
    return list(metrics)


def consistency_severity(
    metrics: DataFrame | Iterable[Mapping[str, Any]], thresholds: ConsistencyThresholds | None = None
) -> ConsistencyReport:
    """PASS / WARN / ERROR per column of some `{join}_consistency` rows (all their hours taken together), the
    worst of them overall, and a description naming the columns at WARN or ERROR with their numbers."""
    levels = thresholds or ConsistencyThresholds()
    sums: dict[str, dict[str, Any]] = {}
    for row in _rows(metrics):
        entry = sums.setdefault(
            row["column_name"],
            {"total": 0, "mismatch": 0, "both_present": 0, "smape_sum": 0.0, "comparison": row.get("comparison")},
        )
        entry["total"] += int(row.get("total") or 0)
        entry["mismatch"] += int(row.get("mismatch") or 0)
        if row.get("smape") is not None:
            present = int(row.get("both_present") or 0)
            entry["both_present"] += present
            entry["smape_sum"] += float(row["smape"]) * present
    results: list[ColumnConsistency] = []
    overall = None
    for column in sorted(sums):
        entry = sums[column]
        rate = entry["mismatch"] / entry["total"] if entry["total"] else None
        smape = entry["smape_sum"] / entry["both_present"] if entry["both_present"] else None
        judged_smape = None if entry["comparison"] in (APPROX_UNIQUE_COUNT, APPROX_PERCENTILE) else smape
        worst = max(
            _level(rate, levels.mismatch_rate_warn, levels.mismatch_rate_fail),
            _level(judged_smape, levels.smape_warn, levels.smape_fail),
        )
        result = ColumnConsistency(
            column, SEVERITIES[worst], entry["total"], entry["mismatch"], rate, smape, entry["comparison"]
        )
        if column == ALL_COLUMNS:
            overall = result
        else:
            results.append(result)
    worst_level = max((SEVERITIES.index(r.level) for r in results), default=0)
    flagged = sorted((r for r in results if r.level != "PASS"), key=lambda r: (-SEVERITIES.index(r.level), r.column))
    if not results:
        description = "no logged values compared"
    elif not flagged:
        description = f"{len(results)} columns consistent"
    else:
        description = "\n".join(f"{r.level} {r.text()}" for r in flagged)  # a line per feature
    if overall is not None:
        description += f" (overall mismatch rate {_number(overall.mismatch_rate)})"
    return ConsistencyReport(SEVERITIES[worst_level], results, overall, description)
