"""Fetch log commands: `log-dump` (the log store's days into the raw log table) and `log-flattener` (a join's
logged rows decoded into its `_logged` table), Chronon's MongoLoggingDumper and `run.py --mode log-flattener`.

Both materialize the Dagster assets the UI shows (`definitions.log_assets`) for the days given, as one run.
Without FEATURE_ASSETS_MONGO_URI, `log-dump` reads the embedded MongoDB-protocol server of `.services`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from feature_assets.cli.arguments import UsageError, compiled_conf, day_arguments, ds, table_days
from feature_assets.cli.online import _run_id, _use_warehouse

# Commands that read the log store: the CLI starts the embedded servers they need (see `cli._run`).
NEEDS_LOG_STORE = {"log-dump"}


def _days(args: argparse.Namespace) -> tuple[str, str]:
    """--ds, or --start-ds/--end-ds (either alone is that one day)."""
    start, end = day_arguments(args)
    if not (start and end):
        raise UsageError("give the day(s): --ds YYYY-MM-DD, or --start-ds and --end-ds")
    return start, end


def _definitions(repo: Path, start_ds: str, job: str):
    """The repo's Definitions with partitions from the repo's first day, or from `start_ds` when earlier."""
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.runs import quiet_dagster_warnings

    quiet_dagster_warnings()
    defs = build_definitions(repo)
    partitions = defs.resolve_job_def(job).partitions_def if _has_job(defs, job) else None
    first = partitions.get_first_partition_key() if partitions is not None else None
    return build_definitions(repo, start_date=start_ds) if first is None or start_ds < first else defs


def _check_last_day(defs, job: str, repo: Path, end_ds: str) -> None:
    """A day after the assets' last partition is refused before any run (a repo's end_date can end them)."""
    from feature_assets.definitions.factory import REPO_SETTINGS

    partitions = defs.resolve_job_def(job).partitions_def
    last = partitions.get_last_partition_key() if partitions is not None else None
    if last is not None and end_ds > last:
        raise UsageError(
            f"{end_ds} is after the assets' last daily partition {last} (end_date in {repo / REPO_SETTINGS}, else "
            "yesterday in UTC); a fetch is logged on the day of its request time (--at-millis)"
        )


def _has_job(defs, job: str) -> bool:
    return any(j.name == job for j in defs.jobs or [])


def _run(command: str, args: argparse.Namespace, defs, job: str, keys: list, start: str, end: str, tags: dict) -> int:
    from feature_assets.definitions.log_runs import materialize_logs
    from feature_assets.definitions.runs import default_instance, run_log_path, write_run_log

    run_id = _run_id(args)
    instance = default_instance()
    log_level = "INFO" if args.verbose else "CRITICAL"
    run = materialize_logs(defs, job, keys, start, end, tags, instance=instance, run_id=run_id, log_level=log_level)
    log_path = run_log_path(run_id)
    write_run_log(instance, run_id, log_path)
    for item in run.materialized:
        print(_line(item))
    for error in run.errors:
        print(f"feature-assets {command}: {error}", file=sys.stderr)
    if run.success:
        print(f"(Dagster run {run_id[:8]}, in the UI's Runs page)")
        return 0
    print(f"feature-assets {command}: Dagster run {run_id} failed; its full log is in {log_path}", file=sys.stderr)
    return 1


def _line(item) -> str:
    line = f"materialized {item.asset} [{item.partition}] rows={item.metadata.get('dagster/row_count', '?')}"
    undecodable = (item.metadata.get("undecodable_by_day") or {}).get(item.partition)
    if undecodable:
        line += f" undecodable={undecodable} (dropped; reasons in the run's metadata)"
    return line


def cmd_log_dump(args: argparse.Namespace) -> int:
    from feature_assets.definitions.assets import asset_key
    from feature_assets.definitions.log_assets import DUMP_JOB, LOG_SOURCE_TAG, LOG_TOPIC_TAG
    from feature_assets.model.logs import RAW_LOG_TABLE

    start, end = _days(args)
    _use_warehouse(args)
    repo = Path(args.repo or ".").resolve()
    defs = _definitions(repo, start, DUMP_JOB)
    if not defs.resolve_asset_graph().has(asset_key(RAW_LOG_TABLE)):
        raise UsageError(f"{repo} has no online join nor schema group-by: nothing logs fetches there")
    _check_last_day(defs, DUMP_JOB, repo, end)
    tags = {LOG_SOURCE_TAG: args.source, LOG_TOPIC_TAG: args.topic}
    return _run("log-dump", args, defs, DUMP_JOB, [asset_key(RAW_LOG_TABLE)], start, end, tags)


def cmd_log_flattener(args: argparse.Namespace) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions.assets import asset_key
    from feature_assets.definitions.log_assets import FLATTEN_JOB, LOG_TABLE_TAG, SCHEMA_TABLE_TAG
    from feature_assets.model import Join
    from feature_assets.naming import qualified

    _use_warehouse(args)
    # The conf first: a wrong conf is the fault to name even when the log table has no day yet.
    conf = compiled_conf(args.conf)
    join = load_compiled_file(conf)
    if not isinstance(join, Join):
        raise UsageError(f"{args.conf} is not a join")
    start, end = day_arguments(args)
    if not (start and end):
        start, end = table_days(qualified(args.log_table), "run log-dump first")
    repo = next(parent.parent for parent in conf.resolve().parents if parent.name == "production")
    defs = _definitions(repo, start, FLATTEN_JOB)
    key = asset_key(qualified(join.logged_table))
    if not defs.resolve_asset_graph().has(key):
        raise UsageError(
            f"no asset {key.to_user_string()}: the join must be online or bootstrap from its log, and the repo "
            "needs a schema group-by (e.g. group_bys/quickstart/schema.py, compiled)"
        )
    _check_last_day(defs, FLATTEN_JOB, repo, end)
    tags = {LOG_TABLE_TAG: qualified(args.log_table), SCHEMA_TABLE_TAG: qualified(args.schema_table)}
    return _run("log-flattener", args, defs, FLATTEN_JOB, [key], start, end, tags)


def add_logging_commands(commands) -> None:
    dump = commands.add_parser("log-dump", help="fill the raw fetch log table for days from the log store")
    dump.add_argument("--ds", type=ds, help="the day, YYYY-MM-DD")
    dump.add_argument("--start-ds", type=ds, help="the first day of a range")
    dump.add_argument("--end-ds", type=ds, help="the last day of a range (included)")
    dump.add_argument("--source", choices=["mongo", "kafka"], default="mongo", help="the log store (default mongo)")
    dump.add_argument("--topic", default="fetch_log", help="the Kafka topic with --source kafka")
    dump.add_argument("--repo", help="the feature repo (default: the current folder)")
    dump.add_argument("--warehouse")
    dump.add_argument("--verbose", action="store_true")
    dump.set_defaults(func=cmd_log_dump)

    flattener = commands.add_parser("log-flattener", help="decode a join's logged fetches into its _logged table")
    flattener.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v2")
    flattener.add_argument("--log-table", default="default.chronon_log_table")
    flattener.add_argument("--schema-table", default="default.quickstart_schema_v1")
    flattener.add_argument("--ds", type=ds, help="the day, YYYY-MM-DD")
    flattener.add_argument("--start-ds", type=ds, help="the first day of a range")
    flattener.add_argument("--end-ds", type=ds, help="the last day of a range (included)")
    flattener.add_argument("--warehouse")
    flattener.add_argument("--verbose", action="store_true")
    flattener.set_defaults(func=cmd_log_flattener)
