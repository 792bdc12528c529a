"""The user's feature API, with Chronon's names and keyword arguments.

A Chronon config ports by changing its imports to `from feature_assets.api import ...`.
This package imports neither Spark nor Dagster.
"""

from feature_assets.api.group_by import (
    Accuracy,
    Aggregation,
    Derivation,
    GroupBy,
    Operation,
    OperationSpec,
    TimeUnit,
    Window,
)
from feature_assets.api.join import (
    BootstrapPart,
    ContextualSource,
    DataType,
    ExternalPart,
    ExternalSource,
    Join,
    JoinPart,
    get_join_output_table_name,
)
from feature_assets.api.naming import output_table_name
from feature_assets.api.query import Query, select
from feature_assets.api.sources import EntitySource, EventSource, JoinSource, Source
from feature_assets.api.staging_query import StagingQuery, get_staging_query_output_table_name


def get_group_by_output_table_name(group_by: GroupBy, full_name: bool = False) -> str:
    return output_table_name(group_by, full_name)


__all__ = [
    "Accuracy",
    "Aggregation",
    "BootstrapPart",
    "ContextualSource",
    "DataType",
    "Derivation",
    "EntitySource",
    "EventSource",
    "ExternalPart",
    "ExternalSource",
    "GroupBy",
    "Join",
    "JoinPart",
    "JoinSource",
    "Operation",
    "OperationSpec",
    "Query",
    "Source",
    "StagingQuery",
    "TimeUnit",
    "Window",
    "get_group_by_output_table_name",
    "get_join_output_table_name",
    "get_staging_query_output_table_name",
    "select",
]
