"""Streaming in the asset graph (topic and streaming dataset assets, the observation sensor), the broker
monitor behind it, and the Kafka resource's settings from the environment.

The sensor and monitor tests run the real local servers (tansu, SecantusDB) and compare what the sensor
observes with what the test produced, committed and recorded.
"""

from __future__ import annotations

import copy
import random
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from dagster import AssetKey, DefaultSensorStatus, EnvVar, build_sensor_context
from support.paths import QUICKSTART

from feature_assets.definitions import build_definitions
from feature_assets.definitions import streaming_assets as streaming_module
from feature_assets.definitions.streaming_assets import (
    SENSOR_INTERVAL_S,
    SENSOR_NAME,
    STREAMING_GROUP,
    streaming_assets,
    streaming_group_bys,
    topic_specs,
)
from feature_assets.dev.services.local import find_free_port, start_kafka, start_mongo
from feature_assets.model import GroupBy
from feature_assets.model.configs import CompiledRepo
from feature_assets.online.store import MongoKVStore
from feature_assets.resources import (
    KafkaResource,
    MongoResource,
    SparkResource,
    WarehouseResource,
    resources_for_environment,
)
from feature_assets.streaming import monitor, status

RETURNS = "quickstart.returns.v1"


def keys(graph) -> set[str]:
    return {key.to_user_string() for key in graph.get_all_asset_keys()}


def parents(graph, key: str) -> set[str]:
    return {p.to_user_string() for p in graph.get(AssetKey.from_user_string(key)).parent_keys}


def ancestors(graph, key: str) -> set[str]:
    found, frontier = set(), {key}
    while frontier:
        frontier = {p for k in frontier for p in parents(graph, k)} - found
        found |= frontier
    return found


# --------------------------------------------------------------------------- the asset graph


def test_each_topic_is_an_external_asset_upstream_of_its_streaming_dataset(quickstart_compiled):
    defs = build_definitions(QUICKSTART)
    graph = defs.resolve_asset_graph()
    streaming = streaming_group_bys(quickstart_compiled)
    assert list(streaming) == [RETURNS]  # purchases and users have no topic
    returns = streaming[RETURNS]
    [spec] = topic_specs(returns)
    topic_key, dataset_key = f"kafka/{spec.name}", "online/QUICKSTART_RETURNS_V1_STREAMING"
    assert {k for k in keys(graph) if k.startswith("kafka/") or k.endswith("_STREAMING")} == {topic_key, dataset_key}

    topic = graph.get(AssetKey.from_user_string(topic_key))
    assert (topic.group_name, set(topic.kinds), topic.partitions_def) == (STREAMING_GROUP, {"kafka"}, None)
    assert not topic.is_materializable and parents(graph, topic_key) == set()
    assert f"`{spec.dead_letter_topic}`" in topic.description and "unpartitioned" in topic.description

    dataset = graph.get(AssetKey.from_user_string(dataset_key))
    assert (dataset.group_name, set(dataset.kinds), dataset.partitions_def) == ("quickstart", {"mongodb"}, None)
    assert not dataset.is_materializable
    assert parents(graph, dataset_key) == {topic_key, "online/QUICKSTART_RETURNS_V1_BATCH"}
    assert "feature-assets streaming --conf production/group_bys/quickstart/returns.v1" in dataset.description
    assert dataset.metadata["consumer_group"] == status.consumer_group_id(returns)

    # The lineage: the streaming dataset sits downstream of its topic and of the whole batch path.
    assert ancestors(graph, dataset_key) >= {
        topic_key,
        "online/QUICKSTART_RETURNS_V1_BATCH",
        "default/quickstart_returns_v1_upload",
        "data/returns",
    }


def test_the_observation_sensor_runs_by_default_once_both_servers_are_configured(monkeypatch):
    monkeypatch.setenv("FEATURE_ASSETS_MONGO_URI", "mongodb://mongodb:27017/")
    monkeypatch.setenv("FEATURE_ASSETS_KAFKA_BOOTSTRAP", "kafka:9092")
    sensor = build_definitions(QUICKSTART).resolve_sensor_def(SENSOR_NAME)
    assert sensor.minimum_interval_seconds == SENSOR_INTERVAL_S
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert set(sensor.required_resource_keys) == {"mongo", "kafka"}
    # Without an address every tick would fail on the missing setting: the sensor starts stopped.
    monkeypatch.delenv("FEATURE_ASSETS_KAFKA_BOOTSTRAP")
    sensor = build_definitions(QUICKSTART).resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == DefaultSensorStatus.STOPPED


def test_the_streaming_assets_need_the_store_and_the_sensor_also_the_broker():
    without_kafka = build_definitions(
        QUICKSTART,
        resources={"spark": SparkResource(), "warehouse": WarehouseResource(), "mongo": MongoResource(uri="x")},
    )
    assert SENSOR_NAME not in [s.name for s in without_kafka.sensors or []]
    assert any(k.startswith("kafka/") for k in keys(without_kafka.resolve_asset_graph()))
    without_mongo = build_definitions(
        QUICKSTART, resources={"spark": SparkResource(), "warehouse": WarehouseResource()}
    )
    assert SENSOR_NAME not in [s.name for s in without_mongo.sensors or []]
    assert not any(k.startswith("kafka/") for k in keys(without_mongo.resolve_asset_graph()))


def renamed(group_by: GroupBy, name: str, topic: str) -> GroupBy:
    raw = copy.deepcopy(group_by.raw)
    raw["metaData"]["name"] = name
    raw["sources"][0]["events"]["topic"] = topic
    return GroupBy.from_json(raw)


def test_a_topic_read_by_two_group_bys_is_one_asset(quickstart_compiled):
    returns = quickstart_compiled.group_bys[RETURNS]
    one = renamed(returns, "shop.refunds.v1", "events.refunds/fields=ts,user_id,refund_amt")
    two = renamed(returns, "shop.refunds.v2", "events.refunds/dlq=refunds.bad")
    specs = {
        s.key.to_user_string(): s for s in streaming_assets(CompiledRepo(group_bys={g.name: g for g in (one, two)}))
    }
    assert sorted(specs) == [
        "kafka/events.refunds",
        "online/SHOP_REFUNDS_V1_STREAMING",
        "online/SHOP_REFUNDS_V2_STREAMING",
    ]
    topic = specs["kafka/events.refunds"]
    assert topic.metadata["dead_letter_topics"] == ["events.refunds.dlq", "refunds.bad"]
    assert topic.metadata["read_by"] == ["shop.refunds.v1", "shop.refunds.v2"]
    for version in ("V1", "V2"):
        deps = {dep.asset_key.to_user_string() for dep in specs[f"online/SHOP_REFUNDS_{version}_STREAMING"].deps}
        assert deps == {"kafka/events.refunds", f"online/SHOP_REFUNDS_{version}_BATCH"}


# --------------------------------------------------------------------------- the Kafka resource's settings

SSL_ENV = {
    "FEATURE_ASSETS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "FEATURE_ASSETS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "FEATURE_ASSETS_KAFKA_SASL_USERNAME": "features",
    "FEATURE_ASSETS_KAFKA_SASL_PASSWORD": "sasl-secret",
    "FEATURE_ASSETS_KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.pem",
    "FEATURE_ASSETS_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/kafka/client.pem",
    "FEATURE_ASSETS_KAFKA_SSL_KEY_LOCATION": "/etc/kafka/client.key",
    "FEATURE_ASSETS_KAFKA_SSL_KEY_PASSWORD": "key-secret",
}
SSL_CLIENT_CONFIG = {
    "bootstrap.servers": "broker-1:9093",
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "features",
    "sasl.password": "sasl-secret",
    "ssl.ca.location": "/etc/kafka/ca.pem",
    "ssl.certificate.location": "/etc/kafka/client.pem",
    "ssl.key.location": "/etc/kafka/client.key",
    "ssl.key.password": "key-secret",
}


def test_kafka_security_settings_come_from_the_environment(monkeypatch):
    for name, value in {**SSL_ENV, "FEATURE_ASSETS_KAFKA_BOOTSTRAP": "broker-1:9093"}.items():
        monkeypatch.setenv(name, value)
    kafka = resources_for_environment("production")["kafka"]
    # Dagster resolves the variables when a run starts: the definitions hold references, never the secrets.
    assert kafka.ssl_ca_location == EnvVar("FEATURE_ASSETS_KAFKA_SSL_CA_LOCATION")
    assert kafka.ssl_key_password == EnvVar("FEATURE_ASSETS_KAFKA_SSL_KEY_PASSWORD")
    assert KafkaResource.from_environment().client_config() == SSL_CLIENT_CONFIG
    assert KafkaResource(bootstrap_servers="b:9092").client_config() == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "PLAINTEXT",
    }


def test_kafka_from_the_environment_falls_back_to_the_given_broker():
    assert KafkaResource.from_environment("127.0.0.1:9999", environ={}).bootstrap_servers == "127.0.0.1:9999"
    environ = {"FEATURE_ASSETS_KAFKA_BOOTSTRAP": "kafka:9092"}
    assert KafkaResource.from_environment("127.0.0.1:9999", environ=environ).bootstrap_servers == "kafka:9092"
    with pytest.raises(ValueError, match="FEATURE_ASSETS_KAFKA_BOOTSTRAP"):
        KafkaResource.from_environment(environ={})


# --------------------------------------------------------------------------- on the real servers


@pytest.fixture(scope="module")
def mongo_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mongo")
    service = start_mongo(folder / "data", log_path=folder / "mongo.log")
    yield service.url
    service.stop()


@pytest.fixture
def kafka(tmp_path):
    """A broker of its own per test: the quickstart's topic names are fixed."""
    service = start_kafka(log_path=tmp_path / "kafka.log")
    yield KafkaResource(bootstrap_servers=service.url)
    service.stop()


@pytest.fixture
def mongo(mongo_url):
    resource = MongoResource(uri=mongo_url, database=f"streaming_{uuid.uuid4().hex[:8]}")
    yield resource
    resource.close()


def produce(kafka: KafkaResource, topic: str, per_partition: list[int]) -> None:
    """`per_partition[p]` messages into partition p, each in a record batch of its own: the local broker
    reports the high watermark of a multi-message batch as its first offset plus one (see `monitor`)."""
    producer = kafka.producer()
    for partition, count in enumerate(per_partition):
        for i in range(count):
            producer.produce(topic, value=f"{partition},{i}".encode(), partition=partition)
            assert producer.flush(10) == 0


def commit(kafka: KafkaResource, group_id: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer(kafka.consumer_config(group_id))
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def random_backlog(rng: random.Random, partitions: int) -> tuple[list[int], dict[int, int]]:
    """Messages per partition, and committed offsets on some partitions (partition 0 never commits)."""
    counts = [rng.randint(1, 9) for _ in range(partitions)]
    committed = {p: rng.randint(0, counts[p]) for p in range(1, partitions) if rng.random() < 0.8}
    return counts, committed


def naive_lag(counts: list[int], committed: dict[int, int]) -> int:
    return sum(count - committed.get(p, 0) for p, count in enumerate(counts))


@pytest.mark.services
def test_consumer_lag_and_dead_letter_count_match_what_was_produced(kafka):
    rng = random.Random(7)
    kafka.ensure_topics(["clicks"], partitions=4)
    kafka.ensure_topics(["views"], partitions=2)
    kafka.ensure_topics(["clicks.dlq"], partitions=2)
    clicks, committed_clicks = random_backlog(rng, 4)
    views, _ = random_backlog(rng, 2)
    dead = [rng.randint(0, 5), rng.randint(1, 5)]
    produce(kafka, "clicks", clicks)
    produce(kafka, "views", views)
    produce(kafka, "clicks.dlq", dead)
    commit(kafka, "readers", "clicks", committed_clicks)
    commit(kafka, "readers", "views", {0: views[0], 1: views[1]})  # caught up

    group = kafka.group_name("readers")
    lags = monitor.consumer_lag(kafka.client_config(), group, ["clicks", "views", "never.written"], timeout=5)
    assert lags == {"clicks": naive_lag(clicks, committed_clicks), "views": 0, "never.written": 0}
    assert monitor.consumer_lag(kafka.client_config(), "another.group", ["clicks"]) == {"clicks": sum(clicks)}
    assert monitor.dead_letter_count(kafka.client_config(), "clicks.dlq") == sum(dead)
    assert monitor.dead_letter_count(kafka.client_config(), "views.dlq") == 0
    # Asking about a topic does not create it.
    assert "never.written" not in kafka.admin().list_topics(timeout=5).topics


def test_a_broker_that_does_not_answer_raises_within_the_timeout():
    config = {"bootstrap.servers": f"127.0.0.1:{find_free_port()}"}
    started = time.monotonic()
    with pytest.raises(monitor.BrokerUnavailable, match=r"Kafka at 127\.0\.0\.1:\d+ did not answer .* within 1 s"):
        monitor.consumer_lag(config, "readers", ["clicks"], timeout=1)
    with pytest.raises(monitor.BrokerUnavailable):
        monitor.dead_letter_count(config, "clicks.dlq", timeout=1)
    assert time.monotonic() - started < 5


def evaluate_sensor(tmp_path, mongo: MongoResource, kafka: KafkaResource):
    resources = {
        "spark": SparkResource(),
        "warehouse": WarehouseResource(root=str(tmp_path / "warehouse")),
        "mongo": mongo,
        "kafka": kafka,
    }
    sensor = build_definitions(QUICKSTART, resources=resources).resolve_sensor_def(SENSOR_NAME)
    with build_sensor_context(resources={"mongo": mongo, "kafka": kafka}) as context:
        return sensor(context)


def observations(result) -> dict[str, dict[str, int]]:
    found = {}
    for event in result.asset_events:
        found[event.asset_key.to_user_string()] = {name: value.value for name, value in event.metadata.items()}
    return found


def record_random_status(rng: random.Random, mongo: MongoResource, group_by: GroupBy) -> dict[str, int]:
    """Counters recorded over a few batches, as the streaming job does; returns their naive totals."""
    store = MongoKVStore.from_resource(mongo)
    totals = {"applied": 0, "dead_lettered": 0, "filtered": 0, "retention_removed": 0}
    for _ in range(rng.randint(2, 4)):
        counts = {name: rng.randint(0, 50) for name in totals}
        last_event_ts = rng.randint(1_700_000_000_000, 1_800_000_000_000)
        status.record(store, group_by, counts, last_event_ts=last_event_ts, topics=group_by.topics)
        totals = {name: totals[name] + counts[name] for name in totals}
    return {**totals, "last_event_ts": last_event_ts}


@pytest.mark.services
def test_the_sensor_observes_lag_counters_and_dead_letters(tmp_path, quickstart_compiled, mongo, kafka):
    rng = random.Random(11)
    returns = quickstart_compiled.group_bys[RETURNS]
    [spec] = topic_specs(returns)
    kafka.ensure_topics([spec.name], partitions=3)
    kafka.ensure_topics([spec.dead_letter_topic], partitions=1)
    counts, committed = random_backlog(rng, 3)
    dead = rng.randint(1, 6)
    produce(kafka, spec.name, counts)
    produce(kafka, spec.dead_letter_topic, [dead])
    commit(kafka, status.consumer_group_id(returns), spec.name, committed)
    recorded = record_random_status(rng, mongo, returns)

    result = evaluate_sensor(tmp_path, mongo, kafka)

    lag = naive_lag(counts, committed)
    assert 0 < lag < sum(counts)
    assert result.skip_reason is None
    assert observations(result) == {
        f"kafka/{spec.name}": {"consumer_lag": lag, "dead_lettered": dead},
        "online/QUICKSTART_RETURNS_V1_STREAMING": {
            "events_applied": recorded["applied"],
            "dead_lettered": recorded["dead_lettered"],
            "filtered": recorded["filtered"],
            "retention_removed": recorded["retention_removed"],
            "last_event_ts": recorded["last_event_ts"],
            "consumer_lag": lag,
        },
    }


@pytest.mark.services
def test_before_any_event_the_sensor_observes_zeros(tmp_path, mongo, kafka):
    """No topic, no status document yet: every number is 0 and nothing is created."""
    result = evaluate_sensor(tmp_path, mongo, kafka)
    assert result.skip_reason is None
    assert observations(result) == {
        "kafka/events.returns": {"consumer_lag": 0, "dead_lettered": 0},
        "online/QUICKSTART_RETURNS_V1_STREAMING": {
            "events_applied": 0,
            "dead_lettered": 0,
            "filtered": 0,
            "retention_removed": 0,
            "consumer_lag": 0,
        },
    }
    assert not kafka.admin().list_topics(timeout=5).topics


@pytest.mark.services
def test_a_broker_down_skips_naming_kafka_and_still_records_the_counters(
    tmp_path, quickstart_compiled, mongo, monkeypatch
):
    monkeypatch.setattr(streaming_module, "KAFKA_TIMEOUT_S", 2.0)  # a broker that is down uses all of it
    rng = random.Random(3)
    recorded = record_random_status(rng, mongo, quickstart_compiled.group_bys[RETURNS])
    down = KafkaResource(bootstrap_servers=f"127.0.0.1:{find_free_port()}")
    started = time.monotonic()
    result = evaluate_sensor(tmp_path, mongo, down)
    assert time.monotonic() - started < 10
    assert result.skip_reason.skip_message.startswith(f"Kafka at {down.bootstrap_servers} did not answer")
    assert observations(result) == {
        "online/QUICKSTART_RETURNS_V1_STREAMING": {
            "events_applied": recorded["applied"],
            "dead_lettered": recorded["dead_lettered"],
            "filtered": recorded["filtered"],
            "retention_removed": recorded["retention_removed"],
            "last_event_ts": recorded["last_event_ts"],
        },
    }


@pytest.mark.services
def test_a_store_down_skips_naming_mongodb_and_still_records_the_lag(tmp_path, quickstart_compiled, kafka):
    returns = quickstart_compiled.group_bys[RETURNS]
    [spec] = topic_specs(returns)
    kafka.ensure_topics([spec.name], partitions=1)
    produce(kafka, spec.name, [4])
    down = MongoResource(uri=f"mongodb://127.0.0.1:{find_free_port()}/")
    try:
        result = evaluate_sensor(tmp_path, down, kafka)
    finally:
        down.close()
    assert result.skip_reason.skip_message.startswith("MongoDB (the online store) did not answer")
    assert observations(result) == {
        f"kafka/{spec.name}": {"consumer_lag": 4, "dead_lettered": 0},
        "online/QUICKSTART_RETURNS_V1_STREAMING": {"consumer_lag": 4},
    }
