"""The stats commands as a user runs them: on a new feature repo holding only the compiled join and its join
output, `stats-summary` (default days, checks printed), `load --table` and `fetch --type join-stats`
(subprocesses, local Spark, the embedded MongoDB-protocol server); and the commands' usage errors in-process."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from support.cli import run_cli
from support.paths import QUICKSTART

from feature_assets.cli import main

CONF = "production/joins/quickstart/training_set.v2"
PRICE = "quickstart_purchases_v1_purchase_price_sum_3d"
AVERAGE = "quickstart_returns_v1_refund_amt_average_3d"
DAYS = ["2023-11-01", "2023-11-02", "2023-11-03"]
HOUR = 3_600_000


def _join_output(spark, root: str) -> dict[str, int]:
    """Random join output rows; the last day's sums shifted far up. Returns rows per day."""
    from feature_assets.storage import Warehouse

    rng = np.random.default_rng(4)
    rows = []
    for ds in DAYS:
        start = int(datetime.fromisoformat(ds).replace(tzinfo=UTC).timestamp() * 1000)
        for index in range(1500):
            price = None if rng.random() < 0.1 else int(rng.lognormal(4, 1)) * (30 if ds == DAYS[-1] else 1)
            average = None if rng.random() < 0.3 else float(rng.normal(20, 4))
            ts = start + int(rng.integers(0, 24)) * HOUR
            rows.append((f"{ds}-{index}", f"u{int(rng.integers(0, 50))}", ts, price, average, ds))
    schema = f"request_id string, user_id string, ts bigint, {PRICE} bigint, {AVERAGE} double, ds string"
    Warehouse(spark, root).write_partitions(
        spark.createDataFrame(rows, schema), "default.quickstart_training_set_v2", DAYS[0], DAYS[-1]
    )
    return {ds: 1500 for ds in DAYS}


@pytest.mark.spark
@pytest.mark.services
def test_stats_summary_load_and_fetch_on_a_new_repo(spark, tmp_path):
    repo = tmp_path / "repo"
    (repo / Path(CONF).parent).mkdir(parents=True)
    shutil.copy(QUICKSTART / CONF, repo / CONF)
    _join_output(spark, str(repo / "data" / "warehouse"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEATURE_ASSETS_")}
    env.pop("DAGSTER_HOME", None)

    summary = run_cli(["stats-summary", "--conf", CONF], repo, env)
    output = summary.stdout
    assert summary.returncode == 1, (output + summary.stderr)[-3000:]  # the shifted day fails with ERROR
    for ds in DAYS:
        assert f"materialized default/quickstart_training_set_v2_daily_stats [{ds}] rows=1500" in output
        assert f"materialized default/quickstart_training_set_v2_daily_stats_upload [{ds}]" in output
    assert "check drift of default/quickstart_training_set_v2_daily_stats: ERROR" in output
    assert f"2023-11-03 ERROR (1 columns): {PRICE} (PSI " in output
    assert "check null_rate_spike of default/quickstart_training_set_v2_daily_stats: passed" in output
    assert (repo / "data/warehouse/default/quickstart_training_set_v2_daily_stats_charts/2023-11-03.png").is_file()

    loaded = run_cli(["load", "--table", "default.quickstart_training_set_v2_daily_stats_upload"], repo, env)
    assert loaded.returncode == 0, (loaded.stdout + loaded.stderr)[-3000:]
    assert "loaded default.quickstart_training_set_v2_daily_stats_upload [2023-11-02] into " in loaded.stdout

    keys = '{"startTs":"0","endTs":"180000000000000"}'
    arguments = ["fetch", "--type", "join-stats", "--name", "quickstart/training_set.v2", "-k", keys, "--version"]
    fetched = run_cli(arguments, repo, env)
    assert fetched.returncode == 0, (fetched.stdout + fetched.stderr)[-3000:]
    stats = json.loads(fetched.stdout)
    assert sorted(stats) == sorted([PRICE, AVERAGE])
    buckets = stats[PRICE]
    assert [b["ts"] for b in buckets] == sorted(b["ts"] for b in buckets)
    assert sum(b["total"] for b in buckets) == 4500
    assert set(buckets[0]) >= {"ts", "total", "null_count", "null_rate", "percentiles"}
    assert buckets[0]["percentiles"]["0.5"] is not None and "0.99" in buckets[0]["percentiles"]

    logged = run_cli(["log-summary", "--conf", CONF, "--ds", "2023-11-01"], repo, env)
    assert logged.returncode == 2 and "needs a flattened log" in logged.stderr


def test_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(QUICKSTART)
    assert main(["stats-summary", "--conf", CONF, "--sample-percent", "0"]) == 2
    assert "--sample-percent 0: expected a share in (0, 100]" in capsys.readouterr().err
    assert main(["stats-summary", "--conf", "production/group_bys/quickstart/purchases.v1", "--ds", "2023-11-02"]) == 2
    assert "is not a join" in capsys.readouterr().err
    assert main(["log-summary", "--conf", CONF, "--ds", "2023-11-02", "--end-ds", "2023-11-03"]) == 2
    assert "give --ds or --start-ds/--end-ds, not both" in capsys.readouterr().err
    # A store address that is never reached: the arguments are refused first.
    monkeypatch.setenv("FEATURE_ASSETS_MONGO_URI", "mongodb://127.0.0.1:9")
    assert main(["load", "--table", "default.quickstart_purchases_v1_upload"]) == 2
    assert "loads with --conf <group-by> --ds <day>" in capsys.readouterr().err
    assert main(["load", "--conf", "production/group_bys/quickstart/purchases.v1"]) == 2
    assert "give --conf and --ds" in capsys.readouterr().err
    arguments = ["fetch", "--type", "join-stats", "--name", "quickstart/training_set.v2", "-k", '{"startTs": "x"}']
    assert main(arguments) == 2
    assert "startTs: expected epoch millis" in capsys.readouterr().err
