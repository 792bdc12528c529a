"""Online/offline agreement on random data, end to end: Spark upload, bulk load into the real
MongoDB-protocol server over a socket, streaming events through the writer API, then fetches at random
times after the batch end compared with the offline join (offline/join) for the same rows."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from support.values import close, plain

from feature_assets.dev.datagen.random_events import random_event_case
from feature_assets.model import JOINS, config_from_json
from feature_assets.offline.upload import load_upload, run_upload, upload_metadata
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.store import MongoKVStore, batch_versions
from feature_assets.online.streaming_writer import StreamingWriter

pytestmark = [pytest.mark.spark, pytest.mark.services]

NS = "rnd_out"
H1, D1, D2 = {"length": 1, "timeUnit": "HOURS"}, {"length": 1, "timeUnit": "DAYS"}, {"length": 2, "timeUnit": "DAYS"}
QUERY = {
    "endPartition": None,
    "mutationTimeColumn": None,
    "reversalColumn": None,
    "setups": [],
    "startPartition": None,
    "wheres": [],
}


def agg(column, op, windows=(), buckets=(), **args):
    return {
        "inputColumn": column,
        "operation": op,
        "argMap": {k: str(v) for k, v in args.items()},
        "windows": list(windows),
        "buckets": list(buckets),
    }


def group_by(name, aggregations, accuracy, source, keys=("key",), derivations=()):
    return {
        "metaData": {"name": name, "outputNamespace": NS, "team": "rnd", "online": True},
        "sources": [source],
        "keyColumns": list(keys),
        "aggregations": aggregations,
        "accuracy": accuracy,
        "derivations": list(derivations),
        "backfillStartDate": None,
    }


def events_source(selects):
    return {
        "events": {
            "table": "rnd.events",
            "topic": None,
            "isCumulative": False,
            "query": {**QUERY, "selects": selects, "timeColumn": "ts"},
        }
    }


EVENT_SELECTS = {c: c for c in ("key", "value_long", "value_double", "value_str")}
TEMPORAL_AGGS = [
    agg("value_long", "SUM", [H1, D1, D2]),
    agg("value_long", "SUM"),
    agg("value_long", "COUNT", [D1]),
    agg("value_long", "AVERAGE", [D2]),
    agg("value_long", "MIN", [D1]),
    agg("value_long", "MAX"),
    agg("value_long", "FIRST", [D1]),
    agg("value_long", "LAST"),
    agg("value_long", "FIRST_K", [D2], k=3),
    agg("value_long", "LAST_K", k=3),
    agg("value_long", "TOP_K", [D1], k=3),
    agg("value_long", "BOTTOM_K", k=2),
    agg("value_long", "UNIQUE_COUNT", [D2]),
    agg("value_long", "BOUNDED_UNIQUE_COUNT", k=4),
    agg("value_long", "HISTOGRAM", [D1]),
    agg("value_long", "VARIANCE", [D2]),
    agg("value_long", "VARIANCE"),
    agg("value_long", "SKEW", [D1]),
    agg("value_long", "KURTOSIS"),
    agg("value_long", "APPROX_UNIQUE_COUNT", [D1]),
    agg("value_long", "APPROX_UNIQUE_COUNT"),
    agg("value_long", "APPROX_PERCENTILE", [D2], percentiles="[0.5, 0.9]"),
    agg("value_long", "APPROX_PERCENTILE", percentiles="[0.25, 0.75]"),
    agg("value_double", "SUM", [H1, D2]),
    agg("value_double", "AVERAGE"),
    agg("value_double", "VARIANCE", [D1]),
    agg("value_double", "MIN"),
    agg("value_str", "LAST_K", [D1], k=2),
    agg("value_str", "HISTOGRAM"),
    agg("value_str", "UNIQUE_COUNT"),
    agg("value_str", "FIRST"),
    agg("value_long", "SUM", [D1], buckets=["value_str"]),
    agg("value_long", "SUM", buckets=["value_str"]),
    agg("value_double", "COUNT", [D2], buckets=["value_str"]),
]
TEMPORAL = group_by("rnd.temporal.v1", TEMPORAL_AGGS, "TEMPORAL", events_source(EVENT_SELECTS))
SNAPSHOT = group_by(
    "rnd.snapshot.v1",
    [
        agg("value_long", "SUM", [D1]),
        agg("value_double", "COUNT", [D2]),
        agg("value_str", "LAST_K", k=3),
        agg("value_double", "AVERAGE", [H1]),
    ],
    "SNAPSHOT",
    events_source(EVENT_SELECTS),
    derivations=[{"name": "*", "expression": "*"}, {"name": "sum_renamed", "expression": "value_long_sum_1d"}],
)
ENTITY = group_by(
    "rnd.entity.v1",
    None,
    "SNAPSHOT",
    {
        "entities": {
            "snapshotTable": "rnd.entity_snapshots",
            "mutationTable": None,
            "mutationTopic": None,
            "query": {
                **QUERY,
                "timeColumn": None,
                "selects": {"entity_key": "key", "value_long": "value_long", "value_str": "value_str"},
            },
        }
    },
    keys=("entity_key",),
)
JOIN = {
    "metaData": {"name": "rnd.online_join.v1", "outputNamespace": NS, "team": "rnd", "online": True},
    "left": {
        "events": {
            "table": "rnd.left",
            "topic": None,
            "isCumulative": False,
            "query": {**QUERY, "selects": {"key": "key", "row_id": "row_id"}, "timeColumn": "ts"},
        }
    },
    "joinParts": [
        {"groupBy": TEMPORAL, "keyMapping": {}, "prefix": "t"},
        {"groupBy": SNAPSHOT, "keyMapping": {}, "prefix": None},
        {"groupBy": ENTITY, "keyMapping": {"key": "entity_key"}, "prefix": "e"},
    ],
    "onlineExternalParts": [
        {
            "source": {
                "name": "contextual",
                "team": "rnd",
                "keyFields": [["note", "STRING"]],
                "valueFields": [["note", "STRING"]],
                "customJson": None,
            },
            "keyMapping": {},
            "prefix": None,
        }
    ],
    "derivations": [
        {"name": "*", "expression": "*"},
        {"name": "t_sum_1d", "expression": "t_rnd_temporal_v1_value_long_sum_1d"},
    ],
    "rowIds": ["row_id"],
    "bootstrapParts": [],
    "bootstrapFromLog": False,
}
ONLINE_JOIN = config_from_json(JOINS, JOIN)
TEMPORAL_GB, SNAPSHOT_GB, ENTITY_GB = (part.group_by for part in ONLINE_JOIN.join_parts)


def sketch_ok(column: str, got, expected, history: list) -> bool:
    """Unwindowed sketches (the batch head is a CPC / KLL sketch) within their error of the exact values."""
    if got is None or expected is None:
        return got is None and expected is None
    if "approx_unique_count" in column:
        return abs(got - expected) <= 0.03 * expected + 1
    fractions = [0.25, 0.75]
    n = len(history)
    for value, p in zip(got, fractions):
        target = math.ceil(p * n - 1e-9)
        slack = 0.02 * n + 1
        if not bisect.bisect_left(history, value) - slack <= target <= bisect.bisect_right(history, value) + slack:
            return False
    return True


def test_online_values_equal_offline_join(spark, warehouse, mongo_uri):
    from feature_assets.offline.group_by import snapshot_backfill
    from feature_assets.offline.join import assemble_join, compute_join_part, read_left

    case = random_event_case(seed=21, n_keys=14, n_events=700, n_left=220, n_days=5, key_type="string")
    case.write(warehouse.root, "rnd")
    start, end = case.start_ds, case.end_ds
    days = case.days
    batch_ds = days[1]
    batch_end = end_of_day_millis(batch_ds)
    serve_days = days[1:-1]  # SNAPSHOT batches needed by left rows of days[2:] (offline: daily table of ds - 1)

    # offline: daily tables and the join
    for gb in (SNAPSHOT_GB, ENTITY_GB):
        warehouse.write_partitions(snapshot_backfill(warehouse, gb, start, end), gb.output_table, start, end)
    reader = lambda gb, s, e: warehouse.read(gb.output_table, s, e)  # noqa: E731
    left = read_left(warehouse, ONLINE_JOIN, days[2], end)
    parts = [
        (part, compute_join_part(warehouse, ONLINE_JOIN, part, left, days[2], end, reader))
        for part in ONLINE_JOIN.join_parts
    ]
    offline = [row.asDict(recursive=True) for row in assemble_join(ONLINE_JOIN, left, parts).collect()]
    assert offline

    # online: uploads, loads, metadata, streaming events after the batch end
    database = "agreement"
    store = MongoKVStore.from_uri(mongo_uri, database)
    store.db.client.drop_database(database)
    assert run_upload(warehouse, TEMPORAL_GB, batch_ds) > 0
    first = load_upload(warehouse, TEMPORAL_GB, batch_ds, store, mongo_uri, database)
    assert first["status"] == "loaded"
    assert load_upload(warehouse, TEMPORAL_GB, batch_ds, store, mongo_uri, database)["status"] == "unchanged"
    for ds in serve_days:
        for gb in (SNAPSHOT_GB, ENTITY_GB):
            run_upload(warehouse, gb, ds)
            load_upload(warehouse, gb, ds, store, mongo_uri, database)
    assert sorted(batch_versions(store, "rnd.snapshot.v1")) == serve_days
    assert warehouse.read(TEMPORAL_GB.upload_table, batch_ds, batch_ds).columns == ["key_json", "value", "ds"]
    upload_metadata(store, JOINS, ONLINE_JOIN)
    events = case.events
    later = events[events["ts"] >= batch_end]
    writer = StreamingWriter(store, "rnd.temporal.v1")
    stream = [
        {
            "key": {"key": k},
            "ts": int(t),
            "event_id": f"e{i}",
            "values": {"value_long": plain(vl), "value_double": plain(vd), "value_str": vs},
        }
        for i, (k, t, vl, vd, vs) in enumerate(
            zip(later["key"], later["ts"], later["value_long"], later["value_double"], later["value_str"])
        )
    ]
    writer.write(stream)
    writer.write(stream[: len(stream) // 2])  # a replay: idempotent by event id

    fetcher = Fetcher(store)
    feature_columns = [c for c in offline[0] if c not in ("key", "ts", "row_id", "ds")]
    assert "t_sum_1d" in feature_columns and "ext_contextual_note" in feature_columns
    assert "rnd_snapshot_v1_sum_renamed" in feature_columns
    mismatches, sketches, checked = [], 0, 0
    rng = np.random.default_rng(0)
    sample = [offline[i] for i in sorted(rng.choice(len(offline), size=min(60, len(offline)), replace=False))]
    for row in sample:
        got = fetcher.fetch_join("rnd/online_join.v1", {"key": row["key"]}, at_millis=row["ts"])
        assert got["error"] is None, got
        assert list(got["values"]) == feature_columns
        for column in feature_columns:
            expected, value = plain(row[column]), got["values"][column]
            if column.startswith("t_") and column.endswith(("approx_unique_count", "approx_percentile")):
                key_events = events[(events["key"] == row["key"]) & (events["ts"] < row["ts"])]
                history = sorted(float(v) for v in key_events["value_long"].dropna())
                ok = sketch_ok(column, value, expected, history)
                sketches += 1
            else:
                ok = close(value, expected)
            if not ok:
                mismatches.append((row["row_id"], row["key"], row["ts"], column, value, expected))
        checked += 1
    assert not mismatches, mismatches[:10]
    assert checked == len(sample) and sketches

    # a batch request answers the same, and contextual values are echoed
    batch = fetcher.fetch_join(
        "rnd.online_join.v1", [{"key": r["key"], "note": "hi"} for r in sample[:5]], at_millis=sample[0]["ts"]
    )
    assert all(r["values"]["ext_contextual_note"] == "hi" for r in batch)
    single = fetcher.fetch_join("rnd.online_join.v1", {"key": sample[0]["key"]}, at_millis=sample[0]["ts"])
    assert {k: v for k, v in batch[0]["values"].items() if k != "ext_contextual_note"} == {
        k: v for k, v in single["values"].items() if k != "ext_contextual_note"
    }
    store.close()
