"""The CLI's online commands through Dagster: `upload`, `load` and `metadata-upload` materialize the same assets
the UI shows (`online_assets`), in-process on the default instance, so every run and materialization is in the
UI's history.

Upload and load assets run for one day as a subset of the `upload_online` job; metadata assets as a subset of
`upload_metadata`. `--allow-empty` reaches the assets as the run tag `feature_assets/allow_empty`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, Definitions

from feature_assets.definitions.factory import METADATA_UPLOAD_JOB, ONLINE_UPLOAD_JOB
from feature_assets.definitions.online_assets import ALLOW_EMPTY_TAG
from feature_assets.definitions.runs import default_instance


@dataclass(frozen=True)
class Materialized:
    """One materialization of a run: its asset, partition (None: unpartitioned) and metadata values."""

    asset: str
    partition: str | None
    metadata: dict[str, Any]


@dataclass
class OnlineRun:
    run_id: str
    success: bool
    materialized: list[Materialized] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the cause of each failed step, one line each


class NotAPartition(ValueError):
    """The day is outside the assets' daily partitions."""


def first_day(defs: Definitions) -> str | None:
    """The first daily partition of the online assets."""
    partitions = defs.resolve_job_def(ONLINE_UPLOAD_JOB).partitions_def
    return partitions.get_first_partition_key() if partitions is not None else None


def check_day(defs: Definitions, ds: str) -> None:
    """Raise `NotAPartition` when the day is not a daily partition of the online assets."""
    partitions = defs.resolve_job_def(ONLINE_UPLOAD_JOB).partitions_def
    if partitions is None or partitions.has_partition_key(ds):
        return
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    span = f"{first}..{last}" if first and last else "none"
    raise NotAPartition(
        f"{ds} is not a day of the assets' daily partitions ({span}; start_date and end_date in the repo's "
        "feature_repo.yaml set them)"
    )


def materialize_online(
    defs: Definitions,
    keys: Sequence[AssetKey],
    ds: str | None = None,
    allow_empty: bool = False,
    instance: DagsterInstance | None = None,
    run_id: str | None = None,
    log_level: str = "CRITICAL",
) -> OnlineRun:
    """Materialize online assets in-process: upload/load assets for the day `ds`, metadata assets without it.

    The console shows the run's log at `log_level` (by default nothing: the caller prints the causes returned).
    """
    if ds is not None:
        check_day(defs, ds)
    job = defs.resolve_job_def(ONLINE_UPLOAD_JOB if ds else METADATA_UPLOAD_JOB)
    result = job.execute_in_process(
        instance=instance or default_instance(),
        partition_key=ds,
        asset_selection=list(keys),
        tags={ALLOW_EMPTY_TAG: "true"} if allow_empty else {},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
        run_id=run_id,
    )
    run = run_of(result)
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE and event.step_failure_data is not None:
            run.errors.append(_cause(event.step_failure_data.error, event.step_failure_data.user_failure_data))
    return run


def run_of(result: Any) -> OnlineRun:
    """An in-process run's id, success and what it materialized (per asset and partition, with metadata)."""
    run = OnlineRun(result.run_id, result.success)
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        values = {name: entry.value for name, entry in materialization.metadata.items()}
        run.materialized.append(
            Materialized(materialization.asset_key.to_user_string(), materialization.partition, values)
        )
    return run


def _cause(error: Any, user_failure: Any) -> str:
    """The innermost message of a step failure: a raised `Failure`'s description, else the deepest cause."""
    description = getattr(user_failure, "description", None)
    if description:
        return str(description)
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "the step failed (no error recorded)"
    # The first line only: an engine's message (a JVM's, say) can run to pages; the run's log has it all.
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    return (lines[0][:500] if lines else "") or str(error.cls_name)
