"""Mergeable per-column summaries (sketches), their percentiles and drift metrics between two summaries.

Pure Python on numpy and datasketches: the offline stats job, the checks and the online fetcher all build,
merge and compare the same summaries.
"""

from feature_assets.statistics.drift import (
    DriftThresholds,
    drift,
    hellinger,
    jensen_shannon,
    ks_statistic,
    psi,
    severity,
)
from feature_assets.statistics.summary import (
    DEFAULT_K,
    KINDS,
    PERCENTILE_POINTS,
    ColumnSummary,
    boolean_summary,
    categorical_summary,
    kind_of_spark_type,
    list_summary,
    map_summary,
    merge,
    numeric_summary,
    summarize,
)

__all__ = [
    "DEFAULT_K",
    "KINDS",
    "PERCENTILE_POINTS",
    "ColumnSummary",
    "DriftThresholds",
    "boolean_summary",
    "categorical_summary",
    "drift",
    "hellinger",
    "jensen_shannon",
    "kind_of_spark_type",
    "ks_statistic",
    "list_summary",
    "map_summary",
    "merge",
    "numeric_summary",
    "psi",
    "severity",
    "summarize",
]
