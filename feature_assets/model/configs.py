"""Typed, frozen views of compiled configs, built once from the compiled JSON.

The compiled JSON (camelCase keys, like Chronon's thrift JSON) stays the on-disk and metadata-store format;
every other layer reads these objects. Every name derived from a config lives here, once: output and
upload tables, online datasets, output column names, join part names and prefixes, key mappings, lookbacks,
and the tables of logging and quality (`_logged`, `_daily_stats`, `_consistency`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from feature_assets.aggregation.registry import OPERATIONS, OperationDef, operation_def
from feature_assets.aggregation.spec import AggSpec
from feature_assets.naming import clean_name, dataset_name, qualified, table_of
from feature_assets.statistics import DriftThresholds

MILLIS_PER_HOUR = 3_600_000
MILLIS_PER_DAY = 86_400_000
GROUP_BYS, JOINS, STAGING_QUERIES = "group_bys", "joins", "staging_queries"
KINDS = (GROUP_BYS, JOINS, STAGING_QUERIES)
TEMPORAL, SNAPSHOT = "TEMPORAL", "SNAPSHOT"
DEFAULT_SCHEDULE = "@daily"
# The consistency check's levels (a join's `consistency_thresholds` override them by name).
DEFAULT_CONSISTENCY_THRESHOLDS = {
    "mismatch_rate_warn": 0.001,
    "mismatch_rate_fail": 0.01,
    "smape_warn": 0.001,
    "smape_fail": 0.01,
}
DEFAULT_CONSISTENCY_SAMPLE_PERCENT = 5.0
# The share of a join's rows its daily stats summarize (Chronon's summary jobs sample 10% too): sketches of
# 10% of the rows keep percentiles within about 1% in rank at 50k rows a day, at a tenth of the cost.
DEFAULT_STATS_SAMPLE_PERCENT = 10.0
# What a day's stats are compared with: the day before, the merged 7 days before, or a pinned window
# ({"start_ds": ..., "end_ds": ...}).
PREVIOUS_DAY, TRAILING_7_DAYS = "previous_day", "trailing_7_days"
DRIFT_REFERENCES = (PREVIOUS_DAY, TRAILING_7_DAYS)
CONTEXTUAL = "contextual"
COVERED_PREFIX = "_covered_"
MACRO = re.compile(r"\{\{\s*(\w+)\s*\}\}")
SQL_TABLE = re.compile(r"\b(?:from|join)\s+`?([A-Za-z_][\w]*\.[A-Za-z_][\w]*)`?", re.IGNORECASE)
# Spark SQL types of Chronon's DataType names (external and contextual parts).
DATA_TYPES = {
    "BOOLEAN": "boolean",
    "SHORT": "short",
    "INT": "int",
    "LONG": "long",
    "FLOAT": "float",
    "DOUBLE": "double",
    "STRING": "string",
    "BINARY": "binary",
}

OnlineKind = Literal["snapshot", "temporal"]
Json = dict[str, Any]


def _tuple(values: Any) -> tuple[Any, ...]:
    return tuple(values or ())


def _map(values: Any) -> Mapping[str, Any]:
    return dict(values or {})


# --------------------------------------------------------------------------- building blocks


@dataclass(frozen=True)
class Window:
    length: int
    time_unit: str  # HOURS or DAYS

    @classmethod
    def from_json(cls, data: Json) -> Window:
        return cls(int(data["length"]), str(data["timeUnit"]))

    @property
    def millis(self) -> int:
        return self.length * (MILLIS_PER_HOUR if self.time_unit == "HOURS" else MILLIS_PER_DAY)

    @property
    def suffix(self) -> str:
        return f"{self.length}{'h' if self.time_unit == 'HOURS' else 'd'}"


@dataclass(frozen=True)
class Query:
    selects: Mapping[str, str] | None  # None: every column of the table
    wheres: tuple[str, ...] = ()
    start_partition: str | None = None
    end_partition: str | None = None
    time_column: str | None = None
    setups: tuple[str, ...] = ()
    mutation_time_column: str | None = None
    reversal_column: str | None = None

    @classmethod
    def from_json(cls, data: Json | None) -> Query:
        data = data or {}
        selects = data.get("selects")
        return cls(
            dict(selects) if selects is not None else None,
            _tuple(data.get("wheres")),
            data.get("startPartition"),
            data.get("endPartition"),
            data.get("timeColumn"),
            _tuple(data.get("setups")),
            data.get("mutationTimeColumn"),
            data.get("reversalColumn"),
        )

    def clip(self, start_ds: str | None, end_ds: str | None) -> tuple[str | None, str | None]:
        """The query's own start/end partitions narrow a requested range."""
        if self.start_partition and (start_ds is None or self.start_partition > start_ds):
            start_ds = self.start_partition
        if self.end_partition and (end_ds is None or self.end_partition < end_ds):
            end_ds = self.end_partition
        return start_ds, end_ds

    def with_selects(self, selects: Mapping[str, str] | None) -> Query:
        return Query(
            selects,
            self.wheres,
            self.start_partition,
            self.end_partition,
            self.time_column,
            self.setups,
            self.mutation_time_column,
            self.reversal_column,
        )

    def without_time(self) -> Query:
        return Query(
            self.selects,
            self.wheres,
            self.start_partition,
            self.end_partition,
            None,
            self.setups,
            None,
            self.reversal_column,
        )


@dataclass(frozen=True)
class EventSource:
    table: str
    query: Query
    topic: str | None = None
    is_cumulative: bool = False
    kind: Literal["events"] = "events"

    @property
    def read_table(self) -> str:
        return qualified(self.table)


@dataclass(frozen=True)
class EntitySource:
    snapshot_table: str
    query: Query
    mutation_table: str | None = None
    mutation_topic: str | None = None
    kind: Literal["entities"] = "entities"

    @property
    def read_table(self) -> str:
        return qualified(self.snapshot_table)

    @property
    def topic(self) -> str | None:
        return self.mutation_topic


@dataclass(frozen=True)
class JoinSource:
    join: Join
    query: Query
    kind: Literal["joinSource"] = "joinSource"

    @property
    def read_table(self) -> str:
        return self.join.output_table

    @property
    def topic(self) -> None:
        return None


Source = EventSource | EntitySource | JoinSource


def source_from_json(data: Json) -> Source:
    ((kind, payload),) = data.items()
    query = Query.from_json(payload.get("query"))
    if kind == "events":
        return EventSource(payload.get("table") or "", query, payload.get("topic"), bool(payload.get("isCumulative")))
    if kind == "entities":
        return EntitySource(
            payload.get("snapshotTable") or "", query, payload.get("mutationTable"), payload.get("mutationTopic")
        )
    if kind == "joinSource":
        return JoinSource(Join.from_json(payload["join"]), query)
    raise ValueError(f"unknown source kind {kind!r}")


@dataclass(frozen=True)
class Aggregation:
    input_column: str
    operation: str
    arg_map: Mapping[str, str]
    windows: tuple[Window, ...] = ()
    buckets: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Json) -> Aggregation:
        return cls(
            data.get("inputColumn") or "",
            data.get("operation") or "",
            _map(data.get("argMap")),
            tuple(Window.from_json(w) for w in data.get("windows") or []),
            _tuple(data.get("buckets")),
        )

    @property
    def definition(self) -> OperationDef:
        return operation_def(self.operation)

    @property
    def is_known(self) -> bool:
        return self.operation in OPERATIONS

    @property
    def base_name(self) -> str:
        return f"{self.input_column}_{self.definition.column_suffix(self.arg_map)}"

    @property
    def columns(self) -> list[tuple[str, Window | None, str | None]]:
        """(column name, window or None, bucket or None) of each output, in declared order."""
        columns = []
        for bucket in self.buckets or (None,):
            bucket_part = f"_by_{bucket}" if bucket else ""
            for window in self.windows or (None,):
                window_part = f"_{window.suffix}" if window else ""
                columns.append((f"{self.base_name}{bucket_part}{window_part}", window, bucket))
        return columns

    @property
    def specs(self) -> list[AggSpec]:
        arg_map = tuple(sorted(self.arg_map.items()))
        return [
            AggSpec(name, self.input_column, self.operation, arg_map, window.millis if window else None, bucket)
            for name, window, bucket in self.columns
        ]

    @property
    def percentiles(self) -> list[float]:
        return [float(p) for p in json.loads(self.arg_map.get("percentiles", "[]"))]


@dataclass(frozen=True)
class Derivation:
    name: str
    expression: str

    @classmethod
    def from_json(cls, data: Json) -> Derivation:
        return cls(data.get("name") or "", data.get("expression") or "")

    @property
    def is_star(self) -> bool:
        return self.name == "*"


def derived_names(base: list[str], derivations: tuple[Derivation, ...]) -> list[str]:
    """Output columns after derivations: a `*` derivation keeps every base column not redefined."""
    if not derivations:
        return list(base)
    names = [d.name for d in derivations if not d.is_star]
    if any(d.is_star for d in derivations):
        return [c for c in base if c not in names] + names
    return names


@dataclass(frozen=True)
class MetaData:
    name: str
    team: str
    output_namespace: str
    online: bool = False
    production: bool = False
    source_file: str = ""
    table_properties: Mapping[str, str] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    offline_schedule: str = DEFAULT_SCHEDULE
    tags: Mapping[str, str] = field(default_factory=dict)
    sample_percent: float | None = None
    consistency_sample_percent: float = DEFAULT_CONSISTENCY_SAMPLE_PERCENT
    check_consistency: bool = False
    stats_sample_percent: float | None = None
    drift_reference: Any = None  # None (previous day), a name of DRIFT_REFERENCES, or {"start_ds", "end_ds"}
    drift_thresholds: Mapping[str, float] = field(default_factory=dict)
    consistency_thresholds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Json) -> MetaData:
        name = data.get("name") or ""
        consistency = data.get("consistencySamplePercent")
        return cls(
            name,
            data.get("team") or name.split(".")[0],
            data.get("outputNamespace") or "default",
            bool(data.get("online")),
            bool(data.get("production")),
            data.get("sourceFile") or "",
            _map(data.get("tableProperties")),
            _tuple(data.get("dependencies")),
            data.get("offlineSchedule") or DEFAULT_SCHEDULE,
            _map(data.get("tags")),
            data.get("samplePercent"),
            float(consistency) if consistency is not None else DEFAULT_CONSISTENCY_SAMPLE_PERCENT,
            bool(data.get("consistencyCheck")),
            data.get("statsSamplePercent"),
            data.get("driftReference"),
            _map(data.get("driftThresholds")),
            _map(data.get("consistencyThresholds")),
        )

    @property
    def table_name(self) -> str:
        """The clean name: `quickstart.purchases.v1` -> `quickstart_purchases_v1`."""
        return clean_name(self.name)

    @property
    def output_table(self) -> str:
        return table_of(self.output_namespace, self.name)


class _Compiled:
    """What every compiled config has: its metadata's names and the JSON it was built from."""

    meta: MetaData
    raw: Json

    def to_json(self) -> Json:
        return self.raw

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def team(self) -> str:
        return self.meta.team

    @property
    def online(self) -> bool:
        return self.meta.online

    @property
    def table_name(self) -> str:
        return self.meta.table_name


# --------------------------------------------------------------------------- group-by


@dataclass(frozen=True, eq=False)
class GroupBy(_Compiled):
    meta: MetaData
    sources: tuple[Source, ...]
    key_columns: tuple[str, ...]
    aggregations: tuple[Aggregation, ...]
    accuracy: str
    backfill_start_date: str | None
    derivations: tuple[Derivation, ...]
    raw: Json = field(repr=False)

    kind = GROUP_BYS

    @classmethod
    def from_json(cls, data: Json) -> GroupBy:
        return cls(
            MetaData.from_json(data["metaData"]),
            tuple(source_from_json(s) for s in data.get("sources") or []),
            _tuple(data.get("keyColumns")),
            tuple(Aggregation.from_json(a) for a in data.get("aggregations") or []),
            data.get("accuracy") or SNAPSHOT,
            data.get("backfillStartDate"),
            tuple(Derivation.from_json(d) for d in data.get("derivations") or []),
            data,
        )

    # names
    @property
    def output_table(self) -> str:
        """The daily table: one row per key and day with the values at the end of that day."""
        return self.meta.output_table

    @property
    def upload_table(self) -> str:
        return f"{self.output_table}_upload"

    @property
    def dataset(self) -> str:
        return dataset_name(self.name)

    @property
    def batch_dataset(self) -> str:
        return f"{self.dataset}_BATCH"

    @property
    def streaming_dataset(self) -> str:
        return f"{self.dataset}_STREAMING"

    # sources
    @property
    def source(self) -> Source:
        return self.sources[0]

    @property
    def source_kind(self) -> str:
        return self.sources[0].kind if self.sources else "events"

    @property
    def is_temporal(self) -> bool:
        return self.accuracy == TEMPORAL

    @property
    def has_mutations(self) -> bool:
        """Entity sources with a mutation log."""
        return any(isinstance(s, EntitySource) and s.mutation_table for s in self.sources)

    @property
    def reads_mutations(self) -> bool:
        """TEMPORAL over entity mutations: event-left join parts replay the mutations of the day."""
        return self.has_mutations and self.is_temporal

    @property
    def topics(self) -> list[str]:
        return [s.topic for s in self.sources if s.topic]

    # columns
    @cached_property
    def specs(self) -> list[AggSpec]:
        return [spec for aggregation in self.aggregations for spec in aggregation.specs]

    @property
    def value_columns(self) -> list[str]:
        """Feature columns before derivations."""
        if self.aggregations:
            return [spec.column_name for spec in self.specs]
        selects = self.source.query.selects or {} if self.sources else {}
        return [c for c in selects if c not in self.key_columns]

    @property
    def output_columns(self) -> list[str]:
        """Feature columns after derivations."""
        return derived_names(self.value_columns, self.derivations)

    @property
    def needed_columns(self) -> list[str]:
        """Input and bucket columns the aggregations read."""
        return sorted({s.input_column for s in self.specs} | {s.bucket for s in self.specs if s.bucket})

    @property
    def count_columns(self) -> set[str]:
        """Unbucketed count-like columns: 0 (not null) for a key with no events."""
        return {s.column_name for s in self.specs if s.empty_value == 0}

    # time
    @property
    def max_window_millis(self) -> int | None:
        """The longest window; None when some aggregation is unwindowed (it needs all history); 0 without."""
        if any(s.window_millis is None for s in self.specs):
            return None
        return max((s.window_millis or 0 for s in self.specs), default=0)

    @property
    def tail_millis(self) -> int:
        """The longest window among windowed aggregations (what the online batch keeps as raw events)."""
        return max([s.window_millis for s in self.specs if s.window_millis is not None] + [0])

    @property
    def lookback_days(self) -> int | None:
        """Days of events before a day that its values need; None: all history."""
        window = self.max_window_millis
        return None if window is None else -(-window // MILLIS_PER_DAY)

    @property
    def online_kind(self) -> OnlineKind:
        """How the online store serves it: finished daily values, or raw tail events plus head IRs."""
        if self.source_kind == "entities" or self.accuracy == SNAPSHOT or not self.aggregations:
            return "snapshot"
        return "temporal"


# --------------------------------------------------------------------------- join


@dataclass(frozen=True, eq=False)
class BootstrapSource:
    """A table that bootstrap reads, with its priority (1 is highest; the join's own log is always lowest)."""

    table: str
    key_columns: tuple[str, ...]
    query: Query | None  # None for the log table
    priority: int

    @property
    def is_log(self) -> bool:
        return self.query is None

    @property
    def label(self) -> str:
        return self.table


@dataclass(frozen=True, eq=False)
class JoinPart:
    group_by: GroupBy
    key_mapping: Mapping[str, str]  # left column -> group-by key
    prefix: str | None = None

    @classmethod
    def from_json(cls, data: Json) -> JoinPart:
        return cls(GroupBy.from_json(data["groupBy"]), _map(data.get("keyMapping")), data.get("prefix"))

    @property
    def prefix_part(self) -> str:
        return f"{self.prefix}_" if self.prefix else ""

    @property
    def key_pairs(self) -> list[tuple[str, str]]:
        """(left column, group-by key) of each key."""
        inverse = {gb_key: left for left, gb_key in self.key_mapping.items()}
        return [(inverse.get(key, key), key) for key in self.group_by.key_columns]

    @property
    def left_keys(self) -> list[str]:
        return [left for left, _ in self.key_pairs]

    @property
    def feature_prefix(self) -> str:
        """`<prefix>_<group_by>_`: what the part's features are called in the join."""
        return f"{self.prefix_part}{self.group_by.table_name}_"

    @property
    def columns(self) -> list[str]:
        return [self.feature_prefix + c for c in self.group_by.output_columns]


@dataclass(frozen=True)
class ExternalSource:
    name: str
    team: str | None
    key_fields: tuple[tuple[str, str], ...]
    value_fields: tuple[tuple[str, str], ...]
    custom_json: str | None = None


@dataclass(frozen=True, eq=False)
class ExternalPart:
    source: ExternalSource
    key_mapping: Mapping[str, str]
    prefix: str | None = None

    @classmethod
    def from_json(cls, data: Json) -> ExternalPart:
        source = data["source"]
        return cls(
            ExternalSource(
                source.get("name") or "",
                source.get("team"),
                tuple((n, t) for n, t in source.get("keyFields") or []),
                tuple((n, t) for n, t in source.get("valueFields") or []),
                source.get("customJson"),
            ),
            _map(data.get("keyMapping")),
            data.get("prefix"),
        )

    @property
    def is_contextual(self) -> bool:
        """Request context (a request id, say): echoed from the request online, logged with the features."""
        return self.source.name == CONTEXTUAL

    @property
    def columns(self) -> list[str]:
        stem = "ext_" + (f"{self.prefix}_" if self.prefix else "") + self.source.name
        return [f"{stem}_{name}" for name, _ in self.source.value_fields]

    @property
    def column_fields(self) -> list[tuple[str, str, str]]:
        """(output column, request field, Spark type) of each value."""
        return [
            (column, name, DATA_TYPES.get(data_type, "string") if isinstance(data_type, str) else "string")
            for column, (name, data_type) in zip(self.columns, self.source.value_fields)
        ]


@dataclass(frozen=True)
class BootstrapPart:
    table: str
    query: Query
    key_columns: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Json) -> BootstrapPart:
        return cls(qualified(data["table"]), Query.from_json(data.get("query")), _tuple(data.get("keyColumns")))


@dataclass(frozen=True, eq=False)
class Join(_Compiled):
    meta: MetaData
    left: Source
    join_parts: tuple[JoinPart, ...]
    row_ids: tuple[str, ...]
    bootstrap_parts: tuple[BootstrapPart, ...]
    bootstrap_from_log: bool
    external_parts: tuple[ExternalPart, ...]
    derivations: tuple[Derivation, ...]
    raw: Json = field(repr=False)

    kind = JOINS

    @classmethod
    def from_json(cls, data: Json) -> Join:
        return cls(
            MetaData.from_json(data["metaData"]),
            source_from_json(data["left"]),
            tuple(JoinPart.from_json(p) for p in data.get("joinParts") or []),
            _tuple(data.get("rowIds")),
            tuple(BootstrapPart.from_json(p) for p in data.get("bootstrapParts") or []),
            bool(data.get("bootstrapFromLog")),
            tuple(ExternalPart.from_json(p) for p in data.get("onlineExternalParts") or []),
            tuple(Derivation.from_json(d) for d in data.get("derivations") or []),
            data,
        )

    @property
    def namespace(self) -> str:
        return self.meta.output_namespace

    # tables
    @property
    def output_table(self) -> str:
        return self.meta.output_table

    @property
    def bootstrap_table(self) -> str:
        return f"{self.output_table}_bootstrap"

    @property
    def logged_table(self) -> str:
        """The flattened fetch log: one row per logged request with its keys and served values."""
        return f"{self.output_table}_logged"

    @property
    def daily_stats_table(self) -> str:
        return f"{self.output_table}_daily_stats"

    @property
    def logged_daily_stats_table(self) -> str:
        return f"{self.logged_table}_daily_stats"

    @property
    def comparison_table(self) -> str:
        return f"{self.output_table}_comparison"

    @property
    def consistency_table(self) -> str:
        return f"{self.output_table}_consistency"

    def part_name(self, part: JoinPart) -> str:
        return f"{self.table_name}_{part.prefix_part}{part.group_by.table_name}"

    def part_table(self, part: JoinPart) -> str:
        return f"{self.namespace}.{self.part_name(part)}"

    # left side
    @property
    def left_kind(self) -> str:
        return self.left.kind

    @property
    def entity_left(self) -> bool:
        return self.left.kind == "entities"

    @property
    def left_columns(self) -> list[str] | None:
        """The left rows' columns (selects, then ts and ds), or None when every table column is selected."""
        selects = self.left.query.selects
        return None if selects is None else list(selects) + ["ts", "ds"]

    @property
    def snapshot_offset(self) -> int:
        """Days from a left row's day to the daily table it reads: entity left rows see the end of their own
        day, event left rows the end of the previous day."""
        return 0 if self.entity_left else -1

    def uses_mutations(self, part: JoinPart) -> bool:
        """An event-left part over entity mutations: replays the day's mutations up to each row's ts."""
        return part.group_by.reads_mutations and not self.entity_left

    def uses_snapshot_table(self, part: JoinPart) -> bool:
        """Whether a part reads its group-by's daily table instead of raw events (or mutations)."""
        if self.uses_mutations(part):
            return False
        return self.entity_left or part.group_by.source_kind == "entities" or part.group_by.accuracy == SNAPSHOT

    # columns
    @property
    def part_columns(self) -> list[str]:
        return [c for part in self.join_parts for c in part.columns]

    @property
    def external_columns(self) -> list[str]:
        return [c for part in self.external_parts for c in part.columns]

    @property
    def feature_columns(self) -> list[str]:
        """Join parts' and external parts' columns: what bootstrap can provide, before derivations."""
        return self.part_columns + self.external_columns

    @property
    def contextual_fields(self) -> list[str]:
        return [name for part in self.external_parts if part.is_contextual for name, _ in part.source.value_fields]

    @property
    def group_bys(self) -> list[GroupBy]:
        return [part.group_by for part in self.join_parts]

    @property
    def bootstrap_sources(self) -> list[BootstrapSource]:
        """Bootstrap tables in priority order; with `bootstrap_from_log` the join's `_logged` table comes last."""
        sources = [
            BootstrapSource(part.table, part.key_columns or self.row_ids, part.query, index + 1)
            for index, part in enumerate(self.bootstrap_parts)
        ]
        if self.bootstrap_from_log:
            sources.append(BootstrapSource(self.logged_table, self.row_ids, None, len(sources) + 1))
        return sources

    def coverage_column(self, part: JoinPart) -> str:
        """The bootstrap table's flag: every column of this part is provided for the row."""
        return COVERED_PREFIX + self.part_name(part)

    @property
    def sample_percent(self) -> float:
        """Share of keys whose fetches are logged (Chronon's default: every key)."""
        return 100.0 if self.meta.sample_percent is None else float(self.meta.sample_percent)

    # stats and drift
    @property
    def daily_stats_upload_table(self) -> str:
        return f"{self.daily_stats_table}_upload"

    @property
    def logged_daily_stats_upload_table(self) -> str:
        return f"{self.logged_daily_stats_table}_upload"

    @property
    def stats_sample_percent(self) -> float:
        """Share of rows the daily stats summarize (default `DEFAULT_STATS_SAMPLE_PERCENT`)."""
        percent = self.meta.stats_sample_percent
        return DEFAULT_STATS_SAMPLE_PERCENT if percent is None else float(percent)

    @property
    def drift_reference(self) -> tuple[str, str | None, str | None]:
        """(kind, start_ds, end_ds): ("previous_day", None, None) by default, ("trailing_7_days", None, None), or
        ("pinned", start_ds, end_ds) for a fixed window of days."""
        reference = self.meta.drift_reference
        if reference is None:
            return PREVIOUS_DAY, None, None
        if isinstance(reference, Mapping):
            return "pinned", str(reference.get("start_ds")), str(reference.get("end_ds"))
        return str(reference), None, None

    @property
    def drift_thresholds(self) -> DriftThresholds:
        """Warn and fail levels per drift metric: the defaults of `DriftThresholds`, overridden per join."""
        return DriftThresholds(**{name: float(value) for name, value in self.meta.drift_thresholds.items()})


# --------------------------------------------------------------------------- staging query


@dataclass(frozen=True, eq=False)
class StagingQuery(_Compiled):
    meta: MetaData
    query: str
    start_partition: str | None
    setups: tuple[str, ...]
    partition_column: str
    raw: Json = field(repr=False)

    kind = STAGING_QUERIES

    @classmethod
    def from_json(cls, data: Json) -> StagingQuery:
        return cls(
            MetaData.from_json(data["metaData"]),
            data.get("query") or "",
            data.get("startPartition"),
            _tuple(data.get("setups")),
            data.get("partitionColumn") or "ds",
            data,
        )

    @property
    def output_table(self) -> str:
        return self.meta.output_table

    @property
    def referenced_tables(self) -> list[str]:
        """`ns.table` names the SQL reads (FROM / JOIN)."""
        return sorted(set(SQL_TABLE.findall(self.query)))

    @property
    def macros(self) -> set[str]:
        return set(MACRO.findall(self.query))


Config = GroupBy | Join | StagingQuery
_BUILDERS: Mapping[str, Any] = {
    GROUP_BYS: GroupBy.from_json,
    JOINS: Join.from_json,
    STAGING_QUERIES: StagingQuery.from_json,
}


def config_from_json(kind: str, data: Json) -> Config:
    """The model of a compiled config of a kind (`group_bys`, `joins`, `staging_queries`)."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown config kind {kind!r}; expected one of {KINDS}")
    built: Config = _BUILDERS[kind](data)
    return built


@dataclass(frozen=True)
class CompiledRepo:
    """Every compiled config of a feature repo, by kind and name."""

    group_bys: Mapping[str, GroupBy] = field(default_factory=dict)
    joins: Mapping[str, Join] = field(default_factory=dict)
    staging_queries: Mapping[str, StagingQuery] = field(default_factory=dict)

    def __getitem__(self, kind: str) -> Mapping[str, Any]:
        """`repo["joins"]`: the configs of one kind by name."""
        if kind not in KINDS:
            raise KeyError(kind)
        configs: Mapping[str, Any] = getattr(self, kind)
        return configs

    def online_group_bys(self) -> dict[str, GroupBy]:
        """Online group-bys by name: those marked online and every group-by of an online join."""
        found: dict[str, GroupBy] = {}
        for join in self.joins.values():
            if join.online:
                for group_by in join.group_bys:
                    found.setdefault(group_by.name, group_by)
        for name, group_by in self.group_bys.items():
            if group_by.online:
                found[name] = group_by
        return dict(sorted(found.items()))

    def source_tables(self) -> set[str]:
        tables: set[str] = set()
        for group_by in self.group_bys.values():
            tables |= {s.read_table for s in group_by.sources if not isinstance(s, JoinSource)}
        for join in self.joins.values():
            if not isinstance(join.left, JoinSource):
                tables.add(join.left.read_table)
        return tables
