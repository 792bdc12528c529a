"""Consistency commands: `consistency-metrics-compute` (Chronon's `run.py --mode consistency-metrics-compute`),
and the consistency parts of `load --table` and `fetch --type join-consistency`.

`consistency-metrics-compute --conf <join>` materializes the Dagster assets the UI shows
(`definitions.consistency_assets`): the join recomputed for its sampled logged requests (`_comparison`), the
consistency metrics with their check (`_consistency`, `consistency_drift`) and the online upload table, for the
days given as one run. Days: --ds, or --start-ds/--end-ds (either alone is that one day); without them, every
day the join's `_logged` table has. It prints the check's result; exit code 1 when the run fails or the check
fails with severity ERROR.
"""

from __future__ import annotations

import argparse
import json
import sys

from feature_assets.cli.arguments import UsageError, compiled_conf, day_arguments, ds, table_days
from feature_assets.cli.online import _online_store, _run_id, _use_warehouse, load_daily_table

COMMAND = "consistency-metrics-compute"
MAX_CHECK_LINES = 12


def cmd_consistency_metrics_compute(args: argparse.Namespace) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.consistency_assets import CONSISTENCY_JOB, SAMPLE_PERCENT_TAG
    from feature_assets.definitions.consistency_runs import missing_consistency_assets
    from feature_assets.definitions.runs import quiet_dagster_warnings
    from feature_assets.model import Join

    if args.sample_percent is not None and not 0 < args.sample_percent <= 100:
        raise UsageError(f"--sample-percent {args.sample_percent:g}: expected a share in (0, 100]")
    _use_warehouse(args)
    conf = compiled_conf(args.conf)
    join = load_compiled_file(conf)
    if not isinstance(join, Join):
        raise UsageError(f"{args.conf} is not a join")
    if not join.meta.check_consistency:
        raise UsageError(
            f"join {join.name} is not checked for consistency: set check_consistency=True on it (and "
            "consistency_sample_percent) and compile"
        )
    start, end = day_arguments(args)
    if not (start and end):
        first_step = "dump and flatten the fetch log first (log-dump, log-flattener)"
        start, end = table_days(join.logged_table, first_step)
    repo = next(parent.parent for parent in conf.resolve().parents if parent.name == "production")
    quiet_dagster_warnings()
    # The partitions start at the range's first day when the repo's start later (as a backfill from it).
    defs = build_definitions(repo)
    has_job = any(job.name == CONSISTENCY_JOB for job in defs.jobs or [])
    partitions = defs.resolve_job_def(CONSISTENCY_JOB).partitions_def if has_job else None
    first = partitions.get_first_partition_key() if partitions is not None else None
    if first is None or start < first:
        defs = build_definitions(repo, start_date=start)
    missing = missing_consistency_assets(defs, join)
    if missing:
        raise UsageError(
            f"no asset {missing[0]}: the join needs a flattened log (online or bootstrapped from its log, and a "
            "schema group-by in the repo)"
        )
    partitions = defs.resolve_job_def(CONSISTENCY_JOB).partitions_def
    last = partitions.get_last_partition_key() if partitions is not None else None
    if last is not None and end > last:
        raise UsageError(f"{end} is after the last day of the log's partitions ({last})")
    tags = {SAMPLE_PERCENT_TAG: str(args.sample_percent)} if args.sample_percent is not None else {}
    return _run(args, defs, join, start, end, tags)


def _run(args: argparse.Namespace, defs, join, start: str, end: str, tags: dict[str, str]) -> int:
    from feature_assets.definitions.consistency_runs import materialize_consistency
    from feature_assets.definitions.runs import default_instance, run_log_path, write_run_log

    run_id = _run_id(args)
    instance = default_instance()
    log_level = "INFO" if args.verbose else "CRITICAL"
    result = materialize_consistency(
        defs, join, start, end, tags, instance=instance, run_id=run_id, log_level=log_level
    )
    log_path = run_log_path(run_id)
    write_run_log(instance, run_id, log_path)
    for item in result.run.materialized:
        metadata = item.metadata
        line = f"materialized {item.asset} [{item.partition}] rows={metadata.get('dagster/row_count', '?')}"
        if "consistency" in metadata:
            line += f" consistency: {metadata['consistency']}"
            if "overall_mismatch_rate" in metadata:
                line += f" (overall mismatch rate {metadata['overall_mismatch_rate']:.4g})"
        print(line)
    for check in result.checks:
        status = "passed" if check.passed else check.severity
        print(f"check {check.name} of {check.asset}: {status}")
        lines = [line for line in check.description.splitlines() if line.strip()]
        for line in lines[:MAX_CHECK_LINES]:
            print(f"    {line}")
        if len(lines) > MAX_CHECK_LINES:
            print(f"    and {len(lines) - MAX_CHECK_LINES} more lines (in the check's description in the UI)")
    for error in result.run.errors:
        print(f"feature-assets {COMMAND}: {error}", file=sys.stderr)
    if not result.run.success:
        print(f"feature-assets {COMMAND}: Dagster run {run_id} failed; its full log is in {log_path}", file=sys.stderr)
        return 1
    print(f"(Dagster run {run_id[:8]}, in the UI's Runs page)")
    return 1 if result.errors else 0


def load_consistency_table(args: argparse.Namespace, table: str) -> int:
    """`load --table <join table>_consistency_upload`: its days (all, --ds, or --start-ds..--end-ds) into the
    online store."""
    from feature_assets.online.fetch.consistency import dataset_of_consistency_upload_table, load_consistency
    from feature_assets.quality.consistency_tables import upload_rows

    return load_daily_table(
        args, table, dataset_of_consistency_upload_table(table), load_consistency, upload_rows, COMMAND
    )


def fetch_join_consistency(args: argparse.Namespace, keys) -> int:
    """`fetch --type join-consistency`: print a join's consistency buckets in the range
    `-k '{"startTs": ..., "endTs": ...}'`, per compared feature column."""
    from feature_assets.online.fetch.consistency import NoConsistency, fetch_consistency, join_consistency_dataset
    from feature_assets.online.fetch.stats import time_range
    from feature_assets.online.store import StoreUnavailable

    try:
        start_ts, end_ts = time_range(keys)
    except ValueError as error:
        print(f"-k: {error}", file=sys.stderr)
        return 2
    store, _, _ = _online_store()
    try:
        result = fetch_consistency(store, join_consistency_dataset(args.name), start_ts, end_ts)
    except (NoConsistency, StoreUnavailable) as error:
        print(str(error), file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(result, indent=2))
    return 0


def add_consistency_commands(commands) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="recompute a join's logged requests offline, compare them with the served values, check and upload",
    )
    parser.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v2")
    parser.add_argument("--ds", type=ds, help="the day, YYYY-MM-DD")
    parser.add_argument("--start-ds", type=ds, help="the first day (default: the join's _logged table's first)")
    parser.add_argument("--end-ds", type=ds, help="the last day, included (default: the _logged table's last)")
    parser.add_argument(
        "--sample-percent",
        type=float,
        help="the share of logged requests recomputed, in (0, 100] (default: the join's consistency_sample_percent)",
    )
    parser.add_argument("--warehouse")
    parser.add_argument("--verbose", action="store_true", help="print Dagster's and Spark's logs")
    parser.set_defaults(func=cmd_consistency_metrics_compute)
