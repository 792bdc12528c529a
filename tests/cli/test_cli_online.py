"""The online commands as a user runs them: the seed's upload and fetch on a fresh copy of the quickstart repo
(subprocesses, the embedded MongoDB-protocol server, local Spark, Dagster's instance in a temporary folder),
and, in-process on one small repo, uploads that are correct or refused, loads that never blank serving by
accident, and a rollback to an earlier batch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance
from support.cli import run_cli
from support.paths import QUICKSTART

from feature_assets.dev.datagen.parquet_tables import read_table, write_partitioned
from feature_assets.dev.datagen.quickstart import generate_quickstart_data
from feature_assets.online.batch_encoding import end_of_day_millis

pytestmark = [pytest.mark.spark, pytest.mark.services]

SEED_DS = "2023-12-01"
PURCHASES_CONF = "production/group_bys/quickstart/purchases.v1"
TRAINING_SET_CONF = "production/joins/quickstart/training_set.v2"


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


def fresh_quickstart(root: Path) -> tuple[Path, dict[str, str]]:
    """The quickstart's configs (no compiled files), its source tables through the seed's day, and the
    environment of a user without a MongoDB URI (the embedded server of the repo's .services)."""
    repo = root / "repo"
    for folder in ("group_bys", "joins"):
        shutil.copytree(QUICKSTART / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    warehouse = root / "warehouse"
    generate_quickstart_data(str(warehouse), "2023-11-01", SEED_DS, n_users=20)
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEATURE_ASSETS_")}
    env.update(FEATURE_ASSETS_WAREHOUSE=str(warehouse), DAGSTER_HOME=str(root / "dagster_home"))
    return repo, env


def runs_recorded(dagster_home: str) -> int:
    if not Path(dagster_home, "dagster.yaml").exists():
        return 0
    with DagsterInstance.from_config(dagster_home) as instance:
        return len(instance.get_runs())


def test_the_seeds_upload_and_fetch_commands_as_written(tmp_path):
    repo, env = fresh_quickstart(tmp_path)
    ok(run_cli(["compile"], repo, env))

    # Before the group-by's day is backfilled, the upload is refused, naming the table and the day.
    refused = run_cli(["upload", "--conf", PURCHASES_CONF, "--ds", SEED_DS], repo, env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = [line for line in refused.stderr.splitlines() if line.startswith("feature-assets upload:")]
    assert len(message) == 1 and "'default.quickstart_purchases_v1' has no partition" in message[0]
    assert f"['{SEED_DS}']" in message[0] and "backfill" in message[0]
    assert runs_recorded(env["DAGSTER_HOME"]) == 0  # refused before any run

    ok(run_cli(["backfill", "--conf", PURCHASES_CONF, "--start-ds", SEED_DS, "--end-ds", SEED_DS], repo, env))
    uploaded = ok(run_cli(["upload", "--conf", PURCHASES_CONF, "--ds", SEED_DS], repo, env))
    assert f"materialized default/quickstart_purchases_v1_upload [{SEED_DS}] rows=20" in uploaded
    loaded = ok(run_cli(["load", "--conf", PURCHASES_CONF, "--ds", SEED_DS], repo, env))
    assert f"materialized online/QUICKSTART_PURCHASES_V1_BATCH [{SEED_DS}] rows=20: loaded version" in loaded

    fetched = json.loads(
        ok(
            run_cli(
                ["fetch", "--type", "group-by", "--name", "quickstart/purchases.v1", "-k", '{"user_id":"5"}'], repo, env
            )
        )
    )
    daily = read_table(env["FEATURE_ASSETS_WAREHOUSE"], "default.quickstart_purchases_v1")
    expected = daily[(daily["ds"] == SEED_DS) & (daily["user_id"] == "5")].iloc[0]
    assert fetched["error"] is None
    for feature in ("purchase_price_sum_30d", "purchase_price_count_3d", "purchase_price_average_14d"):
        assert fetched["values"][feature] == pytest.approx(expected[feature]), feature

    # "Follow step 2 for all your group bys": the join's conf uploads and loads each of its parts.
    uploaded = ok(run_cli(["upload", "--conf", TRAINING_SET_CONF, "--ds", SEED_DS], repo, env))
    assert f"materialized default/quickstart_returns_v1_upload [{SEED_DS}]" in uploaded
    loaded = ok(run_cli(["load", "--conf", TRAINING_SET_CONF, "--ds", SEED_DS], repo, env))
    assert "unchanged version" in loaded and "QUICKSTART_RETURNS_V1_BATCH" in loaded
    stored = ok(run_cli(["metadata-upload", "--conf", TRAINING_SET_CONF], repo, env))
    assert "stored conf/joins/quickstart.training_set.v2" in stored
    joined = json.loads(
        ok(
            run_cli(
                ["fetch", "--type", "join", "--name", "quickstart/training_set.v2", "-k", '{"user_id":"5"}'], repo, env
            )
        )
    )
    assert joined["error"] is None
    assert (
        joined["values"]["quickstart_purchases_v1_purchase_price_sum_30d"]
        == fetched["values"]["purchase_price_sum_30d"]
    )
    assert "quickstart_returns_v1_refund_amt_count_30d" in joined["values"]
    assert runs_recorded(env["DAGSTER_HOME"]) == 6  # backfill, 2 uploads, 2 loads, metadata: all in the UI
    assert not (repo / ".services" / "services.env").exists()  # each command stopped the server it started


# --------------------------------------------------------------------------- correct or refused, and rollback

DAY_1, DAY_2 = "2024-01-01", "2024-01-02"
CLICKS = """
    from feature_assets.api import (Accuracy, Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window,
                                    select)
    day = [Window(length=1, time_unit=TimeUnit.DAYS)]
    v1 = GroupBy(sources=[EventSource(table="data.clicks",
                                      query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                 keys=["user_id"], accuracy=Accuracy.SNAPSHOT, online=True,
                 aggregations=[Aggregation(input_column="amount", operation=Operation.COUNT, windows=day),
                               Aggregation(input_column="amount", operation=Operation.SUM, windows=day)])
"""
CLICKS_CONF = "production/group_bys/shop/clicks.v1"


@pytest.fixture
def clicks_repo(tmp_path, spark, monkeypatch, capsys):
    """A repo whose only group-by has clicks on DAY_1 and none on DAY_2 (an empty partition), backfilled;
    the CLI runs in-process on the session's Spark and a real embedded server."""
    from feature_assets.cli import main
    from feature_assets.dev.services.local import local_services

    repo, warehouse = tmp_path / "repo", tmp_path / "warehouse"
    (repo / "group_bys" / "shop").mkdir(parents=True)
    (repo / "group_bys" / "shop" / "clicks.py").write_text(textwrap.dedent(CLICKS))
    start = end_of_day_millis(DAY_1) - 86_400_000
    clicks = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "amount": [1, 2, 5], "ts": [start + 1000, start + 2000, start + 3000]}
    ).assign(ds=DAY_1)
    write_partitioned(clicks, str(warehouse), "data.clicks", partitions=[DAY_1, DAY_2])
    monkeypatch.chdir(repo)
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("FEATURE_ASSETS_SPARK_LOG", str(tmp_path / "spark.log"))  # the commands set it: restored after
    for name in ("FEATURE_ASSETS_MONGO_URI", "FEATURE_ASSETS_MONGO_DATABASE", "FEATURE_ASSETS_START_DATE"):
        monkeypatch.delenv(name, raising=False)
    with local_services(tmp_path / "services", mongo=True, kafka=False):
        assert main(["compile"]) == 0
        assert main(["backfill", "--conf", CLICKS_CONF, "--start-ds", DAY_1, "--end-ds", DAY_2]) == 0
        capsys.readouterr()
        yield main


def cli(main, capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fetch_a(main, capsys) -> dict:
    """User a's features for a request at DAY_3 00:00 (SNAPSHOT: the batch of DAY_2, else the latest before)."""
    code, out, err = cli(
        main, capsys, "fetch", "--type", "group-by", "--name", "shop/clicks.v1", "-k", '{"user_id":"a"}',
        "--at-millis", str(end_of_day_millis(DAY_2)),
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)["values"]


def test_empty_uploads_and_loads_are_refused_and_a_rollback_restores_serving(clicks_repo, capsys):
    main = clicks_repo
    code, _, err = cli(main, capsys, "upload", "--conf", CLICKS_CONF, "--ds", DAY_2)
    assert code == 1 and "hold no row with every key set" in err and "--allow-empty" in err
    code, _, err = cli(main, capsys, "load", "--conf", CLICKS_CONF, "--ds", DAY_1)
    assert code == 1 and "'default.shop_clicks_v1_upload' has no partition for 2024-01-01" in err

    assert cli(main, capsys, "upload", "--conf", CLICKS_CONF, "--ds", DAY_1)[0] == 0
    code, out, err = cli(main, capsys, "load", "--conf", CLICKS_CONF, "--ds", DAY_1)
    assert code == 0 and f"[{DAY_1}] rows=2: loaded version" in out, err
    served = fetch_a(main, capsys)
    assert (served["amount_count_1d"], served["amount_sum_1d"]) == (2, 3)

    code, out, _ = cli(main, capsys, "upload", "--conf", CLICKS_CONF, "--ds", DAY_2, "--allow-empty")
    assert code == 0 and f"[{DAY_2}] rows=0" in out
    code, _, err = cli(main, capsys, "load", "--conf", CLICKS_CONF, "--ds", DAY_2)
    assert code == 1 and "the upload has 0 rows; loading it would replace the batch of 2024-01-01 (2 rows)" in err
    assert fetch_a(main, capsys) == served  # nothing changed

    code, out, err = cli(main, capsys, "load", "--conf", CLICKS_CONF, "--ds", DAY_2, "--allow-empty")
    assert code == 0 and f"[{DAY_2}] rows=0: loaded version" in out, err
    emptied = fetch_a(main, capsys)
    assert (emptied["amount_count_1d"], emptied["amount_sum_1d"]) == (0, None)

    code, out, err = cli(main, capsys, "rollback", "--conf", CLICKS_CONF, "--ds", DAY_1)
    assert code == 0, err
    assert f"fetches after {DAY_1} now read the batch of {DAY_1}" in out and f"held back {DAY_2}" in out
    assert fetch_a(main, capsys) == served
    code, out, _ = cli(main, capsys, "rollback", "--conf", CLICKS_CONF, "--ds", DAY_2)  # and forward again
    assert code == 0 and f"restored {DAY_2}" in out and fetch_a(main, capsys) == emptied
    code, _, err = cli(main, capsys, "rollback", "--conf", CLICKS_CONF, "--ds", "2023-12-31")
    assert code == 1 and "no batch of 2023-12-31 is retained" in err
