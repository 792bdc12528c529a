"""Join: a left source enriched with group-by features, bootstrap data and external parts."""

from __future__ import annotations

from typing import Any

from feature_assets.api.naming import creation_module_globals, output_table_name
from feature_assets.api.query import Query


class DataType:
    """Chronon's DataType constants; composite types are tuples so they serialize to JSON."""

    BOOLEAN = "BOOLEAN"
    SHORT = "SHORT"
    INT = "INT"
    LONG = "LONG"
    FLOAT = "FLOAT"
    DOUBLE = "DOUBLE"
    STRING = "STRING"
    BINARY = "BINARY"

    @staticmethod
    def LIST(element):
        return ["LIST", element]

    @staticmethod
    def MAP(key, value):
        return ["MAP", key, value]

    @staticmethod
    def STRUCT(name, *fields):
        return ["STRUCT", name, [list(f) for f in fields]]


class JoinPart:
    def __init__(
        self,
        group_by: Any = None,
        key_mapping: dict[str, str] | None = None,
        prefix: str | None = None,
        tags: dict | None = None,
        **camel,
    ):
        self.group_by = group_by or camel.pop("groupBy", None)
        self.key_mapping = dict(key_mapping or camel.pop("keyMapping", None) or {})
        self.prefix = prefix
        self.tags = dict(tags or {})
        if camel:
            raise TypeError(f"JoinPart got unexpected arguments: {sorted(camel)}")


class ExternalSource:
    """A feature source served by the user's own code online; offline it only comes from bootstrap."""

    def __init__(
        self,
        name: str,
        team: str | None = None,
        key_fields: list | None = None,
        value_fields: list | None = None,
        custom_json: str | None = None,
    ):
        self.name = name
        self.team = team
        self.key_fields = [tuple(f) for f in (key_fields or [])]
        self.value_fields = [tuple(f) for f in (value_fields or [])]
        self.custom_json = custom_json


class ContextualSource(ExternalSource):
    """Request context passed by the caller (for example a request id), logged with the features."""

    def __init__(self, fields: list, team: str | None = "chronon"):
        super().__init__(name="contextual", team=team, key_fields=fields, value_fields=fields)


class ExternalPart:
    def __init__(self, source: ExternalSource, key_mapping: dict[str, str] | None = None, prefix: str | None = None):
        self.source = source
        self.key_mapping = dict(key_mapping or {})
        self.prefix = prefix


class BootstrapPart:
    def __init__(self, table: str, query: Query | None = None, key_columns: list[str] | None = None):
        self.table = table
        self.query = query if query is not None else Query()
        self.key_columns = list(key_columns) if key_columns else None


class Join:
    def __init__(
        self,
        left: Any,
        right_parts: list[JoinPart],
        check_consistency: bool | None = None,
        additional_args: list | None = None,
        additional_env: list | None = None,
        dependencies: list | None = None,
        online: bool = False,
        production: bool = False,
        output_namespace: str | None = None,
        table_properties: dict | None = None,
        env: dict | None = None,
        lag: int = 0,
        skew_keys: dict | None = None,
        sample_percent: float | None = None,
        consistency_sample_percent: float = 5.0,
        online_external_parts: list[ExternalPart] | None = None,
        offline_schedule: str | None = None,
        historical_backfill: bool | None = None,
        row_ids: list[str] | None = None,
        bootstrap_parts: list[BootstrapPart] | None = None,
        bootstrap_from_log: bool = False,
        label_part: Any = None,
        derivations: list | None = None,
        tags: dict | None = None,
        team: str | None = None,
        name: str | None = None,
        stats_sample_percent: float | None = None,
        drift_reference: str | dict | None = None,
        drift_thresholds: dict | None = None,
        consistency_thresholds: dict | None = None,
        **kwargs,
    ):
        self.left = left
        self.right_parts = list(right_parts or [])
        self.check_consistency = check_consistency
        self.additional_args = list(additional_args or [])
        self.additional_env = list(additional_env or [])
        self.env = dict(env or {})
        self.dependencies = list(dependencies or [])
        self.online = bool(online)
        self.production = bool(production)
        self.output_namespace = output_namespace
        self.table_properties = dict(table_properties or {})
        self.lag = lag
        self.skew_keys = dict(skew_keys or {})
        self.sample_percent = sample_percent
        self.consistency_sample_percent = consistency_sample_percent
        self.online_external_parts = list(online_external_parts or [])
        self.offline_schedule = offline_schedule
        self.historical_backfill = historical_backfill
        self.row_ids = list(row_ids or [])
        self.bootstrap_parts = list(bootstrap_parts or [])
        self.bootstrap_from_log = bool(bootstrap_from_log)
        self.label_part = label_part
        self.derivations = list(derivations or [])
        self.tags = dict(tags or {})
        self.team = team
        self.name = name
        # Daily stats: the share of rows summarized (default 10), what a day is compared with ("previous_day"
        # by default, "trailing_7_days", or {"start_ds": ..., "end_ds": ...}) and drift levels overriding the
        # defaults, e.g. {"psi_warn": 0.2, "psi_fail": 0.4} (see statistics.DriftThresholds).
        self.stats_sample_percent = stats_sample_percent
        self.drift_reference = drift_reference
        self.drift_thresholds = dict(drift_thresholds) if drift_thresholds is not None else None
        # Warn and fail levels of the consistency check overriding the defaults, e.g. {"mismatch_rate_fail": 0.02}
        # (mismatch_rate_warn/fail, smape_warn/fail; see quality.consistency.ConsistencyThresholds).
        self.consistency_thresholds = dict(consistency_thresholds) if consistency_thresholds is not None else None
        self.unknown_arguments = dict(kwargs)
        self._module_globals = creation_module_globals()


def get_join_output_table_name(join: Join, full_name: bool = False) -> str:
    return output_table_name(join, full_name)
