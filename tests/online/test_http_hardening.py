"""The fetch service's guards (`hardening.harden`) on the in-memory store: API keys, body and key bounds, the
request timeout, JSON access logs, `/metrics` (also summed over workers), TLS on a real server, and a
schemathesis run against the OpenAPI document (no 5xx, every answer fits its documented schema)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.online import load_quickstart

from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.fetch.hardening import (
    ACCESS_LOGGER,
    LATENCY_BUCKETS,
    HardeningConfigError,
    HardeningSettings,
    Metrics,
    harden,
    start_access_log,
)
from feature_assets.online.fetch.service import create_app
from feature_assets.online.logging import FetchLogger, MemorySink
from feature_assets.online.store import InMemoryKVStore

AT = end_of_day_millis("2023-11-26") + 3_600_000
JOIN = "/v1/fetch/join/quickstart/training_set.v2"
KEYS = ("first-key", "second-key")
AUTH = {"Authorization": f"Bearer {KEYS[1]}"}
GUARDS = HardeningSettings(api_keys=KEYS, max_body_bytes=4096, max_key_length=64, request_timeout_seconds=5)
SAMPLE_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


@pytest.fixture(scope="module")
def store():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-25")
    return store


@pytest.fixture(scope="module")
def fetch_logger():
    logger = FetchLogger(MemorySink(), linger_seconds=0.01)
    yield logger
    logger.close()


@pytest.fixture(scope="module")
def client(store, fetch_logger):
    fetcher = Fetcher(store, logger=fetch_logger)
    return TestClient(harden(create_app(store=store, fetcher=fetcher, max_batch=10), GUARDS))


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S", line), line
            continue
        match = SAMPLE_LINE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[(match[1], match[2] or "")] = float(match[3])
    return samples


def test_api_keys(client):
    missing = client.post(JOIN, json={"user_id": "3"}, params={"at_millis": AT})
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    for header in ("Bearer wrong-key", f"Basic {KEYS[0]}", "Bearer", f"Bearer {KEYS[0]}x"):
        wrong = client.post(JOIN, json={"user_id": "3"}, headers={"Authorization": header})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key", header
    for key in KEYS:
        ok = client.post(
            JOIN, json={"user_id": "3"}, params={"at_millis": AT}, headers={"Authorization": f"Bearer {key}"}
        )
        assert ok.status_code == 200 and ok.json()["values"], ok.text
    assert client.get("/healthz").json() == {"status": "ok"}  # open, for load balancers
    assert client.get("/metrics").status_code == 401 and client.get("/openapi.json").status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 200


def test_without_keys_every_request_is_served(store):
    open_client = TestClient(harden(create_app(store=store, max_batch=10), HardeningSettings()))
    assert open_client.post(JOIN, json={"user_id": "3"}, params={"at_millis": AT}).status_code == 200


def test_bounds(client):
    declared = client.post(JOIN, content=b"[" + b'{"user_id": "1"},' * 300 + b"{}]", headers=AUTH)
    assert declared.status_code == 413 and "limit of 4096 bytes" in declared.json()["detail"]

    def chunks():
        for _ in range(300):
            yield b'{"user_id": "1"},'

    streamed = client.post(JOIN, content=chunks(), headers=AUTH)  # chunked: no Content-Length
    assert streamed.status_code == 413 and "limit of 4096 bytes" in streamed.json()["detail"]
    long_value = client.post(JOIN, json={"user_id": "9" * 65}, headers=AUTH)
    assert long_value.status_code == 400
    assert long_value.json()["detail"] == "key 'user_id' is longer than 64 characters (65)"
    in_batch = client.post(JOIN, json=[{"user_id": "1"}, {"user_id": "x" * 100}], headers=AUTH)
    assert in_batch.status_code == 400 and "(request 1 of the batch)" in in_batch.json()["detail"]
    long_name = client.post(JOIN, json={"k" * 65: "1"}, headers=AUTH)
    assert long_name.status_code == 400 and "key name" in long_name.json()["detail"]
    at_limit = client.post(JOIN, json=[{"user_id": "1" * 64}] * 3, params={"at_millis": AT}, headers=AUTH)
    assert at_limit.status_code == 200 and len(at_limit.json()) == 3
    batch = client.post(JOIN, json=[{"user_id": "1"}] * 11, headers=AUTH)
    assert batch.status_code == 413 and "limit of 10" in batch.json()["detail"]


def test_request_timeout_answers_504():
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(5)
        return {"status": "late"}

    @app.get("/fast")
    async def fast() -> dict[str, str]:
        return {"status": "ok"}

    hardened = TestClient(harden(app, HardeningSettings(request_timeout_seconds=0.2)))
    started = time.monotonic()
    answer = hardened.get("/slow")
    assert answer.status_code == 504 and "timeout of 0.2 s" in answer.json()["detail"]
    assert time.monotonic() - started < 2
    assert hardened.get("/fast").json() == {"status": "ok"}
    samples = parse_metrics(hardened.get("/metrics").text)
    assert samples[("feature_assets_http_request_timeouts_total", "")] == 1


def test_access_log_is_one_json_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.post(JOIN, json={"user_id": "3"}, params={"at_millis": AT}, headers=AUTH)
        client.post(JOIN, json={"user_id": "3"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 2
    served, refused = lines
    assert served["method"] == "POST" and served["path"] == JOIN and served["status"] == 200
    assert served["route"] == "/v1/fetch/join/{name:path}" and served["api_key"] == 2
    assert served["duration_ms"] > 0 and served["request_bytes"] > 0 and served["response_bytes"] > 0
    assert served["query"] == f"at_millis={AT}"
    assert refused["status"] == 401 and refused["api_key"] is None
    assert KEYS[1] not in json.dumps(lines)


def test_access_log_writer_writes_every_line(store):
    stream = io.StringIO()
    writer = start_access_log(stream)
    try:
        hardened = TestClient(harden(create_app(store=store, max_batch=10), HardeningSettings()))
        for _ in range(5):
            hardened.get("/healthz")
    finally:
        writer.stop()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["path"], line["status"]) for line in lines] == [("/healthz", 200)] * 5


def test_metrics_format_and_counts(client, fetch_logger):
    before = parse_metrics(client.get("/metrics", headers=AUTH).text)
    for user in ("1", "2", "3"):
        client.post(JOIN, json={"user_id": user}, params={"at_millis": AT}, headers=AUTH)
    client.post(JOIN, json={"user_id": "3"})  # refused
    assert fetch_logger.flush(timeout=10)
    response = client.get("/metrics", headers=AUTH)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    after = parse_metrics(response.text)
    route = "/v1/fetch/join/{name:path}"
    served = ("feature_assets_http_requests_total", f'{{method="POST",route="{route}",status="200"}}')
    assert after[served] - before.get(served, 0) == 3
    refused = ("feature_assets_http_requests_total", '{method="POST",route="unmatched",status="401"}')
    assert after[refused] - before.get(refused, 0) == 1
    # The histogram: cumulative buckets in order, +Inf equal to the count, which counts every answer of the route.
    histogram = "feature_assets_http_request_duration_seconds"
    label = f'route="{route}"'
    buckets = [after[(f"{histogram}_bucket", f'{{{label},le="{b!r}"}}')] for b in LATENCY_BUCKETS]
    infinite = after[(f"{histogram}_bucket", f'{{{label},le="+Inf"}}')]
    assert buckets == sorted(buckets) and buckets[-1] <= infinite == after[(f"{histogram}_count", f"{{{label}}}")]
    route_answers = sum(v for (name, labels), v in after.items() if name == served[0] and f'route="{route}"' in labels)
    assert infinite == route_answers and after[(f"{histogram}_sum", f"{{{label}}}")] > 0
    assert after[("feature_assets_store_errors_total", "")] == 0
    counters = fetch_logger.counters()
    assert counters["logged"] >= 3
    for outcome in ("logged", "dropped", "sampled_out"):
        assert after[("feature_assets_fetch_log_records_total", f'{{outcome="{outcome}"}}')] == counters[outcome]
    assert after[("feature_assets_fetch_log_write_failures_total", "")] == counters["failed"]


def test_metrics_sum_the_workers_sharing_a_directory(store, tmp_path):
    worker = TestClient(harden(create_app(store=store, max_batch=10), HardeningSettings(metrics_dir=str(tmp_path))))
    for _ in range(2):
        worker.get("/healthz")
    # Another worker process of the same port, as its file shows it.
    other = Metrics()
    other.observe("GET", "/healthz", 200, 0.002)
    other.observe("GET", "/healthz", 503, 0.002)
    (tmp_path / "worker-1.json").write_text(json.dumps(other.state({"dropped": 4})))
    samples = parse_metrics(worker.get("/metrics").text)
    assert samples[("feature_assets_http_requests_total", '{method="GET",route="/healthz",status="200"}')] == 3
    assert samples[("feature_assets_store_errors_total", "")] == 1
    assert samples[("feature_assets_http_request_duration_seconds_count", '{route="/healthz"}')] == 4
    assert samples[("feature_assets_fetch_log_records_total", '{outcome="dropped"}')] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-1.json", f"worker-{os.getpid()}.json"]


def test_settings_from_environment(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("-")
    settings = HardeningSettings.from_environment(
        {
            "FEATURE_ASSETS_API_KEYS": " a, b ,,",
            "FEATURE_ASSETS_MAX_BODY_BYTES": "100",
            "FEATURE_ASSETS_MAX_KEY_LENGTH": "8",
            "FEATURE_ASSETS_REQUEST_TIMEOUT_SECONDS": "2.5",
            "FEATURE_ASSETS_TLS_CERTFILE": str(cert),
            "FEATURE_ASSETS_ACCESS_LOG": "off",
        }
    )
    assert settings.api_keys == ("a", "b") and settings.max_body_bytes == 100 and settings.max_key_length == 8
    assert settings.request_timeout_seconds == 2.5 and not settings.access_log
    assert settings.uvicorn_ssl_options() == {"ssl_certfile": str(cert)}
    assert HardeningSettings.from_environment({}) == HardeningSettings()
    for env, message in [
        ({"FEATURE_ASSETS_MAX_BODY_BYTES": "1MB"}, "FEATURE_ASSETS_MAX_BODY_BYTES must be an integer, got '1MB'"),
        ({"FEATURE_ASSETS_MAX_KEY_LENGTH": "0"}, "FEATURE_ASSETS_MAX_KEY_LENGTH must be positive"),
        ({"FEATURE_ASSETS_REQUEST_TIMEOUT_SECONDS": "-1"}, "FEATURE_ASSETS_REQUEST_TIMEOUT_SECONDS must be a positive"),
        ({"FEATURE_ASSETS_TLS_CERTFILE": str(tmp_path / "no.pem")}, "FEATURE_ASSETS_TLS_CERTFILE: no such file"),
        ({"FEATURE_ASSETS_TLS_KEYFILE": str(cert)}, "FEATURE_ASSETS_TLS_KEYFILE is set without"),
        ({"FEATURE_ASSETS_ACCESS_LOG": "yes"}, "FEATURE_ASSETS_ACCESS_LOG must be 'on' or 'off'"),
    ]:
        with pytest.raises(HardeningConfigError, match=re.escape(message)):
            HardeningSettings.from_environment(env)


def test_tls_with_a_configured_certificate(store, tmp_path):
    import uvicorn

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    settings = HardeningSettings.from_environment(
        {
            "FEATURE_ASSETS_TLS_CERTFILE": str(cert),
            "FEATURE_ASSETS_TLS_KEYFILE": str(key),
            "FEATURE_ASSETS_API_KEYS": "k",
        }
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = harden(create_app(store=store, max_batch=10), settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **settings.uvicorn_ssl_options())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        trusted = ssl.create_default_context(cafile=str(cert))
        answer = httpx.post(
            f"https://127.0.0.1:{port}{JOIN}",
            json={"user_id": "3"},
            params={"at_millis": AT},
            headers={"Authorization": "Bearer k"},
            verify=trusted,
        )
        assert answer.status_code == 200 and answer.json()["values"]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # plain HTTP is not served
    finally:
        server.should_exit = True
        thread.join(timeout=10)


SCHEMA_CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(client, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app, headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.definition.raw["operationId"] for o in operations} >= {"fetch_join", "fetch_group_by", "metrics"}
    for operation in operations:
        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not (raw.get("parameters") or raw.get("requestBody")):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def answers_as_documented(case):
            case.call_and_validate(headers=AUTH, checks=SCHEMA_CHECKS)

        answers_as_documented()
