"""Online commands: upload, load, metadata-upload, rollback, fetch, serve.

`upload`, `load` and `metadata-upload` materialize the Dagster assets the UI shows (`definitions.online_runs`),
after checking, before any run starts, that the day's inputs are there (a refused command records nothing).
`rollback` and `fetch` talk to the store directly: `feature-assets fetch` loads neither Spark nor Dagster.

Without FEATURE_ASSETS_MONGO_URI the commands that need the store use the embedded MongoDB-protocol server of
`.services` (`dev.services.local`): the one already running for that folder (the UI's, `serve`'s) when there is
one, else one started for the command and stopped after it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

from feature_assets.cli.arguments import UsageError, compiled_conf, day_arguments, ds

MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
MONGO_DATABASE_ENV = "FEATURE_ASSETS_MONGO_DATABASE"
WAREHOUSE_ENV = "FEATURE_ASSETS_WAREHOUSE"
KAFKA_BOOTSTRAP_ENV = "FEATURE_ASSETS_KAFKA_BOOTSTRAP"
# Commands that talk to the online store: without FEATURE_ASSETS_MONGO_URI they get the embedded server.
NEEDS_MONGO = {"load", "metadata-upload", "rollback", "fetch", "serve"}


def run_with_services(args: argparse.Namespace, mongo: bool, kafka: bool) -> int:
    """Run a command with the online store and/or the Kafka broker: the addresses given in the environment, else
    the embedded servers (reused or started). `args.embedded_kafka` tells the command which it got."""
    mongo = mongo and not os.environ.get(MONGO_URI_ENV)
    args.embedded_kafka = kafka and not os.environ.get(KAFKA_BOOTSTRAP_ENV)
    kafka = args.embedded_kafka
    if not mongo and not kafka:
        return int(args.func(args))
    from feature_assets.dev.services.local import LocalServiceError, default_state_dir, local_services

    try:
        with local_services(default_state_dir(), mongo=mongo, kafka=kafka) as services:
            args.local_services = services
            return int(args.func(args))
    except LocalServiceError as error:
        print(f"feature-assets {args.command}: {error}", file=sys.stderr)
        return 1


def end_quickly(args: argparse.Namespace, code: int) -> None:
    """End a `fetch` process at once, with its exit code.

    At interpreter exit pymongo joins the monitor threads of closed clients, which sleep in half-second steps:
    that wait would double a fetch's time. A fetch has nothing else to clean up by then (its output is
    flushed, its client closed, the embedded server released).
    """
    if args.command == "fetch":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _online_store():
    from feature_assets.online.store import DEFAULT_DATABASE, MongoKVStore

    uri = os.environ.get(MONGO_URI_ENV)
    if not uri:
        raise SystemExit(f"set {MONGO_URI_ENV} to the online store's MongoDB URI")
    database = os.environ.get(MONGO_DATABASE_ENV, DEFAULT_DATABASE)
    return MongoKVStore.from_uri(uri, database), uri, database


def _online_group_bys(conf: Path):
    """The group-bys named by a compiled group-by, or every part of a compiled join."""
    from feature_assets.compiler import load_compiled_file
    from feature_assets.model import GroupBy, Join

    config = load_compiled_file(conf)
    if isinstance(config, Join):
        return config.group_bys
    if not isinstance(config, GroupBy):
        raise SystemExit(f"{conf} is not a group-by or a join")
    return [config]


def _repo_of(conf: Path) -> Path:
    """The feature repo holding a compiled file: the parent of its `production/` folder."""
    return next(parent.parent for parent in conf.resolve().parents if parent.name == "production")


def _refused(command: str, problems: list[str]) -> int:
    for problem in problems:
        print(f"feature-assets {command}: {problem}", file=sys.stderr)
    return 1


def _definitions(conf: Path, ds_: str | None = None):
    """The repo's Definitions; for a day before the repo's first partition, with partitions from that day (as a
    backfill from it builds them)."""
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.online_runs import first_day
    from feature_assets.definitions.runs import quiet_dagster_warnings

    quiet_dagster_warnings()
    defs = build_definitions(_repo_of(conf))
    first = first_day(defs) if ds_ else None
    return build_definitions(_repo_of(conf), start_date=ds_) if first and ds_ and ds_ < first else defs


def _assets_problem(defs, keys: list, ds_: str | None) -> str | None:
    """Why the assets cannot run for the day (not in the graph, or the day is not a partition), else None."""
    from feature_assets.definitions.online_runs import NotAPartition, check_day

    graph = defs.resolve_asset_graph()
    absent = [key.to_user_string() for key in keys if not graph.has(key)]
    if absent:
        return f"no asset {', '.join(absent)}: only online group-bys and joins (online=True) have one"
    try:
        if ds_:
            check_day(defs, ds_)
    except NotAPartition as error:
        return str(error)
    return None


def _each(group_bys, check, refusals: tuple[type[Exception], ...]) -> list[str]:
    """The refusals of `check(group_by)` over the group-bys, one message each."""
    problems = []
    for group_by in group_bys:
        try:
            check(group_by)
        except refusals as error:
            problems.append(str(error))
    return problems


def _run_id(args: argparse.Namespace) -> str:
    """The Dagster run's id, known before Spark starts: without --verbose, Spark's output goes to its log file."""
    from feature_assets.definitions.runs import quiet_spark_loggers, run_log_path
    from feature_assets.resources.spark import SPARK_LOG_ENV

    run_id = str(uuid.uuid4())
    if not args.verbose:
        quiet_spark_loggers()
        os.environ[SPARK_LOG_ENV] = str(run_log_path(run_id))
    return run_id


def _materialize(command: str, args: argparse.Namespace, run_id: str, defs, keys: list, line) -> int:
    """Run the assets, write the run's log file, and print a line per materialization (or the causes of the
    failure); the exit code."""
    from feature_assets.definitions.online_runs import materialize_online
    from feature_assets.definitions.runs import default_instance, run_log_path, write_run_log

    instance = default_instance()
    log_level = "INFO" if args.verbose else "CRITICAL"
    ds_ = getattr(args, "ds", None)
    allow_empty = getattr(args, "allow_empty", False)
    run = materialize_online(defs, keys, ds_, allow_empty, instance=instance, run_id=run_id, log_level=log_level)
    log_path = run_log_path(run_id)
    write_run_log(instance, run_id, log_path)
    for item in run.materialized:
        print(line(item))
    if run.success:
        print(f"(Dagster run {run_id[:8]}, in the UI's Runs page)")
        return 0
    _refused(command, run.errors + [f"Dagster run {run_id} failed; its full log is in {log_path}"])
    return 1


def _use_warehouse(args: argparse.Namespace) -> None:
    """--warehouse, for this process and the Dagster run's warehouse resource (which reads the environment)."""
    if args.warehouse:
        os.environ[WAREHOUSE_ENV] = args.warehouse


def _warehouse(args: argparse.Namespace):
    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    return Warehouse(SparkResource().get_session(), args.warehouse)


def _checked_online_run(command: str, args: argparse.Namespace, asset_key, check, refusals) -> int:
    """Materialize one online asset per group-by of --conf for --ds, after checking every group-by's inputs:
    a refusal happens before any run starts, so nothing is recorded as failed."""
    conf = compiled_conf(args.conf)
    group_bys = _online_group_bys(conf)
    keys = [asset_key(group_by) for group_by in group_bys]
    _use_warehouse(args)
    defs = _definitions(conf, args.ds)
    problem = _assets_problem(defs, keys, args.ds)
    if problem:
        return _refused(command, [problem])
    run_id = _run_id(args)
    warehouse = _warehouse(args)
    problems = _each(group_bys, lambda group_by: check(warehouse, group_by), refusals)
    if problems:
        return _refused(command, problems)
    line = _load_line if command == "load" else _upload_line
    return _materialize(command, args, run_id, defs, keys, lambda m: line(m, args))


def cmd_upload(args: argparse.Namespace) -> int:
    from feature_assets.definitions.online_assets import upload_asset_key
    from feature_assets.offline.upload import UploadRefused, check_upload

    def check(warehouse, group_by) -> None:
        check_upload(warehouse, group_by, args.ds, args.allow_empty)

    return _checked_online_run("upload", args, upload_asset_key, check, (UploadRefused,))


def cmd_load(args: argparse.Namespace) -> int:
    if args.table:
        if args.conf:
            raise UsageError("give --conf (a group-by's upload) or --table (a stats upload table), not both")
        return _load_table(args)
    if not args.conf or not args.ds:
        raise UsageError("give --conf and --ds (a group-by's upload partition), or --table (a stats upload table)")
    if args.start_ds or args.end_ds:
        raise UsageError("--start-ds/--end-ds go with --table; a group-by's load takes one --ds")
    return _load_group_bys(args)


def _load_table(args: argparse.Namespace) -> int:
    """Put a stats upload table's days (all, --ds, or --start-ds..--end-ds) into the online store."""
    from feature_assets.naming import qualified
    from feature_assets.online.fetch.consistency import is_consistency_upload_table
    from feature_assets.online.fetch.stats import NotAStatsUploadTable, dataset_of_upload_table, load_stats
    from feature_assets.quality.stats_tables import upload_rows

    table = qualified(args.table)
    if is_consistency_upload_table(table):
        from feature_assets.cli.consistency import load_consistency_table

        return load_consistency_table(args, table)
    try:
        dataset = dataset_of_upload_table(table)
    except NotAStatsUploadTable as error:
        raise UsageError(
            f"{error}, nor a consistency upload table (`<join table>_consistency_upload`); "
            "a group-by's upload table loads with --conf <group-by> --ds <day>"
        ) from None
    return load_daily_table(args, table, dataset, load_stats, upload_rows, "stats-summary (or log-summary)")


def load_daily_table(args: argparse.Namespace, table: str, dataset: str, load, rows, first_step: str) -> int:
    """`load --table`: a daily online table's days (all, --ds, or --start-ds..--end-ds) into the online store's
    `dataset`, by `load(store, dataset, rows(warehouse, table, start, end))` (days loaded -> documents)."""
    from feature_assets.definitions.factory import LocalWarehouse, is_local_root
    from feature_assets.definitions.runs import command_log_path, quiet_spark_loggers
    from feature_assets.resources.spark import SPARK_LOG_ENV
    from feature_assets.storage import default_root

    start, end = day_arguments(args, open_ended=True)
    _use_warehouse(args)
    root = args.warehouse or default_root()
    if is_local_root(root):
        days = LocalWarehouse(root).partitions(table)
        if not days:
            raise UsageError(f"no partition of {table} in {root}: run {first_step} first")
        if not [day for day in days if (not start or day >= start) and (not end or day <= end)]:
            raise UsageError(f"{table} has no day in {start or '...'}..{end or '...'} (it has {days[0]}..{days[-1]})")
    store, _, _ = _online_store()
    if not args.verbose:
        quiet_spark_loggers()
        os.environ.setdefault(SPARK_LOG_ENV, str(command_log_path("load")))
    try:
        written = load(store, dataset, rows(_warehouse(args), table, start, end))
    finally:
        store.close()
    for day, documents in sorted(written.items()):
        print(f"loaded {table} [{day}] into {dataset}: {documents} documents")
    if not written:
        print(f"feature-assets load: {table} has no rows in the range; nothing loaded", file=sys.stderr)
        return 1
    return 0


def _load_group_bys(args: argparse.Namespace) -> int:
    from feature_assets.definitions.online_assets import load_asset_key
    from feature_assets.offline.upload import UploadRefused, check_load
    from feature_assets.online.store import EmptyBatchRefused

    store, _, _ = _online_store()

    def check(warehouse, group_by) -> None:
        check_load(warehouse, group_by, args.ds, store, args.allow_empty)

    return _checked_online_run("load", args, load_asset_key, check, (UploadRefused, EmptyBatchRefused))


def _upload_line(item, args: argparse.Namespace) -> str:
    return f"materialized {item.asset} [{item.partition}] rows={_rows(item)}"


def _rows(item) -> object:
    per_day = item.metadata.get("rows_per_day") or {}
    return per_day.get(item.partition, item.metadata.get("dagster/row_count", "?"))


def _load_line(item, args: argparse.Namespace) -> str:
    day = item.partition
    status = (item.metadata.get("statuses") or {}).get(day, "?")
    version = (item.metadata.get("versions") or {}).get(day, "?")
    seconds = (item.metadata.get("seconds") or {}).get(day)
    rate = (item.metadata.get("keys_per_second") or {}).get(day)
    timing = f" in {seconds}s" + (f" ({rate:.0f} keys/s)" if rate else "") if seconds else ""
    line = f"materialized {item.asset} [{day}] rows={_rows(item)}: {status} version {version}{timing}"
    latest = item.metadata.get("latest_day")
    if latest and latest > day:  # a later day is loaded: fetches after it do not read this batch
        line += (
            f"\n    note: fetches after {latest} read the batch of {latest}; to serve {day} instead: "
            f"feature-assets rollback --conf {args.conf} --ds {day}"
        )
    return line


def cmd_metadata_upload(args: argparse.Namespace) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions.online_assets import metadata_asset_key
    from feature_assets.model import GroupBy, Join

    conf = compiled_conf(args.conf)
    config = load_compiled_file(conf)
    if not isinstance(config, (Join, GroupBy)):
        return _refused("metadata-upload", [f"{args.conf} is not a join or a group-by"])
    defs, keys = _definitions(conf), [metadata_asset_key(config.name)]
    problem = _assets_problem(defs, keys, None)
    if problem:
        return _refused("metadata-upload", [problem])
    line = lambda m: "\n".join(f"stored {key}" for key in m.metadata["documents"])  # noqa: E731
    return _materialize("metadata-upload", args, _run_id(args), defs, keys, line)


def cmd_rollback(args: argparse.Namespace) -> int:
    from feature_assets.online.store import RollbackError, rollback_batch

    conf = compiled_conf(args.conf)
    store, _, _ = _online_store()
    problems = []
    for group_by in _online_group_bys(conf):
        try:
            done = rollback_batch(store, group_by, args.ds)
        except RollbackError as error:
            problems.append(str(error))
            continue
        print(
            f"{group_by.batch_dataset}: fetches after {args.ds} now read the batch of {args.ds} "
            f"(version {done['version']}, rows={done['rows']})"
        )
        for day, info in sorted(done["held"].items()):
            print(f"    held back {day} (version {info['version']}, rows={info['rows']}): kept, no longer served")
        for day, info in sorted(done["restored"].items()):
            print(f"    restored {day} (version {info['version']}, rows={info['rows']})")
        if done["held"]:
            print(f"    to serve them again: feature-assets rollback --conf {args.conf} --ds {max(done['held'])}")
    return _refused("rollback", problems) if problems else 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from feature_assets.online.fetch.consistency import CONSISTENCY_TYPE
    from feature_assets.online.fetch.fetcher import Fetcher, UnknownName, UnsupportedDerivation
    from feature_assets.online.fetch.stats import STATS_TYPES
    from feature_assets.online.store import StoreUnavailable

    try:
        keys = json.loads(args.keys)
    except json.JSONDecodeError as error:
        print(f"feature-assets fetch: -k is not valid JSON: {error}", file=sys.stderr)
        return 2
    if args.type in STATS_TYPES:
        return _fetch_stats(args, keys, STATS_TYPES[args.type])
    if args.type == CONSISTENCY_TYPE:
        from feature_assets.cli.consistency import fetch_join_consistency

        return fetch_join_consistency(args, keys)
    from feature_assets.online.logging import FetchLogConfigError, logger_from_environment

    store, _, _ = _online_store()
    try:
        logger = logger_from_environment(store)
    except FetchLogConfigError as error:
        store.close()
        print(str(error), file=sys.stderr)
        return 2
    fetcher = Fetcher(store, logger=logger)
    try:
        if args.type == "join":
            result = fetcher.fetch_join(args.name, keys, args.at_millis)
        else:
            result = fetcher.fetch_group_by(args.name, keys, args.at_millis)
    except (UnknownName, UnsupportedDerivation, StoreUnavailable) as error:
        print(str(error), file=sys.stderr)
        return 1
    finally:
        # The process ends with os._exit (end_quickly): write the log before the store's client closes.
        if logger is not None and not logger.close(timeout=5.0):
            print(f"fetch log not fully written: {logger.counters()}", file=sys.stderr)
        store.close()
    print(json.dumps(result, indent=2, default=str))
    responses = result if isinstance(result, list) else [result]
    return 1 if any(r["error_type"] == "invalid_key" for r in responses) else 0


def _fetch_stats(args: argparse.Namespace, keys, logged: bool) -> int:
    """Print a join's (or its log's) stats buckets in the range `-k '{"startTs": ..., "endTs": ...}'`."""
    from feature_assets.online.fetch.fetcher import Fetcher, UnknownName
    from feature_assets.online.fetch.stats import time_range
    from feature_assets.online.store import StoreUnavailable

    try:
        start_ts, end_ts = time_range(keys)
    except ValueError as error:
        print(f"-k: {error}", file=sys.stderr)
        return 2
    store, _, _ = _online_store()
    try:
        result = Fetcher(store).fetch_join_stats(args.name, start_ts, end_ts, logged=logged)
    except (UnknownName, StoreUnavailable) as error:
        print(str(error), file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(result, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from feature_assets.online.fetch.service import serve

    serve(host=args.host, port=args.port, max_batch=args.max_batch, workers=args.workers)
    return 0


def add_online_commands(commands) -> None:
    conf_help = "e.g. production/group_bys/quickstart/purchases.v1 (a join: all its parts)"
    allow_empty_help = "accept an empty %s (by default refused: fetches would return empty values)"
    verbose_help = "print Dagster's and Spark's logs, not only the command's own lines"
    upload = commands.add_parser("upload", help="materialize a group-by's online upload partition (Dagster, Spark)")
    upload.add_argument("--conf", required=True, help=conf_help)
    upload.add_argument("--ds", required=True, type=ds)
    upload.add_argument("--warehouse")
    upload.add_argument("--allow-empty", action="store_true", help=allow_empty_help % "upload")
    upload.add_argument("--verbose", action="store_true", help=verbose_help)
    upload.set_defaults(func=cmd_upload)

    load = commands.add_parser(
        "load",
        help="load an upload into MongoDB: a group-by's day (--conf, --ds; through Dagster) or a stats upload "
        "table by name (--table)",
    )
    load.add_argument("--conf", help=conf_help)
    load.add_argument(
        "--table",
        help="a stats or consistency upload table, e.g. default.quickstart_training_set_v2_daily_stats_upload "
        "(every day, or --ds / --start-ds..--end-ds)",
    )
    load.add_argument("--ds", type=ds)
    load.add_argument("--start-ds", type=ds, help="with --table: the first day")
    load.add_argument("--end-ds", type=ds, help="with --table: the last day (included)")
    load.add_argument("--warehouse")
    load.add_argument("--allow-empty", action="store_true", help=allow_empty_help % "batch over a non-empty one")
    load.add_argument("--verbose", action="store_true", help=verbose_help)
    load.set_defaults(func=cmd_load)

    metadata = commands.add_parser("metadata-upload", help="store a compiled join or group-by in the online metadata")
    metadata.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v2")
    metadata.add_argument("--verbose", action="store_true", help=verbose_help)
    metadata.set_defaults(func=cmd_metadata_upload)

    rollback = commands.add_parser(
        "rollback", help="serve an earlier loaded batch: later days are held back (kept, restorable)"
    )
    rollback.add_argument("--conf", required=True, help=conf_help)
    rollback.add_argument("--ds", required=True, type=ds, help="the loaded day to serve from now on")
    rollback.set_defaults(func=cmd_rollback)

    fetch = commands.add_parser("fetch", help="fetch online features and print them as JSON")
    fetch.add_argument(
        "--type", required=True, choices=["group-by", "join", "join-stats", "join-log-stats", "join-consistency"]
    )
    fetch.add_argument("--name", required=True, help="e.g. quickstart/purchases.v1")
    fetch.add_argument(
        "-k",
        "--keys",
        required=True,
        help="a JSON object of keys (or an array of them); for join stats and consistency the range "
        '{"startTs": ..., "endTs": ...}',
    )
    # Chronon's fetch takes a version flag; the name here already carries the version (training_set.v2).
    fetch.add_argument("--version", nargs="?", const="", help=argparse.SUPPRESS)
    fetch.add_argument("--at-millis", type=int, help="request time in epoch millis (default: now)")
    fetch.set_defaults(func=cmd_fetch)

    serve_ = commands.add_parser("serve", help="serve fetches over HTTP (FastAPI + uvicorn)")
    serve_.add_argument("--host", default="127.0.0.1")
    serve_.add_argument("--port", type=int, default=8000)
    serve_.add_argument("--max-batch", type=int, default=1000)
    serve_.add_argument("--workers", type=int, default=1, help="processes serving one port (scales with cores)")
    serve_.set_defaults(func=cmd_serve)
