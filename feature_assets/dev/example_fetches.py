"""The quickstart's online steps (its second and third use cases), callable from the quickstart run:
upload and load every online group-by of the repo for a day, store the online joins' metadata, and show
the seed's example fetches. The CLI equivalents:

    feature-assets upload --conf production/group_bys/quickstart/purchases.v1 --ds 2023-12-01
    feature-assets load --conf production/group_bys/quickstart/purchases.v1 --ds 2023-12-01
    feature-assets metadata-upload --conf production/joins/quickstart/training_set.v2
    feature-assets fetch --type group-by --name quickstart/purchases.v1 -k '{"user_id":"5"}'
    feature-assets fetch --type join --name quickstart/training_set.v2 -k '{"user_id":"5"}'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feature_assets.compiler import load_compiled
from feature_assets.model import GROUP_BYS, JOINS
from feature_assets.offline.upload import load_upload, run_upload, upload_metadata
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.store import MongoKVStore
from feature_assets.storage import Warehouse

EXAMPLE_FETCHES = (("group-by", "quickstart/purchases.v1"), ("join", "quickstart/training_set.v2"))


def upload_and_load(
    repo: str | Path, ds: str, warehouse: Warehouse, uri: str, database: str, log: Callable[[str], Any] = print
) -> None:
    """Upload + load every online group-by of the compiled repo for `ds`, then the online configs' metadata."""
    compiled = load_compiled(repo)
    store = MongoKVStore.from_uri(uri, database)
    try:
        for group_by in compiled.online_group_bys().values():
            started = time.monotonic()
            rows = run_upload(warehouse, group_by, ds)
            result = load_upload(warehouse, group_by, ds, store, uri, database)
            log(
                f"    {group_by.upload_table} [{ds}]: {rows} keys -> {group_by.batch_dataset} "
                f"{result['status']} ({time.monotonic() - started:.1f}s)"
            )
        for kind in (GROUP_BYS, JOINS):
            for config in compiled[kind].values():
                if config.online:
                    upload_metadata(store, kind, config)
        log(
            "    metadata: "
            + ", ".join(name for kind in (JOINS, GROUP_BYS) for name, config in compiled[kind].items() if config.online)
        )
    finally:
        store.close()


def example_fetches(
    uri: str, database: str, keys: dict[str, Any] | None = None, at_millis: int | None = None
) -> dict[str, Any]:
    """The seed's two fetches, as the CLI prints them."""
    store = MongoKVStore.from_uri(uri, database)
    try:
        fetcher = Fetcher(store)
        keys = keys or {"user_id": "5"}
        return {
            name: (
                fetcher.fetch_group_by(name, keys, at_millis)
                if kind == "group-by"
                else fetcher.fetch_join(name, keys, at_millis)
            )
            for kind, name in EXAMPLE_FETCHES
        }
    finally:
        store.close()


def print_example_fetches(uri: str, database: str, **kwargs: Any) -> None:
    for name, response in example_fetches(uri, database, **kwargs).items():
        print(f"    {name}: {json.dumps(response, indent=2)}")
