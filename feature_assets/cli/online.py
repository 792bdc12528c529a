"""Online commands: upload, load, metadata-upload, fetch, serve.

Each command imports the layers it needs when it runs: `feature-assets fetch` must not load Spark or Dagster.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
MONGO_DATABASE_ENV = "FEATURE_ASSETS_MONGO_DATABASE"
# Commands that talk to the online store: without FEATURE_ASSETS_MONGO_URI they get the embedded server.
NEEDS_MONGO = {"load", "metadata-upload", "fetch", "serve"}


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
