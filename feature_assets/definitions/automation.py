"""What runs by itself: the configs' schedules, a sensor that notices new source partitions, and declarative
automation that carries a new day downstream.

- Each group-by and join with an `offline_schedule` (Chronon's `@daily` by default, `@hourly`, a 5-field cron;
  `@never` for none) gets a schedule of its backfill job: every tick materializes the latest complete day of
  the config and everything it needs.
- `new_source_partitions` lists the source tables' partition folders and verifies (materializes) each day that
  is newer than the latest recorded one; for a source never recorded, only its newest day.
- Every other asset of a day carries `AutomationCondition.eager()`: once its inputs of the latest day are
  updated, it is materialized too (group-by -> bootstrap -> parts -> join -> upload -> load; the log-side
  tables, stats and consistency after the daily log dump, which has a schedule of its own).
  Only the latest day: history stays with backfills.

Freshness: the online datasets (each online group-by's daily load) and the raw log table carry a freshness
check: the day that ended must be there by 23:00 UTC the next day, or the check fails (ERROR).

`FEATURE_ASSETS_AUTOMATION=off` leaves the schedules and sensors stopped (they can still be started in the UI);
the conditions then do nothing, since their sensor is stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta

from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
    map_asset_specs,
    schedule,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from feature_assets.definitions.assets import asset_key
from feature_assets.definitions.graph import GROUP_BY, JOIN, SOURCE, Node
from feature_assets.model.configs import GroupBy, Join

AUTOMATION_ENV = "FEATURE_ASSETS_AUTOMATION"
NEVER = "@never"
# Chronon's schedule names as crons (UTC): a day is complete at midnight, so the daily run starts then.
SCHEDULE_CRONS = {"@daily": "0 0 * * *", "@hourly": "0 * * * *"}
SOURCE_SENSOR = "new_source_partitions"
AUTOMATION_SENSOR = "feature_automation"

# Lists the partitions (ds values) of a warehouse table without Spark.
PartitionLister = Callable[[str], Sequence[str]]


def automation_enabled(environ: dict | None = None) -> bool:
    setting = (environ if environ is not None else os.environ).get(AUTOMATION_ENV, "on")
    return setting.lower() not in ("off", "0", "false")


def offline_schedules(
    graph: dict[str, Node], jobs: Iterable, job_name_of: Callable[[Node], str], partitions_def: PartitionsDefinition
) -> list:
    """A schedule per group-by and join whose `offline_schedule` is not `@never`, on its backfill job: each
    tick runs the day that ended before it (`@hourly` refreshes that day every hour)."""
    by_name = {job.name: job for job in jobs if isinstance(job, UnresolvedAssetJobDefinition)}
    status = DefaultScheduleStatus.RUNNING if automation_enabled() else DefaultScheduleStatus.STOPPED
    schedules = []
    for node in graph.values():
        if node.kind not in (GROUP_BY, JOIN) or not isinstance(node.config, (GroupBy, Join)):
            continue
        offline_schedule = node.config.meta.offline_schedule
        job = by_name.get(job_name_of(node))
        if offline_schedule == NEVER or job is None:
            continue
        schedules.append(_day_schedule(job, node, offline_schedule, partitions_def, status))
    return schedules


def _day_schedule(job, node: Node, offline_schedule: str, partitions_def: PartitionsDefinition, status):
    @schedule(
        name=f"{job.name.removeprefix('backfill_')}_schedule",
        cron_schedule=SCHEDULE_CRONS.get(offline_schedule, offline_schedule),
        job=job,
        execution_timezone="UTC",
        default_status=status,
        description=f"{offline_schedule}: the day that just ended, of {node.table} and what it needs",
    )
    def day_schedule(context: ScheduleEvaluationContext):
        day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        keys = partitions_def.get_partition_keys(current_time=context.scheduled_execution_time)
        if day not in keys:
            return SkipReason(f"{day} is outside the partitions of {node.table}")
        tick = context.scheduled_execution_time.isoformat()
        return RunRequest(run_key=f"{node.table}:{day}:{tick}", partition_key=day)

    return day_schedule


def log_dump_schedules(log_dump_job) -> list:
    """The raw log table's daily dump of the day that just ended (its partitions run through today, so the
    latest partition is today's: the day is named here), after which the log side follows."""
    if log_dump_job is None:
        return []
    status = DefaultScheduleStatus.RUNNING if automation_enabled() else DefaultScheduleStatus.STOPPED

    @schedule(
        name="log_dump_schedule",
        cron_schedule="15 0 * * *",
        job=log_dump_job,
        execution_timezone="UTC",
        default_status=status,
        description="@daily: dump the day's logged fetches; the flattened logs, stats and consistency follow",
    )
    def log_dump_schedule(context: ScheduleEvaluationContext):
        ended = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        return RunRequest(run_key=f"log_dump:{ended}", partition_key=ended)

    return [log_dump_schedule]


def source_partition_sensor(graph: dict[str, Node], list_partitions: PartitionLister | None) -> list[SensorDefinition]:
    """`new_source_partitions`: verifies new days of the source tables (see the module's docstring)."""
    sources = {node.table: asset_key(node.table) for node in graph.values() if node.kind == SOURCE}
    if not sources:
        return []
    status = DefaultSensorStatus.RUNNING if automation_enabled() else DefaultSensorStatus.STOPPED

    @sensor(
        name=SOURCE_SENSOR,
        minimum_interval_seconds=60,
        asset_selection=AssetSelection.assets(*sources.values()),
        default_status=status,
        description="Verifies each new day of the source tables, so that automation materializes what reads it",
    )
    def new_source_partitions(context: SensorEvaluationContext):
        if list_partitions is None:
            return SkipReason("the warehouse is not on a local file system: source days are not listed")
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        requests = []
        for table, key in sources.items():
            days = list(list_partitions(table))
            if not days:
                continue
            latest = seen.get(table) or _latest_recorded(context, key)
            new = [ds for ds in days if latest is None or ds > latest]
            if latest is None:
                new = new[-1:]
            requests += [RunRequest(run_key=f"{table}:{ds}", asset_selection=[key], partition_key=ds) for ds in new]
            seen[table] = days[-1]
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return requests or SkipReason("no new source partitions")

    return [new_source_partitions]


def _latest_recorded(context: SensorEvaluationContext, key: AssetKey) -> str | None:
    materialized = context.instance.get_materialized_partitions(key)
    return max(materialized) if materialized else None


def with_eager_automation(assets: Sequence[AssetsDefinition], excluded: set[AssetKey]) -> list[AssetsDefinition]:
    """The assets with `AutomationCondition.eager()`, except the excluded ones (source tables, the log dump:
    they read what is outside the graph, so nothing upstream tells them when to run)."""

    def eager(spec):
        return spec.replace_attributes(automation_condition=AutomationCondition.eager())

    return [asset if set(asset.keys) & excluded else map_asset_specs(eager, [asset])[0] for asset in assets]


def automation_sensors(assets: Sequence[AssetsDefinition]) -> list:
    """The sensor evaluating the eager conditions (one, over every asset that has one)."""
    keys = [key for asset in assets for key, condition in asset.automation_conditions_by_key.items() if condition]
    if not keys:
        return []
    status = DefaultSensorStatus.RUNNING if automation_enabled() else DefaultSensorStatus.STOPPED
    return [
        AutomationConditionSensorDefinition(
            AUTOMATION_SENSOR,
            target=AssetSelection.assets(*keys),
            default_status=status,
            minimum_interval_seconds=30,
            description="Materializes the latest day of an asset once its inputs of that day are updated",
        )
    ]


# A day's partition of an online dataset or of the fetch log must be there by 23:00 UTC of the next day: about a
# day late is a failed check.
FRESHNESS_DEADLINE_CRON = "0 23 * * *"


def freshness(keys: Sequence[AssetKey]) -> tuple[list, list]:
    """Freshness checks on `keys` (daily-partitioned: the online loads and the log table) and their sensor."""
    if not keys:
        return [], []
    checks = build_time_partition_freshness_checks(
        assets=list(keys), deadline_cron=FRESHNESS_DEADLINE_CRON, severity=AssetCheckSeverity.ERROR
    )
    status = DefaultSensorStatus.RUNNING if automation_enabled() else DefaultSensorStatus.STOPPED
    sensor = build_sensor_for_freshness_checks(
        freshness_checks=checks, name="freshness_checks", default_status=status, minimum_interval_seconds=600
    )
    return list(checks), [sensor]
