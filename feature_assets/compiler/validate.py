"""Compile-time validation of compiled configs: every error names the file, the object and the field."""
from __future__ import annotations

import re
from collections import Counter

from feature_assets.compiler.columns import (SUPPORTED_OPERATIONS, aggregation_columns, external_part_columns,
                                             group_by_output_columns, group_by_value_columns, join_part_columns,
                                             percentiles, source_of)
from feature_assets.compiler.errors import CompileError

K_OPERATIONS = {"FIRST_K", "LAST_K", "TOP_K", "BOTTOM_K", "BOUNDED_UNIQUE_COUNT"}
# Operations that retractions can undo: the only ones over entity sources with a mutation_table.
MUTATION_OPERATIONS = {"SUM", "COUNT", "AVERAGE", "VARIANCE"}
# Words of Spark SQL that may appear in a derivation without being columns.
SQL_WORDS = {
    "and", "or", "not", "null", "is", "in", "like", "rlike", "between", "case", "when", "then", "else", "end",
    "true", "false", "as", "cast", "int", "integer", "bigint", "long", "double", "float", "string", "boolean",
    "date", "timestamp", "decimal", "distinct", "interval", "day", "days", "hour", "hours", "array", "map",
    "struct", "smallint", "tinyint", "binary", "x", "y", "acc", "k", "v",
}


def _fail(file, obj, field, message):
    raise CompileError(file, obj, field, message)


def referenced_columns(expression: str) -> set[str]:
    """Identifiers in a Spark SQL expression that must be columns (not functions, strings or keywords)."""
    without_strings = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", " ", expression)
    without_lambdas = re.sub(r"\b\w+\s*->", " ", without_strings)
    names = set()
    for match in re.finditer(r"`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?", without_lambdas):
        quoted, bare, call = match.groups()
        if quoted:
            names.add(quoted)
        elif bare and not call and bare.lower() not in SQL_WORDS and not without_lambdas[match.end(2):].lstrip().startswith("."):
            if match.start(2) > 0 and without_lambdas[match.start(2) - 1] == ".":
                continue  # a struct field access: a.b
            names.add(bare)
    return names


def validate_derivations(file, obj, derivations, available: list[str]) -> None:
    for index, derivation in enumerate(derivations):
        field = f"derivations[{index}]"
        if derivation["name"] == "*":
            if derivation["expression"] != "*":
                _fail(file, obj, field, "a derivation named '*' must have the expression '*'")
            continue
        if not derivation.get("expression"):
            _fail(file, obj, field, f"derivation {derivation['name']!r} has no expression")
        missing = sorted(referenced_columns(derivation["expression"]) - set(available))
        if missing:
            _fail(file, obj, f"{field}.expression",
                  f"derivation {derivation['name']!r} names unknown column(s) {missing}; available: {available}")


def validate_unique(file, obj, field, names: list[str]) -> None:
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        _fail(file, obj, field, f"output column names are not unique: {duplicates}")


def validate_query_selects(file, obj, field, query: dict, required: list[tuple[str, str]]) -> None:
    selects = query.get("selects")
    if selects is None:
        return  # no selects: every column of the table is available
    if "ts" in selects:
        _fail(file, obj, f"{field}.query.selects.ts",
              "do not select 'ts': name the event time with Query(time_column=...)")
    for column, role in required:
        if column not in selects:
            _fail(file, obj, f"{field}.query.selects",
                  f"{role} {column!r} is not selected (selected: {sorted(selects)})")


def validate_group_by(group_by: dict, file: str) -> None:
    name = group_by["metaData"]["name"]
    if not group_by.get("sources"):
        _fail(file, name, "sources", "a group-by needs at least one source")
    if not group_by.get("keyColumns"):
        _fail(file, name, "keys", "a group-by needs at least one key column")
    aggregations = group_by.get("aggregations") or []
    accuracy = group_by["accuracy"]
    kinds = set()
    mutation_source = None  # the first entity source with a mutation_table
    for source_index, source in enumerate(group_by["sources"]):
        (kind, payload), = source.items()
        kinds.add(kind)
        field = f"sources[{source_index}]"
        query = payload["query"]
        required = [(k, "key column") for k in group_by["keyColumns"]]
        for agg in aggregations:
            required.append((agg["inputColumn"], "input column"))
            required += [(b, "bucket column") for b in agg.get("buckets") or []]
        validate_query_selects(file, name, field, query, required)
        if kind == "events" and not payload.get("table"):
            _fail(file, name, f"{field}.table", "an EventSource needs a table")
        if kind == "entities" and not payload.get("snapshotTable"):
            _fail(file, name, f"{field}.snapshot_table", "an EntitySource needs a snapshot_table")
        if kind in ("events", "joinSource") and not query.get("timeColumn"):
            if accuracy == "TEMPORAL":
                _fail(file, name, f"{field}.query.time_column", "a TEMPORAL event source needs a time_column")
            if aggregations:
                _fail(file, name, f"{field}.query.time_column", "event sources with aggregations need a time_column")
        if kind == "entities" and payload.get("mutationTable") and mutation_source is None:
            mutation_source = field
        if kind == "entities" and accuracy == "TEMPORAL" and not payload.get("mutationTable"):
            _fail(file, name, "accuracy", "TEMPORAL accuracy on an entity source needs a mutation_table")
    if len(kinds) > 1:
        _fail(file, name, "sources", f"all sources of a group-by must be of one kind, got {sorted(kinds)}")
    for agg_index, agg in enumerate(aggregations):
        field = f"aggregations[{agg_index}]"
        operation = agg.get("operation")
        if operation not in SUPPORTED_OPERATIONS:
            _fail(file, name, f"{field}.operation", f"unknown operation {operation!r}")
        if operation in K_OPERATIONS and int((agg.get("argMap") or {}).get("k", 0)) <= 0:
            _fail(file, name, f"{field}.operation", f"{operation} needs k > 0")
        if operation == "APPROX_PERCENTILE":
            values = percentiles(agg)
            if not values or any(not 0.0 <= p <= 1.0 for p in values):
                _fail(file, name, f"{field}.operation.percentiles", f"percentiles must lie in [0, 1], got {values}")
        if mutation_source is not None and operation not in MUTATION_OPERATIONS:
            _fail(file, name, f"{field}.operation",
                  f"{operation} is not supported over an entity source with a mutation_table ({mutation_source}); "
                  f"use one of {sorted(MUTATION_OPERATIONS)}")
        if mutation_source is not None and agg.get("windows"):
            _fail(file, name, f"{field}.windows",
                  f"windows are not supported over an entity source with a mutation_table ({mutation_source}); "
                  "the aggregate covers the key's current rows")
        for window_index, window in enumerate(agg.get("windows") or []):
            wfield = f"{field}.windows[{window_index}]"
            if int(window["length"]) <= 0:
                _fail(file, name, wfield, "window length must be positive")
            if window["timeUnit"] == "HOURS" and accuracy == "SNAPSHOT":
                _fail(file, name, wfield, "hour windows need TEMPORAL accuracy (SNAPSHOT values change once a day)")
            if "entities" in kinds:
                _fail(file, name, wfield, "windows on entity sources are not supported; aggregate the snapshot")
    base = group_by_value_columns(group_by)
    validate_unique(file, name, "aggregations", base)
    validate_derivations(file, name, group_by.get("derivations") or [], base)
    validate_unique(file, name, "derivations", group_by_output_columns(group_by))


def left_columns(join: dict) -> list[str] | None:
    kind, payload = next(iter(join["left"].items()))
    selects = payload["query"].get("selects")
    if selects is None:
        return None
    return list(selects) + ["ts", "ds"]


def validate_join(join: dict, file: str) -> None:
    name = join["metaData"]["name"]
    (kind, left), = join["left"].items()
    if kind in ("events", "joinSource") and not left["query"].get("timeColumn"):
        _fail(file, name, "left.query.time_column", "an event left source needs a time_column")
    selects = left["query"].get("selects")
    if selects is not None and "ts" in selects:
        _fail(file, name, "left.query.selects.ts", "do not select 'ts': name the event time with time_column")
    available_left = left_columns(join)
    if not join.get("joinParts") and not join.get("onlineExternalParts"):
        _fail(file, name, "right_parts", "a join needs at least one join part or external part")
    for index, part in enumerate(join["joinParts"]):
        group_by = part["groupBy"]
        inverse = {gb_key: left_col for left_col, gb_key in (part.get("keyMapping") or {}).items()}
        for key in group_by["keyColumns"]:
            left_col = inverse.get(key, key)
            if available_left is not None and left_col not in available_left:
                _fail(file, name, f"right_parts[{index}].key_mapping",
                      f"group-by {group_by['metaData']['name']!r} needs key {key!r} from left column "
                      f"{left_col!r}, which the left source does not select")
        if join["metaData"]["online"] and not group_by["metaData"]["online"]:
            _fail(file, name, f"right_parts[{index}].group_by",
                  f"an online join can only use online group-bys; {group_by['metaData']['name']!r} is offline")
    for index, row_id in enumerate(join.get("rowIds") or []):
        if available_left is not None and row_id not in available_left:
            _fail(file, name, f"row_ids[{index}]", f"row id {row_id!r} is not selected by the left source")
    feature_columns = [c for part in join["joinParts"] for c in join_part_columns(part)]
    feature_columns += [c for part in join.get("onlineExternalParts") or [] for c in external_part_columns(part)]
    all_columns = (available_left or []) + feature_columns
    validate_unique(file, name, "right_parts", all_columns)
    validate_derivations(file, name, join.get("derivations") or [],
                         all_columns if available_left is not None else feature_columns + list(
                             referenced_left_wildcard(join)))


def referenced_left_wildcard(join: dict) -> set[str]:
    # Without left selects every table column may be referenced; accept any name used in derivations.
    return {c for d in join.get("derivations") or [] for c in referenced_columns(d.get("expression") or "")}


def validate_staging_query(staging_query: dict, file: str) -> None:
    name = staging_query["metaData"]["name"]
    if not (staging_query.get("query") or "").strip():
        _fail(file, name, "query", "a staging query needs SQL")
    if not staging_query.get("startPartition"):
        _fail(file, name, "start_partition", "a staging query needs a start_partition (YYYY-MM-DD)")
    unknown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", staging_query["query"])) - {"start_date", "end_date", "latest_date"}
    if unknown:
        _fail(file, name, "query", f"unknown macro(s) {sorted(unknown)}; use start_date, end_date, latest_date")
