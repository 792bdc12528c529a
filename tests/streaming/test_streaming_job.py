"""The streaming job on the real broker (tansu) and store (SecantusDB): events applied exactly, dead letters,
kill -9 restarts, two consumers in one group, a store outage, retention, and the seed's local-streaming block."""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from support.online import RETURNS
from support.streaming import (
    BATCH_END,
    HOUR,
    RETURNS_CONF,
    RETURNS_TOPIC,
    cli_env,
    create_topic,
    csv_lines,
    fetch_all,
    load_returns_batch,
    produce,
    read_topic,
    returns_frame,
    start_cli,
)

from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.store import InMemoryKVStore, MongoKVStore
from feature_assets.online.streaming_writer import StreamingEvent, StreamingWriter
from feature_assets.resources.kafka import KafkaResource
from feature_assets.streaming import status
from feature_assets.streaming.job import JobSettings, StreamingJob, routes_for

pytestmark = pytest.mark.services

DAY = 86_400_000
SEED_LINE = b"1701475200000,F8E3E287-EA5D-6C4B-915D-A5E51A5557EC,91,81,356"
SEED_BLOCK = """streaming dataset: QUICKSTART_RETURNS_V1_STREAMING
keys: ["91"]
values: [356]
keyBytes: AgQ5MQ==
valueBytes: AsgF
ts: 1701475200000  |  UTC: 2023-12-02T00:00:00 | PST: 2023-12-01T16:00:00
"""


def kafka_config(bootstrap: str, group: str) -> dict:
    """The streaming job's consumer settings for a group (no group prefix)."""
    return KafkaResource(bootstrap_servers=bootstrap, group_prefix="").consumer_config(group)


def fresh_store(mongo_uri: str, database: str) -> MongoKVStore:
    store = MongoKVStore.from_uri(mongo_uri, database)
    store.db.client.drop_database(database)
    return store


def reference_store(history, stream) -> InMemoryKVStore:
    """A store that got every valid streamed event once, written directly (a run never killed or disturbed)."""
    store = InMemoryKVStore()
    load_returns_batch(store, history)
    valid = stream[stream["user_id"].notna()]
    StreamingWriter(store, RETURNS).write(
        StreamingEvent({"user_id": u}, int(t), {"refund_amt": None if a is None else int(a)}, f"ref{i}")
        for i, (u, t, a) in enumerate(zip(valid["user_id"], valid["ts"], valid["refund_amt"]))
    )
    return store


def scenario(seed: int, n_stream: int, users: int = 40):
    history = returns_frame(seed, users, 400, BATCH_END - 20 * DAY, 20 * DAY)
    stream = returns_frame(seed + 1, users, n_stream, BATCH_END, 2 * DAY)
    return history, stream


def assert_same_values(store, reference, users, at_millis):
    got = fetch_all(Fetcher(store), users, at_millis)
    expected = fetch_all(Fetcher(reference), users, at_millis)
    assert got == expected


def test_job_applies_events_exactly_and_fetch_sees_them(broker, mongo_uri):
    history, stream = scenario(1, 3000)
    store = fresh_store(mongo_uri, "stream_apply")
    load_returns_batch(store, history)
    create_topic(broker, RETURNS_TOPIC, partitions=3)
    # the topic also carries events older than the batch end: fetches must not count them twice
    old = history.tail(200)
    produce(broker, RETURNS_TOPIC, csv_lines(old) + csv_lines(stream))
    job = StreamingJob(RETURNS, store, kafka_config(broker, "g1"), {"bootstrap.servers": broker}, log=io.StringIO())
    counts = job.run(max_events=len(old) + len(stream), max_seconds=120)
    null_users = int(old["user_id"].isna().sum() + stream["user_id"].isna().sum())
    assert counts.messages == len(old) + len(stream)
    assert (counts.applied, counts.filtered, counts.dead_lettered) == (counts.messages - null_users, null_users, 0)
    users = sorted(stream["user_id"].dropna().unique())
    reference = reference_store(history, stream)
    for at in (BATCH_END + HOUR, BATCH_END + DAY + 7 * HOUR, BATCH_END + 2 * DAY + 1, BATCH_END + 5 * DAY):
        assert_same_values(store, reference, users, at)
    recorded = status.read(store, RETURNS)
    assert (recorded["applied"], recorded["filtered"]) == (counts.applied, counts.filtered)
    assert recorded["last_event_ts"] == int(max(old["ts"].max(), stream["ts"].max()))
    store.close()


def test_malformed_messages_go_to_the_dead_letter_topic(broker, mongo_uri):
    history, stream = scenario(2, 50)
    store = fresh_store(mongo_uri, "stream_dlq")
    load_returns_batch(store, history)
    create_topic(broker, RETURNS_TOPIC)
    create_topic(broker, RETURNS_TOPIC + ".dlq")
    good = csv_lines(stream)
    bad = [b"1701475200000,r,91,81", b"1701475200000,r,91,81,12x", b'{"ts": 1}', b"", b"17014752000x0,r,91,81,3"]
    messages = good[:20] + bad[:3] + good[20:] + bad[3:]
    produce(broker, RETURNS_TOPIC, messages)
    log = io.StringIO()
    job = StreamingJob(RETURNS, store, kafka_config(broker, "g-dlq"), {"bootstrap.servers": broker}, log=log)
    counts = job.run(max_events=len(messages), max_seconds=60)
    assert counts.dead_lettered == len(bad) and counts.applied + counts.filtered == len(good)
    letters = [json.loads(m.value()) for m in read_topic(broker, RETURNS_TOPIC + ".dlq", expected=len(bad))]
    by_offset = {letter["offset"]: letter for letter in letters}
    bad_offsets = [20, 21, 22, len(messages) - 2, len(messages) - 1]
    assert sorted(by_offset) == bad_offsets
    assert "expected 5 fields" in by_offset[20]["error"]
    assert "'refund_amt' (long)" in by_offset[21]["error"]
    assert by_offset[len(messages) - 1]["value_text"] == "17014752000x0,r,91,81,3"
    assert all(letter["topic"] == RETURNS_TOPIC and letter["partition"] == 0 for letter in letters)
    assert status.read(store, RETURNS)["dead_lettered"] == len(bad)
    users = sorted(stream["user_id"].dropna().unique())
    assert_same_values(store, reference_store(history, stream), users, BATCH_END + 3 * DAY)
    store.close()


# Each restart waits for the killed member's session to time out (6 s on tansu) before it gets partitions.
KILLS = 3


def test_kill_9_at_random_points_loses_and_doubles_nothing(broker, mongo_uri, tmp_path):
    """50k events; the consumer is killed with SIGKILL at random moments and restarted each time."""
    history, stream = scenario(3, 50_000, users=500)
    database = "stream_kill"
    store = fresh_store(mongo_uri, database)
    load_returns_batch(store, history)
    create_topic(broker, RETURNS_TOPIC, partitions=4)
    produce(broker, RETURNS_TOPIC, csv_lines(stream))
    env = cli_env(
        FEATURE_ASSETS_KAFKA_BOOTSTRAP=broker,
        FEATURE_ASSETS_MONGO_URI=mongo_uri,
        FEATURE_ASSETS_MONGO_DATABASE=database,
    )
    valid = int(stream["user_id"].notna().sum())
    dataset = store.collection(RETURNS.streaming_dataset)
    rng = random.Random(3)
    kills = 0
    args = ["streaming", "--conf", str(RETURNS_CONF), "--batch-size", "2000"]
    deadline = time.monotonic() + 600
    while dataset.count_documents({}) < valid and time.monotonic() < deadline:
        process = start_cli(args, env, tmp_path / "streaming.log")
        if kills < KILLS:
            # kill while it applies events: once the store grows, after a random part of a second or three
            before = dataset.count_documents({})
            while dataset.count_documents({}) == before and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 3.0))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
            continue
        # the last run ends by itself once every message is applied
        while dataset.count_documents({}) < valid and time.monotonic() < deadline and process.poll() is None:
            time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "streaming.log").read_text()[-3000:]
    log = (tmp_path / "streaming.log").read_text()
    assert kills == KILLS, log[-3000:]
    assert dataset.count_documents({}) == valid, log[-3000:]
    users = sorted(stream["user_id"].dropna().unique())
    reference = reference_store(history, stream)
    # Three days after the batch, every streamed event (two days of them) is in the 3-day windows, so a lost
    # or doubled event changes its user's counts and sums.
    assert_same_values(store, reference, users, BATCH_END + 3 * DAY)
    store.close()


def test_two_consumers_in_one_group_split_the_partitions(broker, mongo_uri, tmp_path):
    history, stream = scenario(4, 4000)
    database = "stream_group"
    store = fresh_store(mongo_uri, database)
    load_returns_batch(store, history)
    create_topic(broker, RETURNS_TOPIC, partitions=4)
    produce(broker, RETURNS_TOPIC, csv_lines(stream), keys=[str(i).encode() for i in range(len(stream))])
    env = cli_env(
        FEATURE_ASSETS_KAFKA_BOOTSTRAP=broker,
        FEATURE_ASSETS_MONGO_URI=mongo_uri,
        FEATURE_ASSETS_MONGO_DATABASE=database,
    )
    args = ["streaming", "--conf", str(RETURNS_CONF), "--batch-size", "100", "--max-seconds", "20"]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [start_cli(args, env, logs[0]), start_cli(args, env, logs[1])]
    for process in processes:
        assert process.wait(timeout=120) == 0
    texts = [log.read_text() for log in logs]
    assigned = [
        set(json.loads(line.split("assigned: ", 1)[1]))
        for text in texts
        for line in text.splitlines()
        if "assigned: " in line
    ]
    finals = [
        set(
            json.loads(
                next(line for line in reversed(t.splitlines()) if "assigned: " in line).split("assigned: ", 1)[1]
            )
        )
        for t in texts
    ]
    assert all(finals) and not finals[0] & finals[1] and len(finals[0] | finals[1]) == 4, (assigned, texts)
    valid = int(stream["user_id"].notna().sum())
    assert store.collection(RETURNS.streaming_dataset).count_documents({}) == valid
    users = sorted(stream["user_id"].dropna().unique())
    assert_same_values(store, reference_store(history, stream), users, BATCH_END + 3 * DAY)
    store.close()


def test_store_outage_pauses_consumption_and_resumes_by_itself(broker, tmp_path):
    from feature_assets.dev.services.local import find_free_port, start_mongo

    port = find_free_port()
    data = tmp_path / "mongo-data"
    server = start_mongo(data, port=port, log_path=tmp_path / "mongo.log")
    history, stream = scenario(5, 3000)
    store = MongoKVStore.from_uri(server.url, "outage", serverSelectionTimeoutMS=1000)
    load_returns_batch(store, history)
    create_topic(broker, RETURNS_TOPIC)
    log = io.StringIO()
    settings = JobSettings(batch_size=200, retry_max_s=1.0)
    job = StreamingJob(
        RETURNS, store, kafka_config(broker, "g-out"), {"bootstrap.servers": broker}, log=log, settings=settings
    )
    produce(broker, RETURNS_TOPIC, csv_lines(stream[:1000]))
    result = {}
    runner = threading.Thread(target=lambda: result.update(counts=job.run(max_events=len(stream), max_seconds=120)))
    runner.start()
    collection = store.collection(RETURNS.streaming_dataset)
    deadline = time.monotonic() + 60
    while collection.count_documents({}) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    server.stop()
    produce(broker, RETURNS_TOPIC, csv_lines(stream[1000:]))
    deadline = time.monotonic() + 60  # the store client retries its writes first
    while "consumption paused" not in log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "consumption paused" in log.getvalue()
    time.sleep(2)
    server = start_mongo(data, port=port, log_path=tmp_path / "mongo.log")
    runner.join(timeout=150)
    assert not runner.is_alive()
    assert "consumption resumed" in log.getvalue()
    assert result["counts"].messages == len(stream)
    valid = int(stream["user_id"].notna().sum())
    assert collection.count_documents({}) == valid
    users = sorted(stream["user_id"].dropna().unique())
    assert_same_values(store, reference_store(history, stream), users, BATCH_END + 3 * DAY)
    store.close()
    server.stop()


def test_retention_removes_events_the_newest_batch_covers():
    history, stream = scenario(6, 10)
    store = InMemoryKVStore()
    load_returns_batch(store, history)
    writer = StreamingWriter(store, RETURNS)
    grace = 2 * DAY
    times = [BATCH_END - grace - 1, BATCH_END - grace, BATCH_END - 1, BATCH_END + 5]
    writer.write(StreamingEvent({"user_id": "1"}, t, {"refund_amt": 1}, f"e{t}") for t in times)
    routes = routes_for(RETURNS, store)
    job = StreamingJob(
        RETURNS, store, {}, {}, routes=routes, log=io.StringIO(), settings=JobSettings(retention_grace_millis=grace)
    )
    job._apply_retention()
    remaining = sorted(d["ts"] for d in store.datasets[RETURNS.streaming_dataset].values())
    assert remaining == times[1:]
    assert job.counts.retention_removed == 1


def test_seed_event_through_produce_and_local_streaming_prints_the_seed_block(broker, tmp_path):
    """A new repo's view: the compiled conf and a warehouse holding the source table (its schema)."""
    from feature_assets.dev.datagen.random_events import write_partitioned

    warehouse = tmp_path / "warehouse"
    history, _ = scenario(7, 1)
    frame = history.head(5).copy()
    frame["refund_amt"] = frame["refund_amt"].astype("float64").fillna(0).astype("int64")
    frame["user_id"] = frame["user_id"].fillna("0")
    frame["ds"] = "2023-11-30"
    write_partitioned(frame, str(warehouse), "data.returns")
    env = cli_env(FEATURE_ASSETS_KAFKA_BOOTSTRAP=broker, FEATURE_ASSETS_WAREHOUSE=str(warehouse))
    env.pop("FEATURE_ASSETS_MONGO_URI", None)
    create_topic(broker, RETURNS_TOPIC)
    listener = subprocess.Popen(
        [sys.executable, "-m", "feature_assets.cli", "local-streaming", "--conf", str(RETURNS_CONF),
         "--max-events", "1", "--max-seconds", "60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    line = listener.stderr.readline().decode()
    assert line.startswith("listening on events.returns from the latest offset"), line
    produced = subprocess.run(
        [sys.executable, "-m", "feature_assets.cli", "produce", "--topic", RETURNS_TOPIC],
        input=SEED_LINE + b"\n", env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert b"sent 1 message(s) to events.returns" in produced.stderr
    out, err = listener.communicate(timeout=60)
    assert listener.returncode == 0, err
    assert out.decode() == SEED_BLOCK


def test_bad_json_on_a_json_topic_goes_to_the_dead_letter_topic(broker):
    from feature_assets.model import GROUP_BYS, config_from_json
    from feature_assets.streaming.schemas import schema_key

    source_query = {"selects": {"user": "user", "amount": "amount"}, "wheres": [], "timeColumn": "ts"}
    clicks = config_from_json(
        GROUP_BYS,
        {
            "metaData": {"name": "team.clicks.v1", "outputNamespace": "out", "team": "team", "online": True},
            "sources": [{"events": {"table": "data.clicks", "topic": "clicks/dlq=clicks-bad", "query": source_query}}],
            "keyColumns": ["user"],
            "aggregations": [
                {
                    "inputColumn": "amount",
                    "operation": "SUM",
                    "argMap": {},
                    "windows": [{"length": 1, "timeUnit": "HOURS"}],
                }
            ],
            "accuracy": "TEMPORAL",
        },
    )
    store = InMemoryKVStore()
    store.put_metadata(
        schema_key("data.clicks"), {"columns": [["user", "string"], ["amount", "double"], ["ts", "long"]]}
    )
    create_topic(broker, "clicks")
    create_topic(broker, "clicks-bad")
    messages = [
        b'{"user": "a", "amount": 1.5, "ts": 1701475200000}',
        b'{"user": "a", "amount": 2.5, "ts": 1701475200001',
        b'{"user": "b", "amount": "x", "ts": 1701475200002}',
        b'["not", "an", "object"]',
        b'{"user": "b", "amount": 4, "ts": 1701475200003}',
    ]
    produce(broker, "clicks", messages)
    job = StreamingJob(clicks, store, kafka_config(broker, "g-json"), {"bootstrap.servers": broker}, log=io.StringIO())
    counts = job.run(max_events=len(messages), max_seconds=60)
    assert (counts.applied, counts.dead_lettered) == (2, 3)
    letters = sorted(
        (json.loads(m.value()) for m in read_topic(broker, "clicks-bad", expected=3)), key=lambda d: d["offset"]
    )
    assert [letter["offset"] for letter in letters] == [1, 2, 3]
    assert "not JSON" in letters[0]["error"] and "'amount' (double)" in letters[1]["error"]
    assert "JSON object" in letters[2]["error"]
    stored = sorted((d["k"], d["d"]["amount"]) for d in store.datasets[clicks.streaming_dataset].values())
    assert stored == [('{"user":"a"}', 1.5), ('{"user":"b"}', 4.0)]
