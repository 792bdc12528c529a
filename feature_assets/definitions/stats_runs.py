"""The CLI's stats commands through Dagster: `stats-summary` and `log-summary` materialize a join's stats asset
and its upload table (`stats_assets`) for a range of days as one in-process run on the default instance, so the
run, its checks and the per-day metadata are in the UI's history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance, Definitions

from feature_assets.definitions.online_runs import OnlineRun, run_of
from feature_assets.definitions.runs import execute_days, run_failures


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str  # WARN or ERROR (what a failure means)
    description: str


@dataclass
class StatsRun:
    run: OnlineRun
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def errors(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.passed and check.severity == "ERROR"]


def materialize_stats(
    defs: Definitions,
    job: str,
    keys: Sequence[AssetKey],
    start_ds: str,
    end_ds: str,
    tags: Mapping[str, str] | None = None,
    instance: DagsterInstance | None = None,
    run_id: str | None = None,
    log_level: str = "CRITICAL",
) -> StatsRun:
    """Materialize stats assets for the days [start_ds, end_ds] as one run of `job`, with their checks."""
    result = execute_days(defs, job, keys, start_ds, end_ds, tags, instance, run_id, log_level)
    stats = StatsRun(run_of(result))
    for evaluation in result.get_asset_check_evaluations():
        stats.checks.append(
            CheckOutcome(
                evaluation.asset_key.to_user_string(),
                evaluation.check_name,
                evaluation.passed,
                evaluation.severity.value,
                evaluation.description or "",
            )
        )
    for failure in run_failures(result):
        stats.run.errors.append(" / ".join(failure.cause))
    return stats
