"""Events streamed through Kafka make fetches equal the offline backfill at the same query times, exactly.

Two streamed group-bys in one join: the quickstart's returns.v1 (CSV topic, day windows) and a group-by with
hour windows, wheres and computed selects over a JSON topic. Offline: the Spark engine over the whole tables.
Online: the batch of the second day uploaded and loaded, then every event of the tables sent to the topics
(older ones too, as a topic carries them) and applied by the streaming job.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from support.online import RETURNS
from support.streaming import RETURNS_COLUMNS, RETURNS_TOPIC, create_topic, csv_lines, produce
from support.values import close, plain

from feature_assets.dev.datagen.random_events import random_event_case, write_partitioned
from feature_assets.model import JOINS, config_from_json
from feature_assets.offline.upload import load_upload, run_upload, upload_metadata
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.store import MongoKVStore
from feature_assets.streaming.job import StreamingJob
from feature_assets.streaming.schemas import record_source_schemas

pytestmark = [pytest.mark.spark, pytest.mark.services]

QUERY = {"endPartition": None, "mutationTimeColumn": None, "reversalColumn": None, "setups": [], "startPartition": None}
H1, H6, D1 = ({"length": n, "timeUnit": u} for n, u in ((1, "HOURS"), (6, "HOURS"), (1, "DAYS")))
HOURLY_TOPIC = "rnd.events.stream"


def agg(column, op, windows=(), **args):
    arg_map = {k: str(v) for k, v in args.items()}
    return {"inputColumn": column, "operation": op, "argMap": arg_map, "windows": list(windows), "buckets": []}


HOURLY = {
    "metaData": {"name": "rnd.hourly.v1", "outputNamespace": "rnd_out", "team": "rnd", "online": True},
    "sources": [
        {
            "events": {
                "table": "rnd.events",
                "topic": HOURLY_TOPIC,
                "isCumulative": False,
                "query": {
                    **QUERY,
                    "selects": {
                        "key": "key",
                        "amount": "value_long * 2 + 1",
                        "label": "CASE WHEN value_double > 0 THEN upper(value_str) ELSE 'neg' END",
                    },
                    "wheres": ["value_long IS NULL OR value_long % 7 <> 3"],
                    "timeColumn": "ts",
                },
            }
        }
    ],
    "keyColumns": ["key"],
    "aggregations": [
        agg("amount", "SUM", [H1, H6, D1]),
        agg("amount", "COUNT", [H1, D1]),
        agg("amount", "AVERAGE", [H6]),
        agg("amount", "MAX", [H1]),
        agg("amount", "LAST_K", [D1], k=3),
        agg("label", "HISTOGRAM", [H6]),
        agg("label", "LAST"),
        agg("amount", "SUM"),
    ],
    "accuracy": "TEMPORAL",
    "derivations": [],
    "backfillStartDate": None,
}
JOIN = {
    "metaData": {"name": "rnd.streamed_join.v1", "outputNamespace": "rnd_out", "team": "rnd", "online": True},
    "left": {
        "events": {
            "table": "rnd.left",
            "topic": None,
            "isCumulative": False,
            "query": {**QUERY, "wheres": [], "selects": {"key": "key", "row_id": "row_id"}, "timeColumn": "ts"},
        }
    },
    "joinParts": [
        {"groupBy": HOURLY, "keyMapping": {}, "prefix": "h"},
        {"groupBy": RETURNS.raw, "keyMapping": {"key": "user_id"}, "prefix": "r"},
    ],
    "onlineExternalParts": [],
    "derivations": [],
    "rowIds": ["row_id"],
    "bootstrapParts": [],
    "bootstrapFromLog": False,
}


def json_messages(events: pd.DataFrame) -> list[bytes]:
    columns = ["key", "ts", "value_long", "value_double", "value_str"]
    return [
        json.dumps({c: plain(v.item() if hasattr(v, "item") else v) for c, v in zip(columns, row)}).encode()
        for row in events[columns].itertuples(index=False)
    ]


def test_streamed_fetches_equal_the_offline_join(spark, warehouse, broker, mongo_uri):
    from feature_assets.offline.join import assemble_join, compute_join_part, read_left

    join = config_from_json(JOINS, JOIN)
    hourly, returns = (part.group_by for part in join.join_parts)
    case = random_event_case(seed=31, n_keys=12, n_events=900, n_left=260, n_days=5, key_type="string")
    case.write(warehouse.root, "rnd")
    events = case.events
    rng = np.random.default_rng(31)
    returns_table = pd.DataFrame(
        {
            "ts": events["ts"].astype("int64"),
            "return_id": [f"r{i}" for i in range(len(events))],
            "user_id": events["key"],
            "product_id": [str(p) for p in rng.integers(1, 50, len(events))],
            "refund_amt": events["value_long"],
            "ds": events["ds"],
        }
    )
    write_partitioned(returns_table, warehouse.root, "data.returns", partitions=case.days)
    days, end = case.days, case.end_ds
    batch_ds = days[1]
    batch_end = end_of_day_millis(batch_ds)

    reader = lambda gb, s, e: warehouse.read(gb.output_table, s, e)  # noqa: E731
    left = read_left(warehouse, join, days[2], end)
    parts = [(part, compute_join_part(warehouse, join, part, left, days[2], end, reader)) for part in join.join_parts]
    offline = [row.asDict(recursive=True) for row in assemble_join(join, left, parts).collect()]
    assert offline

    database = "streamed_agreement"
    store = MongoKVStore.from_uri(mongo_uri, database)
    store.db.client.drop_database(database)
    for group_by in (hourly, returns):
        assert run_upload(warehouse, group_by, batch_ds) > 0
        assert load_upload(warehouse, group_by, batch_ds, store, mongo_uri, database)["status"] == "loaded"
        assert record_source_schemas(store, group_by, warehouse.root)
    upload_metadata(store, JOINS, join)

    create_topic(broker, HOURLY_TOPIC, partitions=2)
    create_topic(broker, RETURNS_TOPIC, partitions=2)
    produce(broker, HOURLY_TOPIC, json_messages(events))
    produce(
        broker,
        RETURNS_TOPIC,
        csv_lines(returns_table[RETURNS_COLUMNS].astype(object).where(returns_table.notna(), None)),
    )
    kafka = {
        "bootstrap.servers": broker,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    for group_by in (hourly, returns):
        job = StreamingJob(
            group_by, store, {**kafka, "group.id": group_by.name}, {"bootstrap.servers": broker}, log=io.StringIO()
        )
        counts = job.run(max_events=len(events), max_seconds=120)
        assert counts.messages == len(events) and counts.dead_lettered == 0
        assert counts.applied > 0 and counts.filtered > 0  # null keys, and the where of the hourly group-by

    fetcher = Fetcher(store)
    feature_columns = [c for c in offline[0] if c not in ("key", "ts", "row_id", "ds")]
    assert any(c.startswith("h_") and c.endswith("_1h") for c in feature_columns)
    assert any(c.startswith("r_") for c in feature_columns)
    queries = [row for row in offline if row["ts"] >= batch_end and row["key"] is not None]
    assert len(queries) > 50
    mismatches = []
    for row in queries:
        got = fetcher.fetch_join(join.name, {"key": row["key"]}, at_millis=row["ts"])
        assert got["error"] is None, got
        for column in feature_columns:
            expected, value = plain(row[column]), got["values"][column]
            if not close(value, expected):
                mismatches.append((row["row_id"], row["key"], row["ts"], column, value, expected))
    assert not mismatches, mismatches[:10]
    store.close()
