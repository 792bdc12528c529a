"""The consistency commands in-process on a new repo holding the quickstart's v2 join (checked, every request
compared), a day of its served log with 3% of one feature's values changed, and the data the join reads:
`consistency-metrics-compute` prints the failing check and exits 1, `load --table` puts the upload table into
the embedded MongoDB-protocol server and `fetch --type join-consistency` prints its buckets per feature."""

from __future__ import annotations

import argparse
import json
import random
import shutil

import pytest
from support.paths import QUICKSTART_PRODUCTION

from feature_assets.cli.arguments import UsageError
from feature_assets.cli.consistency import add_consistency_commands, fetch_join_consistency, load_consistency_table
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN

CONF = "production/joins/quickstart/training_set.v2"
FILES = [
    "group_bys/quickstart/purchases.v1",
    "group_bys/quickstart/returns.v1",
    "group_bys/quickstart/schema.v1",
    "joins/quickstart/training_set.v2",
]
FIRST_DAY, DAY = "2023-11-01", "2023-11-04"
PRICE = "quickstart_purchases_v1_purchase_price_sum_14d"
UPLOAD = "default.quickstart_training_set_v2_consistency_upload"


def _repo(root, check: bool = True) -> None:
    for name in FILES:
        target = root / "production" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(QUICKSTART_PRODUCTION / name, target)
    path = root / CONF
    config = json.loads(path.read_text())
    config["metaData"].update({"consistencyCheck": check, "consistencySamplePercent": 100})
    path.write_text(json.dumps(config, indent=2))
    (root / "feature_repo.yaml").write_text(f'start_date: "{FIRST_DAY}"\nend_date: "{DAY}"\n')


def _served_log(spark, warehouse, join) -> None:
    """The day's offline join output as the served values, 3 of its 100 requests served another PRICE."""
    from pyspark.sql import functions as F

    from feature_assets.offline.join import assemble_join, compute_join_part, read_left

    left = read_left(warehouse, join, DAY, DAY)
    parts: list = [(part, compute_join_part(warehouse, join, part, left, DAY, DAY)) for part in join.join_parts]
    output = assemble_join(join, left, parts).cache()
    ids = sorted(row["request_id"] for row in output.select("request_id").collect())
    chosen = random.Random(5).sample(ids, 3)
    moved = F.coalesce(F.col(PRICE) + F.lit(7), F.lit(7)).cast(output.schema[PRICE].dataType)
    output = output.withColumn(PRICE, F.when(F.col("request_id").isin(chosen), moved).otherwise(F.col(PRICE)))
    logged = output.select(
        F.lit("hash1").alias(SCHEMA_HASH_COLUMN),
        *[c for c in output.columns if c != "ds"],
        F.array().cast("array<string>").alias(ABSENT_FIELDS_COLUMN),
        "ds",
    )
    warehouse.write_partitions(logged, join.logged_table, DAY, DAY)
    output.unpersist()


def _parse(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_consistency_commands(parser.add_subparsers())
    return parser.parse_args(arguments)


def _with_consistency_assets(monkeypatch) -> None:
    """Definitions with the consistency assets and job, when the factory does not add them itself."""
    from dagster import Definitions

    import feature_assets.definitions as definitions
    from feature_assets.compiler import load_compiled
    from feature_assets.definitions.assets import asset_key
    from feature_assets.definitions.consistency_assets import CONSISTENCY_JOB, consistency_assets, consistency_jobs
    from feature_assets.definitions.graph import build_graph

    build = definitions.build_definitions

    def build_with_consistency(repo, start_date=None, resources=None):
        defs = build(repo, start_date=start_date, resources=resources)
        if any(job.name == CONSISTENCY_JOB for job in defs.jobs or []):
            return defs
        graph = build_graph(load_compiled(repo))
        logged = next(node for node in graph.values() if node.kind == "logged")
        log_partitions = defs.resolve_asset_graph().get(asset_key(logged.table)).partitions_def
        extra = Definitions(assets=consistency_assets(graph, log_partitions), jobs=consistency_jobs(graph))
        return Definitions.merge(defs, extra)

    monkeypatch.setattr(definitions, "build_definitions", build_with_consistency)


@pytest.fixture
def repo(spark, tmp_path, monkeypatch):
    from feature_assets.compiler import load_compiled
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.resources.spark import SPARK_LOG_ENV
    from feature_assets.storage import Warehouse

    root = tmp_path / "repo"
    _repo(root)
    warehouse_root = str(root / "data" / "warehouse")
    generate_quickstart_data(warehouse_root, FIRST_DAY, DAY, tables=("purchases", "returns", "checkouts"))
    join = load_compiled(root).joins["quickstart.training_set.v2"]
    _served_log(spark, Warehouse(spark, warehouse_root), join)
    for name in ("FEATURE_ASSETS_START_DATE", "FEATURE_ASSETS_MONGO_URI", "FEATURE_ASSETS_MONGO_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", warehouse_root)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv(SPARK_LOG_ENV, str(tmp_path / "spark.log"))
    monkeypatch.chdir(root)
    _with_consistency_assets(monkeypatch)
    return root


@pytest.mark.spark
@pytest.mark.services
def test_compute_fails_on_the_perturbed_feature_then_load_and_fetch(repo, capsys, tmp_path):
    args = _parse(["consistency-metrics-compute", "--conf", CONF])
    assert args.func(args) == 1  # every day of the _logged table: the one day
    output = capsys.readouterr().out
    for table in ("comparison", "consistency", "consistency_upload"):
        assert f"materialized default/quickstart_training_set_v2_{table} [{DAY}]" in output
    assert "consistency: ERROR (overall mismatch rate " in output
    assert "check consistency_drift of default/quickstart_training_set_v2_consistency: ERROR" in output
    assert f"    ERROR {PRICE}: mismatch rate 0.03 (3/100)" in output

    from feature_assets.dev.services.local import local_services

    with local_services(tmp_path / "services", mongo=True, kafka=False):  # exports its address
        load = argparse.Namespace(ds=None, start_ds=None, end_ds=None, warehouse=None, verbose=False)
        assert load_consistency_table(load, UPLOAD) == 0
        assert f"loaded {UPLOAD} [{DAY}] into QUICKSTART_TRAINING_SET_V2_CONSISTENCY: " in capsys.readouterr().out
        fetch = argparse.Namespace(name="quickstart/training_set.v2")
        assert fetch_join_consistency(fetch, {"startTs": "0", "endTs": "180000000000000"}) == 0
        fetched = json.loads(capsys.readouterr().out)
        assert fetch_join_consistency(fetch, {"startTs": "0"}) == 2
        assert "endTs: expected epoch millis" in capsys.readouterr().err
    assert len(fetched) == 20 and "__all__" not in fetched
    buckets = fetched[PRICE]
    assert [b["ts"] for b in buckets] == sorted(b["ts"] for b in buckets)
    assert all(b["ts"] % 3_600_000 == 0 for b in buckets)
    assert list(buckets[0])[:7] == ["ts", "total", "mismatch", "both_null", "left_null", "right_null", "smape"]
    assert sum(b["total"] for b in buckets) == 100 and sum(b["mismatch"] for b in buckets) == 3
    assert all(sum(b["mismatch"] for b in bs) == 0 for column, bs in fetched.items() if column != PRICE)


def test_usage_errors(tmp_path, monkeypatch):
    _repo(tmp_path, check=False)
    monkeypatch.chdir(tmp_path)
    args = _parse(["consistency-metrics-compute", "--conf", CONF, "--ds", DAY])
    with pytest.raises(UsageError, match="is not checked for consistency: set check_consistency=True"):
        args.func(args)
    args = _parse(["consistency-metrics-compute", "--conf", CONF, "--sample-percent", "0"])
    with pytest.raises(UsageError, match="--sample-percent 0: expected a share in"):
        args.func(args)
    _repo(tmp_path, check=True)
    args = _parse(["consistency-metrics-compute", "--conf", CONF, "--ds", DAY, "--end-ds", DAY])
    with pytest.raises(UsageError, match="not both"):
        args.func(args)
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", str(tmp_path / "empty"))
    args = _parse(["consistency-metrics-compute", "--conf", CONF])
    with pytest.raises(UsageError, match="no partition of default.quickstart_training_set_v2_logged"):
        args.func(args)
    load = argparse.Namespace(ds=None, start_ds=None, end_ds=None, warehouse=str(tmp_path / "empty"), verbose=False)
    with pytest.raises(UsageError, match=f"no partition of {UPLOAD}"):
        load_consistency_table(load, UPLOAD)
