"""Online store, loader, streaming writer and fetcher without Spark: the in-memory fake and the real
MongoDB-protocol server (SecantusDB over a socket)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from support.online import (
    DAY,
    PURCHASES,
    RETURNS,
    load_quickstart,
    purchases_events,
    returns_events,
    snapshot_upload,
    temporal_upload,
)
from support.paths import PROJECT_ROOT, QUICKSTART_PRODUCTION

from feature_assets.aggregation import codec
from feature_assets.aggregation.windows import compute_features
from feature_assets.online.batch_encoding import end_of_day_millis, load_rows
from feature_assets.online.fetch.fetcher import BatchTooLarge, Fetcher, UnknownName
from feature_assets.online.store import (
    EmptyBatchRefused,
    InMemoryKVStore,
    LoadError,
    MongoKVStore,
    RollbackError,
    StoreUnavailable,
    batch_pointer_key,
    batch_versions,
    collect_garbage,
    held_versions,
    load_batch,
    rollback_batch,
)
from feature_assets.online.streaming_writer import StreamingWriter


@pytest.fixture
def mongo_store(mongo_uri):
    name = f"t_{uuid.uuid4().hex[:10]}"
    store = MongoKVStore.from_uri(mongo_uri, name)
    yield store
    store.db.client.drop_database(name)
    store.close()


@pytest.fixture(params=["memory", "mongo"])
def store(request):
    if request.param == "memory":
        return InMemoryKVStore()
    return request.getfixturevalue("mongo_store")


# --------------------------------------------------------------------------- store and loader


def test_bulk_put_is_idempotent(store):
    items = [(json.dumps({"user_id": str(i)}), bytes([i % 256]) * 3) for i in range(30)]
    assert store.bulk_put("X_BATCH", "v1", items) == 30
    store.bulk_put("X_BATCH", "v1", items[:10])  # a retried chunk
    assert store.count_version("X_BATCH", "v1") == 30
    got = store.multi_get("X_BATCH", "v1", [items[3][0], items[4][0], '{"user_id":"nope"}'])
    assert got == {items[3][0]: items[3][1], items[4][0]: items[4][1]}
    assert store.multi_get("X_BATCH", "v2", [items[3][0]]) == {}
    assert store.delete_version("X_BATCH", "v1") == 30
    assert store.count_version("X_BATCH", "v1") == 0


def test_reloading_the_same_partition_changes_nothing(store):
    first, _ = load_quickstart(store, "2023-11-20")
    assert first["status"] == "loaded"
    pointer = store.get_metadata("batch/QUICKSTART_PURCHASES_V1")
    again, again_returns = load_quickstart(store, "2023-11-20")
    assert again["status"] == again_returns["status"] == "unchanged"
    assert again["version"] == first["version"]
    assert store.get_metadata("batch/QUICKSTART_PURCHASES_V1") == pointer
    assert store.count_version(PURCHASES.batch_dataset, first["version"]) == first["rows"]


def test_half_loaded_version_is_invisible():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-20")
    fetcher = Fetcher(store, pointer_ttl=0)
    at = end_of_day_millis("2023-11-21") + 1000
    before = fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": "3"}, at)
    changed = purchases_events(seed=9)
    rows, schema = snapshot_upload(changed, PURCHASES, "2023-11-20")
    store.fail_after_puts = 3
    with pytest.raises(LoadError):
        load_rows(store, PURCHASES, "2023-11-20", rows, schema)
    assert fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": "3"}, at) == before
    store.fail_after_puts = None
    assert load_rows(store, PURCHASES, "2023-11-20", rows, schema)["status"] == "loaded"
    after = fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": "3"}, at)
    assert after != before


KILL_SCRIPT = """
import json, sys
import pandas as pd
from feature_assets.model import config_from_json
from feature_assets.online.batch_encoding import load_rows, make_schema
from feature_assets.online.store import MongoKVStore
uri, database, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
group_by = config_from_json("group_bys", json.loads(open(sys.argv[4]).read()))
schema = make_schema(group_by, {"user_id": "string"}, {})
rows = pd.DataFrame({"key_json": [json.dumps({"user_id": str(i)}) for i in range(n)],
                     "value": [b"x" * 40] * n})
print("loading", flush=True)
load_rows(MongoKVStore.from_uri(uri, database), group_by, "2023-11-20", rows, schema)
print("done", flush=True)
"""


def test_killed_loader_leaves_readers_on_the_previous_version(mongo_store, mongo_uri, tmp_path):
    load_quickstart(mongo_store, "2023-11-20")
    previous = batch_versions(mongo_store, PURCHASES.name)["2023-11-20"]
    fetcher = Fetcher(mongo_store, pointer_ttl=0)
    at = end_of_day_millis("2023-11-21") + 1
    before = fetcher.fetch_group_by("quickstart.purchases.v1", {"user_id": "2"}, at)
    config = tmp_path / "purchases.json"
    config.write_text(json.dumps(PURCHASES.to_json()))
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, mongo_uri, mongo_store.db.name, "6000", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout.readline().strip() == "loading"
        dataset = PURCHASES.batch_dataset
        deadline = time.monotonic() + 30
        while mongo_store.db[dataset].estimated_document_count() <= previous["rows"] + 500:
            assert time.monotonic() < deadline and process.poll() is None, "the loader finished too early"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(10)
    written = mongo_store.db[dataset].estimated_document_count() - previous["rows"]
    assert 0 < written < 6000  # killed halfway
    assert batch_versions(mongo_store, PURCHASES.name)["2023-11-20"] == previous
    assert fetcher.fetch_group_by("quickstart.purchases.v1", {"user_id": "2"}, at) == before


def test_retired_versions_are_garbage_collected():
    store = InMemoryKVStore()
    name = PURCHASES.name
    dataset = PURCHASES.batch_dataset
    for index, ds in enumerate(["2023-11-01", "2023-11-02", "2023-11-03", "2023-11-04"]):
        version = f"{ds}.v{index}"
        load_batch(
            store,
            PURCHASES,
            ds,
            version,
            1,
            {},
            lambda v=version: store.bulk_put(dataset, v, [("k", b"x")]),
            retain_days=2,
            grace_seconds=0,
        )
    assert sorted(batch_versions(store, name)) == ["2023-11-03", "2023-11-04"]
    assert store.count_version(dataset, "2023-11-01.v0") == 0
    assert store.count_version(dataset, "2023-11-04.v3") == 1


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({"key_json": pd.Series([], dtype=object), "value": pd.Series([], dtype=object)})


def test_an_empty_batch_never_replaces_a_non_empty_one_by_accident(store):
    load_quickstart(store, "2023-11-20")
    fetcher = Fetcher(store, pointer_ttl=0)
    fetch = lambda day: fetcher.fetch_group_by(  # noqa: E731 - a fetch needing the batch of `day`
        "quickstart/purchases.v1", {"user_id": "3"}, end_of_day_millis(day) + 1
    )["values"]
    before = fetch("2023-11-21")  # falls back to the batch of 2023-11-20
    assert before["purchase_price_count_30d"] > 0
    _, schema = snapshot_upload(purchases_events(), PURCHASES, "2023-11-21")
    pointer = store.get_metadata(batch_pointer_key(PURCHASES.name))
    refused = r"QUICKSTART_PURCHASES_V1_BATCH \[2023-11-21\]: the upload has 0 rows; .* batch of 2023-11-20"
    with pytest.raises(EmptyBatchRefused, match=refused):
        load_rows(store, PURCHASES, "2023-11-21", _empty_rows(), schema)
    with pytest.raises(EmptyBatchRefused):  # replacing the same day's batch is refused too
        load_rows(store, PURCHASES, "2023-11-20", _empty_rows(), schema)
    assert store.get_metadata(batch_pointer_key(PURCHASES.name)) == pointer  # nothing changed
    assert fetch("2023-11-21") == before

    allowed = load_batch(store, PURCHASES, "2023-11-21", "2023-11-21.e", 0, schema, list, allow_empty=True)
    assert (allowed["status"], allowed["rows"]) == ("loaded", 0)
    assert fetch("2023-11-21")["purchase_price_count_30d"] == 0  # allowed explicitly: served, empty
    assert fetch("2023-11-20")["purchase_price_count_30d"] > 0  # earlier times still read 2023-11-20


def test_rollback_holds_later_days_back_and_restores_them(store):
    loaded = {ds: load_quickstart(store, ds)[0] for ds in ("2023-11-19", "2023-11-20")}
    _, schema = snapshot_upload(purchases_events(), PURCHASES, "2023-11-21")
    load_batch(store, PURCHASES, "2023-11-21", "2023-11-21.e", 0, schema, list, allow_empty=True)
    fetcher = Fetcher(store, pointer_ttl=0)
    fetch = lambda day: fetcher.fetch_group_by(  # noqa: E731 - a fetch needing the batch of `day`
        "quickstart/purchases.v1", {"user_id": "3"}, end_of_day_millis(day) + 1
    )["values"]
    served = {ds: fetch(ds) for ds in ("2023-11-19", "2023-11-20", "2023-11-21")}
    assert served["2023-11-19"] != served["2023-11-20"] and served["2023-11-21"]["purchase_price_count_30d"] == 0

    done = rollback_batch(store, PURCHASES, "2023-11-19")
    assert sorted(done["held"]) == ["2023-11-20", "2023-11-21"] and done["restored"] == {}
    assert (done["version"], done["rows"]) == (loaded["2023-11-19"]["version"], loaded["2023-11-19"]["rows"])
    assert sorted(batch_versions(store, PURCHASES.name)) == ["2023-11-19"]
    assert fetch("2023-11-22") == fetch("2023-11-20") == served["2023-11-19"]  # later fetches fall back
    collect_garbage(store, PURCHASES, retain_days=1, grace_seconds=0)
    held = loaded["2023-11-20"]
    assert store.count_version(PURCHASES.batch_dataset, held["version"]) == held["rows"]  # kept, restorable

    again = rollback_batch(store, PURCHASES, "2023-11-20")  # forward again, to a held day
    assert sorted(again["restored"]) == ["2023-11-20"] and sorted(held_versions(store, PURCHASES.name)) == [
        "2023-11-21"
    ]
    assert fetch("2023-11-22") == served["2023-11-20"]
    assert sorted(rollback_batch(store, PURCHASES, "2023-11-21")["restored"]) == ["2023-11-21"]
    assert fetch("2023-11-22") == served["2023-11-21"] and held_versions(store, PURCHASES.name) == {}
    with pytest.raises(RollbackError, match=r"no batch of 2023-11-18 is retained .*visible: 2023-11-19, 2023-11-20"):
        rollback_batch(store, PURCHASES, "2023-11-18")


def test_loading_a_held_day_serves_it_again():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-20")
    first, _ = load_quickstart(store, "2023-11-21")
    rollback_batch(store, PURCHASES, "2023-11-20")
    again, _ = load_quickstart(store, "2023-11-21")
    assert again["status"] == "loaded" and again["version"] == first["version"] and again["latest"] == "2023-11-21"
    assert held_versions(store, PURCHASES.name) == {}
    assert batch_versions(store, PURCHASES.name)["2023-11-21"]["version"] == first["version"]


def test_streaming_index(mongo_store):
    StreamingWriter(mongo_store, RETURNS).write([{"key": {"user_id": "1"}, "ts": 5, "values": {"refund_amt": 3}}])
    indexes = mongo_store.db[RETURNS.streaming_dataset].index_information()
    assert indexes["key_ts"]["key"] == [("k", 1), ("ts", 1)]


def test_streaming_writer_is_idempotent_with_event_ids(store):
    writer = StreamingWriter(store, RETURNS)
    events = [
        {"key": {"user_id": "7"}, "ts": 1000 + i, "values": {"refund_amt": i}, "event_id": f"e{i}"} for i in range(5)
    ]
    writer.write(events)
    writer.write(events)  # a replay
    writer.write([{"user_id": None, "ts": 5, "values": {"refund_amt": 1}}])  # null key: dropped
    found = store.range_read(RETURNS.streaming_dataset, ['{"user_id":"7"}'], 0, 10_000)
    assert [d["ts"] for d in found['{"user_id":"7"}']] == [1000, 1001, 1002, 1003, 1004]
    writer.write([{"key": {"user_id": "7"}, "ts": 1002, "values": {"refund_amt": 9}}])  # no id: a new event
    found = store.range_read(RETURNS.streaming_dataset, ['{"user_id":"7"}'], 1001, 1003)
    assert len(found['{"user_id":"7"}']) == 3


# --------------------------------------------------------------------------- fetcher


def expected_join(purchases, returns, user: str, at: int) -> dict:
    """Offline semantics with the kernel: purchases (SNAPSHOT) at the end of day(at) - 1, returns at `at`."""
    day_start = at - at % DAY
    out = {}
    for part, events, t, column in (
        (PURCHASES, purchases, day_start, "purchase_price"),
        (RETURNS, returns, at, "refund_amt"),
    ):
        specs = part.specs
        row = compute_features(
            events, pd.DataFrame({"user_id": [user], "ts": [t]}), ["user_id"], specs, frozenset({column})
        ).iloc[0]
        prefix = part.table_name + "_"
        for spec in specs:
            value = row[spec.column_name]
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif value is pd.NA or (isinstance(value, float) and np.isnan(value)):
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            out[prefix + spec.column_name] = value
    return out


def test_join_fetch_matches_offline_semantics_with_streaming(store):
    purchases, returns = purchases_events(), returns_events()
    batch_ds = "2023-11-25"
    end = end_of_day_millis(batch_ds)
    load_quickstart(store, batch_ds, purchases[purchases["ts"] < end], returns[returns["ts"] < end])
    # Later purchases are visible only through the next day's batches (SNAPSHOT); returns through streaming.
    for ds in ("2023-11-26", "2023-11-27", "2023-11-28"):
        visible = purchases[purchases["ts"] < end_of_day_millis(ds)]
        rows, schema = snapshot_upload(visible, PURCHASES, ds)
        load_rows(store, PURCHASES, ds, rows, schema, retain_days=10)
    later = returns[returns["ts"] >= end]
    StreamingWriter(store, RETURNS).write(
        [
            {"key": {"user_id": u}, "ts": int(t), "values": {"refund_amt": int(v)}, "event_id": str(i)}
            for i, (u, t, v) in enumerate(zip(later["user_id"], later["ts"], later["refund_amt"]))
        ]
    )
    fetcher = Fetcher(store)
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(25):
        at = int(end + rng.integers(0, 3 * DAY))
        user = str(rng.integers(1, 10))  # user 9 never appears
        request_id = f"r-{checked}"  # the join's contextual field, echoed as served
        got = fetcher.fetch_join("quickstart/training_set.v2", {"user_id": user, "request_id": request_id}, at)
        assert got["error"] is None, got
        visible = purchases[purchases["ts"] < at - at % DAY]
        expected = {**expected_join(visible, returns, user, at), "ext_contextual_request_id": request_id}
        assert got["values"] == expected, (user, at)
        checked += 1
    batch = fetcher.fetch_join("quickstart.training_set.v2", [{"user_id": "1"}, {"user_id": "2"}], end + 5)
    assert [r["values"] for r in batch] == [
        fetcher.fetch_join("quickstart.training_set.v2", {"user_id": u}, end + 5)["values"] for u in ("1", "2")
    ]
    assert checked == 25


def test_group_by_fetch_and_errors():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-25")
    fetcher = Fetcher(store, max_batch=3)
    at = end_of_day_millis("2023-11-26")
    ok = fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": "3"}, at)
    assert ok["error"] is None and set(ok["values"]) == {
        "purchase_price_sum_3d",
        "purchase_price_sum_14d",
        "purchase_price_sum_30d",
        "purchase_price_count_3d",
        "purchase_price_count_14d",
        "purchase_price_count_30d",
        "purchase_price_average_3d",
        "purchase_price_average_14d",
        "purchase_price_average_30d",
        "purchase_price_last10",
    }
    absent = fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": "nobody"}, at)["values"]
    assert absent["purchase_price_count_3d"] == 0 and absent["purchase_price_sum_3d"] is None
    null = fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": None}, at)["values"]
    assert null["purchase_price_count_3d"] is None
    missing = fetcher.fetch_group_by("quickstart/purchases.v1", {"userid": "3"}, at)
    assert missing["values"] is None and missing["error_type"] == "invalid_key" and "'user_id'" in missing["error"]
    mistyped = fetcher.fetch_join("quickstart/training_set.v2", [{"user_id": 5}, {"user_id": "5"}], at)
    assert mistyped[0]["error_type"] == "invalid_key" and "must be a string" in mistyped[0]["error"]
    assert mistyped[1]["error"] is None
    with pytest.raises(UnknownName, match="quickstart.nope"):
        fetcher.fetch_join("quickstart/nope", {"user_id": "5"})
    with pytest.raises(BatchTooLarge):
        fetcher.fetch_group_by("quickstart/purchases.v1", [{"user_id": "1"}] * 4)
    early = fetcher.fetch_group_by("quickstart/purchases.v1", {"user_id": "3"}, end_of_day_millis("2023-11-01"))
    assert early["error_type"] == "no_data" and "run upload and load" in early["error"]


def test_schema_mismatch_is_reported():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-25")
    name = PURCHASES.name
    version = batch_versions(store, name)["2023-11-25"]["version"]
    key = '{"user_id":"3"}'
    store.datasets[PURCHASES.batch_dataset][f"{version}|{key}"] = codec.encode(codec.KIND_SNAPSHOT, 1, [1])
    got = Fetcher(store).fetch_group_by(name, {"user_id": "3"}, end_of_day_millis("2023-11-26"))
    assert got["error_type"] == "bad_data" and "another schema" in got["error"]


def test_store_outage_raises_unavailable():
    store = MongoKVStore.from_uri("mongodb://127.0.0.1:9/", "x", serverSelectionTimeoutMS=200)
    with pytest.raises(StoreUnavailable):
        Fetcher(store).fetch_group_by("quickstart/purchases.v1", {"user_id": "1"})


def test_cli_metadata_upload_and_fetch(mongo_store, mongo_uri, monkeypatch, capsys, tmp_path):
    from feature_assets.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))  # metadata-upload is a Dagster run
    monkeypatch.setenv("FEATURE_ASSETS_SPARK_LOG", str(tmp_path / "spark.log"))  # it sets it: restored after
    monkeypatch.setenv("FEATURE_ASSETS_MONGO_URI", mongo_uri)
    monkeypatch.setenv("FEATURE_ASSETS_MONGO_DATABASE", mongo_store.db.name)
    rows, schema = snapshot_upload(purchases_events(), PURCHASES, "2023-11-25")
    load_rows(mongo_store, PURCHASES, "2023-11-25", rows, schema)
    rows, schema = temporal_upload(returns_events(), RETURNS, "2023-11-25")
    load_rows(mongo_store, RETURNS, "2023-11-25", rows, schema)
    assert main(["metadata-upload", "--conf", str(QUICKSTART_PRODUCTION / "joins/quickstart/training_set.v2")]) == 0
    assert "conf/joins/quickstart.training_set.v2" in capsys.readouterr().out
    at = str(end_of_day_millis("2023-11-26"))
    assert (
        main(
            [
                "fetch",
                "--type",
                "join",
                "--name",
                "quickstart/training_set.v2",
                "-k",
                '{"user_id":"5"}',
                "--at-millis",
                at,
            ]
        )
        == 0
    )
    joined = json.loads(capsys.readouterr().out)
    assert (
        main(
            [
                "fetch",
                "--type",
                "group-by",
                "--name",
                "quickstart/purchases.v1",
                "-k",
                '{"user_id":"5"}',
                "--at-millis",
                at,
            ]
        )
        == 0
    )
    alone = json.loads(capsys.readouterr().out)
    joined_sum = joined["values"]["quickstart_purchases_v1_purchase_price_sum_30d"]
    assert joined_sum == alone["values"]["purchase_price_sum_30d"]
    assert main(["fetch", "--type", "join", "--name", "quickstart/training_set.v2", "-k", '{"user":"5"}']) == 1
    assert "missing key 'user_id'" in capsys.readouterr().out


def test_expired_pointer_is_served_stale_while_one_background_read_refreshes_it():
    store = InMemoryKVStore()
    load_quickstart(store, "2023-11-20")
    now = [0.0]
    fetcher = Fetcher(store, pointer_ttl=5.0, clock=lambda: now[0])
    name = PURCHASES.name
    first = fetcher.versions(name)
    assert set(first) == {"2023-11-20"}
    load_quickstart(store, "2023-11-21")
    assert fetcher.versions(name) is first  # within the TTL: no read
    reads = []
    original = store.get_metadata

    def slow_get_metadata(key):
        reads.append(key)
        time.sleep(0.2)
        return original(key)

    store.get_metadata = slow_get_metadata
    now[0] = 6.0
    started = time.monotonic()
    stale = [fetcher.versions(name) for _ in range(5)]  # expired: served at once, one refresh in flight
    assert time.monotonic() - started < 0.1
    assert all(s is first for s in stale)
    deadline = time.monotonic() + 5
    while set(fetcher.versions(name)) != {"2023-11-20", "2023-11-21"}:
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.01)
    assert reads == [batch_pointer_key(name)]


def test_async_fetch_equals_sync_fetch_on_the_real_server(mongo_store):
    """The service's path (`afetch_*`, pymongo's AsyncMongoClient, a join's reads awaited together) answers
    exactly what the blocking path answers, streaming events included."""
    import asyncio

    load_quickstart(mongo_store, "2023-11-25")
    StreamingWriter(mongo_store, RETURNS).write(
        [
            {
                "key": {"user_id": "3"},
                "ts": end_of_day_millis("2023-11-25") + 60_000,
                "values": {"refund_amt": 7},
                "event_id": "async-1",
            }
        ]
    )
    fetcher = Fetcher(mongo_store)
    at = end_of_day_millis("2023-11-25") + 3_600_000
    requests = [{"user_id": str(u)} for u in range(1, 9)] + [{"user_id": "nobody"}]

    async def both():
        return (
            await fetcher.afetch_join("quickstart/training_set.v2", requests, at),
            await fetcher.afetch_join("quickstart/training_set.v2", requests[2], at),
            await fetcher.afetch_group_by("quickstart/returns.v1", requests, at),
        )

    joins, single, group_bys = asyncio.run(both())
    assert joins == fetcher.fetch_join("quickstart/training_set.v2", requests, at)
    assert single == fetcher.fetch_join("quickstart/training_set.v2", requests[2], at)
    assert group_bys == fetcher.fetch_group_by("quickstart/returns.v1", requests, at)
    assert single["values"]["quickstart_returns_v1_refund_amt_count_3d"] >= 1
