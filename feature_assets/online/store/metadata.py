"""Compiled configs in the store's metadata collection: `conf/<kind>/<name>` -> `{kind, name, config, uploaded_at}`,
`config` being the compiled JSON (sorted keys) exactly as the compiler wrote it. Fetchers and the streaming
writer read configs from there, so serving needs no compiled repo on disk."""

from __future__ import annotations

import json
import time

from feature_assets.model import GROUP_BYS, JOINS, Config, GroupBy, Join, config_from_json
from feature_assets.online.store.base import KVStore, config_key


def upload_metadata(store: KVStore, kind: str, config: GroupBy | Join) -> list[str]:
    """Store a compiled join (with each of its group-bys) or group-by; returns the metadata keys written."""
    written = []

    def put(kind_: str, conf: GroupBy | Join) -> None:
        key = config_key(kind_, conf.name)
        store.put_metadata(
            key,
            {
                "kind": kind_,
                "name": conf.name,
                "config": json.dumps(conf.to_json(), sort_keys=True),
                "uploaded_at": time.time(),
            },
        )
        written.append(key)

    if kind == JOINS and isinstance(config, Join):
        for part in config.join_parts:
            put(GROUP_BYS, part.group_by)
    put(kind, config)
    return written


def stored_config(store: KVStore, kind: str, name: str) -> Config | None:
    """The model of a stored config (`name` normalized, like `quickstart.purchases.v1`), or None."""
    doc = store.get_metadata(config_key(kind, name))
    if doc is None:
        return None
    return config_from_json(kind, json.loads(doc["config"]))
