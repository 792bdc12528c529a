"""Offline commands: compile, generate-data, backfill, show, quickstart (Chronon's compile.py and run.py modes).

Each command imports the layers it needs when it runs, so a command never pays for what it does not use.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

from feature_assets.cli.arguments import UsageError, check_range, compiled_conf, ds

MAX_TABLES_SHOWN = 10  # missing source tables listed before a backfill is refused
MAX_FAILURES_SHOWN = 2  # failed steps shown of a failed run; the log has them all


def _repo_of(conf: Path) -> Path:
    """The feature repo holding a compiled file: the parent of its `production/` folder."""
    for parent in conf.resolve().parents:
        if parent.name == "production":
            return parent.parent
    raise SystemExit(f"{conf} is not inside a feature repo's production/ folder")


def cmd_compile(args) -> int:
    from feature_assets.compiler import CompileError, compile_configs, default_warehouse, write_compiled

    repo = Path(args.repo or ".").resolve()
    warehouse = args.warehouse or default_warehouse()
    try:
        written = write_compiled(compile_configs(repo, args.conf, warehouse), force=args.force)
    except CompileError as error:
        print(f"compile error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path.relative_to(repo))
    return 0


def cmd_generate_data(args) -> int:
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data

    check_range(args.start_ds, args.end_ds)
    counts = generate_quickstart_data(
        args.warehouse, args.start_ds, args.end_ds, n_users=args.users, zipf_s=args.zipf_s, seed=args.seed
    )
    print(json.dumps(counts, indent=2))
    return 0


def cmd_backfill(args) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.runs import quiet_dagster_warnings, quiet_spark_loggers, run_log_path
    from feature_assets.resources.spark import SPARK_LOG_ENV

    check_range(args.start_ds, args.end_ds)
    conf = compiled_conf(args.conf)
    quiet_dagster_warnings()
    config = load_compiled_file(conf)
    repo = _repo_of(conf)
    run_id = str(uuid.uuid4())  # known before the run starts: Spark's output goes to the run's log from the start
    if not args.verbose:
        quiet_spark_loggers()
        os.environ[SPARK_LOG_ENV] = str(run_log_path(run_id))
    # The partitions start at --start-ds: the command alone is the contract, with or without repo settings.
    defs = build_definitions(repo, start_date=args.start_ds)
    _check_last_day(defs, repo, config.kind, config.name, args.end_ds)
    if _refuse_missing_inputs(repo, defs, config.kind, config.name, args.start_ds, args.end_ds):
        return 1
    return _run_backfill(defs, config.kind, config.name, run_id, args)


def _check_last_day(defs, repo: Path, kind: str, name: str, end_ds: str) -> None:
    from feature_assets.definitions.factory import REPO_SETTINGS, repo_settings
    from feature_assets.definitions.runs import last_partition

    last = last_partition(defs, kind, name)
    if last is not None and end_ds > last:
        why = (
            f"end_date in {repo / REPO_SETTINGS}"
            if repo_settings(repo).get("end_date")
            else "a day gets its partition once it is over, in UTC"
        )
        raise UsageError(f"--end-ds {end_ds} is after the assets' last daily partition {last} ({why})")


def _refuse_missing_inputs(repo: Path, defs, kind: str, name: str, start_ds: str, end_ds: str) -> bool:
    """Print the source partitions the range needs and does not have; True when there are any."""
    from feature_assets.compiler import load_compiled
    from feature_assets.definitions.graph import build_graph
    from feature_assets.definitions.runs import missing_inputs, target_node, upstream_sources, warehouse_listing

    graph = build_graph(load_compiled(repo))
    sources = upstream_sources(graph, target_node(graph, kind, name).table)
    missing = missing_inputs(sources, start_ds, end_ds, warehouse_listing(defs.resources))
    for gap in missing[:MAX_TABLES_SHOWN]:
        print(f"feature-assets backfill: {gap.message}", file=sys.stderr)
    if len(missing) > MAX_TABLES_SHOWN:
        print(f"feature-assets backfill: and {len(missing) - MAX_TABLES_SHOWN} more source tables", file=sys.stderr)
    if missing:
        print("feature-assets backfill: nothing was run (no Dagster run was started)", file=sys.stderr)
    return bool(missing)


def _run_backfill(defs, kind: str, name: str, run_id: str, args) -> int:
    from feature_assets.definitions.runs import default_instance, run_backfill, run_log_path, write_run_log

    instance = default_instance()
    log_level = "INFO" if args.verbose else "CRITICAL"  # the summary below is the output; the log has the rest
    result = run_backfill(
        defs, kind, name, args.start_ds, args.end_ds, instance=instance, log_level=log_level, run_id=run_id
    )
    log_path = run_log_path(run_id)
    write_run_log(instance, run_id, log_path)
    materialized = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    if not result.success:
        return _report_failure(result, name, args, materialized, log_path)
    for materialization in materialized:
        rows = materialization.metadata.get("dagster/row_count")
        print(
            f"materialized {materialization.asset_key.to_user_string()} [{materialization.partition}]"
            f" rows={rows.value if rows else '?'}"
        )
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for evaluation in failed_checks:
        print(f"check failed: {evaluation.asset_key.to_user_string()} {evaluation.check_name}", file=sys.stderr)
    if failed_checks:
        print(f"the checks' results are in Dagster run {run_id} (the UI's Runs page)", file=sys.stderr)
    return 1 if failed_checks else 0


def _report_failure(result, name: str, args, materialized: list, log_path: Path) -> int:
    """A failed run in at most 15 lines: where and why it failed, what was and was not done, what to do."""
    from feature_assets.definitions.runs import assets_not_run, run_failures

    if materialized:
        assets = sorted({m.asset_key.to_user_string() for m in materialized})
        print(f"materialized before the failure: {_some(assets)} [{args.start_ds}..{args.end_ds}]")
    failures = run_failures(result)
    _stderr(f"feature-assets backfill: {name} {args.start_ds}..{args.end_ds} failed")
    for failure in failures[:MAX_FAILURES_SHOWN]:
        where = f"{failure.asset} [{args.start_ds}..{args.end_ds}]" if failure.asset else "the run"
        _stderr(f"  {where}: {failure.cause[0]}")
        for line in failure.cause[1:]:
            _stderr(f"    {line}")
    if len(failures) > MAX_FAILURES_SHOWN:
        _stderr(f"  and {len(failures) - MAX_FAILURES_SHOWN} more failed steps (in the log)")
    not_run = assets_not_run(result, {failure.asset for failure in failures})
    if not_run:
        _stderr(f"  not run: {_some(not_run)}, which depend on it")
    _stderr("  what to do: fix the cause above, then run the same command again (it rewrites the whole range)")
    verbose_hint = "" if args.verbose else " (or add --verbose)"
    _stderr(f"  Dagster run {result.run_id}; full trace in {log_path}{verbose_hint}")
    return 1


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_show(args) -> int:
    from pyspark.errors import AnalysisException

    from feature_assets.definitions.factory import LocalWarehouse, is_local_root
    from feature_assets.definitions.runs import command_log_path, quiet_spark_loggers
    from feature_assets.naming import qualified
    from feature_assets.resources.spark import SPARK_LOG_ENV, SparkResource
    from feature_assets.storage import Warehouse, default_root

    root = args.warehouse or default_root()
    table = qualified(args.table)
    if is_local_root(root):  # a missing table or day is reported before Spark starts
        _check_partition(LocalWarehouse(root), table, args.ds, root)
    quiet_spark_loggers()
    os.environ.setdefault(SPARK_LOG_ENV, str(command_log_path("show")))
    store = Warehouse(SparkResource().get_session(), root)
    if not is_local_root(root):
        _check_partition(store, table, args.ds, root)
    frame = store.read(table, args.ds, args.ds)
    try:
        if args.where:
            frame = frame.where(args.where)
        frame.show(args.limit, truncate=args.truncate)
    except AnalysisException as error:
        raise UsageError(f"--where {args.where!r}: {str(error).splitlines()[0]}") from None
    return 0


def _check_partition(listing, table: str, ds: str, root: str) -> None:
    """A one-line usage error when the warehouse has no such table, or the table no such day."""
    days = listing.partitions(table)
    if not days:
        tables = listing.tables()
        found = f"its tables: {_some(tables, 8)}" if tables else "it has no tables yet: run generate-data or a backfill"
        raise UsageError(f"no table {table!r} in the warehouse {root} ({found})")
    if ds not in days:
        span = f"{days[0]}..{days[-1]}" if len(days) > 1 else days[0]
        raise UsageError(f"table {table!r} has no partition {ds} (it has {len(days)} day(s): {span})")


def cmd_quickstart(args) -> int:
    from feature_assets.definitions.runs import quiet_dagster_warnings
    from feature_assets.dev.quickstart import run

    quiet_dagster_warnings()
    return run(regenerate=args.regenerate)


def add_offline_commands(commands) -> None:

    compile_ = commands.add_parser("compile", help="compile configs to production/ JSON")
    compile_.add_argument("--conf", help="a config file such as joins/quickstart/training_set.py (default: all)")
    compile_.add_argument("--repo", help="the feature repo (default: the current folder)")
    compile_.add_argument("--force", action="store_true", help="overwrite changed online configs")
    compile_.add_argument(
        "--warehouse",
        help="check configs against the source tables found here "
        "(default: $FEATURE_ASSETS_WAREHOUSE, else ./data/warehouse)",
    )
    compile_.set_defaults(func=cmd_compile)

    generate = commands.add_parser("generate-data", help="write the quickstart source tables")
    generate.add_argument("--warehouse")
    generate.add_argument("--start-ds", type=ds, default="2023-11-01")
    generate.add_argument("--end-ds", type=ds, default="2023-11-30")
    generate.add_argument("--users", type=int, default=100)
    generate.add_argument("--zipf-s", type=float)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate_data)

    backfill = commands.add_parser("backfill", help="materialize a compiled config and its upstream assets")
    backfill.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v1")
    backfill.add_argument("--start-ds", required=True, type=ds, help="the first day, YYYY-MM-DD")
    backfill.add_argument("--end-ds", required=True, type=ds, help="the last day (included)")
    backfill.add_argument(
        "--verbose", action="store_true", help="print Dagster's and Spark's logs and full traces, not only a summary"
    )
    backfill.set_defaults(func=cmd_backfill)

    quickstart = commands.add_parser("quickstart", help="run the quickstart end to end on embedded defaults")
    quickstart.add_argument("--regenerate", action="store_true", help="rewrite the quickstart source tables")
    quickstart.set_defaults(func=cmd_quickstart)

    show = commands.add_parser("show", help="print rows of a table partition")
    show.add_argument("--table", required=True)
    show.add_argument("--ds", required=True, type=ds)
    show.add_argument("--where")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--truncate", type=int, default=40)
    show.add_argument("--warehouse")
    show.set_defaults(func=cmd_show)
