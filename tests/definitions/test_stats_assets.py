"""The stats assets of a join, materialized through Dagster on random join output: the stats and upload tables
against a naive count per (day, hour, column), the drift check on a shifted and an unshifted day, the per-day
metadata (floats, chart, markdown), and the upload loaded into a store and fetched back."""

from __future__ import annotations

import warnings
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetCheckSeverity, DailyPartitionsDefinition, materialize
from support.paths import QUICKSTART

from feature_assets.compiler import load_compiled
from feature_assets.definitions.graph import build_graph
from feature_assets.definitions.runs import RANGE_END_TAG, RANGE_START_TAG
from feature_assets.definitions.stats_assets import SAMPLE_PERCENT_TAG, charts_folder, stats_assets
from feature_assets.online.fetch.stats import dataset_of_upload_table, fetch_stats, load_stats
from feature_assets.online.store import InMemoryKVStore
from feature_assets.quality.stats_tables import upload_rows
from feature_assets.resources import SparkResource, WarehouseResource

pytestmark = [pytest.mark.spark]
warnings.filterwarnings("ignore", category=Warning, module="dagster")

HOUR = 3_600_000
PRICE = "quickstart_purchases_v1_purchase_price_sum_3d"
AVERAGE = "quickstart_purchases_v1_purchase_price_average_3d"
RECENT = "quickstart_purchases_v1_purchase_price_last10"
SCHEMA = (
    f"request_id string, user_id string, ts bigint, {PRICE} bigint, {AVERAGE} double, {RECENT} array<bigint>, "
    "ext_contextual_request_id string, ds string"
)
DAYS = ["2023-11-01", "2023-11-02", "2023-11-03"]
SHIFTED_DAY = "2023-11-03"


def _rows(seed: int = 0, per_day: int = 3000) -> list[tuple]:
    """Join output rows: skewed users, a few requests per hour (duplicate ts), nulls, an empty hour range;
    on the shifted day the sums move up by a lot, the averages stay."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds in DAYS:
        start = int(datetime.fromisoformat(ds).replace(tzinfo=UTC).timestamp() * 1000)
        for index in range(per_day):
            hour = int(rng.choice([0, 1, 2, 7, 8, 20]))
            ts = start + hour * HOUR + int(rng.integers(0, 3)) * 600_000
            price = None if rng.random() < 0.1 else int(rng.lognormal(4, 1)) * (20 if ds == SHIFTED_DAY else 1)
            average = None if rng.random() < 0.2 else float(rng.normal(50, 10))
            recent = None if rng.random() < 0.1 else [int(v) for v in rng.integers(0, 9, int(rng.integers(0, 5)))]
            request = f"{ds}-{index}"
            rows.append((request, f"u{min(int(rng.zipf(1.5)), 300)}", ts, price, average, recent, request, ds))
    return rows


def _naive(rows: list[tuple]) -> dict[tuple[str, int, str], tuple[int, int]]:
    """(ds, hour start, column) -> (rows, nulls)."""
    counts: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for _, _, ts, price, average, recent, _, ds in rows:
        bucket = ts - ts % HOUR
        for column, value in ((PRICE, price), (AVERAGE, average), (RECENT, recent)):
            counts[(ds, bucket, column)][0] += 1
            counts[(ds, bucket, column)][1] += value is None
    return {key: (total, nulls) for key, (total, nulls) in counts.items()}


@pytest.fixture
def materialized(spark, tmp_path):
    """The v2 join's stats assets over a warehouse holding only random join output."""
    from feature_assets.storage import Warehouse

    root = str(tmp_path / "warehouse")
    store = Warehouse(spark, root)
    rows = _rows()
    join = load_compiled(QUICKSTART).joins["quickstart.training_set.v2"]
    store.write_partitions(spark.createDataFrame(rows, SCHEMA), join.output_table, DAYS[0], DAYS[-1])
    partitions = DailyPartitionsDefinition(start_date=DAYS[0], end_date="2023-11-04")
    graph = build_graph(load_compiled(QUICKSTART))
    assets = [
        a
        for a in stats_assets(graph, partitions, partitions)
        if a.key.to_user_string().startswith("default/quickstart_training_set_v2_daily_stats")
    ]
    resources = {"spark": SparkResource(), "warehouse": WarehouseResource(root=root)}

    def run(start: str, end: str, sample_percent: float | None = 100.0):
        tags = {RANGE_START_TAG: start, RANGE_END_TAG: end}
        if sample_percent is not None:
            tags[SAMPLE_PERCENT_TAG] = str(sample_percent)
        return materialize(assets, resources=resources, tags=tags, raise_on_error=False)

    return run, store, join, rows


def _check(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_stats_tables_counts_checks_and_metadata(materialized):
    run, store, join, rows = materialized
    first = run(DAYS[0], DAYS[1])
    assert first.success
    assert _check(first, "drift").passed  # 11-02 against 11-01: the same distributions
    shifted = run(SHIFTED_DAY, SHIFTED_DAY)
    assert shifted.success
    drift = _check(shifted, "drift")
    assert not drift.passed and drift.severity == AssetCheckSeverity.ERROR
    assert f"{SHIFTED_DAY} ERROR (1 columns): {PRICE} (PSI " in drift.description
    assert AVERAGE not in drift.description and RECENT not in drift.description
    assert _check(shifted, "null_rate_spike").passed and _check(shifted, "row_count_change").passed

    stats = store.read(join.daily_stats_table).collect()
    found = {(r["ds"], r["ts"], r["column_name"]): (r["total"], r["null_count"]) for r in stats}
    assert found == _naive(rows)  # keys, row ids and the contextual column are left out
    assert {r["sample_percent"] for r in stats} == {100.0}
    uploads = list(upload_rows(store, join.daily_stats_upload_table, None, None))
    assert {(r["ds"], r["ts"], r["column_name"]): r["summary"] for r in uploads} == {
        (r["ds"], r["ts"], r["column_name"]): bytes(r["summary"]) for r in stats
    }

    day = next(
        m.materialization
        for m in shifted.get_asset_materialization_events()
        if m.materialization.asset_key == join_key(join) and m.materialization.partition == SHIFTED_DAY
    )
    metadata = {name: entry.value for name, entry in day.metadata.items()}
    assert metadata["columns_error"] == 1.0 and metadata["rows"] == 3000.0
    assert metadata[f"{PRICE}/jensen_shannon"] > 0.15 and isinstance(metadata[f"{AVERAGE}/psi"], float)
    assert f"| {PRICE} | numeric | ERROR |" in metadata["worst_drift"]
    chart = Path(metadata["chart"])
    assert chart.is_file() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.parent == charts_folder(store, join.daily_stats_table)

    memory = InMemoryKVStore()
    written = load_stats(memory, dataset_of_upload_table(join.daily_stats_upload_table), iter(uploads_by_day(uploads)))
    assert sorted(written) == DAYS
    fetched = fetch_stats(memory, "QUICKSTART_TRAINING_SET_V2_DAILY_STATS", 0, 180_000_000_000_000)
    assert sorted(fetched) == sorted([PRICE, AVERAGE, RECENT])
    naive = _naive(rows)
    for column, buckets in fetched.items():
        assert [b["ts"] for b in buckets] == sorted(ts for (_, ts, c) in naive if c == column)
        for bucket in buckets:
            ds = datetime.fromtimestamp(bucket["ts"] / 1000, UTC).strftime("%Y-%m-%d")
            assert (bucket["total"], bucket["null_count"]) == naive[(ds, bucket["ts"], column)]
    assert set(fetched[PRICE][0]["percentiles"]) == {
        "0.01",
        *(format(round(s * 0.05, 2), "g") for s in range(1, 20)),
        "0.99",
    }


def test_sampling_keeps_a_share_of_the_rows(materialized):
    run, store, join, rows = materialized
    assert run(DAYS[0], DAYS[0], sample_percent=20).success
    stats = store.read(join.daily_stats_table).where(f"column_name = '{PRICE}'").collect()
    sampled = sum(r["total"] for r in stats)
    assert 0.15 * 3000 < sampled < 0.25 * 3000
    assert {r["sample_percent"] for r in stats} == {20.0}
    # Without the tag, the join's own share (the quickstart's v2 summarizes every row).
    assert run(DAYS[0], DAYS[0], sample_percent=None).success
    stats = store.read(join.daily_stats_table).collect()
    assert {r["sample_percent"] for r in stats} == {join.stats_sample_percent} == {100.0}


def join_key(join):
    from feature_assets.definitions.assets import asset_key

    return asset_key(join.daily_stats_table)


def uploads_by_day(uploads: list[dict]) -> list[dict]:
    return sorted(uploads, key=lambda row: row["ds"])


def test_logged_stats_leave_the_log_bookkeeping_out(spark, tmp_path):
    from feature_assets.storage import Warehouse

    root = str(tmp_path / "warehouse")
    store = Warehouse(spark, root)
    join = load_compiled(QUICKSTART).joins["quickstart.training_set.v2"]
    schema = f"schema_hash string, ts bigint, user_id string, request_id string, {PRICE} bigint, "
    schema += "ext_contextual_request_id string, _absent_fields array<string>, ds string"
    start = int(datetime(2023, 11, 1, tzinfo=UTC).timestamp() * 1000)
    rows = [
        ("h", start + i * 60_000, f"u{i % 7}", f"r{i}", None if i % 4 == 0 else i, f"r{i}", [], DAYS[0])
        for i in range(200)
    ]
    store.write_partitions(spark.createDataFrame(rows, schema), join.logged_table, DAYS[0], DAYS[0])
    partitions = DailyPartitionsDefinition(start_date=DAYS[0], end_date="2023-11-02")
    graph = build_graph(load_compiled(QUICKSTART))
    assets = [
        a
        for a in stats_assets(graph, partitions, partitions)
        if a.key.to_user_string().startswith("default/quickstart_training_set_v2_logged_daily_stats")
    ]
    resources = {"spark": SparkResource(), "warehouse": WarehouseResource(root=root)}
    tags = {RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[0], SAMPLE_PERCENT_TAG: "100"}
    assert materialize(assets, resources=resources, tags=tags, raise_on_error=False).success
    stats = store.read(join.logged_daily_stats_table).collect()
    assert {r["column_name"] for r in stats} == {PRICE}
    assert sum(r["total"] for r in stats) == 200 and sum(r["null_count"] for r in stats) == 50
    assert store.read(join.logged_daily_stats_upload_table).count() == len(stats)
