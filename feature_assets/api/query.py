"""Queries: which columns a source exposes, with which filters and time columns."""

from __future__ import annotations

from dataclasses import dataclass, field


def select(*columns: str, **aliased: str) -> dict[str, str]:
    """Chronon's `select`: positional names map to themselves, keywords map alias -> SQL expression."""
    selects = {name: name for name in columns}
    selects.update(aliased)
    return selects


@dataclass
class Query:
    selects: dict[str, str] | None = None
    wheres: list[str] = field(default_factory=list)
    start_partition: str | None = None
    end_partition: str | None = None
    time_column: str | None = None
    setups: list[str] = field(default_factory=list)
    mutation_time_column: str | None = None
    reversal_column: str | None = None
    partition_column: str | None = None

    def __init__(
        self,
        selects=None,
        wheres=None,
        start_partition=None,
        end_partition=None,
        time_column=None,
        setups=None,
        mutation_time_column=None,
        reversal_column=None,
        partition_column=None,
        **camel,
    ):
        # Chronon's thrift names (timeColumn, startPartition, ...) are accepted too.
        self.selects = dict(selects) if selects is not None else None
        self.wheres = list(wheres or [])
        self.start_partition = start_partition or camel.pop("startPartition", None)
        self.end_partition = end_partition or camel.pop("endPartition", None)
        self.time_column = time_column or camel.pop("timeColumn", None)
        self.setups = list(setups or [])
        self.mutation_time_column = mutation_time_column or camel.pop("mutationTimeColumn", None)
        self.reversal_column = reversal_column or camel.pop("reversalColumn", None)
        self.partition_column = partition_column or camel.pop("partitionColumn", None)
        if camel:
            raise TypeError(f"Query got unexpected arguments: {sorted(camel)}")
