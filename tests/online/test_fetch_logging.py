"""Fetch logging: Avro records checked against a naive decoder, the schema hash against a naive recomputation,
Chronon's deterministic sampling (also across processes), the bounded buffer and the retries of a failing
sink, and the MongoDB (SecantusDB) and Kafka (tansu) sinks on real servers."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from support.online import TRAINING_SET, load_quickstart
from support.paths import PROJECT_ROOT
from support.streaming import create_topic, read_topic

from feature_assets.model import config_from_json
from feature_assets.offline.log_tables import mongo_log_records
from feature_assets.online.batch_encoding import ds_of_millis, end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.logging import SCHEMA_PUBLISH_EVENT, FetchLogger, JoinCodec, MemorySink
from feature_assets.online.logging.environment import logger_from_environment
from feature_assets.online.logging.sinks.kafka import KafkaLogSink
from feature_assets.online.logging.sinks.mongo import MongoLogSink, bundle_documents, bundle_records
from feature_assets.online.store import InMemoryKVStore, MongoKVStore, upload_metadata

DS = "2023-11-25"
AT = end_of_day_millis(DS) + 3_600_000  # 01:00 on the next day


# --------------------------------------------------------------------------- a naive Avro decoder


class Reader:
    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def long(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)

    def take(self, n: int) -> bytes:
        out = self.data[self.position : self.position + n]
        self.position += n
        return out

    def value(self, schema):
        if isinstance(schema, list):  # a union
            return self.value(schema[self.long()])
        if isinstance(schema, dict) and schema["type"] == "record":
            return {f["name"]: self.value(f["type"]) for f in schema["fields"]}
        if isinstance(schema, dict) and schema["type"] in ("array", "map"):
            out: list | dict = [] if schema["type"] == "array" else {}
            while True:
                count = self.long()
                if count == 0:
                    return out
                if count < 0:
                    count = -count
                    self.long()  # block size in bytes
                for _ in range(count):
                    if schema["type"] == "array":
                        out.append(self.value(schema["items"]))  # type: ignore[union-attr]
                    else:
                        key = self.take(self.long()).decode()
                        out[key] = self.value(schema["values"])  # type: ignore[index]
        if schema in ("long", "int"):
            return self.long()
        if schema == "double":
            return struct.unpack("<d", self.take(8))[0]
        if schema == "float":
            return struct.unpack("<f", self.take(4))[0]
        if schema == "boolean":
            return self.take(1) == b"\x01"
        if schema == "string":
            return self.take(self.long()).decode()
        if schema == "bytes":
            return self.take(self.long())
        if schema == "null":
            return None
        raise AssertionError(f"unexpected schema {schema!r}")


def naive_decode(schema, data: bytes):
    reader = Reader(data)
    value = reader.value(schema)
    assert reader.position == len(data)
    return value


def naive_sampled(key_bytes: bytes, percent: float) -> bool:
    (value,) = struct.unpack(">q", hashlib.md5(key_bytes).digest()[:8])
    return percent > 0 and abs(value) % 100_000 <= percent * 1000


def naive_string_key(*values: str | None) -> bytes:
    """Avro of a record of nullable strings, written by hand (union index, zigzag length, UTF-8)."""
    out = b""
    for value in values:
        if value is None:
            out += b"\x00"
        else:
            raw = value.encode()
            out += b"\x02" + zigzag(len(raw)) + raw
    return out


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store():
    store = InMemoryKVStore()
    load_quickstart(store, DS)
    return store


def sampled_join(percent: float):
    raw = json.loads(json.dumps(TRAINING_SET.raw))
    raw["metaData"]["samplePercent"] = percent
    return config_from_json("joins", raw)


def assert_same_values(logged: dict, served: dict) -> None:
    assert list(logged) == list(served)
    for column, value in served.items():
        assert logged[column] == (value if value is None or isinstance(value, str) else pytest.approx(value)), column


def decoded(records: list[dict]) -> tuple[dict[str, dict], list[dict]]:
    """({hash: schema document}, decoded fetch records) of a list of log records; schema records first."""
    schemas: dict[str, dict] = {}
    rows = []
    for record in records:
        if record["name"] == SCHEMA_PUBLISH_EVENT:
            text = base64.b64decode(record["value_base64"]).decode()
            assert base64.b64decode(record["key_base64"]).decode() == record["schema_hash"]
            assert base64.b64encode(hashlib.md5(text.encode()).digest()).decode() == record["schema_hash"]
            schemas[record["schema_hash"]] = json.loads(text)
            continue
        schema = schemas[record["schema_hash"]]  # published before its first record
        rows.append(
            {
                "key": naive_decode(schema["key_schema"], base64.b64decode(record["key_base64"])),
                "value": naive_decode(schema["value_schema"], base64.b64decode(record["value_base64"])),
                "ts_millis": record["ts_millis"],
                "ds": record["ds"],
            }
        )
    return schemas, rows


# --------------------------------------------------------------------------- codec


def test_served_values_round_trip_through_avro_and_the_schema_hash_is_the_naive_one(store):
    sink = MemorySink()
    logger = FetchLogger(sink)
    fetcher = Fetcher(store, logger=logger)
    requests = [{"user_id": str(u), "request_id": f"r-{u}"} for u in range(1, 12)] + [{"user_id": None}]
    served = fetcher.fetch_join("quickstart.training_set.v2", requests, AT)
    single = fetcher.fetch_join("quickstart.training_set.v2", {"user_id": "3", "request_id": "r-x"})
    assert logger.flush(10)
    assert logger.counters()["logged"] == len(requests) + 1

    schemas, rows = decoded(sink.records)
    assert [r["name"] for r in sink.records][0] == SCHEMA_PUBLISH_EVENT and len(schemas) == 1
    ((hash_, document),) = schemas.items()
    key_names = [f["name"] for f in document["key_schema"]["fields"]]
    value_names = [f["name"] for f in document["value_schema"]["fields"]]
    assert key_names == ["user_id", "request_id"]
    assert value_names == list(served[0]["values"])  # the served order, contextual column included
    assert served[0]["values"]["ext_contextual_request_id"] == "r-1"
    # the hash, recomputed from the schemas' JSON as the log record format defines it
    naive = {"join_name": "quickstart.training_set.v2", **{k: document[k] for k in ("key_schema", "value_schema")}}
    text = json.dumps(naive, sort_keys=True, separators=(",", ":"))
    assert hash_ == base64.b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode()
    assert all(f["type"][0] == "null" for f in document["value_schema"]["fields"] + document["key_schema"]["fields"])

    for row, request, response in zip(rows, requests + [{"user_id": "3", "request_id": "r-x"}], served + [single]):
        assert row["key"] == {"user_id": request["user_id"], "request_id": request.get("request_id")}
        assert_same_values(row["value"], response["values"])
    assert rows[0]["ts_millis"] == AT and rows[0]["ds"] == "2023-11-26"
    assert rows[-1]["ds"] == time.strftime("%Y-%m-%d", time.gmtime(rows[-1]["ts_millis"] / 1000))


def test_random_records_round_trip_every_type():
    rng = np.random.default_rng(7)
    types = {
        "a": "bigint",
        "b": "int",
        "c": "double",
        "d": "float",
        "e": "string",
        "f": "boolean",
        "g": "binary",
        "h": "array<bigint>",
        "i": "map<string,double>",
        "j": "map<bigint,bigint>",
    }
    codec = JoinCodec("t.j", {"k": "bigint"}, types)

    def random_value(type_name: str):
        if rng.random() < 0.2:
            return None
        return {
            "bigint": lambda: int(rng.integers(-(2**62), 2**62)),
            "int": lambda: int(rng.integers(-(2**31), 2**31)),
            "double": lambda: float(rng.normal()),
            "float": lambda: float(np.float32(rng.normal())),
            "string": lambda: "".join(rng.choice(list("abcé✓ "), int(rng.integers(0, 8)))),
            "boolean": lambda: bool(rng.random() < 0.5),
            "binary": lambda: rng.bytes(int(rng.integers(0, 5))),
            "array<bigint>": lambda: [None if rng.random() < 0.2 else int(x) for x in rng.integers(0, 99, 4)],
            "map<string,double>": lambda: {f"k{i}": float(rng.normal()) for i in range(int(rng.integers(0, 4)))},
            "map<bigint,bigint>": lambda: {int(i): int(rng.integers(0, 9)) for i in range(int(rng.integers(0, 4)))},
        }[type_name]()

    for _ in range(200):
        values = {name: random_value(t) for name, t in types.items()}
        data = codec.encode_value(values)
        expected = dict(values)
        if expected["j"] is not None:
            expected["j"] = {str(k): v for k, v in expected["j"].items()}  # Avro map keys are strings
        assert naive_decode(codec.value_schema, data) == expected
        assert codec.decode_value(data) == expected
        assert naive_decode(codec.key_schema, codec.encode_key({"k": "12"})) == {"k": 12}


# --------------------------------------------------------------------------- sampling


SAMPLER = """
import json, sys
from feature_assets.online.logging import JoinCodec, is_sampled
codec = JoinCodec("quickstart.training_set.v2", {"user_id": "string", "request_id": "string"}, {})
requests = json.load(sys.stdin)
print(json.dumps([is_sampled(codec.encode_key(r), 10) for r in requests]))
"""


def test_about_ten_percent_of_keys_are_logged_every_request_of_them_and_the_same_in_another_process(store):
    join = sampled_join(10)
    sampled_store = InMemoryKVStore()
    load_quickstart(sampled_store, DS)
    upload_metadata(sampled_store, "joins", join)
    sink = MemorySink()
    logger = FetchLogger(sink)
    fetcher = Fetcher(sampled_store, logger=logger)
    n = 3000
    requests = [{"user_id": str(u), "request_id": f"r-{u % 7}"} for u in range(n)]
    for start in range(0, n, 500):
        fetcher.fetch_join(join.name, requests[start : start + 500], AT)
    assert logger.flush(10)
    _, rows = decoded(sink.records)
    logged = {(r["key"]["user_id"], r["key"]["request_id"]) for r in rows}
    expected = {
        (r["user_id"], r["request_id"])
        for r in requests
        if naive_sampled(naive_string_key(r["user_id"], r["request_id"]), 10)
    }
    assert logged == expected and len(rows) == len(logged)
    # binomial(3000, 0.1): mean 300, sd 16.4; 6 sd either side
    assert 300 - 6 * 16.4 < len(logged) < 300 + 6 * 16.4
    assert logger.counters()["sampled_out"] == n - len(logged)

    # every later request of a logged key is logged again, no other
    again = [r for r in requests[:600]] * 2
    fetcher.fetch_join(join.name, again[:1000], AT)
    fetcher.fetch_join(join.name, again[1000:], AT)
    assert logger.flush(10)
    _, rows = decoded(sink.records)
    first = {(r["user_id"], r["request_id"]) for r in requests[:600]} & expected
    assert len(rows) == len(expected) + 2 * len(first)

    output = subprocess.run(
        [sys.executable, "-c", SAMPLER],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
    ).stdout
    other = {(r["user_id"], r["request_id"]) for r, chosen in zip(requests, json.loads(output)) if chosen}
    assert other == expected


# --------------------------------------------------------------------------- buffer and failures


class BlockingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def write_encoded(self, batch) -> None:
        self.entered.set()
        self.release.wait(10)
        super().write_encoded(batch)


class FailingSink(MemorySink):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures, self.attempts = failures, 0

    def write_encoded(self, batch) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("log store down")
        super().write_encoded(batch)


def test_a_full_buffer_drops_and_counts(store):
    sink = BlockingSink()
    logger = FetchLogger(sink, buffer_size=5, batch_size=100)
    fetcher = Fetcher(store, logger=logger)
    fetcher.fetch_join(TRAINING_SET.name, {"user_id": "1", "request_id": "first"}, AT)
    assert sink.entered.wait(5)  # the writer holds the first record; the buffer is empty again
    answers = fetcher.fetch_join(TRAINING_SET.name, [{"user_id": "2", "request_id": f"r{i}"} for i in range(12)], AT)
    assert all(a["values"] for a in answers)
    assert logger.counters()["dropped"] == 7
    sink.release.set()
    assert logger.flush(10)
    counters = logger.counters()
    assert (counters["logged"], counters["dropped"], counters["schemas_published"]) == (6, 7, 1)
    assert len(sink.records) == 7  # the schema record and six fetches


def test_a_failing_sink_never_fails_or_slows_a_fetch_and_is_retried(store):
    sink = FailingSink(failures=3)
    logger = FetchLogger(sink, retry_initial_seconds=0.05)
    fetcher = Fetcher(store, logger=logger)
    plain = Fetcher(store)
    expected = plain.fetch_join(TRAINING_SET.name, {"user_id": "4", "request_id": "r"}, AT)
    started = time.perf_counter()
    answer = fetcher.fetch_join(TRAINING_SET.name, {"user_id": "4", "request_id": "r"}, AT)
    assert time.perf_counter() - started < 0.5
    assert answer == expected
    assert logger.flush(10)
    counters = logger.counters()
    assert (counters["failed"], counters["logged"]) == (3, 1)
    assert [r["name"] for r in sink.records] == [SCHEMA_PUBLISH_EVENT, TRAINING_SET.name]

    down = FetchLogger(FailingSink(failures=10**9), buffer_size=3, retry_initial_seconds=0.01, retry_max_seconds=0.02)
    fetcher = Fetcher(store, logger=down)
    for i in range(10):
        assert fetcher.fetch_join(TRAINING_SET.name, {"user_id": "4", "request_id": str(i)}, AT)["values"]
    assert not down.flush(0.2)
    assert down.counters()["failed"] >= 2 and down.counters()["dropped"] >= 6
    down.close(timeout=0.1)


def test_kafka_sink_raises_when_its_messages_are_not_delivered():
    """Only failed messages get a delivery report: a batch the broker never takes still fails its write (the
    logger then retries it), naming the topic."""
    from confluent_kafka import KafkaException

    sink = KafkaLogSink({"bootstrap.servers": "127.0.0.1:9"}, topic="nowhere", timeout=1.0)
    record = {"name": "j", "schema_hash": "h", "key_base64": "", "value_base64": "", "ts_millis": AT, "ds": DS}
    started = time.monotonic()
    with pytest.raises(KafkaException, match="topic 'nowhere'"):
        sink.write([record, dict(record)], ["a-0", "a-1"])
    assert time.monotonic() - started < 10


def test_environment_chooses_the_sink(store):
    assert logger_from_environment(store, {"FEATURE_ASSETS_FETCH_LOG": "mongo"}) is None  # in-memory: no database
    assert logger_from_environment(store, {"FEATURE_ASSETS_FETCH_LOG": "off"}) is None
    with pytest.raises(ValueError, match="FEATURE_ASSETS_FETCH_LOG='file'"):
        logger_from_environment(store, {"FEATURE_ASSETS_FETCH_LOG": "file"})
    with pytest.raises(ValueError, match="FEATURE_ASSETS_KAFKA_BOOTSTRAP"):
        logger_from_environment(store, {"FEATURE_ASSETS_FETCH_LOG": "kafka"})


# --------------------------------------------------------------------------- real servers


@pytest.mark.services
def test_records_land_in_mongodb_with_exactly_the_record_fields(tmp_path):
    from feature_assets.dev.services.local import start_mongo

    mongo = start_mongo(tmp_path / "mongo", log_path=tmp_path / "mongo.log")
    try:
        store = MongoKVStore.from_uri(mongo.url, "logging_test")
        load_quickstart(store, DS)
        logger = logger_from_environment(store, {})
        assert logger is not None and isinstance(logger.sink, MongoLogSink)
        fetcher = Fetcher(store, logger=logger)
        requests = [{"user_id": str(u), "request_id": f"r-{u}"} for u in range(1, 6)]
        served = fetcher.fetch_join(TRAINING_SET.name, requests, AT)
        assert logger.flush(10)
        bundles = list(store.db["fetch_log"].find())
        assert len(bundles) == 1 and bundles[0]["count"] == 6 and bundles[0]["ds"] == ds_of_millis(AT)
        documents = [record for bundle in bundles for record in bundle_records(bundle)]
        assert len(documents) == 6
        fields = {"_id", "name", "schema_hash", "key_base64", "value_base64", "ts_millis", "ds"}
        assert all(set(d) == fields for d in documents)
        assert len({d["_id"] for d in documents}) == 6
        assert mongo_log_records(store.db, "fetch_log", bundles[0]["ds"], bundles[0]["ds"]) == documents
        ordered = sorted(documents, key=lambda d: d["name"] != SCHEMA_PUBLISH_EVENT)
        _, rows = decoded(ordered)
        assert sorted(r["key"]["request_id"] for r in rows) == [r["request_id"] for r in requests]
        by_request = {r["key"]["request_id"]: r["value"] for r in rows}
        for request, response in zip(requests, served):
            assert_same_values(by_request[request["request_id"]], response["values"])
        logger.close()
        store.close()
    finally:
        mongo.stop()


def random_log_records(rng: np.random.Generator, n: int, days: list[str]) -> list[dict]:
    """Records of a few days (skewed to the first), with duplicate timestamps and values of very mixed sizes."""
    records = []
    for _ in range(n):
        day = days[min(int(rng.exponential(0.7)), len(days) - 1)]
        records.append(
            {
                "name": str(rng.choice(["j.a", "j.b", SCHEMA_PUBLISH_EVENT])),
                "schema_hash": f"h{rng.integers(3)}",
                "key_base64": base64.b64encode(rng.bytes(int(rng.integers(0, 20)))).decode(),
                "value_base64": base64.b64encode(rng.bytes(int(rng.integers(0, 3000)))).decode(),
                "ts_millis": int(end_of_day_millis(day) - rng.integers(1, 4) * 1000),
                "ds": day,
            }
        )
    return records


def naive_bundles(encoded, max_bytes):
    """Per day in order of first appearance, records in order, a new bundle when the next would not fit."""
    days: dict[str, list[list]] = {}
    for day, record_id, data in encoded:
        bundles = days.setdefault(day, [])
        if not bundles or sum(len(d) for _, d in bundles[-1]) + len(data) > max_bytes:
            bundles.append([])
        bundles[-1].append((record_id, data))
    done = [(day, b) for day, bundles in days.items() for b in bundles]
    return sorted(
        ({"_id": b[0][0], "ds": day, "count": len(b), "records": b"".join(d for _, d in b)} for day, b in done),
        key=lambda document: document["_id"],
    )


@pytest.mark.parametrize("seed", range(4))
def test_bundles_of_a_batch_are_the_naive_ones(seed):
    rng = np.random.default_rng(seed)
    sink = MongoLogSink({"fetch_log": None})
    for _ in range(60):
        days = ["2023-11-24"] if rng.random() < 0.5 else ["2023-11-24", "2023-11-25", "2023-11-26"]
        records = random_log_records(rng, int(rng.integers(1, 80)), days)
        ids = [f"r{index:03d}" for index in range(len(records))]
        encoded = [sink.encode(record, record_id) for record, record_id in zip(records, ids)]
        max_bytes = int(rng.choice([10**9, 20_000, 3_000]))
        documents = sorted(bundle_documents(encoded, max_bytes), key=lambda document: document["_id"])
        assert [{**d, "records": bytes(d["records"])} for d in documents] == naive_bundles(encoded, max_bytes)


@pytest.mark.services
def test_mongodb_bundles_give_every_record_once_per_day_also_after_retries(tmp_path):
    from pymongo import MongoClient

    from feature_assets.dev.services.local import start_mongo

    rng = np.random.default_rng(7)
    days = ["2023-11-24", "2023-11-25", "2023-11-26"]
    mongo = start_mongo(tmp_path / "mongo", log_path=tmp_path / "mongo.log")
    client = MongoClient(mongo.url)
    try:
        database = client["bundles_test"]
        sink = MongoLogSink(database, max_bundle_bytes=20_000)  # small: batches split into several bundles
        written: dict[str, dict] = {}
        for batch_number in range(6):
            records = random_log_records(rng, int(rng.integers(0, 120)), days)
            ids = [f"b{batch_number}-{i}" for i in range(len(records))]
            sink.write(records, ids)
            if batch_number % 2 == 0 and records:
                # a retry after a failure that left only some of the batch's bundles written
                database["fetch_log"].delete_one({"ds": records[0]["ds"], "_id": {"$regex": f"^b{batch_number}-"}})
                sink.write(records, ids)
                sink.write(records, ids)
            written.update({record_id: {"_id": record_id, **r} for record_id, r in zip(ids, records)})
        # a record written by an earlier version, one document per record
        legacy = {**random_log_records(rng, 1, days[1:2])[0], "_id": "legacy-0"}
        database["fetch_log"].insert_one(dict(legacy))
        written[legacy["_id"]] = legacy

        assert "ds" in database["fetch_log"].index_information()
        assert all(len(d["records"]) <= 20_000 for d in database["fetch_log"].find({"count": {"$gt": 1}}))
        for start, end in [(days[0], days[0]), (days[1], days[2]), (days[0], days[2]), ("2023-11-27", "2023-11-30")]:
            read = mongo_log_records(database, "fetch_log", start, end)
            expected = sorted((r for r in written.values() if start <= r["ds"] <= end), key=lambda r: r["_id"])
            assert sorted(read, key=lambda r: r["_id"]) == expected
    finally:
        client.close()
        mongo.stop()


@pytest.mark.services
def test_records_land_on_the_kafka_topic(tmp_path):
    from feature_assets.dev.services.local import start_kafka

    kafka = start_kafka(log_path=tmp_path / "kafka.log")
    try:
        store = InMemoryKVStore()
        load_quickstart(store, DS)
        create_topic(kafka.url, "fetch_log")
        logger = logger_from_environment(
            store, {"FEATURE_ASSETS_FETCH_LOG": "kafka", "FEATURE_ASSETS_KAFKA_BOOTSTRAP": kafka.url}
        )
        assert logger is not None and isinstance(logger.sink, KafkaLogSink)
        fetcher = Fetcher(store, logger=logger)
        served = fetcher.fetch_join(TRAINING_SET.name, {"user_id": "2", "request_id": "r-2"}, AT)
        assert logger.flush(20)
        messages = read_topic(kafka.url, "fetch_log", expected=2)
        records = [json.loads(m.value()) for m in messages]
        assert [r["name"] for r in records] == [SCHEMA_PUBLISH_EVENT, TRAINING_SET.name]
        assert all(set(r) == {"name", "schema_hash", "key_base64", "value_base64", "ts_millis", "ds"} for r in records)
        _, rows = decoded(records)
        assert rows[0]["key"] == {"user_id": "2", "request_id": "r-2"}
        assert_same_values(rows[0]["value"], served["values"])
        logger.close()
    finally:
        kafka.stop()
