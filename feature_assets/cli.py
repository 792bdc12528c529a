"""`feature-assets`: compile configs, generate the quickstart data, backfill through Dagster, show tables.

Shaped like Chronon's quickstart `compile.py` and `run.py` modes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Each command imports what it needs when it runs: `feature-assets fetch` must not pay for loading Spark and
# Dagster, so the layers below are imported inside the commands (the CLI is the top layer; nothing imports it).
MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
MONGO_DATABASE_ENV = "FEATURE_ASSETS_MONGO_DATABASE"


def _repo_of(conf: Path) -> Path:
    """The feature repo holding a compiled file: the parent of its `production/` folder."""
    for parent in conf.resolve().parents:
        if parent.name == "production":
            return parent.parent
    raise SystemExit(f"{conf} is not inside a feature repo's production/ folder")


def cmd_compile(args) -> int:
    from feature_assets.compiler import CompileError, compile_configs, write_compiled

    repo = Path(args.repo or ".").resolve()
    try:
        written = write_compiled(compile_configs(repo, args.conf), force=args.force)
    except CompileError as error:
        print(f"compile error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path.relative_to(repo))
    return 0


def cmd_generate_data(args) -> int:
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data

    counts = generate_quickstart_data(
        args.warehouse, args.start_ds, args.end_ds, n_users=args.users, zipf_s=args.zipf_s, seed=args.seed
    )
    print(json.dumps(counts, indent=2))
    return 0


def cmd_backfill(args) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.runs import quiet_dagster_warnings, run_backfill

    quiet_dagster_warnings()
    conf = Path(args.conf)
    config = load_compiled_file(conf)
    # The partitions start at --start-ds: the command alone is the contract, with or without repo settings.
    defs = build_definitions(_repo_of(conf), start_date=args.start_ds)
    result = run_backfill(defs, config.kind, config.name, args.start_ds, args.end_ds)
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        rows = materialization.metadata.get("dagster/row_count")
        print(
            f"materialized {materialization.asset_key.to_user_string()} [{materialization.partition}]"
            f" rows={rows.value if rows else '?'}"
        )
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for evaluation in failed_checks:
        print(f"check failed: {evaluation.asset_key.to_user_string()} {evaluation.check_name}", file=sys.stderr)
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.step_failure_data:
                print(event.step_failure_data.error.to_string(), file=sys.stderr)
        return 1
    return 1 if failed_checks else 0


def cmd_show(args) -> int:
    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    store = Warehouse(SparkResource().get_session(), args.warehouse)
    frame = store.read(args.table, args.ds, args.ds)
    if args.where:
        frame = frame.where(args.where)
    frame.show(args.limit, truncate=args.truncate)
    return 0


def cmd_quickstart(args) -> int:
    from feature_assets.definitions.runs import quiet_dagster_warnings
    from feature_assets.dev.quickstart import run

    quiet_dagster_warnings()
    return run(regenerate=args.regenerate)


# --------------------------------------------------------------------------- online


def _online_store():
    from feature_assets.online.store import DEFAULT_DATABASE, MongoKVStore

    uri = os.environ.get(MONGO_URI_ENV)
    if not uri:
        raise SystemExit(f"set {MONGO_URI_ENV} to the online store's MongoDB URI")
    database = os.environ.get(MONGO_DATABASE_ENV, DEFAULT_DATABASE)
    return MongoKVStore.from_uri(uri, database), uri, database


def _online_group_bys(conf: str):
    """The group-bys named by a compiled group-by, or every part of a compiled join."""
    from feature_assets.compiler import load_compiled_file
    from feature_assets.model import GroupBy, Join

    config = load_compiled_file(Path(conf))
    if isinstance(config, Join):
        return config.group_bys
    if not isinstance(config, GroupBy):
        raise SystemExit(f"{conf} is not a group-by or a join")
    return [config]


def cmd_upload(args) -> int:
    from feature_assets.offline.upload import run_upload
    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    warehouse = Warehouse(SparkResource().get_session(), args.warehouse)
    for group_by in _online_group_bys(args.conf):
        rows = run_upload(warehouse, group_by, args.ds)
        print(f"wrote {group_by.upload_table} [{args.ds}] rows={rows}")
    return 0


def cmd_load(args) -> int:
    from feature_assets.offline.upload import load_upload
    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    store, uri, database = _online_store()
    warehouse = Warehouse(SparkResource().get_session(), args.warehouse)
    for group_by in _online_group_bys(args.conf):
        result = load_upload(warehouse, group_by, args.ds, store, uri, database)
        rate = f" ({result['rows'] / result['seconds']:.0f} keys/s)" if result["seconds"] else ""
        print(
            f"{group_by.batch_dataset} [{args.ds}]: {result['status']} version "
            f"{result['version']} rows={result['rows']} in {result['seconds']}s{rate}"
        )
    return 0


def cmd_metadata_upload(args) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.model import GroupBy, Join
    from feature_assets.online.store import upload_metadata

    store, _, _ = _online_store()
    config = load_compiled_file(Path(args.conf))
    if not isinstance(config, (Join, GroupBy)):
        raise SystemExit(f"{args.conf} is not a join or a group-by")
    for key in upload_metadata(store, config.kind, config):
        print(f"stored {key}")
    return 0


def cmd_fetch(args) -> int:
    from feature_assets.online.fetch.fetcher import Fetcher, UnknownName, UnsupportedDerivation
    from feature_assets.online.store import StoreUnavailable

    try:
        keys = json.loads(args.keys)
    except json.JSONDecodeError as error:
        print(f"-k is not valid JSON: {error}", file=sys.stderr)
        return 2
    store, _, _ = _online_store()
    fetcher = Fetcher(store)
    try:
        if args.type == "join":
            result = fetcher.fetch_join(args.name, keys, args.at_millis)
        else:
            result = fetcher.fetch_group_by(args.name, keys, args.at_millis)
    except (UnknownName, UnsupportedDerivation, StoreUnavailable) as error:
        print(str(error), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    responses = result if isinstance(result, list) else [result]
    return 1 if any(r["error_type"] == "invalid_key" for r in responses) else 0


def cmd_serve(args) -> int:
    from feature_assets.online.fetch.service import serve

    serve(host=args.host, port=args.port, max_batch=args.max_batch)
    return 0


def add_online_commands(commands) -> None:
    upload = commands.add_parser("upload", help="write a group-by's online upload table partition (Spark)")
    upload.add_argument(
        "--conf", required=True, help="e.g. production/group_bys/quickstart/purchases.v1 (a join: all its parts)"
    )
    upload.add_argument("--ds", required=True)
    upload.add_argument("--warehouse")
    upload.set_defaults(func=cmd_upload)

    load = commands.add_parser("load", help="bulk-load an upload partition into MongoDB ($FEATURE_ASSETS_MONGO_URI)")
    load.add_argument("--conf", required=True)
    load.add_argument("--ds", required=True)
    load.add_argument("--warehouse")
    load.set_defaults(func=cmd_load)

    metadata = commands.add_parser("metadata-upload", help="store a compiled join or group-by in the online metadata")
    metadata.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v2")
    metadata.set_defaults(func=cmd_metadata_upload)

    fetch = commands.add_parser("fetch", help="fetch online features and print them as JSON")
    fetch.add_argument("--type", required=True, choices=["group-by", "join"])
    fetch.add_argument("--name", required=True, help="e.g. quickstart/purchases.v1")
    fetch.add_argument("-k", "--keys", required=True, help="a JSON object of keys (or an array of them)")
    fetch.add_argument("--at-millis", type=int, help="request time in epoch millis (default: now)")
    fetch.set_defaults(func=cmd_fetch)

    serve_ = commands.add_parser("serve", help="serve fetches over HTTP (FastAPI + uvicorn)")
    serve_.add_argument("--host", default="127.0.0.1")
    serve_.add_argument("--port", type=int, default=8000)
    serve_.add_argument("--max-batch", type=int, default=1000)
    serve_.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feature-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    compile_ = commands.add_parser("compile", help="compile configs to production/ JSON")
    compile_.add_argument("--conf", help="a config file such as joins/quickstart/training_set.py (default: all)")
    compile_.add_argument("--repo", help="the feature repo (default: the current folder)")
    compile_.add_argument("--force", action="store_true", help="overwrite changed online configs")
    compile_.set_defaults(func=cmd_compile)

    generate = commands.add_parser("generate-data", help="write the quickstart source tables")
    generate.add_argument("--warehouse")
    generate.add_argument("--start-ds", default="2023-11-01")
    generate.add_argument("--end-ds", default="2023-11-30")
    generate.add_argument("--users", type=int, default=100)
    generate.add_argument("--zipf-s", type=float)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate_data)

    backfill = commands.add_parser("backfill", help="materialize a compiled config and its upstream assets")
    backfill.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v1")
    backfill.add_argument("--start-ds", required=True)
    backfill.add_argument("--end-ds", required=True)
    backfill.set_defaults(func=cmd_backfill)

    quickstart = commands.add_parser("quickstart", help="run the quickstart end to end on embedded defaults")
    quickstart.add_argument("--regenerate", action="store_true", help="rewrite the quickstart source tables")
    quickstart.set_defaults(func=cmd_quickstart)

    show = commands.add_parser("show", help="print rows of a table partition")
    show.add_argument("--table", required=True)
    show.add_argument("--ds", required=True)
    show.add_argument("--where")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--truncate", type=int, default=40)
    show.add_argument("--warehouse")
    show.set_defaults(func=cmd_show)
    add_online_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in NEEDS_MONGO and not os.environ.get(MONGO_URI_ENV):
        # Embedded default: the local MongoDB-protocol server (state in ./.services), on the data the
        # quickstart loaded.
        from feature_assets.dev.services.local import default_state_dir, local_services

        with local_services(default_state_dir(), mongo=True, kafka=False):
            return args.func(args)
    return args.func(args)


NEEDS_MONGO = {"load", "metadata-upload", "fetch", "serve"}


if __name__ == "__main__":
    sys.exit(main())
