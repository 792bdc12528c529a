"""Past one machine: a Spark standalone cluster (a master and two workers, separate processes from the pyspark
package) runs `feature-assets backfill` with FEATURE_ASSETS_SPARK_MASTER pointing at it, and the join it writes
equals the one local mode writes. The executors run a Python that has the project's dependencies but not the
project, with working directories outside the checkout: the package reaches them only as the zip SparkResource
ships, as on a real cluster.

The cluster's driver runs in a subprocess (one JVM holds one SparkContext, and this process's belongs to the
shared local session).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance
from support.repo import write_repo
from support.spark_cluster import StandaloneCluster, executor_python, standalone_cluster

from feature_assets.compiler import compile_configs, write_compiled
from feature_assets.definitions import build_definitions
from feature_assets.definitions.runs import run_backfill
from feature_assets.dev.datagen.parquet_tables import write_partitioned
from feature_assets.resources import SparkResource, WarehouseResource

pytestmark = [pytest.mark.spark]

FIRST_DS, LAST_DS = "2024-03-01", "2024-03-08"
START, END = "2024-03-05", "2024-03-08"
EMPTY_DS = "2024-03-03"  # a day that landed with no events
JOIN = "shop.training.v1"
JOIN_CONF = "production/joins/shop/training.v1"
JOIN_TABLE = Path("default") / "shop_training_v1"
DAY_MS = 86_400_000

CONFIGS = {
    "group_bys/shop/clicks.py": """
        from feature_assets.api import (Accuracy, Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit,
                                        Window, select)
        windows = [Window(length=1, time_unit=TimeUnit.DAYS), Window(length=3, time_unit=TimeUnit.DAYS)]
        v1 = GroupBy(sources=[EventSource(table="data.clicks",
                                          query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                     keys=["user_id"], accuracy=Accuracy.TEMPORAL,
                     aggregations=[Aggregation(input_column="amount", operation=Operation.SUM, windows=windows),
                                   Aggregation(input_column="amount", operation=Operation.COUNT, windows=windows),
                                   Aggregation(input_column="amount", operation=Operation.MAX),
                                   Aggregation(input_column="amount", operation=Operation.AVERAGE)])
    """,
    "group_bys/shop/purchases.py": """
        from feature_assets.api import (Accuracy, Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit,
                                        Window, select)
        v1 = GroupBy(sources=[EventSource(table="data.clicks",
                                          query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                     keys=["user_id"], accuracy=Accuracy.SNAPSHOT,
                     aggregations=[Aggregation(input_column="amount", operation=Operation.SUM,
                                               windows=[Window(length=2, time_unit=TimeUnit.DAYS)]),
                                   Aggregation(input_column="amount", operation=Operation.MIN)])
    """,
    "joins/shop/training.py": """
        from feature_assets.api import EventSource, Join, JoinPart, Query, select
        from group_bys.shop.clicks import v1 as clicks
        from group_bys.shop.purchases import v1 as purchases
        v1 = Join(left=EventSource(table="data.clicks",
                                   query=Query(selects=select("click_id", "user_id"), time_column="ts")),
                  right_parts=[JoinPart(group_by=clicks), JoinPart(group_by=purchases)], row_ids=["click_id"])
    """,
}
# Settings of the cluster's driver, where a deployment keeps them (spark-submit reads them when pyspark starts
# the driver JVM): few shuffle partitions for small data, no driver web UI to collide on.
SPARK_DEFAULTS = "spark.sql.shuffle.partitions 4\nspark.ui.enabled false\n"
# The driver: `feature-assets backfill` (the CLI's entry function), then, on the same application, what each
# executor reports: where `feature_assets` was imported from, its working directory and its Python.
DRIVER = """
import json
import sys

from pyspark.sql import SparkSession

from feature_assets.cli import main

code = main(sys.argv[1:])


def origin(_):
    import os
    import sys

    import feature_assets

    return {"module": feature_assets.__file__, "cwd": os.getcwd(), "python": sys.executable}


context = SparkSession.getActiveSession().sparkContext
print("executors:", json.dumps(context.parallelize(range(4), 4).map(origin).collect()))
sys.exit(code)
"""


def clicks(seed: int = 7) -> pd.DataFrame:
    """Skewed keys (Zipf), null amounts, duplicate timestamps within a key, and one day without events.
    Amounts are multiples of 1/4, so sums are exact in any order of addition."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds in pd.date_range(FIRST_DS, LAST_DS, freq="D").strftime("%Y-%m-%d"):
        if ds == EMPTY_DS:
            continue
        midnight = int(pd.Timestamp(ds, tz="UTC").timestamp() * 1000)
        times = rng.integers(0, DAY_MS // 60_000, size=40) * 60_000  # minutes: ties are common
        for n, offset in enumerate(times):
            user = f"u{min(int(rng.zipf(1.6)), 12)}"
            amount = None if rng.random() < 0.15 else float(rng.integers(0, 400)) / 4
            row = {"click_id": f"{ds}-{n}", "user_id": user, "amount": amount, "ts": midnight + int(offset), "ds": ds}
            rows.append(row)
            if rng.random() < 0.1:  # the same user again at the same millisecond
                rows.append({**row, "click_id": f"{ds}-{n}-again", "amount": 1.25})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cluster_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("standalone")


@pytest.fixture(scope="module")
def cluster(cluster_root) -> Iterator[StandaloneCluster]:
    with standalone_cluster(cluster_root, workers=2, cores=1, memory="1g") as running:
        yield running


@pytest.fixture(scope="module")
def worker_python(cluster_root) -> Path:
    """The executors' Python; it cannot import the project by itself (not even from its working directory)."""
    python = executor_python(cluster_root)
    alone = subprocess.run([str(python), "-c", "import feature_assets"], cwd=cluster_root, capture_output=True)
    assert alone.returncode != 0, "the executors' Python must not see the project"
    return python


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The compiled feature repo and its source table (the warehouse is shared: same machine)."""
    root = tmp_path_factory.mktemp("cluster_repo")
    write_repo(root, CONFIGS)
    write_partitioned(clicks(), str(root / "warehouse"), "data.clicks", partitions=[EMPTY_DS])
    write_compiled(compile_configs(root, warehouse=str(root / "warehouse")))
    return root


def driver_env(cluster: StandaloneCluster, python: Path, home: Path) -> dict[str, str]:
    """A driver machine's environment: the cluster's master, the Python the workers provide, Spark settings in
    a configuration folder; no PYTHONPATH (the driver has the project installed)."""
    conf_dir = home / "spark-conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith(("FEATURE_ASSETS_", "PYSPARK_"))
    }
    env.update(
        FEATURE_ASSETS_ENV="production",
        FEATURE_ASSETS_SPARK_MASTER=cluster.master_url,
        # Resources of the production environment a join backfill does not use.
        FEATURE_ASSETS_MONGO_URI="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100",
        FEATURE_ASSETS_KAFKA_BOOTSTRAP="127.0.0.1:1",
        PYSPARK_PYTHON=str(python),
        SPARK_CONF_DIR=str(conf_dir),
        SPARK_LOCAL_IP="127.0.0.1",
        DAGSTER_HOME=str(home / "dagster_home"),
    )
    return env


@pytest.fixture(scope="module")
def cluster_backfill(cluster, worker_python, repo, tmp_path_factory) -> dict:
    """The join backfilled on the cluster: the driver's output, the executors' reports, the new applications."""
    home = tmp_path_factory.mktemp("driver")
    warehouse = home / "warehouse"
    write_partitioned(clicks(), str(warehouse), "data.clicks", partitions=[EMPTY_DS])
    env = driver_env(cluster, worker_python, home)
    env["FEATURE_ASSETS_WAREHOUSE"] = str(warehouse)
    applications_before = _applications(cluster)
    command = [sys.executable, "-c", DRIVER, "backfill", "--conf", JOIN_CONF, "--start-ds", START, "--end-ds", END]
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:] + cluster.log_tails()
    [report] = [line for line in result.stdout.splitlines() if line.startswith("executors: ")]
    return {
        "stdout": result.stdout.splitlines(),
        "origins": json.loads(report.removeprefix("executors: ")),
        "applications": _applications(cluster) - applications_before,
        "warehouse": warehouse,
    }


def test_executors_import_the_shipped_package_not_the_checkout(cluster, worker_python, cluster_backfill):
    checkout = str(Path(__file__).resolve().parents[2])
    for origin in cluster_backfill["origins"]:
        assert ".zip/feature_assets/__init__.py" in origin["module"], origin
        assert Path(origin["module"].split(".zip", 1)[0]).name.startswith("feature_assets-"), origin
        assert not origin["module"].startswith(checkout) and not origin["cwd"].startswith(checkout), origin
        assert origin["python"] == str(worker_python), origin
    # Tasks ran in both workers' executors (each works in <work dir>/<application>/<executor>).
    workers = {Path(origin["cwd"]).parents[1].name for origin in cluster_backfill["origins"]}
    assert workers == {"worker-0", "worker-1"}, cluster_backfill["origins"]
    assert {path.parent.name for path in cluster_backfill["applications"]} == {"worker-0", "worker-1"}


def test_cluster_backfill_equals_local_backfill(cluster_backfill, repo, tmp_path, spark):
    left_rows = clicks().query(f"'{START}' <= ds <= '{END}'").groupby("ds").size()
    for ds, rows in left_rows.items():
        assert f"materialized default/shop_training_v1 [{ds}] rows={rows}" in cluster_backfill["stdout"]

    # Local mode: the same join through the same Dagster job, on this process's local session.
    local_warehouse = tmp_path / "warehouse"
    write_partitioned(clicks(), str(local_warehouse), "data.clicks", partitions=[EMPTY_DS])
    defs = build_definitions(
        repo,
        start_date=START,
        resources={"spark": SparkResource(), "warehouse": WarehouseResource(root=str(local_warehouse))},
    )
    assert run_backfill(defs, "joins", JOIN, START, END, instance=DagsterInstance.ephemeral()).success

    on_cluster = _table(cluster_backfill["warehouse"] / JOIN_TABLE)
    in_local_mode = _table(local_warehouse / JOIN_TABLE)
    assert len(on_cluster) == left_rows.sum()
    feature_columns = [c for c in on_cluster.columns if c.startswith("shop_")]
    assert len(feature_columns) == 8 and on_cluster[feature_columns].notna().any().all()
    pd.testing.assert_frame_equal(on_cluster, in_local_mode, check_exact=True)


def _applications(cluster: StandaloneCluster) -> set[Path]:
    """The application folders the workers made (one per application that got an executor there)."""
    return set(cluster.logs.parent.glob("worker-*/app-*"))


def _table(path: Path) -> pd.DataFrame:
    """A partitioned parquet table as rows in row-id order, columns by name."""
    frame = pd.read_parquet(path)
    frame["ds"] = frame["ds"].astype(str)
    frame = frame[sorted(frame.columns)]
    return frame.sort_values("click_id").reset_index(drop=True)
