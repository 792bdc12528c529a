"""The HTTP fetch service: validation, per-request errors in batches, the typed OpenAPI document and the
offline docs pages (TestClient on the in-memory store), and real servers on free loopback ports in front of
the real MongoDB-protocol server: `feature-assets serve` as a user starts it, and an outage and back."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from support.online import load_quickstart
from support.paths import PROJECT_ROOT

from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.fetch.schemas import ErrorType, FetchBatchResponse, FetchResponse
from feature_assets.online.fetch.service import SERVICE_CLIENT_OPTIONS, create_app, display_uri
from feature_assets.online.store import InMemoryKVStore, MongoKVStore

AT = end_of_day_millis("2023-11-26") + 3_600_000
JOIN = "/v1/fetch/join/quickstart/training_set.v2"
GROUP_BY = "/v1/fetch/groupby/quickstart/purchases.v1"
FETCH_PATHS = ("/v1/fetch/join/{name}", "/v1/fetch/groupby/{name}")
# Every URL a page loads: scripts, styles, icons, and the OpenAPI document Swagger UI is pointed at.
PAGE_URLS = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def store():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-25")
    return store


@pytest.fixture(scope="module")
def client(store):
    return TestClient(create_app(store=store, max_batch=10))


def test_single_and_batch_fetches(client):
    single = client.post(JOIN, json={"user_id": "3"}, params={"at_millis": AT})
    assert single.status_code == 200, single.text
    body = single.json()
    assert body["error"] is None and body["values"]["quickstart_purchases_v1_purchase_price_count_3d"] >= 0
    assert "quickstart_returns_v1_refund_amt_last2" in body["values"]
    batch = client.post(
        "/v1/fetch/join/quickstart.training_set.v2", json=[{"user_id": "3"}, {"user_id": "4"}], params={"at_millis": AT}
    )
    assert batch.status_code == 200 and batch.json()[0] == body
    group_by = client.post(GROUP_BY, json={"user_id": "3"}, params={"at_millis": AT})
    assert group_by.status_code == 200
    assert (
        group_by.json()["values"]["purchase_price_count_3d"]
        == body["values"]["quickstart_purchases_v1_purchase_price_count_3d"]
    )


def test_batch_with_bad_entries_answers_the_others(client, store):
    batch = [{"user_id": "3"}, {"user": "3"}, {"user_id": 3}, 7, {"user_id": "4"}]
    response = client.post(JOIN, json=batch, params={"at_millis": AT})
    assert response.status_code == 200, response.text
    answers = response.json()
    FetchBatchResponse.model_validate(answers)
    for index in (0, 4):
        single = client.post(JOIN, json=batch[index], params={"at_millis": AT}).json()
        assert answers[index] == single and single["values"] and single["error"] is None
    for index, message in [(1, "missing key 'user_id'"), (2, "'user_id' must be a string"), (3, "JSON object")]:
        assert answers[index]["values"] is None and answers[index]["error_type"] == "invalid_key"
        assert message in answers[index]["error"], answers[index]
    # The CLI's fetch calls the fetcher directly: the service answers exactly what it prints.
    assert answers == Fetcher(store).fetch_join("quickstart/training_set.v2", batch, AT)
    group_by = client.post(GROUP_BY, json=[{"user_id": 3}, {"user_id": "3"}], params={"at_millis": AT})
    assert group_by.status_code == 200 and [a["error_type"] for a in group_by.json()] == ["invalid_key", None]


def test_errors(client):
    unknown = client.post("/v1/fetch/join/quickstart/nope.v1", json={"user_id": "3"})
    assert unknown.status_code == 404 and "quickstart.nope.v1" in unknown.json()["detail"]
    missing = client.post(JOIN, json={"user": "3"})
    assert missing.status_code == 400 and "missing key 'user_id'" in missing.json()["detail"]
    mistyped = client.post(GROUP_BY, json={"user_id": 3})
    assert mistyped.status_code == 400 and "'user_id' must be a string" in mistyped.json()["detail"]
    scalar = client.post(GROUP_BY, json=5)
    assert scalar.status_code == 400
    assert (
        scalar.json()["detail"]
        == "invalid request: the body must be a JSON object of keys (one request) or a JSON array of them (a batch)"
    )
    not_json = client.post(GROUP_BY, content=b"{user_id: 3", headers={"Content-Type": "application/json"})
    assert (
        not_json.status_code == 400
        and "the body is not valid JSON: Expecting property name" in not_json.json()["detail"]
    )
    no_body = client.post(GROUP_BY)
    assert no_body.status_code == 400 and "no body" in no_body.json()["detail"]
    bad_time = client.post(GROUP_BY, json={"user_id": "3"}, params={"at_millis": "yesterday"})
    assert bad_time.status_code == 400 and "at_millis" in bad_time.json()["detail"]
    too_big = client.post(JOIN, json=[{"user_id": "1"}] * 11)
    assert too_big.status_code == 413 and "limit of 10" in too_big.json()["detail"]


def test_openapi_types_responses_and_errors(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorType"]["enum"] == [e.value for e in ErrorType] == ["invalid_key", "no_data", "bad_data"]
    assert set(schemas["FetchResponse"]["required"]) == {"values", "error", "error_type"}
    assert schemas["FetchBatchResponse"]["items"] == {"$ref": "#/components/schemas/FetchResponse"}
    assert schemas["ErrorBody"]["properties"]["detail"]["type"] == "string"
    for path in FETCH_PATHS:
        responses = spec["paths"][path]["post"]["responses"]
        ok = responses["200"]["content"]["application/json"]["schema"]["anyOf"]
        assert {r["$ref"].rsplit("/", 1)[1] for r in ok} == {"FetchResponse", "FetchBatchResponse"}
        for code in ("400", "404", "413", "503"):
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"} and responses[code]["description"]
        assert "422" not in responses  # validation errors are answered 400, as documented
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
        assert [(b["title"], b["type"]) for b in body] == [("Request", "object"), ("Batch", "array")]
    health = spec["paths"]["/healthz"]["get"]["responses"]
    assert {code: r["content"]["application/json"]["schema"]["$ref"] for code, r in health.items()} == {
        "200": "#/components/schemas/Health",
        "503": "#/components/schemas/Health",
    }
    assert "HTTPValidationError" not in schemas
    assert client.get("/healthz").json() == {"status": "ok"}
    # The fetcher's answers fit the documented models.
    FetchResponse.model_validate(client.post(JOIN, json={"user_id": "3"}, params={"at_millis": AT}).json())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_from_the_service(client, page):
    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]", html.text, re.IGNORECASE), html.text
    urls = [a or b for a, b in PAGE_URLS.findall(html.text)]
    assert "/openapi.json" in urls and any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from another host"
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    if page == "/docs":
        assert '"validatorUrl": null' in html.text  # else Swagger UI fetches a badge from swagger.io


def test_display_uri_hides_credentials_and_options():
    assert display_uri(
        "mongodb://app:s3cret@db1:27017,db2:27017/admin?authSource=x&tlsCertificateKeyFilePassword=p"
    ) == ("mongodb://db1:27017,db2:27017/admin")
    assert (
        display_uri("mongodb+srv://u:p@cluster.example.net/?retryWrites=true") == "mongodb+srv://cluster.example.net/"
    )
    assert display_uri("mongodb://127.0.0.1:27017") == "mongodb://127.0.0.1:27017"


def start_server(app, port):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return server, thread


def read_line(stream, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


@pytest.mark.services
def test_serve_announces_its_urls_and_store(tmp_path):
    from feature_assets.dev.services.local import find_free_port, start_mongo

    mongo = start_mongo(tmp_path / "mongo", log_path=tmp_path / "mongo.log")
    process = None
    try:
        load_quickstart(MongoKVStore.from_uri(mongo.url, "serve_test"), "2023-11-25")
        port = find_free_port()
        env = {**os.environ, "FEATURE_ASSETS_MONGO_URI": mongo.url, "FEATURE_ASSETS_MONGO_DATABASE": "serve_test"}
        process = subprocess.Popen(
            [sys.executable, "-m", "feature_assets.cli", "serve", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = read_line(process.stdout, timeout=60)
        url = f"http://127.0.0.1:{port}"
        assert line.strip() == (
            f"serving fetches at {url} (docs: {url}/docs) from {display_uri(mongo.url)} database 'serve_test'; "
            "Ctrl-C stops"
        ), line + (process.stderr.read() if process.poll() is not None else "")
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/docs").status_code == 200
            batch = http.post(JOIN, json=[{"user_id": "3"}, {"user_id": 3}], params={"at_millis": AT}).json()
            assert batch[0]["values"] and batch[1]["error_type"] == "invalid_key"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) is not None
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        mongo.stop()


@pytest.mark.services
def test_outage_gives_503_and_recovers(tmp_path):
    from feature_assets.dev.services.local import find_free_port, start_mongo

    mongo_port = find_free_port()
    mongo = start_mongo(tmp_path / "mongo", port=mongo_port, log_path=tmp_path / "mongo.log")
    server = thread = None
    try:
        store = MongoKVStore.from_uri(mongo.url, "http_test", **SERVICE_CLIENT_OPTIONS)
        load_quickstart(store, "2023-11-25")
        port = find_free_port()
        app = create_app(store=store)
        server, thread = start_server(app, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            request = dict(json={"user_id": "3"}, params={"at_millis": AT})
            assert http.post(JOIN, **request).status_code == 200
            expected = http.post(JOIN, **request).json()
            mongo.stop()
            started = time.monotonic()
            down = http.post(JOIN, **request)
            assert down.status_code == 503 and "unavailable" in down.json()["detail"]
            assert time.monotonic() - started < 5
            assert http.get("/healthz").status_code == 503
            mongo = start_mongo(tmp_path / "mongo", port=mongo_port, log_path=tmp_path / "mongo.log")
            deadline = time.monotonic() + 30
            while True:
                again = http.post(JOIN, **request)
                if again.status_code == 200:
                    break
                assert again.status_code == 503 and time.monotonic() < deadline
                time.sleep(0.2)
            assert again.json() == expected
            assert http.get("/healthz").status_code == 200
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=10)
        mongo.stop()
    # The app closed its fetch logger on shutdown, with the store still up: what it served is logged.
    logger = app.state.fetcher.logger
    assert logger is not None and logger.closed
    counters = logger.counters()
    assert counters["logged"] >= 3 and counters["dropped"] == 0
