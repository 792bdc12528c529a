"""GroupBy: keyed, windowed aggregations over sources (Chronon's group_by module)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from feature_assets.api.naming import creation_module_globals
from feature_assets.api.sources import topic_of


class TimeUnit(str, Enum):
    HOURS = "HOURS"
    DAYS = "DAYS"


class Accuracy(str, Enum):
    TEMPORAL = "TEMPORAL"
    SNAPSHOT = "SNAPSHOT"


@dataclass(frozen=True)
class Window:
    length: int
    time_unit: TimeUnit = TimeUnit.DAYS

    def __init__(self, length: int, time_unit: TimeUnit | None = None, timeUnit: TimeUnit | None = None):
        object.__setattr__(self, "length", length)
        object.__setattr__(self, "time_unit", TimeUnit(time_unit or timeUnit or TimeUnit.DAYS))

    @property
    def millis(self) -> int:
        return self.length * (3_600_000 if self.time_unit == TimeUnit.HOURS else 86_400_000)

    @property
    def suffix(self) -> str:
        return f"{self.length}{'h' if self.time_unit == TimeUnit.HOURS else 'd'}"


@dataclass(frozen=True)
class OperationSpec:
    """An operation with its arguments, e.g. LAST_K(10) -> OperationSpec("LAST_K", {"k": "10"})."""

    name: str
    args: tuple = ()

    @property
    def arg_map(self) -> dict[str, str]:
        return dict(self.args)


def _with_k(name: str):
    return lambda k: OperationSpec(name, (("k", str(int(k))),))


class Operation:
    SUM = OperationSpec("SUM")
    COUNT = OperationSpec("COUNT")
    AVERAGE = OperationSpec("AVERAGE")
    MIN = OperationSpec("MIN")
    MAX = OperationSpec("MAX")
    FIRST = OperationSpec("FIRST")
    LAST = OperationSpec("LAST")
    UNIQUE_COUNT = OperationSpec("UNIQUE_COUNT")
    APPROX_UNIQUE_COUNT = OperationSpec("APPROX_UNIQUE_COUNT")
    HISTOGRAM = OperationSpec("HISTOGRAM")
    VARIANCE = OperationSpec("VARIANCE")
    SKEW = OperationSpec("SKEW")
    KURTOSIS = OperationSpec("KURTOSIS")
    FIRST_K = staticmethod(_with_k("FIRST_K"))
    LAST_K = staticmethod(_with_k("LAST_K"))
    TOP_K = staticmethod(_with_k("TOP_K"))
    BOTTOM_K = staticmethod(_with_k("BOTTOM_K"))
    BOUNDED_UNIQUE_COUNT = staticmethod(_with_k("BOUNDED_UNIQUE_COUNT"))

    @staticmethod
    def APPROX_PERCENTILE(percentiles, k: int = 200):
        return OperationSpec(
            "APPROX_PERCENTILE", (("percentiles", json.dumps([float(p) for p in percentiles])), ("k", str(int(k))))
        )


class Aggregation:
    def __init__(
        self,
        input_column: str | None = None,
        operation: Any = None,
        windows: list[Window] | None = None,
        buckets: list[str] | None = None,
        tags: dict | None = None,
        **camel,
    ):
        self.input_column = input_column or camel.pop("inputColumn", None)
        if isinstance(operation, str):
            operation = OperationSpec(operation)
        self.operation: OperationSpec = operation
        self.windows = list(windows or [])
        self.buckets = list(buckets or [])
        self.tags = dict(tags or {})
        if camel:
            raise TypeError(f"Aggregation got unexpected arguments: {sorted(camel)}")


@dataclass
class Derivation:
    name: str
    expression: str

    def __init__(self, name: str, expr: str | None = None, expression: str | None = None):
        self.name = name
        self.expression = (expr if expr is not None else expression) or ""


class GroupBy:
    def __init__(
        self,
        sources,
        keys: list[str],
        aggregations: list[Aggregation] | None = None,
        online: bool = False,
        production: bool = False,
        backfill_start_date: str | None = None,
        dependencies: list[str] | None = None,
        env: dict | None = None,
        table_properties: dict | None = None,
        output_namespace: str | None = None,
        accuracy: Accuracy | None = None,
        lag: int = 0,
        offline_schedule: str | None = None,
        name: str | None = None,
        tags: dict | None = None,
        derivations: list[Derivation] | None = None,
        team: str | None = None,
        **kwargs,
    ):
        self.sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        self.keys = list(keys)
        self.aggregations = list(aggregations) if aggregations else []
        self.online = bool(online)
        self.production = bool(production)
        self.backfill_start_date = backfill_start_date
        self.dependencies = list(dependencies or [])
        self.env = dict(env or {})
        self.table_properties = dict(table_properties or {})
        self.output_namespace = output_namespace
        self.explicit_accuracy = Accuracy(accuracy) if accuracy is not None else None
        self.lag = lag
        self.offline_schedule = offline_schedule
        self.name = name
        self.tags = dict(tags or {})
        self.derivations = list(derivations or [])
        self.team = team
        self.unknown_arguments = dict(kwargs)
        self._module_globals = creation_module_globals()

    @property
    def accuracy(self) -> Accuracy:
        """Unset accuracy is TEMPORAL when any source has a topic (it can be kept fresh), else SNAPSHOT."""
        if self.explicit_accuracy is not None:
            return self.explicit_accuracy
        return Accuracy.TEMPORAL if any(topic_of(s) for s in self.sources) else Accuracy.SNAPSHOT
