"""Launching asset backfills in-process through Dagster: the CLI's path, the same code as the UI's.

Also what a command needs around a run: the source partitions a backfill reads (checked before it starts,
so a range without its inputs records nothing in Dagster), a failed run's cause in a few lines, and the
run's full event log written to a file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import dagster
from dagster import DagsterEventType, DagsterInstance, Definitions

from feature_assets.definitions.factory import LocalWarehouse, is_local_root, job_name
from feature_assets.definitions.graph import GROUP_BY, JOIN, LOG_TABLE, SOURCE, STAGING_QUERY, Node
from feature_assets.storage import date_range, default_root

if TYPE_CHECKING:  # only a type here; its module is Dagster's internal one
    from dagster._utils.error import SerializableErrorInfo

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
KIND_OF_FOLDER = {"joins": "join", "group_bys": "group_by", "staging_queries": "staging_query"}
NODE_KIND_OF_FOLDER = {"joins": JOIN, "group_bys": GROUP_BY, "staging_queries": STAGING_QUERY}
DAGSTER_HOME_ENV = "DAGSTER_HOME"
DEFAULT_DAGSTER_HOME = ".dagster_home"
RUN_LOGS_FOLDER = "logs"
# The instance file written when there is none: local storage under DAGSTER_HOME, and no telemetry (whose
# first-run banner would land in the middle of a command's output).
DEFAULT_INSTANCE_YAML = """\
# Written by feature-assets for a new Dagster home; edit freely, it is never overwritten.
telemetry:
  enabled: false
"""
MAX_DAYS_SHOWN = 10
MAX_LINE = 400


def quiet_dagster_warnings() -> None:
    """Dagster's beta/preview notices about the APIs the asset factories use are noise on a terminal."""
    for category in (dagster.BetaWarning, dagster.PreviewWarning, dagster.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def quiet_spark_loggers() -> None:
    """Silence PySpark's and py4j's Python loggers: a command reports errors itself, in its own lines.

    py4j logs connection notices at exit; PySpark logs every SQL error it raises as a JSON line on stderr
    (`SQLQueryContextLogger`) before the error reaches the command.
    """
    for name in ("py4j", "pyspark", "SQLQueryContextLogger"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def dagster_home() -> Path:
    """`$DAGSTER_HOME`, else `.dagster_home` in the current folder (then exported: Dagster reads the variable)."""
    home = Path(os.environ.setdefault(DAGSTER_HOME_ENV, str(Path.cwd() / DEFAULT_DAGSTER_HOME))).resolve()
    os.environ[DAGSTER_HOME_ENV] = str(home)  # Dagster wants an absolute path
    return home


def default_instance() -> DagsterInstance:
    """The persistent instance the UI reads, in `dagster_home()`; a user's own dagster.yaml is kept as it is."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        config.write_text(DEFAULT_INSTANCE_YAML)
    return DagsterInstance.get()


# The name Dagster gives the checks of `build_time_partition_freshness_checks`.
FRESHNESS_CHECK = "freshness_check"


def execute_days(
    defs: Definitions,
    job: str,
    keys: Iterable[dagster.AssetKey],
    start_ds: str,
    end_ds: str,
    tags: Mapping[str, str] | None = None,
    instance: DagsterInstance | None = None,
    run_id: str | None = None,
    log_level: str = "CRITICAL",
) -> dagster.ExecuteInProcessResult:
    """`keys` of `job` for the days [start_ds, end_ds] as one in-process run (a single-run range), on the
    default instance unless given, so the run is in the UI's history; failures are in the result."""
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance or default_instance(),
        asset_selection=list(keys),
        tags={RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds, **(tags or {})},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
        run_id=run_id,
    )


def run_log_path(run_id: str) -> Path:
    """Where a command writes a run's full log: `<DAGSTER_HOME>/logs/<run id>.log`."""
    return dagster_home() / RUN_LOGS_FOLDER / f"{run_id}.log"


def command_log_path(command: str) -> Path:
    """Where a command that runs no Dagster run (e.g. `show`) writes Spark's output: `<DAGSTER_HOME>/logs/`."""
    return dagster_home() / RUN_LOGS_FOLDER / f"{command}.log"


def run_backfill(
    defs: Definitions,
    folder_kind: str,
    name: str,
    start_ds: str,
    end_ds: str,
    instance: DagsterInstance | None = None,
    log_level: str = "WARNING",
    run_id: str | None = None,
):
    """Materialize `name` and everything upstream of it for [start_ds, end_ds] as one run."""
    job = defs.resolve_job_def(job_name(KIND_OF_FOLDER[folder_kind], name))
    result = job.execute_in_process(
        instance=instance or default_instance(),
        tags={RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
        run_id=run_id,
    )
    return result


def run_job(
    defs: Definitions,
    name: str,
    start_ds: str | None = None,
    end_ds: str | None = None,
    instance: DagsterInstance | None = None,
    log_level: str = "WARNING",
):
    """Run one job of the Definitions (for a partition range when given) in-process."""
    tags = {RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds or start_ds} if start_ds else {}
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance or default_instance(),
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )


def last_partition(defs: Definitions, folder_kind: str, name: str) -> str | None:
    """The last daily partition of a backfill job's assets (today's partition is not there until tomorrow)."""
    partitions_def = defs.resolve_job_def(job_name(KIND_OF_FOLDER[folder_kind], name)).partitions_def
    return partitions_def.get_last_partition_key() if partitions_def is not None else None


# --- inputs: checked before a run ---------------------------------------------------------------


class PartitionListing(Protocol):
    """What the input check needs of a warehouse (a `Warehouse`, or a `LocalWarehouse` without Spark)."""

    def partitions(self, table: str) -> list[str]: ...

    def table_path(self, table: str) -> str: ...


@dataclass(frozen=True)
class MissingPartitions:
    table: str
    days: list[str]
    where: str

    @property
    def message(self) -> str:
        shown = ", ".join(self.days[:MAX_DAYS_SHOWN])
        if len(self.days) > MAX_DAYS_SHOWN:
            shown += f" and {len(self.days) - MAX_DAYS_SHOWN} more"
        return (
            f"source table {self.table!r} has no partition for {len(self.days)} day(s): {shown} "
            f"(looked in {self.where}); generate or load them, or pick days that exist"
        )


def target_node(graph: dict[str, Node], folder_kind: str, name: str) -> Node:
    kind = NODE_KIND_OF_FOLDER[folder_kind]
    return next(node for node in graph.values() if node.kind == kind and node.name == name)


def upstream_sources(graph: dict[str, Node], table: str) -> list[Node]:
    """The source tables a backfill job of `table` materializes: every source node upstream of it."""
    seen: set[str] = set()
    pending = [table]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending += [edge.table for edge in graph[current].upstream]
    # The log table is read as it is (the log dump is not part of a backfill): an input like a source.
    return [graph[t] for t in sorted(seen) if graph[t].kind in (SOURCE, LOG_TABLE)]


def missing_inputs(sources: Iterable[Node], start_ds: str, end_ds: str, listing: PartitionListing) -> list:
    """The source partitions of [start_ds, end_ds] that are not there, by the rule the source assets apply.

    Each source asset of a backfill materializes the same range as the target and fails on a missing day;
    an optional source (a join's log table) may miss days or be missing as a whole (read as empty). Earlier
    days that windows reach back to are not required: an aggregation over days before the data starts sees
    fewer events, not an error.
    """
    found = []
    for node in sources:
        present = set(listing.partitions(node.table))
        missing = [ds for ds in date_range(start_ds, end_ds) if ds not in present]
        if missing and not node.optional:
            found.append(MissingPartitions(node.table, missing, listing.table_path(node.table)))
    return found


def warehouse_listing(resources: Mapping[str, Any]) -> PartitionListing:
    """The warehouse of a Definitions' resources: its folders read directly if local, else through Spark."""
    warehouse = resources["warehouse"].process_config_and_initialize()
    root = warehouse.root or default_root()
    if is_local_root(root):
        return LocalWarehouse(root)
    return warehouse.get(resources["spark"].process_config_and_initialize().get_session())


# --- a failed run in a few lines -----------------------------------------------------------------

# Dagster wraps the error raised in a step; the wrapped error is the one to show.
DAGSTER_WRAPPERS = (
    "DagsterExecutionStepExecutionError",
    "DagsterUserCodeExecutionError",
    "DagsterResourceFunctionError",
)


@dataclass(frozen=True)
class StepFailure:
    asset: str  # the asset key of the failed step ("" when the run failed outside a step)
    cause: list[str]  # the error, in at most two lines: the message and its root cause


def run_failures(result) -> list[StepFailure]:
    """Why a run failed: each failed step's error, else the run's own (e.g. a resource that did not start)."""
    layer = result.job_def.asset_layer
    failures = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = data.user_failure_data
            cause = [_short(user.description)] if user and user.description else error_lines(data.error)
            failures.append(StepFailure(layer.get_asset_key_for_node(event.node_handle).to_user_string(), cause))
    if not failures:
        for event in result.all_events:
            if event.event_type == DagsterEventType.RUN_FAILURE and event.event_specific_data.error:
                failures.append(StepFailure("", error_lines(event.event_specific_data.error)))
    return failures


def assets_not_run(result, failed: set[str]) -> list[str]:
    """The job's assets that neither materialized nor failed: those downstream of a failure."""
    selected = {key.to_user_string() for key in result.job_def.asset_layer.selected_asset_keys}
    done = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    return sorted(selected - done - failed)


def error_lines(error: SerializableErrorInfo | None) -> list[str]:
    """An error as its message's first line and, for a JVM error, the innermost `Caused by:`.

    Spark's errors arrive as their Java stack traces (hundreds of lines); what a user needs is the error
    class and message (`[FAILED_READ_FILE.NO_HINT] Encountered error while reading file ...`) and what
    caused it at the bottom (`... is not a Parquet file`).
    """
    while error is not None and error.cls_name in DAGSTER_WRAPPERS and error.cause is not None:
        error = error.cause
    if error is None:
        return ["unknown error"]
    message = error.message.split("\nJVM stacktrace:")[0]  # PySpark's copy of the Java trace
    lines = [_without_class_path(line.strip().removeprefix(": ")) for line in message.split("\n")]
    lines = [line for line in lines if line and not _is_trace(line)]
    first = next((line for line in lines if not line.startswith(("An error occurred", "Caused by: "))), None)
    summary = [_short(first or error.cls_name or "unknown error")]
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    if causes:
        summary.append("caused by: " + _short(_without_class_path(causes[-1])))
    return summary


def _is_trace(line: str) -> bool:
    return line.startswith(("at ", "... ", "File ")) or line == "Traceback (most recent call last):"


def _without_class_path(line: str) -> str:
    """`org.apache.spark.SparkException: [X] ...` -> `[X] ...`; `builtins.KeyError: 'a'` -> `KeyError: 'a'`."""
    head, sep, rest = line.partition(": ")
    if not sep or " " in head:
        return line
    if head.startswith(("java.", "org.", "scala.", "py4j.", "dagster.")) or head.endswith("SparkException"):
        return rest
    return f"{head.rsplit('.', 1)[-1]}: {rest}"


def _short(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def write_run_log(instance: DagsterInstance, run_id: str, path: Path) -> None:
    """Append a run's event log, with every error's full trace, to `path` (Spark's own log may be there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(f"\n===== Dagster event log of run {run_id} =====\n")
        for record in instance.all_logs(run_id):
            when = dt.datetime.fromtimestamp(record.timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            level = logging.getLevelName(record.level) if isinstance(record.level, int) else record.level
            event = record.dagster_event
            kind = event.event_type_value if event else "LOG"
            message = record.user_message or (event.message if event else "") or ""
            log.write(f"{when} {level} {record.step_key or '-'} {kind}: {message}\n")
            for error in _errors_of(record):
                log.write(error.to_string() + "\n")


def _errors_of(record) -> list[SerializableErrorInfo]:
    event = record.dagster_event
    errors = [record.error_info] if record.error_info else []
    if event is not None and event.is_step_failure:
        errors.append(event.step_failure_data.error)
    elif event is not None and event.event_type == DagsterEventType.RUN_FAILURE and event.event_specific_data:
        errors.append(event.event_specific_data.error)
    return [error for error in errors if error is not None]
