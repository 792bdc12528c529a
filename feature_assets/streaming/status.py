"""What a group-by's streaming job has done, kept in the online store's metadata for monitors (the Dagster
sensor `streaming_observations`).

One document per group-by, `streaming/<GROUP_BY>`, shared by every consumer of its consumer group:
counters incremented after each commit (`applied`: events written to `{GROUP_BY}_STREAMING`;
`dead_lettered`: messages sent to the dead-letter topic; `filtered`: events the query's `wheres` dropped or
with a null key; `retention_removed`: documents retention removed) and fields set then (`topics`,
`consumer_group`, `updated_at_ms`, `last_event_ts`). Counters are cumulative since the first run. They are
incremented after the offsets are committed, so a consumer killed between the two undercounts by at most one
batch; the data itself is exact (see `job`).
"""

from __future__ import annotations

import time
from typing import Any

from feature_assets.model import GroupBy
from feature_assets.online.store import KVStore

COUNTERS = ("applied", "dead_lettered", "filtered", "retention_removed")
CONSUMER_GROUP_PREFIX = "streaming."


def status_key(group_by: GroupBy) -> str:
    return f"streaming/{group_by.dataset}"


def consumer_group_id(group_by: GroupBy) -> str:
    """The consumer group of a group-by's streaming job, before the Kafka settings' group prefix."""
    return CONSUMER_GROUP_PREFIX + group_by.name


def record(store: KVStore, group_by: GroupBy, counts: dict[str, int], **fields: Any) -> None:
    increments = {name: int(counts.get(name, 0)) for name in COUNTERS if counts.get(name)}
    store.set_metadata_fields(
        status_key(group_by), {**fields, "updated_at_ms": int(time.time() * 1000)}, inc=increments
    )


def read(store: KVStore, group_by: GroupBy) -> dict[str, Any]:
    """The status document, with every counter present (0 before the first run)."""
    doc = store.get_metadata(status_key(group_by)) or {}
    doc.pop("_id", None)
    return {**{name: 0 for name in COUNTERS}, **doc}
