"""Kafka helpers for streaming tests: topics, producing lines, reading a topic back, the quickstart returns.v1
group-by with a batch loaded (kernel-computed, no Spark) and the schema of its source recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from feature_assets.model import GROUP_BYS
from feature_assets.online.batch_encoding import end_of_day_millis, load_rows
from feature_assets.online.store import upload_metadata
from feature_assets.streaming.schemas import schema_key
from support.online import RETURNS, temporal_upload
from support.paths import QUICKSTART_PRODUCTION

RETURNS_CONF = QUICKSTART_PRODUCTION / "group_bys" / "quickstart" / "returns.v1"
RETURNS_TOPIC = "events.returns"
RETURNS_COLUMNS = ["ts", "return_id", "user_id", "product_id", "refund_amt"]
RETURNS_SCHEMA = {
    "ts": "long",
    "return_id": "string",
    "user_id": "string",
    "product_id": "string",
    "refund_amt": "long",
}
BATCH_DS = "2023-11-30"
BATCH_END = end_of_day_millis(BATCH_DS)
HOUR = 3_600_000


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)
    for future in futures.values():
        future.result(timeout=10)


def produce(bootstrap: str, topic: str, messages: list[bytes], keys: list[bytes] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for index, message in enumerate(messages):
        producer.produce(topic, value=message, key=keys[index] if keys else None)
        if index % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0, expected: int | None = None) -> list:
    """Every message of a topic (all partitions), from the beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
    consumer.assign(partitions)
    # tansu 0.6 under-reports a partition's end offset after a batched produce: read until `expected` is
    # reached when it is given, and trust the end offsets only otherwise.
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
    total = expected if expected is not None else sum(ends.values())
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < total and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            messages.append(message)
    consumer.close()
    if expected is not None:
        assert len(messages) == expected, (len(messages), expected)
    return messages


def returns_frame(seed: int, users: int, n: int, start_ms: int, span_ms: int) -> pd.DataFrame:
    """Random returns rows: skewed users, duplicate timestamps, null users and amounts."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, users + 1)
    user = rng.choice(users, size=n, p=weights / weights.sum())
    ts = start_ms + rng.integers(0, span_ms, n)
    ts[rng.random(n) < 0.1] = start_ms + span_ms // 2  # duplicates
    amount = rng.integers(-50, 500, n).astype(object)
    amount[rng.random(n) < 0.05] = None
    user_ids = np.array([str(u) for u in user], dtype=object)
    user_ids[rng.random(n) < 0.02] = None
    return pd.DataFrame(
        {
            "ts": ts.astype(np.int64),
            "return_id": [f"r{seed}-{i}" for i in range(n)],
            "user_id": user_ids,
            "product_id": [str(p) for p in rng.integers(1, 100, n)],
            "refund_amt": amount,
        }
    )


def csv_lines(frame: pd.DataFrame) -> list[bytes]:
    def text(value) -> str:
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    return [",".join(text(v) for v in row).encode() for row in frame[RETURNS_COLUMNS].itertuples(index=False)]


def load_returns_batch(store, history: pd.DataFrame) -> None:
    """returns.v1's batch of BATCH_DS from the history rows (before BATCH_END), its config and source schema."""
    events = history[history["user_id"].notna()].copy()
    events["refund_amt"] = events["refund_amt"].astype("float64").astype("Int64")
    rows, schema = temporal_upload(events[["user_id", "ts", "refund_amt"]], RETURNS, BATCH_DS)
    load_rows(store, RETURNS, BATCH_DS, rows, schema)
    upload_metadata(store, GROUP_BYS, RETURNS)
    store.put_metadata(schema_key("data.returns"), {"columns": [[c, t] for c, t in RETURNS_SCHEMA.items()]})


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **extra}
    env.pop("FEATURE_ASSETS_SERVICES_DIR", None)
    return env


def start_cli(args: list[str], env: dict[str, str], log_path, stdin=None) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "feature_assets.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=stdin,
    )


def fetch_all(fetcher, users: list[str], at_millis: int) -> dict[str, dict]:
    results = fetcher.fetch_group_by(RETURNS.name, [{"user_id": u} for u in users], at_millis=at_millis)
    return {u: json.loads(json.dumps(r["values"])) for u, r in zip(users, results)}
