"""Join stats in the online store without Spark: loading upload rows (a reload replaces a day), fetching
buckets in a time range, drift between two ranges against direct computations on the same random values, the
Fetcher's methods and the HTTP routes; on the in-memory fake and the real MongoDB-protocol server."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from feature_assets.online.fetch.fetcher import Fetcher, UnknownName
from feature_assets.online.fetch.service import create_app
from feature_assets.online.fetch.stats import (
    NotAStatsUploadTable,
    dataset_of_upload_table,
    fetch_stats,
    join_stats_dataset,
    load_stats,
    stats_drift,
    time_range,
)
from feature_assets.online.store import InMemoryKVStore
from feature_assets.statistics import DriftThresholds, drift, numeric_summary, severity, summarize

HOUR = 3_600_000
DAY = 86_400_000
DATASET = "QUICKSTART_TRAINING_SET_V2_DAILY_STATS"
START = 1_698_796_800_000  # 2023-11-01


# Two KLL sketches (k=200) of the same values, compacted at random, place each bin edge within about 1.65% of
# rank: PSI, the most sensitive metric, moved by up to 0.037 between merged and direct sketches in 150 repeats
# of the test below, the other metrics by up to 0.024.
TOLERANCE = {"psi": {"rel": 0.08, "abs": 0.06}}
DEFAULT_TOLERANCE = {"rel": 0.05, "abs": 0.04}


def _values(seed: int, sizes: tuple[int, int] = (100, 190)) -> dict[tuple[int, str], np.ndarray]:
    """(bucket ts, column) -> values: 3 days of 4 hourly buckets; day 3 of `moved` shifted; nulls."""
    rng = np.random.default_rng(seed)
    values = {}
    for day in range(3):
        for hour in (0, 5, 6, 23):
            ts = START + day * DAY + hour * HOUR
            size = int(rng.integers(*sizes))  # under k=200: each bucket's sketch holds every value
            steady = rng.normal(size=size)
            steady[rng.random(size) < 0.1] = np.nan
            values[(ts, "steady")] = steady
            values[(ts, "moved")] = rng.normal(size=size) + (3.0 if day == 2 else 0.0)
    return values


def _upload_rows(values: dict[tuple[int, str], np.ndarray]) -> list[dict]:
    rows = []
    for (ts, column), array in sorted(values.items()):
        summary = numeric_summary(column, array)
        ds = f"2023-11-0{(ts - START) // DAY + 1}"
        rows.append(
            {"column_name": column, "column_kind": "numeric", "ts": ts, "summary": summary.to_bytes(), "ds": ds}
        )
    return rows


def test_load_fetch_and_drift_match_direct_computations(store):
    values = _values(0)
    written = load_stats(store, DATASET, _upload_rows(values))
    assert written == {"2023-11-01": 8, "2023-11-02": 8, "2023-11-03": 8}
    fetched = fetch_stats(store, DATASET, START + 5 * HOUR, START + DAY + 6 * HOUR)
    assert sorted(fetched) == ["moved", "steady"]
    expected_ts = [START + 5 * HOUR, START + 6 * HOUR, START + 23 * HOUR, START + DAY, START + DAY + 5 * HOUR]
    for column, buckets in fetched.items():
        assert [b["ts"] for b in buckets] == expected_ts
        for bucket in buckets:
            array = values[(bucket["ts"], column)]
            nulls = int(np.isnan(array).sum())
            assert (bucket["total"], bucket["null_count"]) == (array.size, nulls)
            assert bucket["null_rate"] == pytest.approx(nulls / array.size)
            # Fewer values than k: the sketch is exact, nearest-rank percentiles.
            present = np.sort(array[~np.isnan(array)])
            rank = int(np.ceil(0.5 * present.size)) - 1
            assert bucket["percentiles"]["0.5"] == pytest.approx(present[rank])

    current, reference = (START + 2 * DAY, START + 3 * DAY), (START, START + 2 * DAY)
    result = stats_drift(store, DATASET, current, reference)
    for column in ("moved", "steady"):
        now = np.concatenate([v for (ts, c), v in values.items() if c == column and ts >= current[0]])
        then = np.concatenate([v for (ts, c), v in values.items() if c == column and ts < current[0]])
        direct = drift(numeric_summary(column, now), numeric_summary(column, then))
        for metric, value in direct.items():  # merged sketches against one sketch of the same values
            assert result[column][metric] == pytest.approx(value, **TOLERANCE.get(metric, DEFAULT_TOLERANCE))
        assert result[column]["total"] == now.size and result[column]["reference_total"] == then.size
    assert result["moved"]["severity"] == "ERROR"
    # ~500 values against ~1000: sampling noise alone can reach PSI's warn level, never its fail level.
    assert result["steady"]["severity"] == severity(result["steady"], DriftThresholds()) != "ERROR"


def test_drift_of_exact_sketches_equals_the_direct_computation(store):
    """Few values: every sketch, merged ones included, holds all its values, so the drift over fetched buckets
    is exactly the drift computed from the values themselves."""
    values = _values(2, sizes=(10, 24))  # the reference's 8 buckets: under 200 values
    load_stats(store, DATASET, _upload_rows(values))
    current, reference = (START + 2 * DAY, START + 3 * DAY), (START, START + 2 * DAY)
    result = stats_drift(store, DATASET, current, reference)
    for column in ("moved", "steady"):
        now = np.concatenate([v for (ts, c), v in values.items() if c == column and ts >= current[0]])
        then = np.concatenate([v for (ts, c), v in values.items() if c == column and ts < current[0]])
        for metric, value in drift(numeric_summary(column, now), numeric_summary(column, then)).items():
            assert result[column][metric] == pytest.approx(value, rel=1e-9, abs=1e-12), (column, metric)


def test_a_reload_replaces_the_day(store):
    values = _values(1)
    load_stats(store, DATASET, _upload_rows(values))
    day_two = [row for row in _upload_rows(values) if row["ds"] == "2023-11-02"][:3]  # fewer buckets now
    load_stats(store, DATASET, day_two)
    fetched = fetch_stats(store, DATASET, START + DAY, START + 2 * DAY)
    assert sum(len(buckets) for buckets in fetched.values()) == 3
    assert len(fetch_stats(store, DATASET, START, START + DAY)["moved"]) == 4  # other days untouched


def test_fetcher_and_http_routes(store):
    values = _values(2)
    load_stats(store, DATASET, _upload_rows(values))
    fetcher = Fetcher(store)
    everything = fetcher.fetch_join_stats("quickstart/training_set.v2", 0, 180_000_000_000_000)
    assert [len(b) for b in everything.values()] == [12, 12]
    drift_result = fetcher.join_stats_drift(
        "quickstart.training_set.v2", (START + 2 * DAY, START + 3 * DAY), (0, START + 2 * DAY)
    )
    assert drift_result["moved"]["severity"] == "ERROR"
    with pytest.raises(UnknownName, match="no stats loaded into QUICKSTART_TRAINING_SET_V2_LOGGED_DAILY_STATS"):
        fetcher.fetch_join_stats("quickstart/training_set.v2", 0, 1, logged=True)

    client = TestClient(create_app(store=store))
    response = client.get("/v1/stats/join/quickstart/training_set.v2", params={"start_ts": 0, "end_ts": START + DAY})
    assert response.status_code == 200 and [len(b) for b in response.json().values()] == [4, 4]
    response = client.get(
        "/v1/drift/join/quickstart/training_set.v2",
        params={
            "start_ts": START + 2 * DAY,
            "end_ts": START + 3 * DAY,
            "reference_start_ts": START,
            "reference_end_ts": START + 2 * DAY,
        },
    )
    assert response.status_code == 200 and response.json()["moved"]["severity"] == "ERROR"
    missing = client.get("/v1/stats/join/quickstart/training_set.v2", params={"end_ts": 5, "log": "true"})
    assert missing.status_code == 404


def test_names_and_ranges():
    assert dataset_of_upload_table("default.quickstart_training_set_v2_daily_stats_upload") == DATASET
    assert (
        dataset_of_upload_table("default.quickstart_training_set_v2_logged_daily_stats_upload")
        == join_stats_dataset("quickstart/training_set.v2", logged=True)
        == "QUICKSTART_TRAINING_SET_V2_LOGGED_DAILY_STATS"
    )
    assert join_stats_dataset("quickstart.training_set.v2") == DATASET
    with pytest.raises(NotAStatsUploadTable, match="not a stats upload table"):
        dataset_of_upload_table("default.quickstart_purchases_v1_upload")
    assert time_range({"startTs": "0", "endTs": "180000000000000"}) == (0, 180_000_000_000_000)
    assert time_range({"startTs": 5, "endTs": 9}) == (5, 9)
    with pytest.raises(ValueError, match="endTs: expected epoch millis"):
        time_range({"startTs": "0"})
    with pytest.raises(ValueError, match="is before startTs"):
        time_range({"startTs": 9, "endTs": 5})


def test_categorical_and_list_buckets_keep_their_fields():
    store = InMemoryKVStore()
    rows = [
        {"column_name": "city", "column_kind": "categorical", "ts": START, "ds": "2023-11-01",
         "summary": summarize("categorical", ["a", "a", "b", None], "city").to_bytes()},
        {"column_name": "recent", "column_kind": "list", "ts": START, "ds": "2023-11-01",
         "summary": summarize("list", [[1, None], [], None], "recent").to_bytes()},
    ]  # fmt: skip
    load_stats(store, DATASET, rows)
    fetched = fetch_stats(store, DATASET, 0, START + 1)
    assert fetched["city"][0]["top_items"] == [{"value": "a", "count": 2}, {"value": "b", "count": 1}]
    assert fetched["city"][0]["null_rate"] == 0.25
    assert fetched["recent"][0]["null_elements"] == 1 and fetched["recent"][0]["total_elements"] == 2
