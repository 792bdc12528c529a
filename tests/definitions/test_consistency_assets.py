"""The consistency assets of a join, materialized through Dagster on a new repo holding the quickstart's v2 join
(checked for consistency, every logged request compared) and four days of quickstart data: the served log is the
offline join output, so the check passes; 3% of one feature's served values changed, the check fails with ERROR
naming it. Also the lineage and which joins get the assets."""

from __future__ import annotations

import json
import random
import shutil
import warnings

import pytest
from dagster import AssetCheckSeverity, AssetKey, DailyPartitionsDefinition, materialize
from support.paths import QUICKSTART_PRODUCTION

from feature_assets.checks.consistency import CONSISTENCY_CHECK, CONSISTENCY_TREND_CHECK
from feature_assets.compiler import load_compiled
from feature_assets.definitions.consistency_assets import (
    comparison_asset_key,
    consistency_asset_key,
    consistency_assets,
    consistency_jobs,
    consistency_upload_asset_key,
)
from feature_assets.definitions.graph import build_graph
from feature_assets.definitions.runs import RANGE_END_TAG, RANGE_START_TAG
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN
from feature_assets.quality.consistency import ALL_COLUMNS
from feature_assets.quality.consistency_tables import consistency_upload_table
from feature_assets.resources import SparkResource, WarehouseResource

pytestmark = [pytest.mark.spark]
warnings.filterwarnings("ignore", category=Warning, module="dagster")

JOIN_NAME = "quickstart.training_set.v2"
FILES = [
    "group_bys/quickstart/purchases.v1",
    "group_bys/quickstart/returns.v1",
    "group_bys/quickstart/schema.v1",
    "joins/quickstart/training_set.v2",
]
FIRST_DAY, DAY = "2023-11-01", "2023-11-04"
PRICE = "quickstart_purchases_v1_purchase_price_sum_14d"
REFUND = "quickstart_returns_v1_refund_amt_average_30d"


def write_checked_repo(root, sample_percent: float = 100, check: bool = True):
    """The quickstart's compiled v2 join (and what it reads) under root/production, checked for consistency."""
    for name in FILES:
        target = root / "production" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(QUICKSTART_PRODUCTION / name, target)
    path = root / "production" / FILES[-1]
    config = json.loads(path.read_text())
    config["metaData"].update({"consistencyCheck": check, "consistencySamplePercent": sample_percent})
    path.write_text(json.dumps(config, indent=2))
    return load_compiled(root)


def write_served_log(spark, warehouse, join, day: str, perturbed: str | None = None, share: float = 0.03):
    """The join's `_logged` day as served values equal to the offline join output; with `perturbed`, that
    column changed on `share` of the requests (chosen at random). Returns the changed request ids."""
    from pyspark.sql import functions as F

    from feature_assets.offline.join import assemble_join, compute_join_part, read_left

    left = read_left(warehouse, join, day, day)
    parts: list = [(part, compute_join_part(warehouse, join, part, left, day, day)) for part in join.join_parts]
    output = assemble_join(join, left, parts).cache()
    chosen: set[str] = set()
    if perturbed is not None:
        ids = sorted(row["request_id"] for row in output.select("request_id").collect())
        chosen = set(random.Random(5).sample(ids, round(share * len(ids))))
        data_type = output.schema[perturbed].dataType
        moved = F.coalesce(F.col(perturbed) + F.lit(7), F.lit(7)).cast(data_type)
        output = output.withColumn(
            perturbed, F.when(F.col("request_id").isin(sorted(chosen)), moved).otherwise(F.col(perturbed))
        )
    logged = output.select(
        F.lit("hash1").alias(SCHEMA_HASH_COLUMN),
        *[c for c in output.columns if c != "ds"],
        F.array().cast("array<string>").alias(ABSENT_FIELDS_COLUMN),
        "ds",
    )
    warehouse.write_partitions(logged, join.logged_table, day, day)
    output.unpersist()
    return chosen


@pytest.fixture(scope="module")
def checked(spark, tmp_path_factory):
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.storage import Warehouse

    root = tmp_path_factory.mktemp("consistency-repo")
    compiled = write_checked_repo(root)
    warehouse_root = str(root / "warehouse")
    generate_quickstart_data(warehouse_root, FIRST_DAY, DAY, tables=("purchases", "returns", "checkouts"))
    warehouse = Warehouse(spark, warehouse_root)
    join = compiled.joins[JOIN_NAME]
    partitions = DailyPartitionsDefinition(start_date=FIRST_DAY, end_date="2023-11-05")
    graph = build_graph(compiled)
    assets = consistency_assets(graph, partitions)
    resources = {"spark": SparkResource(), "warehouse": WarehouseResource(root=warehouse_root)}

    def run(keys=None, start=DAY):
        tags = {RANGE_START_TAG: start, RANGE_END_TAG: DAY}
        return materialize(assets, resources=resources, tags=tags, selection=keys, raise_on_error=False)

    return run, warehouse, join, graph, assets


def _check(result, name=CONSISTENCY_CHECK):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def _day_metadata(result, key: AssetKey) -> dict:
    event = next(
        m.materialization
        for m in result.get_asset_materialization_events()
        if m.materialization.asset_key == key and m.materialization.partition == DAY
    )
    return {name: entry.value for name, entry in event.metadata.items()}


def test_served_values_pass_and_a_perturbed_feature_fails_with_error(checked, spark):
    run, warehouse, join, _, _ = checked
    write_served_log(spark, warehouse, join, DAY)
    requests = warehouse.read(join.logged_table, DAY, DAY).count()
    assert requests == 100

    consistent = run()
    assert consistent.success
    check = _check(consistent)
    assert check.passed, check.description
    assert check.description.startswith(f"{len(join.part_columns)} columns consistent")
    comparison = warehouse.read(join.comparison_table, DAY, DAY)
    assert comparison.count() == requests  # every request sampled (consistency_sample_percent=100)
    rows = [r.asDict() for r in warehouse.read(join.consistency_table, DAY, DAY).collect()]
    assert {r["column_name"] for r in rows} == {*join.part_columns, ALL_COLUMNS}
    assert all(r["mismatch"] == 0 for r in rows)
    assert sum(r["total"] for r in rows if r["column_name"] == PRICE) == requests
    uploads = warehouse.read(consistency_upload_table(join), DAY, DAY)
    assert uploads.count() == len(rows) and "smape" in uploads.columns

    chosen = write_served_log(spark, warehouse, join, DAY, perturbed=PRICE)
    assert len(chosen) == 3
    # The comparison does not depend on the served values: only the metrics and their upload run again.
    failing = run([consistency_asset_key(join), consistency_upload_asset_key(join)])
    assert failing.success  # the check fails; the run (and the upload of the failing numbers) does not
    check = _check(failing)
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.description.startswith(f"ERROR {PRICE}: mismatch rate 0.03 (3/100)")
    assert REFUND not in check.description
    metadata = {name: entry.value for name, entry in check.metadata.items()}
    assert metadata[f"{PRICE}/mismatch_rate"] == pytest.approx(0.03) and isinstance(metadata[f"{PRICE}/smape"], float)
    assert metadata[f"{REFUND}/mismatch_rate"] == 0.0 and metadata["columns_error"] == 1.0
    assert metadata["threshold/mismatch_rate_fail"] == 0.01
    day = _day_metadata(failing, consistency_asset_key(join))
    assert day["consistency"] == "ERROR" and day[f"{PRICE}/mismatch"] == 3.0
    rows = warehouse.read(join.consistency_table, DAY, DAY).where(f"column_name = '{PRICE}'").collect()
    assert sum(r["mismatch"] for r in rows) == 3 and sum(r["left_null"] for r in rows) == 0


def test_a_feature_that_starts_to_disagree_is_reported_against_the_trailing_week(checked, spark):
    run, warehouse, join, _, _ = checked
    before = "2023-11-03"
    write_served_log(spark, warehouse, join, before)
    write_served_log(spark, warehouse, join, DAY, perturbed=PRICE)
    result = run(start=before)
    assert result.success
    trend = _check(result, CONSISTENCY_TREND_CHECK)
    assert not trend.passed and trend.severity == AssetCheckSeverity.WARN
    assert trend.description.startswith(f"{DAY}: WARN {PRICE}: mismatch rate 0.03 against 0 over the trailing week")
    assert REFUND not in trend.description and before not in trend.description
    metadata = {name: entry.value for name, entry in trend.metadata.items()}
    assert metadata[f"{before}/trend/trailing_days"] == 0.0 and metadata[f"{DAY}/trend/trailing_days"] == 1.0
    assert metadata[f"{DAY}/trend/{PRICE}/change"] == pytest.approx(0.03)
    assert metadata[f"{DAY}/trend/{PRICE}/psi"] > 0.1 and metadata[f"{DAY}/trend/{REFUND}/psi"] == 0.0
    day = _day_metadata(result, consistency_asset_key(join))
    assert day[f"trend/{PRICE}/trailing_mismatch_rate"] == 0.0


def test_lineage_and_jobs(checked):
    _, _, join, graph, assets = checked
    specs = {spec.key: spec for a in assets for spec in a.specs}
    assert set(specs) == {comparison_asset_key(join), consistency_asset_key(join), consistency_upload_asset_key(join)}
    comparison_deps = {dep.asset_key: dep for dep in specs[comparison_asset_key(join)].deps}
    assert set(comparison_deps) == {
        AssetKey(["default", "quickstart_training_set_v2_logged"]),
        AssetKey(["default", "quickstart_purchases_v1"]),  # the snapshot part's daily table, the day before
        AssetKey(["data", "returns"]),  # the temporal part's events
    }
    daily = comparison_deps[AssetKey(["default", "quickstart_purchases_v1"])].partition_mapping
    assert (daily.start_offset, daily.end_offset) == (-1, -1)
    assert {d.asset_key for d in specs[consistency_asset_key(join)].deps} >= {comparison_asset_key(join)}
    assert {d.asset_key for d in specs[consistency_upload_asset_key(join)].deps} == {consistency_asset_key(join)}
    checks = [c for a in assets for c in a.check_specs]
    key = consistency_asset_key(join)
    assert [(c.name, c.asset_key) for c in checks] == [(CONSISTENCY_CHECK, key), (CONSISTENCY_TREND_CHECK, key)]
    assert not any(c.blocking for c in checks)
    blocking = consistency_assets(graph, DailyPartitionsDefinition(start_date=FIRST_DAY), blocking=True)
    assert [c.name for a in blocking for c in a.check_specs if c.blocking] == [CONSISTENCY_CHECK]
    assert [job.name for job in consistency_jobs(graph)] == ["compute_consistency"]


def test_only_checked_joins_with_a_log_get_the_assets(tmp_path):
    unchecked = build_graph(write_checked_repo(tmp_path, check=False))
    assert consistency_assets(unchecked, DailyPartitionsDefinition(start_date=FIRST_DAY)) == []
    assert consistency_jobs(unchecked) == []
