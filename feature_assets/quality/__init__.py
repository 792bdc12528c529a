"""Data quality: stats and drift of join outputs and logs, online/offline consistency (sketch-based)."""

from feature_assets.quality.comparison import comparison_frame
from feature_assets.quality.consistency import (
    ConsistencyReport,
    ConsistencyThresholds,
    consistency_metrics,
    consistency_severity,
)

__all__ = [
    "ConsistencyReport",
    "ConsistencyThresholds",
    "comparison_frame",
    "consistency_metrics",
    "consistency_severity",
]
