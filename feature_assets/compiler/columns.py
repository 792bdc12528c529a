"""Output column names, shared by the compiler, the engine and the online fetcher (Chronon's rules)."""
from __future__ import annotations

import json
import re

MILLIS_PER_HOUR = 3_600_000
MILLIS_PER_DAY = 86_400_000

_OP_NAMES = {
    "SUM": "sum", "COUNT": "count", "AVERAGE": "average", "MIN": "min", "MAX": "max", "FIRST": "first",
    "LAST": "last", "UNIQUE_COUNT": "unique_count", "APPROX_UNIQUE_COUNT": "approx_unique_count",
    "APPROX_PERCENTILE": "approx_percentile", "HISTOGRAM": "histogram", "VARIANCE": "variance", "SKEW": "skew",
    "KURTOSIS": "kurtosis", "BOUNDED_UNIQUE_COUNT": "bounded_unique_count",
}
_K_OP_NAMES = {"FIRST_K": "first", "LAST_K": "last", "TOP_K": "top", "BOTTOM_K": "bottom"}
SUPPORTED_OPERATIONS = frozenset(_OP_NAMES) | frozenset(_K_OP_NAMES)


def clean_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def operation_suffix(operation: str, arg_map: dict) -> str:
    if operation in _K_OP_NAMES:
        return f"{_K_OP_NAMES[operation]}{arg_map['k']}"
    return _OP_NAMES[operation]


def window_millis(window: dict) -> int:
    return int(window["length"]) * (MILLIS_PER_HOUR if window["timeUnit"] == "HOURS" else MILLIS_PER_DAY)


def window_suffix(window: dict) -> str:
    return f"{window['length']}{'h' if window['timeUnit'] == 'HOURS' else 'd'}"


def aggregation_columns(aggregation: dict) -> list[tuple[str, dict | None, str | None]]:
    """(column name, window or None, bucket or None) for each output of one aggregation, in declared order."""
    base = f"{aggregation['inputColumn']}_{operation_suffix(aggregation['operation'], aggregation.get('argMap') or {})}"
    buckets = aggregation.get("buckets") or [None]
    windows = aggregation.get("windows") or [None]
    columns = []
    for bucket in buckets:
        bucket_part = f"_by_{bucket}" if bucket else ""
        for window in windows:
            window_part = f"_{window_suffix(window)}" if window else ""
            columns.append((f"{base}{bucket_part}{window_part}", window, bucket))
    return columns


def percentiles(aggregation: dict) -> list[float]:
    return [float(p) for p in json.loads((aggregation.get("argMap") or {}).get("percentiles", "[]"))]


def source_of(group_by: dict) -> tuple[str, dict]:
    """(kind, payload) of a compiled source: kind is events, entities or joinSource."""
    return next(iter(group_by["sources"][0].items()))


def group_by_value_columns(group_by: dict) -> list[str]:
    """A group-by's feature columns before derivations."""
    if group_by.get("aggregations"):
        return [name for agg in group_by["aggregations"] for name, _, _ in aggregation_columns(agg)]
    kind, source = source_of(group_by)
    selects = source["query"].get("selects") or {}
    return [c for c in selects if c not in group_by["keyColumns"]]


def group_by_output_columns(group_by: dict) -> list[str]:
    """Feature columns after derivations (a `*` derivation keeps every base column)."""
    base = group_by_value_columns(group_by)
    return apply_derivation_names(base, group_by.get("derivations") or [])


def apply_derivation_names(base: list[str], derivations: list[dict]) -> list[str]:
    if not derivations:
        return base
    names = [d["name"] for d in derivations if d["name"] != "*"]
    if any(d["name"] == "*" for d in derivations):
        return [c for c in base if c not in names] + names
    return names


def join_part_prefix(join_part: dict) -> str:
    prefix = join_part.get("prefix")
    return f"{prefix}_" if prefix else ""


def join_part_columns(join_part: dict) -> list[str]:
    group_by = join_part["groupBy"]
    stem = join_part_prefix(join_part) + clean_name(group_by["metaData"]["name"])
    return [f"{stem}_{column}" for column in group_by_output_columns(group_by)]


def external_part_columns(external_part: dict) -> list[str]:
    source = external_part["source"]
    stem = "ext_" + join_part_prefix(external_part) + source["name"]
    return [f"{stem}_{name}" for name, _ in source["valueFields"]]


def table_of(namespace: str | None, name: str) -> str:
    return f"{namespace or 'default'}.{clean_name(name)}"
