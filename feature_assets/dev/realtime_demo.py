"""The quickstart's realtime use case, run by the quickstart: the seed's event sent to `events.returns`, the
streaming job applies it, and a fetch of user 91 changes. The CLI equivalent (two terminals):

    feature-assets streaming --conf production/group_bys/quickstart/returns.v1
    echo "1701475200000,F8E3E287-EA5D-6C4B-915D-A5E51A5557EC,91,81,356" | feature-assets produce --topic events.returns
    feature-assets fetch --type group-by --name quickstart/returns.v1 -k '{"user_id":"91"}' --at-millis 1701475260000

The demo empties the streaming dataset before and after (streamed returns are the demo's only), so each run
shows the same change and the walkthrough in the README starts from the batch alone.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from feature_assets.compiler import load_compiled
from feature_assets.model.topics import parse_topic
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.store import MongoKVStore
from feature_assets.resources.kafka import KafkaResource
from feature_assets.streaming.job import StreamingJob
from feature_assets.streaming.status import consumer_group_id

SEED_EVENT = b"1701475200000,F8E3E287-EA5D-6C4B-915D-A5E51A5557EC,91,81,356"
GROUP_BY = "quickstart.returns.v1"
KEYS = {"user_id": "91"}
# A minute after the event: inside its 3-day window, after the batch of 2023-12-01.
AT_MILLIS = 1701475260000
SHOWN = ("refund_amt_sum_3d", "refund_amt_count_3d", "refund_amt_last2")


def stream_seed_event(
    repo: str | Path, uri: str, database: str, bootstrap: str, log: Callable[[str], Any] = print
) -> None:
    group_by = load_compiled(repo).group_bys[GROUP_BY]
    store = MongoKVStore.from_uri(uri, database)
    kafka = KafkaResource(bootstrap_servers=bootstrap)
    topic = parse_topic(group_by.sources[0].topic or "")
    try:
        store.delete_before(group_by.streaming_dataset, 2**62)
        fetcher = Fetcher(store)
        before = fetcher.fetch_group_by(GROUP_BY, KEYS, at_millis=AT_MILLIS)["values"]
        log(f"    before: {_shown(before)}")
        kafka.ensure_topics([topic.name, topic.dead_letter_topic])
        producer = Producer(kafka.producer_config())
        producer.produce(topic.name, value=SEED_EVENT)
        producer.flush(10)
        sent = time.monotonic()
        log(f"    sent {SEED_EVENT.decode()} to {topic.name}")
        job = StreamingJob(
            group_by,
            store,
            kafka.consumer_config(consumer_group_id(group_by)),
            kafka.producer_config(),
            log=io.StringIO(),
        )
        counts = job.run(max_events=1, max_seconds=60)
        after = fetcher.fetch_group_by(GROUP_BY, KEYS, at_millis=AT_MILLIS)["values"]
        log(
            f"    after:  {_shown(after)}  (the streaming job applied {counts.applied} event; "
            f"{time.monotonic() - sent:.1f}s from send to fetch, most of it the consumer group join)"
        )
        store.delete_before(group_by.streaming_dataset, 2**62)
    finally:
        store.close()


def _shown(values: dict[str, Any] | None) -> str:
    values = values or {}
    return ", ".join(f"{name}={values.get(name)}" for name in SHOWN)
