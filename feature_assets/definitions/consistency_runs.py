"""The CLI's consistency command through Dagster: `consistency-metrics-compute` materializes a join's
comparison, consistency and upload assets (`consistency_assets`) for a range of days as one in-process run on
the default instance, so the run, its check and the per-day metadata are in the UI's history."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import DagsterInstance, Definitions

from feature_assets.definitions.consistency_assets import CONSISTENCY_JOB, consistency_asset_keys
from feature_assets.definitions.stats_runs import StatsRun, materialize_stats
from feature_assets.model.configs import Join


def missing_consistency_assets(defs: Definitions, join: Join) -> list[str]:
    """The join's consistency assets the definitions lack (all of them when it is not checked)."""
    graph = defs.resolve_asset_graph()
    return [key.to_user_string() for key in consistency_asset_keys(join) if not graph.has(key)]


def materialize_consistency(
    defs: Definitions,
    join: Join,
    start_ds: str,
    end_ds: str,
    tags: Mapping[str, str] | None = None,
    instance: DagsterInstance | None = None,
    run_id: str | None = None,
    log_level: str = "CRITICAL",
) -> StatsRun:
    """Materialize the join's consistency assets for the days [start_ds, end_ds] as one run, with the check."""
    keys = consistency_asset_keys(join)
    return materialize_stats(defs, CONSISTENCY_JOB, keys, start_ds, end_ds, tags, instance, run_id, log_level)
