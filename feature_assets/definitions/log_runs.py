"""The CLI's log commands through Dagster: `log-dump` and `log-flattener` materialize the log table and the
`_logged` assets (`log_assets`) for a range of days as one in-process run on the default instance, so every run
is in the UI's history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dagster import AssetKey, DagsterInstance, Definitions

from feature_assets.definitions.online_runs import OnlineRun, run_of
from feature_assets.definitions.runs import FRESHNESS_CHECK, execute_days, run_failures


def materialize_logs(
    defs: Definitions,
    job: str,
    keys: Sequence[AssetKey],
    start_ds: str,
    end_ds: str,
    tags: Mapping[str, str] | None = None,
    instance: DagsterInstance | None = None,
    run_id: str | None = None,
    log_level: str = "CRITICAL",
) -> OnlineRun:
    """Materialize log assets for the days [start_ds, end_ds] as one run of `job` (the CLI's log commands)."""
    result = execute_days(defs, job, keys, start_ds, end_ds, tags, instance, run_id, log_level)
    run = run_of(result)
    for evaluation in result.get_asset_check_evaluations():
        # Freshness judges the latest day (its sensor reports it); a dump of past days says nothing about it.
        if not evaluation.passed and evaluation.check_name != FRESHNESS_CHECK:
            run.errors.append(f"check {evaluation.check_name} of {evaluation.asset_key.to_user_string()} did not pass")
    for failure in run_failures(result):
        run.errors.append(" / ".join(failure.cause))
    return run
