"""Benchmark of the streaming job of `quickstart.returns.v1`: applied rate and event-to-fetchable latency.

    .venv/bin/python benchmarks/streaming.py [--events 20000] [--rate 1000] [--seconds 20]

Steps: load returns.v1's batch (kernel-encoded, as the Spark upload writes it) and its config and source
schema into the store, then, in the same run:

- floor 1, consume + decode: a consumer that reads `--events` CSV messages from the topic and decodes them
  (no query, no writes);
- floor 2, raw bulk writes: the same event documents inserted with pymongo `insert_many` into a scratch
  collection, in batches of the job's size;
- the job, end to end: `StreamingJob` over the same `--events` messages (decode, query, idempotent writes,
  commits, status); applied events per second. Target: at least half the slower floor;
- latency: the job running as its own process (`feature-assets streaming`) while a producer sends events at
  `--rate` per second for `--seconds`; every 20th event is for a fresh user, and a prober fetches that user
  (`Fetcher.fetch_group_by`) until the event's count shows: time from the send to the first fetch that sees
  it. Target: p99 under 1 s at 1,000 events/s.

Broker: `$FEATURE_ASSETS_KAFKA_BOOTSTRAP`, else a local tansu started for the run. Store:
`$FEATURE_ASSETS_MONGO_URI`, else a local SecantusDB (written in Python: far slower than MongoDB; the floors of
the same run are the comparison).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from feature_assets.compiler import load_compiled_file  # noqa: E402
from feature_assets.model import GROUP_BYS  # noqa: E402
from feature_assets.model.topics import parse_topic  # noqa: E402
from feature_assets.online.batch_encoding import encode_temporal_rows, end_of_day_millis, load_rows, make_schema  # noqa: E402
from feature_assets.online.fetch.fetcher import Fetcher  # noqa: E402
from feature_assets.online.store import MongoKVStore, upload_metadata  # noqa: E402
from feature_assets.resources.kafka import KafkaResource  # noqa: E402
from feature_assets.streaming.decoders import decoder_for  # noqa: E402
from feature_assets.streaming.job import JobSettings, StreamingJob, routes_for  # noqa: E402
from feature_assets.streaming.schemas import schema_key  # noqa: E402
from feature_assets.streaming.status import consumer_group_id  # noqa: E402
from feature_assets.streaming.status import read as read_status  # noqa: E402

DAY = 86_400_000
BATCH_DS = "2023-11-30"
BATCH_END = end_of_day_millis(BATCH_DS)
CONF = ROOT / "quickstart" / "production" / "group_bys" / "quickstart" / "returns.v1"
SCHEMA = {"ts": "long", "return_id": "string", "user_id": "string", "product_id": "string", "refund_amt": "long"}
BATCH_SIZE = 1000


def kafka_config(bootstrap: str, group: str) -> dict:
    """The streaming job's consumer settings for a group (no group prefix)."""
    return KafkaResource(bootstrap_servers=bootstrap, group_prefix="").consumer_config(group)


def secantus_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("secantusdb")
    except PackageNotFoundError:
        return "(version unknown)"


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) if values else float("nan")


def csv_line(ts: int, i: int, user: str, amount: int) -> bytes:
    return f"{ts},r{i},{user},{i % 97},{amount}".encode()


def lines(n: int, users: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    ts = BATCH_END + rng.integers(0, DAY, n)
    user = rng.integers(0, users, n)
    amount = rng.integers(1, 500, n)
    return [csv_line(int(t), i, str(u), int(a)) for i, (t, u, a) in enumerate(zip(ts, user, amount))]


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic exists
    futures = admin.create_topics([NewTopic(topic, partitions, 1)])
    for future in futures.values():
        future.result(timeout=10)


def produce(bootstrap: str, topic: str, messages: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, message in enumerate(messages):
        producer.produce(topic, value=message)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)


def prepare_store(store: MongoKVStore, group_by, users: int) -> None:
    rng = np.random.default_rng(1)
    n = users * 3
    history = pd.DataFrame(
        {
            "user_id": [str(u) for u in rng.integers(0, users, n)],
            "ts": (BATCH_END - rng.integers(1, 20 * DAY, n)).astype(np.int64),
            "refund_amt": rng.integers(1, 500, n).astype(np.int64),
        }
    )
    schema = make_schema(group_by, {"user_id": "string"}, {"refund_amt": "bigint"})
    load_rows(store, group_by, BATCH_DS, encode_temporal_rows(history, schema, group_by, BATCH_END), schema)
    upload_metadata(store, GROUP_BYS, group_by)
    store.put_metadata(schema_key("data.returns"), {"columns": [[c, t] for c, t in SCHEMA.items()]})


def floor_consume(bootstrap: str, topic: str, n: int) -> float:
    decoder = decoder_for(parse_topic(load_compiled_file(CONF).sources[0].topic), SCHEMA)
    consumer = Consumer(kafka_config(bootstrap, f"floor-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    seen = 0
    started = None
    while seen < n:
        for message in consumer.consume(BATCH_SIZE, 0.05):
            if message.error() is None:
                started = started or time.perf_counter()
                decoder.decode(message.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


def floor_writes(store: MongoKVStore, job_docs: list[dict]) -> float:
    collection = store.db[f"floor_{uuid.uuid4().hex[:6]}"]
    collection.create_index([("k", 1), ("ts", 1)])
    started = time.perf_counter()
    for start in range(0, len(job_docs), BATCH_SIZE):
        collection.insert_many([dict(d) for d in job_docs[start : start + BATCH_SIZE]], ordered=False)
    elapsed = time.perf_counter() - started
    collection.drop()
    return len(job_docs) / elapsed


def job_rate(store: MongoKVStore, group_by, bootstrap: str, n: int) -> tuple[float, list[dict]]:
    job = StreamingJob(
        group_by,
        store,
        kafka_config(bootstrap, f"job-{uuid.uuid4().hex[:6]}"),
        {"bootstrap.servers": bootstrap},
        settings=JobSettings(batch_size=BATCH_SIZE),
        log=io.StringIO(),
    )
    # Time from the first message read: the group join (seconds on tansu) is not the job's work.
    original = job._handle
    first: list[float] = []

    def timed_handle(consumer, messages):
        if not first:
            first.append(time.perf_counter())
        original(consumer, messages)

    job._handle = timed_handle  # type: ignore[method-assign]
    counts = job.run(max_events=n, max_seconds=600)
    elapsed = time.perf_counter() - first[0]
    docs = list(store.collection(group_by.streaming_dataset).find({}, {"_id": 0}).limit(n))
    return counts.applied / elapsed, docs


def latency(store: MongoKVStore, uri: str, database: str, group_by, bootstrap: str, rate: int, seconds: float) -> dict:
    topic = parse_topic(group_by.sources[0].topic).name
    env = {
        **os.environ,
        "FEATURE_ASSETS_KAFKA_BOOTSTRAP": bootstrap,
        "FEATURE_ASSETS_MONGO_URI": uri,
        "FEATURE_ASSETS_MONGO_DATABASE": database,
    }
    log = open(Path(tempfile.mkdtemp()) / "streaming.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "feature_assets.cli", "streaming", "--conf", str(CONF)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # wait until the job has replayed the throughput run's messages (its group starts at the beginning; the
    # writes are no-ops, the counters count them again)
    backlog = read_status(store, group_by)["applied"] * 2
    deadline = time.monotonic() + 300
    while read_status(store, group_by)["applied"] < backlog and time.monotonic() < deadline:
        time.sleep(0.5)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    fetcher = Fetcher(store)
    probes: list[tuple[str, float]] = []
    latencies: list[float] = []
    pending: list[tuple[str, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def prober() -> None:
        while not stop.is_set() or pending:
            with lock:
                batch = list(pending)
            if not batch:
                time.sleep(0.002)
                continue
            results = fetcher.fetch_group_by(
                group_by.name, [{"user_id": u} for u, _ in batch], at_millis=BATCH_END + DAY
            )
            now = time.perf_counter()
            with lock:
                for (user, sent), result in zip(batch, results):
                    if (result["values"] or {}).get("refund_amt_count_3d") == 1:
                        latencies.append(now - sent)
                        pending.remove((user, sent))
            if stop.is_set() and time.perf_counter() - stop_time[0] > 10:
                break
            # a fetch every 10 ms at most: probing as fast as possible would load the store the job writes to
            time.sleep(0.01)

    stop_time = [0.0]
    thread = threading.Thread(target=prober)
    thread.start()
    rng = np.random.default_rng(2)
    total = int(rate * seconds)
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:6]
    for i in range(total):
        target = started + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ts = BATCH_END + int(rng.integers(0, DAY // 2))
        if i % 20 == 0:
            user = f"probe-{run_id}-{i}"
            producer.produce(topic, value=csv_line(ts, i, user, 7))
            producer.poll(0)
            with lock:
                pending.append((user, time.perf_counter()))
            probes.append((user, 0.0))
        else:
            producer.produce(topic, value=csv_line(ts, i, str(int(rng.integers(0, 1000))), int(rng.integers(1, 500))))
            producer.poll(0)
    producer.flush(30)
    achieved = total / (time.perf_counter() - started)
    stop_time[0] = time.perf_counter()
    stop.set()
    thread.join(timeout=60)
    process.terminate()
    process.wait(timeout=30)
    return {
        "sent_rate": achieved,
        "probes": len(probes),
        "seen": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args(argv)
    from feature_assets.dev.services.local import local_services

    given_store, given_broker = (
        os.environ.get("FEATURE_ASSETS_MONGO_URI"),
        os.environ.get("FEATURE_ASSETS_KAFKA_BOOTSTRAP"),
    )
    with tempfile.TemporaryDirectory() as state, local_services(state) as services:
        uri, bootstrap = services.mongo_uri, services.kafka_bootstrap
        database = "bench_streaming"
        store = MongoKVStore.from_uri(uri, database)
        store.db.client.drop_database(database)
        group_by = load_compiled_file(CONF)
        prepare_store(store, group_by, args.users)
        topic = parse_topic(group_by.sources[0].topic).name
        create_topic(bootstrap, topic, partitions=2)
        create_topic(bootstrap, topic + ".dlq", partitions=1)
        produce(bootstrap, topic, lines(args.events, args.users, 3))
        routes_for(group_by, store)  # fail early on a config problem

        consume_rate = floor_consume(bootstrap, topic, args.events)
        applied_rate, docs = job_rate(store, group_by, bootstrap, args.events)
        write_rate = floor_writes(store, docs)
        floor = min(consume_rate, write_rate)
        server = f"MongoDB at {uri}" if given_store else f"local SecantusDB {secantus_version()} ({uri})"
        broker = f"Kafka at {bootstrap}" if given_broker else f"local tansu 0.6.0 ({bootstrap})"
        print(f"store: {server}; broker: {broker}; {args.events} events, batches of {BATCH_SIZE}")
        print(f"floor consume+decode : {consume_rate:10.0f} events/s")
        print(f"floor raw bulk writes: {write_rate:10.0f} docs/s")
        print(
            f"job end to end       : {applied_rate:10.0f} events/s = {applied_rate / floor:.2f}x the slower floor "
            f"(target >= 0.5x)"
        )
        result = latency(store, uri, database, group_by, bootstrap, args.rate, args.seconds)
        print(
            f"latency at {result['sent_rate']:.0f} events/s for {args.seconds:.0f} s: "
            f"{result['seen']}/{result['probes']} probes fetchable; event-to-fetchable "
            f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
            f"max {result['max_ms']:.0f} ms (target p99 < 1000 ms)"
        )
        group = f"feature-assets.{consumer_group_id(group_by)}"
        print(f"latency run: `feature-assets streaming` in its own process, consumer group {group}")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
