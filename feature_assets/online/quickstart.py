"""The quickstart's online steps (its second and third use cases), callable from the quickstart run:
upload and load every online group-by of the repo for a day, store the online joins' metadata, and show
the seed's example fetches. The CLI equivalents:

    feature-assets upload --conf production/group_bys/quickstart/purchases.v1 --ds 2023-11-30
    feature-assets load --conf production/group_bys/quickstart/purchases.v1 --ds 2023-11-30
    feature-assets metadata-upload --conf production/joins/quickstart/training_set.v2
    feature-assets fetch --type group-by --name quickstart/purchases.v1 -k '{"user_id":"5"}'
    feature-assets fetch --type join --name quickstart/training_set.v2 -k '{"user_id":"5"}'
"""
from __future__ import annotations

import json
import time

EXAMPLE_FETCHES = (("group-by", "quickstart/purchases.v1"), ("join", "quickstart/training_set.v2"))


def upload_and_load(repo, ds: str, warehouse, uri: str, database: str, log=print) -> None:
    """Upload + load every online group-by of the compiled repo for `ds`, then the online configs' metadata."""
    from feature_assets.compiler import load_compiled
    from feature_assets.definitions.online_assets import online_group_bys
    from feature_assets.online.kv_store import MongoKVStore, batch_dataset
    from feature_assets.online.upload import load_upload, run_upload, upload_metadata, upload_table
    compiled = load_compiled(repo)
    store = MongoKVStore.from_uri(uri, database)
    try:
        for name, group_by in online_group_bys(compiled).items():
            started = time.monotonic()
            rows = run_upload(warehouse, group_by, ds)
            result = load_upload(warehouse, group_by, ds, store, uri, database)
            log(f"    {upload_table(group_by)} [{ds}]: {rows} keys -> {batch_dataset(name)} "
                f"{result['status']} ({time.monotonic() - started:.1f}s)")
        for kind in ("group_bys", "joins"):
            for config in compiled[kind].values():
                if config["metaData"].get("online"):
                    upload_metadata(store, kind, config)
        log("    metadata: " + ", ".join(n for kind in ("joins", "group_bys") for n, c in compiled[kind].items()
                                         if c["metaData"].get("online")))
    finally:
        store.close()


def example_fetches(uri: str, database: str, keys: dict | None = None, at_millis: int | None = None) -> dict:
    """The seed's two fetches, as the CLI prints them."""
    from feature_assets.online.fetcher import Fetcher
    from feature_assets.online.kv_store import MongoKVStore
    store = MongoKVStore.from_uri(uri, database)
    try:
        fetcher = Fetcher(store)
        keys = keys or {"user_id": "5"}
        return {name: (fetcher.fetch_group_by(name, keys, at_millis) if kind == "group-by"
                       else fetcher.fetch_join(name, keys, at_millis)) for kind, name in EXAMPLE_FETCHES}
    finally:
        store.close()


def print_example_fetches(uri: str, database: str, **kwargs) -> None:
    for name, response in example_fetches(uri, database, **kwargs).items():
        print(f"    {name}: {json.dumps(response, indent=2)}")
