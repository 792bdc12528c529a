"""Stats commands: `stats-summary` (a join output's daily stats) and `log-summary` (the stats of the join's
flattened log `_logged`), Chronon's `run.py --mode stats-summary` and `log-summary`.

Both materialize the Dagster assets the UI shows (`definitions.stats_assets`): the stats table, its checks
(drift, null-rate spike, row-count change) and its online upload table, for the days given as one run.
Days: --ds, or --start-ds/--end-ds (either alone is that one day); without them, every day the summarized
table has. Exit code 1 when the run fails or a check fails with severity ERROR.
"""

from __future__ import annotations

import argparse
import sys

from feature_assets.cli.arguments import UsageError, compiled_conf, day_arguments, ds, table_days
from feature_assets.cli.online import _run_id, _use_warehouse

MAX_CHECK_LINES = 12


def _summary(command: str, args: argparse.Namespace, logged: bool) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.factory import REPO_SETTINGS
    from feature_assets.definitions.runs import quiet_dagster_warnings
    from feature_assets.definitions.stats_assets import (
        LOGGED_STATS_JOB,
        SAMPLE_PERCENT_TAG,
        STATS_JOB,
        stats_asset_key,
        upload_asset_key,
    )
    from feature_assets.model import Join
    from feature_assets.quality.stats_tables import summarized_table

    if args.sample_percent is not None and not 0 < args.sample_percent <= 100:
        raise UsageError(f"--sample-percent {args.sample_percent:g}: expected a share in (0, 100]")
    _use_warehouse(args)
    conf = compiled_conf(args.conf)
    join = load_compiled_file(conf)
    if not isinstance(join, Join):
        raise UsageError(f"{args.conf} is not a join")
    start, end = day_arguments(args)
    if not (start and end):
        start, end = table_days(summarized_table(join, logged), "materialize it first")
    repo = next(parent.parent for parent in conf.resolve().parents if parent.name == "production")
    job = LOGGED_STATS_JOB if logged else STATS_JOB
    quiet_dagster_warnings()
    # The partitions start at the range's first day when the repo's start later (as a backfill from it).
    defs = build_definitions(repo)
    partitions = defs.resolve_job_def(job).partitions_def if any(j.name == job for j in defs.jobs or []) else None
    first = partitions.get_first_partition_key() if partitions is not None else None
    if first is None or start < first:
        defs = build_definitions(repo, start_date=start)
    keys = [stats_asset_key(join, logged), upload_asset_key(join, logged)]
    if not all(defs.resolve_asset_graph().has(key) for key in keys):
        raise UsageError(
            f"no asset {keys[0].to_user_string()}: the join needs a flattened log (online or bootstrapped from its "
            "log, and a schema group-by in the repo)"
        )
    last = defs.resolve_job_def(job).partitions_def.get_last_partition_key()  # type: ignore[union-attr]
    if last is not None and end > last:
        raise UsageError(f"{end} is after the assets' last daily partition {last} (end_date in {repo / REPO_SETTINGS})")
    tags = {SAMPLE_PERCENT_TAG: str(args.sample_percent)} if args.sample_percent is not None else {}
    return _run(command, args, defs, job, keys, start, end, tags)


def _run(command: str, args: argparse.Namespace, defs, job: str, keys: list, start: str, end: str, tags) -> int:
    from feature_assets.definitions.runs import default_instance, run_log_path, write_run_log
    from feature_assets.definitions.stats_runs import materialize_stats

    run_id = _run_id(args)
    instance = default_instance()
    log_level = "INFO" if args.verbose else "CRITICAL"
    stats = materialize_stats(defs, job, keys, start, end, tags, instance=instance, run_id=run_id, log_level=log_level)
    log_path = run_log_path(run_id)
    write_run_log(instance, run_id, log_path)
    for item in stats.run.materialized:
        print(_line(item))
    for check in stats.checks:
        status = "passed" if check.passed else check.severity
        print(f"check {check.name} of {check.asset}: {status}")
        lines = [line for line in check.description.splitlines() if line.strip()]
        for line in lines[:MAX_CHECK_LINES]:
            print(f"    {line}")
        if len(lines) > MAX_CHECK_LINES:
            print(f"    and {len(lines) - MAX_CHECK_LINES} more lines (in the check's description in the UI)")
    for error in stats.run.errors:
        print(f"feature-assets {command}: {error}", file=sys.stderr)
    if not stats.run.success:
        print(f"feature-assets {command}: Dagster run {run_id} failed; its full log is in {log_path}", file=sys.stderr)
        return 1
    print(f"(Dagster run {run_id[:8]}, in the UI's Runs page)")
    return 1 if stats.errors else 0


def _line(item) -> str:
    metadata = item.metadata
    line = f"materialized {item.asset} [{item.partition}] rows={metadata.get('dagster/row_count', '?')}"
    if "columns_warn" in metadata:
        line += f" drift: {int(metadata['columns_warn'])} WARN, {int(metadata['columns_error'])} ERROR"
        if "max_jensen_shannon" in metadata:
            line += f" (max JS {metadata['max_jensen_shannon']:.3f}, max PSI {metadata.get('max_psi', 0.0):.3f})"
    if "chart" in metadata:
        line += f"\n    chart: {metadata['chart']}"
    return line


def cmd_stats_summary(args: argparse.Namespace) -> int:
    return _summary("stats-summary", args, logged=False)


def cmd_log_summary(args: argparse.Namespace) -> int:
    return _summary("log-summary", args, logged=True)


def add_quality_commands(commands) -> None:
    for name, func, what in (
        ("stats-summary", cmd_stats_summary, "a join output's daily column stats, drift checks and upload table"),
        ("log-summary", cmd_log_summary, "the daily column stats, drift checks and upload table of a join's log"),
    ):
        parser = commands.add_parser(name, help=what)
        parser.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v2")
        parser.add_argument("--ds", type=ds, help="the day, YYYY-MM-DD")
        parser.add_argument("--start-ds", type=ds, help="the first day (default: the table's first)")
        parser.add_argument("--end-ds", type=ds, help="the last day, included (default: the table's last)")
        parser.add_argument(
            "--sample-percent",
            type=float,
            help="the share of rows summarized, in (0, 100]; 100 = every row (default: the join's "
            "stats_sample_percent, else 10)",
        )
        parser.add_argument("--warehouse")
        parser.add_argument("--verbose", action="store_true", help="print Dagster's and Spark's logs")
        parser.set_defaults(func=func)
