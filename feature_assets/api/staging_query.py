"""StagingQuery: arbitrary Spark SQL materialized as a daily-partitioned table."""

from __future__ import annotations

from feature_assets.api.naming import creation_module_globals, output_table_name

# Macros the engine substitutes per run: the first and last partition of the range being
# computed, and the latest partition available (the range's end).
MACROS = ("start_date", "end_date", "latest_date")


class StagingQuery:
    def __init__(
        self,
        query: str,
        start_partition: str | None = None,
        setups: list[str] | None = None,
        partition_column: str = "ds",
        name: str | None = None,
        output_namespace: str | None = None,
        table_properties: dict | None = None,
        dependencies: list[str] | None = None,
        team: str | None = None,
        online: bool = False,
        production: bool = False,
        **camel,
    ):
        self.query = query
        self.start_partition = start_partition or camel.pop("startPartition", None)
        self.setups = list(setups or [])
        self.partition_column = partition_column
        self.name = name
        self.output_namespace = output_namespace
        self.table_properties = dict(table_properties or {})
        self.dependencies = list(dependencies or [])
        self.team = team
        self.online = online
        self.production = production
        self._module_globals = creation_module_globals()
        if camel:
            raise TypeError(f"StagingQuery got unexpected arguments: {sorted(camel)}")


def get_staging_query_output_table_name(staging_query: StagingQuery, full_name: bool = False) -> str:
    return output_table_name(staging_query, full_name)
