"""The HTTP fetch service: validation (TestClient on the in-memory store), and a real uvicorn server on a
free loopback port in front of the real MongoDB-protocol server, through an outage and back."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from support.online import load_quickstart

from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.service import SERVICE_CLIENT_OPTIONS, create_app
from feature_assets.online.store import InMemoryKVStore, MongoKVStore

AT = end_of_day_millis("2023-11-26") + 3_600_000


@pytest.fixture(scope="module")
def client():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-25")
    return TestClient(create_app(store=store, max_batch=10))


def test_single_and_batch_fetches(client):
    single = client.post("/v1/fetch/join/quickstart/training_set.v2", json={"user_id": "3"}, params={"at_millis": AT})
    assert single.status_code == 200, single.text
    body = single.json()
    assert body["error"] is None and body["values"]["quickstart_purchases_v1_purchase_price_count_3d"] >= 0
    assert "quickstart_returns_v1_refund_amt_last2" in body["values"]
    batch = client.post(
        "/v1/fetch/join/quickstart.training_set.v2", json=[{"user_id": "3"}, {"user_id": "4"}], params={"at_millis": AT}
    )
    assert batch.status_code == 200 and batch.json()[0] == body
    group_by = client.post("/v1/fetch/groupby/quickstart/purchases.v1", json={"user_id": "3"}, params={"at_millis": AT})
    assert group_by.status_code == 200
    assert (
        group_by.json()["values"]["purchase_price_count_3d"]
        == body["values"]["quickstart_purchases_v1_purchase_price_count_3d"]
    )


def test_errors(client):
    unknown = client.post("/v1/fetch/join/quickstart/nope.v1", json={"user_id": "3"})
    assert unknown.status_code == 404 and "quickstart.nope.v1" in unknown.json()["detail"]
    missing = client.post("/v1/fetch/join/quickstart/training_set.v2", json={"user": "3"})
    assert missing.status_code == 400 and "missing key 'user_id'" in missing.json()["detail"]
    mistyped = client.post("/v1/fetch/groupby/quickstart/purchases.v1", json=[{"user_id": "3"}, {"user_id": 3}])
    assert mistyped.status_code == 400 and "request 1" in mistyped.json()["detail"]
    assert "'user_id' must be a string" in mistyped.json()["detail"]
    not_object = client.post("/v1/fetch/groupby/quickstart/purchases.v1", json=[1, 2])
    assert not_object.status_code == 400
    too_big = client.post("/v1/fetch/join/quickstart/training_set.v2", json=[{"user_id": "1"}] * 11)
    assert too_big.status_code == 413 and "limit of 10" in too_big.json()["detail"]


def test_openapi_and_health(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/fetch/join/{name}" in spec["paths"] and "/v1/fetch/groupby/{name}" in spec["paths"]
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.services
def test_outage_gives_503_and_recovers(tmp_path):
    import uvicorn

    from feature_assets.dev.services.local import find_free_port, start_mongo

    mongo_port = find_free_port()
    mongo = start_mongo(tmp_path / "mongo", port=mongo_port, log_path=tmp_path / "mongo.log")
    server = None
    try:
        store = MongoKVStore.from_uri(mongo.url, "http_test", **SERVICE_CLIENT_OPTIONS)
        load_quickstart(store, "2023-11-25")
        port = find_free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(store=store), host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            request = dict(json={"user_id": "3"}, params={"at_millis": AT})
            assert http.post("/v1/fetch/join/quickstart/training_set.v2", **request).status_code == 200
            expected = http.post("/v1/fetch/join/quickstart/training_set.v2", **request).json()
            mongo.stop()
            started = time.monotonic()
            down = http.post("/v1/fetch/join/quickstart/training_set.v2", **request)
            assert down.status_code == 503 and "unavailable" in down.json()["detail"]
            assert time.monotonic() - started < 5
            assert http.get("/healthz").status_code == 503
            mongo = start_mongo(tmp_path / "mongo", port=mongo_port, log_path=tmp_path / "mongo.log")
            deadline = time.monotonic() + 30
            while True:
                again = http.post("/v1/fetch/join/quickstart/training_set.v2", **request)
                if again.status_code == 200:
                    break
                assert again.status_code == 503 and time.monotonic() < deadline
                time.sleep(0.2)
            assert again.json() == expected
            assert http.get("/healthz").status_code == 200
    finally:
        if server is not None:
            server.should_exit = True
        mongo.stop()
