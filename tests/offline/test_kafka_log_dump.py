"""The fetch log dumped from Kafka, on the real embedded Kafka-protocol broker (tansu): real fetches of the
quickstart join logged by the FetchLogger over several days and batches, each batch written with the same
record ids to the Kafka topic and to the MongoDB log (the embedded MongoDB-protocol server), one batch
delivered to Kafka twice (a write that failed after Kafka took it, then retried) and one malformed message.

Expected: what the logger handed its sinks. `kafka_log_records` gives every message of the days (tansu
under-reports end offsets after batched produce: reading only up to them loses the last batch), and the
`log-dump --source kafka` run fills the raw log table with exactly the rows a MongoDB dump gives.
"""

from __future__ import annotations

import collections
import contextlib
import io
import time

import numpy as np
import pytest
from confluent_kafka import Producer
from support.online import TRAINING_SET, load_quickstart
from support.paths import QUICKSTART
from support.streaming import create_topic

from feature_assets.model.logs import LOG_COLLECTION, RAW_LOG_COLUMNS, RAW_LOG_TABLE
from feature_assets.offline.log_tables import kafka_log_records, log_rows, mongo_log_records
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.logging import FetchLogger, LogSink
from feature_assets.online.logging.sinks.kafka import KafkaLogSink
from feature_assets.online.logging.sinks.mongo import MongoLogSink
from feature_assets.online.store import InMemoryKVStore

pytestmark = [pytest.mark.spark, pytest.mark.services]

BATCH_DS = "2023-11-25"
DAYS = ["2023-11-26", "2023-11-27", "2023-11-28"]
EMPTY_DAY = "2023-11-29"  # in a dumped range, nothing logged
TOPIC = "fetch_log_dump_test"
PARTITIONS = 3
DATABASE = "kafka_log_dump_test"
RETRIED_WRITE = 3  # the sink write that fails after Kafka took the batch
MALFORMED = b"{not json"


class TeeSink(LogSink):
    """Writes each batch to Kafka and to MongoDB with the same ids, and keeps what it was given; one write
    fails after Kafka took it (the logger retries the batch: Kafka holds it twice, MongoDB once)."""

    def __init__(self, kafka: KafkaLogSink, mongo: MongoLogSink) -> None:
        self.kafka, self.mongo = kafka, mongo
        self.written: dict[str, dict] = {}  # record id -> record
        self.twice: set[str] = set()
        self.writes = 0

    def encode(self, record, record_id):
        return record, record_id

    def write_encoded(self, batch) -> None:
        records, ids = [record for record, _ in batch], [record_id for _, record_id in batch]
        self.writes += 1
        self.kafka.write(records, ids)
        if self.writes == RETRIED_WRITE:
            self.twice.update(ids)
            raise ConnectionError("log store down after Kafka took the batch")
        self.mongo.write(records, ids)
        self.written.update({record_id: dict(record) for record_id, record in zip(ids, records)})

    def close(self) -> None:
        self.kafka.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from feature_assets.dev.services.local import start_kafka, start_mongo

    folder = tmp_path_factory.mktemp("kafka-log-dump")
    kafka = start_kafka(log_path=folder / "kafka.log")
    try:
        mongo = start_mongo(folder / "mongo", log_path=folder / "mongo.log")
    except BaseException:
        kafka.stop()
        raise
    yield kafka.url, mongo.url
    mongo.stop()
    kafka.stop()


@pytest.fixture(scope="module")
def logged(servers):
    """The fetches logged to both stores: the tee sink (what the logger wrote) and the fetch count."""
    from pymongo import MongoClient

    kafka_url, mongo_url = servers
    create_topic(kafka_url, TOPIC, PARTITIONS)
    client = MongoClient(mongo_url)
    sink = TeeSink(KafkaLogSink({"bootstrap.servers": kafka_url}, topic=TOPIC), MongoLogSink(client[DATABASE]))
    logger = FetchLogger(sink, batch_size=40, linger_seconds=0.05, retry_initial_seconds=0.05)
    store = InMemoryKVStore()
    load_quickstart(store, BATCH_DS)
    fetcher = Fetcher(store, logger=logger)
    rng = np.random.default_rng(11)
    weights = 1.0 / np.arange(1, 31)
    fetches = 0
    for day_index, ds in enumerate(DAYS):
        for call in range(6 - 2 * day_index):  # skewed to the first day
            # Duplicate times: a whole call shares one time, and calls of a day share a few.
            at = end_of_day_millis(ds) - int(rng.integers(1, 4)) * 60_000
            users = rng.choice(30, size=int(rng.integers(5, 30)), p=weights / weights.sum())
            requests = [
                {"user_id": None if rng.random() < 0.05 else str(u), "request_id": f"{ds}-{call}-{i}"}
                for i, u in enumerate(users)
            ]
            requests.append(dict(requests[0]))  # the same request twice: equal records, two ids
            answers = fetcher.fetch_join(TRAINING_SET.name, requests, at)
            fetches += sum(1 for a in answers if a["values"] is not None)
            assert logger.flush(30)
    assert logger.close(timeout=30)
    counters = logger.counters()
    assert counters["failed"] == 1 and counters["dropped"] == 0 and counters["logged"] == fetches
    producer = Producer({"bootstrap.servers": kafka_url})
    producer.produce(TOPIC, value=MALFORMED, key=b"garbage")
    assert producer.flush(10) == 0
    client.close()
    assert sink.writes > 6 and sink.twice and len(sink.written) == fetches + counters["schemas_published"]
    return sink


def consumer_config(kafka_url: str) -> dict:
    from feature_assets.resources.kafka import KafkaResource

    return KafkaResource(bootstrap_servers=kafka_url).consumer_config("kafka-log-dump-test")


def row_of(record: dict) -> tuple:
    return tuple(record[name] for name in RAW_LOG_COLUMNS)


@pytest.mark.parametrize(
    "start, end", [(DAYS[0], DAYS[0]), (DAYS[1], DAYS[2]), (DAYS[0], EMPTY_DAY), (EMPTY_DAY, EMPTY_DAY)]
)
def test_kafka_log_records_gives_every_message_of_the_days(servers, logged, start, end):
    kafka_url, mongo_url = servers
    started = time.monotonic()
    records = kafka_log_records(consumer_config(kafka_url), TOPIC, start, end)
    elapsed = time.monotonic() - started
    malformed = [r for r in records if "_malformed" in r]
    assert len(malformed) == 1 and f"topic {TOPIC!r}" in malformed[0]["_malformed"]
    in_days = {i: r for i, r in logged.written.items() if start <= r["ds"] <= end}
    read = collections.Counter(r["_id"] for r in records if "_malformed" not in r)
    assert read == {i: 2 if i in logged.twice else 1 for i in in_days}
    assert all({k: v for k, v in r.items() if k != "_id"} == in_days[r["_id"]] for r in records if "_id" in r)

    rows = log_rows(records)
    assert sorted(rows.rows) == sorted(row_of(r) for r in in_days.values())
    assert rows.duplicates == len(logged.twice & in_days.keys()) and len(rows.malformed) == 1
    from pymongo import MongoClient

    with MongoClient(mongo_url) as client:
        assert rows.rows == log_rows(mongo_log_records(client[DATABASE], LOG_COLLECTION, start, end)).rows
    assert elapsed < 15, elapsed


def test_an_empty_or_missing_topic_gives_no_records_at_once(servers):
    kafka_url, _ = servers
    create_topic(kafka_url, "fetch_log_empty", 4)
    started = time.monotonic()
    assert kafka_log_records(consumer_config(kafka_url), "fetch_log_empty", DAYS[0], DAYS[2]) == []
    assert kafka_log_records(consumer_config(kafka_url), "fetch_log_missing", DAYS[0], DAYS[2]) == []
    assert time.monotonic() - started < 15


def test_log_dump_from_kafka_fills_the_table_as_a_mongodb_dump_does(servers, logged, spark, tmp_path, monkeypatch):
    from feature_assets.cli import main
    from feature_assets.storage import Warehouse

    kafka_url, mongo_url = servers
    monkeypatch.setenv("FEATURE_ASSETS_KAFKA_BOOTSTRAP", kafka_url)
    monkeypatch.setenv("FEATURE_ASSETS_MONGO_URI", mongo_url)
    monkeypatch.setenv("FEATURE_ASSETS_MONGO_DATABASE", DATABASE)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("FEATURE_ASSETS_SPARK_LOG", str(tmp_path / "spark.log"))
    start, end = DAYS[0], EMPTY_DAY

    def dump(root: str, *source: str) -> tuple[list[str], list[tuple], list[str]]:
        monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", root)
        out, err = io.StringIO(), io.StringIO()
        arguments = ["log-dump", "--start-ds", start, "--end-ds", end, "--repo", str(QUICKSTART), *source]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(arguments)
        assert code == 0, (out.getvalue()[-3000:], err.getvalue()[-3000:])
        table = Warehouse(spark, root).read(RAW_LOG_TABLE, start, end)
        materialized = [line for line in out.getvalue().splitlines() if line.startswith("materialized ")]
        return table.columns, sorted(tuple(r) for r in table.collect()), materialized

    kafka_root, mongo_root = str(tmp_path / "from_kafka"), str(tmp_path / "from_mongo")
    columns, rows, output = dump(kafka_root, "--source", "kafka", "--topic", TOPIC)
    expected = sorted(
        (r["schema_hash"], r["key_base64"], r["value_base64"], r["ts_millis"], r["name"], r["ds"])
        for r in logged.written.values()
    )
    assert rows == expected
    per_day = collections.Counter(r["ds"] for r in logged.written.values())
    for ds in [*DAYS, EMPTY_DAY]:
        assert f"materialized default/chronon_log_table [{ds}] rows={per_day.get(ds, 0)}" in output, output
    assert dump(mongo_root) == (columns, rows, output)
    # Refilled from Kafka (a day of it, then the range): the same rows.
    start = end = DAYS[1]
    dump(kafka_root, "--source", "kafka", "--topic", TOPIC)
    start, end = DAYS[0], EMPTY_DAY
    assert dump(kafka_root, "--source", "kafka", "--topic", TOPIC)[:2] == (columns, rows)
