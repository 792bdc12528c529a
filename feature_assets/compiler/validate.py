"""Compile-time validation of compiled configs: every error names the file, the object and the field."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date

from feature_assets.aggregation.registry import RETRACTABLE
from feature_assets.compiler.errors import CompileError
from feature_assets.model import (
    Aggregation,
    Derivation,
    EntitySource,
    EventSource,
    GroupBy,
    Join,
    MetaData,
    Query,
    StagingQuery,
)
from feature_assets.model.configs import DEFAULT_CONSISTENCY_THRESHOLDS, DRIFT_REFERENCES
from feature_assets.model.topics import TopicSpecError, parse_topic
from feature_assets.sql.expressions import unsupported_reason
from feature_assets.statistics.drift import METRICS as DRIFT_METRICS

SCHEDULES = {"@daily", "@hourly", "@never"}
# Words of Spark SQL that may appear in a derivation without being columns.
SQL_WORDS = {
    "and",
    "or",
    "not",
    "null",
    "is",
    "in",
    "like",
    "rlike",
    "between",
    "case",
    "when",
    "then",
    "else",
    "end",
    "true",
    "false",
    "as",
    "cast",
    "int",
    "integer",
    "bigint",
    "long",
    "double",
    "float",
    "string",
    "boolean",
    "date",
    "timestamp",
    "decimal",
    "distinct",
    "interval",
    "day",
    "days",
    "hour",
    "hours",
    "array",
    "map",
    "struct",
    "smallint",
    "tinyint",
    "binary",
    "x",
    "y",
    "acc",
    "k",
    "v",
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
        elif (
            bare
            and not call
            and bare.lower() not in SQL_WORDS
            and not without_lambdas[match.end(2) :].lstrip().startswith(".")
        ):
            if match.start(2) > 0 and without_lambdas[match.start(2) - 1] == ".":
                continue  # a struct field access: a.b
            names.add(bare)
    return names


def validate_derivations(file, obj, derivations: tuple[Derivation, ...], available: list[str]) -> None:
    for index, derivation in enumerate(derivations):
        field = f"derivations[{index}]"
        if derivation.is_star:
            if derivation.expression != "*":
                _fail(file, obj, field, "a derivation named '*' must have the expression '*'")
            continue
        if not derivation.expression:
            _fail(file, obj, field, f"derivation {derivation.name!r} has no expression")
        missing = sorted(referenced_columns(derivation.expression) - set(available))
        if missing:
            _fail(
                file,
                obj,
                f"{field}.expression",
                f"derivation {derivation.name!r} names unknown column(s) {missing}; available: {available}",
            )


def validate_unique(file, obj, field, names: list[str]) -> None:
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        _fail(file, obj, field, f"output column names are not unique: {duplicates}")


def validate_query_selects(file, obj, field, query: Query, required: list[tuple[str, str]]) -> None:
    selects = query.selects
    if selects is None:
        return  # no selects: every column of the table is available
    if "ts" in selects:
        _fail(
            file,
            obj,
            f"{field}.query.selects.ts",
            "do not select 'ts': name the event time with Query(time_column=...)",
        )
    for column, role in required:
        if column not in selects:
            _fail(
                file, obj, f"{field}.query.selects", f"{role} {column!r} is not selected (selected: {sorted(selects)})"
            )


def _required_columns(group_by: GroupBy) -> list[tuple[str, str]]:
    required = [(k, "key column") for k in group_by.key_columns]
    for agg in group_by.aggregations:
        required.append((agg.input_column, "input column"))
        required += [(b, "bucket column") for b in agg.buckets]
    return required


def validate_sources(group_by: GroupBy, file: str) -> None:
    name = group_by.name
    if not group_by.sources:
        _fail(file, name, "sources", "a group-by needs at least one source")
    if not group_by.key_columns:
        _fail(file, name, "keys", "a group-by needs at least one key column")
    for index, source in enumerate(group_by.sources):
        field = f"sources[{index}]"
        validate_query_selects(file, name, field, source.query, _required_columns(group_by))
        if isinstance(source, EventSource) and not source.table:
            _fail(file, name, f"{field}.table", "an EventSource needs a table")
        if isinstance(source, EntitySource) and not source.snapshot_table:
            _fail(file, name, f"{field}.snapshot_table", "an EntitySource needs a snapshot_table")
        if source.kind in ("events", "joinSource") and not source.query.time_column:
            if group_by.is_temporal:
                _fail(file, name, f"{field}.query.time_column", "a TEMPORAL event source needs a time_column")
            if group_by.aggregations:
                _fail(file, name, f"{field}.query.time_column", "event sources with aggregations need a time_column")
        if isinstance(source, EntitySource) and group_by.is_temporal and not source.mutation_table:
            _fail(file, name, "accuracy", "TEMPORAL accuracy on an entity source needs a mutation_table")
    validate_topics(group_by, file)
    kinds = sorted({source.kind for source in group_by.sources})
    if len(kinds) > 1:
        _fail(file, name, "sources", f"all sources of a group-by must be of one kind, got {kinds}")


def validate_topics(group_by: GroupBy, file: str) -> None:
    """Topic specs must parse; an online group-by's streamed sources must be ones the streaming job serves:
    event sources whose query runs on streamed rows (the supported Spark SQL, over the topic's CSV fields)."""
    name = group_by.name
    for index, source in enumerate(group_by.sources):
        if not source.topic:
            continue
        topic_field = f"sources[{index}].{'mutation_topic' if isinstance(source, EntitySource) else 'topic'}"
        try:
            spec = parse_topic(source.topic)
        except TopicSpecError as error:
            _fail(file, name, topic_field, str(error))
        if not group_by.online:
            continue
        if isinstance(source, EntitySource):
            _fail(
                file,
                name,
                topic_field,
                "online=True with an entity mutation topic: the online side does not apply streamed mutations yet, "
                "so fetches would serve stale values; remove the mutation_topic (values then refresh with each "
                "batch upload) or set online=False",
            )
        if group_by.online_kind != "temporal":
            _fail(
                file,
                name,
                topic_field,
                "online=True with a topic, but its fetches are served from the daily batch only (SNAPSHOT accuracy "
                "or no aggregations), so the streamed events would never be read; remove the topic or use "
                "TEMPORAL accuracy with aggregations",
            )
        query = source.query
        expressions = [(f"query.wheres[{i}]", w) for i, w in enumerate(query.wheres)]
        expressions += [(f"query.selects.{c}", e) for c, e in (query.selects or {}).items()]
        if query.time_column:
            expressions.append(("query.time_column", query.time_column))
        for field, expression in expressions:
            reason = unsupported_reason(expression)
            if reason:
                _fail(
                    file, name, f"sources[{index}].{field}", f"{expression!r} cannot run on streamed events: {reason}"
                )
            if spec.fields:
                missing = sorted(c for c in referenced_columns(expression) if c not in spec.fields)
                if missing:
                    _fail(
                        file,
                        name,
                        f"sources[{index}].{field}",
                        f"reads {missing}, which the topic's fields ({','.join(spec.fields)}) do not carry",
                    )


def validate_aggregation(group_by: GroupBy, index: int, agg: Aggregation, file: str) -> None:
    name, field = group_by.name, f"aggregations[{index}]"
    if not agg.is_known:
        _fail(file, name, f"{field}.operation", f"unknown operation {agg.operation!r}")
    problem = agg.definition.argument_error(agg.arg_map)
    if problem:
        about_percentiles = problem.startswith("percentiles")
        _fail(
            file,
            name,
            f"{field}.operation{'.percentiles' if about_percentiles else ''}",
            problem if about_percentiles else f"{agg.operation} {problem}",
        )
    mutation_source = next(
        (f"sources[{i}]" for i, s in enumerate(group_by.sources) if isinstance(s, EntitySource) and s.mutation_table),
        None,
    )
    if mutation_source is not None and not agg.definition.retractable:
        _fail(
            file,
            name,
            f"{field}.operation",
            f"{agg.operation} is not supported over an entity source with a mutation_table ({mutation_source}); "
            f"use one of {sorted(RETRACTABLE)}",
        )
    if mutation_source is not None and agg.windows:
        _fail(
            file,
            name,
            f"{field}.windows",
            f"windows are not supported over an entity source with a mutation_table ({mutation_source}); "
            "the aggregate covers the key's current rows",
        )
    for window_index, window in enumerate(agg.windows):
        wfield = f"{field}.windows[{window_index}]"
        if window.length <= 0:
            _fail(file, name, wfield, "window length must be positive")
        if window.time_unit == "HOURS" and not group_by.is_temporal:
            _fail(file, name, wfield, "hour windows need TEMPORAL accuracy (SNAPSHOT values change once a day)")
        if group_by.source_kind == "entities":
            _fail(file, name, wfield, "windows on entity sources are not supported; aggregate the snapshot")


def validate_schedule(file: str, name: str, meta: MetaData) -> None:
    schedule = meta.offline_schedule
    if schedule in SCHEDULES or len(schedule.split()) == 5:
        return
    _fail(
        file,
        name,
        "offline_schedule",
        f"{schedule!r} is not a schedule: use one of {sorted(SCHEDULES)} or a 5-field cron expression",
    )


def validate_group_by(compiled: dict, file: str) -> None:
    group_by = GroupBy.from_json(compiled)
    validate_sources(group_by, file)
    for index, agg in enumerate(group_by.aggregations):
        validate_aggregation(group_by, index, agg, file)
    validate_schedule(file, group_by.name, group_by.meta)
    base = group_by.value_columns
    validate_unique(file, group_by.name, "aggregations", base)
    validate_derivations(file, group_by.name, group_by.derivations, base)
    validate_unique(file, group_by.name, "derivations", group_by.output_columns)


def validate_join_parts(join: Join, file: str) -> None:
    name, available_left = join.name, join.left_columns
    if not join.join_parts and not join.external_parts:
        _fail(file, name, "right_parts", "a join needs at least one join part or external part")
    for index, part in enumerate(join.join_parts):
        for left_col, key in part.key_pairs:
            if available_left is not None and left_col not in available_left:
                _fail(
                    file,
                    name,
                    f"right_parts[{index}].key_mapping",
                    f"group-by {part.group_by.name!r} needs key {key!r} from left column "
                    f"{left_col!r}, which the left source does not select",
                )
        if join.online and not part.group_by.online:
            _fail(
                file,
                name,
                f"right_parts[{index}].group_by",
                f"an online join can only use online group-bys; {part.group_by.name!r} is offline",
            )


def validate_join(compiled: dict, file: str) -> None:
    join = Join.from_json(compiled)
    name, left = join.name, join.left
    if left.kind in ("events", "joinSource") and not left.query.time_column:
        _fail(file, name, "left.query.time_column", "an event left source needs a time_column")
    if left.query.selects is not None and "ts" in left.query.selects:
        _fail(file, name, "left.query.selects.ts", "do not select 'ts': name the event time with time_column")
    validate_join_parts(join, file)
    available_left = join.left_columns
    for index, row_id in enumerate(join.row_ids):
        if available_left is not None and row_id not in available_left:
            _fail(file, name, f"row_ids[{index}]", f"row id {row_id!r} is not selected by the left source")
    for field, percent in (
        ("sample_percent", join.meta.sample_percent),
        ("consistency_sample_percent", join.meta.consistency_sample_percent),
    ):
        if percent is not None and not 0 <= float(percent) <= 100:
            _fail(file, name, field, f"must lie in [0, 100], got {percent}")
    validate_stats_settings(join, file)
    validate_consistency_thresholds(join, file)
    validate_schedule(file, name, join.meta)
    all_columns = (available_left or []) + join.feature_columns
    validate_unique(file, name, "right_parts", all_columns)
    referenced = {c for d in join.derivations for c in referenced_columns(d.expression)}
    # Without left selects every table column may be referenced: accept any name used in derivations.
    validate_derivations(
        file,
        name,
        join.derivations,
        all_columns if available_left is not None else join.feature_columns + sorted(referenced),
    )


CONSISTENCY_METRICS = ("mismatch_rate", "smape")  # the levels of DEFAULT_CONSISTENCY_THRESHOLDS


def validate_consistency_thresholds(join: Join, file: str) -> None:
    """Known names, numbers, 0 <= warn <= fail for each metric (unnamed levels keep their defaults)."""
    name, thresholds = join.name, join.meta.consistency_thresholds
    known = {f"{metric}_{level}" for metric in CONSISTENCY_METRICS for level in ("warn", "fail")}
    unknown = sorted(set(thresholds) - known)
    if unknown:
        _fail(
            file, name, "consistency_thresholds", f"unknown threshold(s) {unknown}; expected names in {sorted(known)}"
        )
    for key, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            _fail(file, name, f"consistency_thresholds.{key}", f"must be a number >= 0, got {value!r}")
    levels = {**DEFAULT_CONSISTENCY_THRESHOLDS, **thresholds}
    for metric in CONSISTENCY_METRICS:
        warn, fail = levels[f"{metric}_warn"], levels[f"{metric}_fail"]
        if warn > fail:
            _fail(file, name, "consistency_thresholds", f"{metric}: warn level {warn} is above fail level {fail}")


def validate_stats_settings(join: Join, file: str) -> None:
    """The join's stats sample share, drift reference and drift thresholds."""
    name, meta = join.name, join.meta
    percent = meta.stats_sample_percent
    if percent is not None and (isinstance(percent, bool) or not isinstance(percent, (int, float))):
        _fail(file, name, "stats_sample_percent", f"must be a number in (0, 100], got {percent!r}")
    if percent is not None and not 0 < float(percent) <= 100:
        _fail(file, name, "stats_sample_percent", f"must lie in (0, 100], got {percent}")
    reference = meta.drift_reference
    if isinstance(reference, dict):
        days = [reference.get("start_ds"), reference.get("end_ds")]
        if set(reference) != {"start_ds", "end_ds"} or not all(isinstance(d, str) and _is_day(d) for d in days):
            _fail(
                file,
                name,
                "drift_reference",
                f'a pinned window is {{"start_ds": "YYYY-MM-DD", "end_ds": ...}}, got {reference}',
            )
        elif str(days[0]) > str(days[1]):
            _fail(file, name, "drift_reference", f"start_ds {days[0]} is after end_ds {days[1]}")
    elif reference is not None and reference not in DRIFT_REFERENCES:
        _fail(
            file,
            name,
            "drift_reference",
            f"expected one of {', '.join(DRIFT_REFERENCES)} or a pinned window {{'start_ds', 'end_ds'}}, "
            f"got {reference!r}",
        )
    thresholds = meta.drift_thresholds
    known = {f"{metric}_{level}" for metric in DRIFT_METRICS for level in ("warn", "fail")}
    unknown = sorted(set(thresholds) - known)
    if unknown:
        _fail(file, name, "drift_thresholds", f"unknown threshold(s) {unknown}; expected names in {sorted(known)}")
    bad = [key for key, value in thresholds.items() if isinstance(value, bool) or not isinstance(value, (int, float))]
    if bad:
        _fail(file, name, f"drift_thresholds.{bad[0]}", f"must be a number, got {thresholds[bad[0]]!r}")
    try:
        _ = join.drift_thresholds
    except ValueError as error:
        _fail(file, name, "drift_thresholds", str(error))


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def validate_staging_query(staging_query: dict, file: str) -> None:
    name = staging_query["metaData"]["name"]
    if not (staging_query.get("query") or "").strip():
        _fail(file, name, "query", "a staging query needs SQL")
    if not staging_query.get("startPartition"):
        _fail(file, name, "start_partition", "a staging query needs a start_partition (YYYY-MM-DD)")
    unknown = StagingQuery.from_json(staging_query).macros - {"start_date", "end_date", "latest_date"}
    if unknown:
        _fail(file, name, "query", f"unknown macro(s) {sorted(unknown)}; use start_date, end_date, latest_date")
