"""The offline commands as a user runs them (subprocesses of the real CLI on a small feature repo, a temporary
warehouse and a temporary Dagster home): a backfill's output is the project's own lines with each partition's
row count, a backfill without its inputs is refused before any run, a failed backfill is a short summary, and
every bad argument is one line with exit code 2.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from support.cli import run_cli
from support.repo import write_repo

from feature_assets.dev.datagen.parquet_tables import write_partitioned

FIRST_DS, LAST_DS = "2024-01-01", "2024-01-08"
START, END = "2024-01-05", "2024-01-07"
JOIN_CONF = "production/joins/shop/training.v1"
JOIN_ASSET = "default/shop_training_v1"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

CONFIGS = {
    "group_bys/shop/clicks.py": """
        from feature_assets.api import Accuracy, Aggregation, EventSource, GroupBy, Operation, Query, select
        v1 = GroupBy(sources=[EventSource(table="data.clicks",
                                          query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                     keys=["user_id"], accuracy=Accuracy.TEMPORAL,
                     aggregations=[Aggregation(input_column="amount", operation=Operation.SUM)])
    """,
    "joins/shop/training.py": """
        from feature_assets.api import EventSource, Join, JoinPart, Query, select
        from group_bys.shop.clicks import v1 as clicks
        v1 = Join(left=EventSource(table="data.clicks",
                                   query=Query(selects=select("click_id", "user_id"), time_column="ts")),
                  right_parts=[JoinPart(group_by=clicks)], row_ids=["click_id"])
    """,
}


def clicks() -> pd.DataFrame:
    """Day i of the data has i + 1 clicks, so every day has its own row count."""
    rows = []
    for i, ds in enumerate(pd.date_range(FIRST_DS, LAST_DS, freq="D").strftime("%Y-%m-%d")):
        day = int(datetime.fromisoformat(ds).replace(tzinfo=UTC).timestamp() * 1000)
        for n in range(i + 1):
            user = "ab"[n % 2]
            rows.append({"click_id": f"{ds}-{n}", "user_id": user, "amount": n, "ts": day + n * 60_000, "ds": ds})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The compiled feature repo (read-only for the tests: each has its own warehouse and Dagster home)."""
    root = tmp_path_factory.mktemp("repo")
    write_repo(root, CONFIGS)
    compiled = run_cli(["compile"], root, user_env(root))
    assert compiled.returncode == 0, compiled.stderr
    return root


def user_env(root: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEATURE_ASSETS_")}
    env.update(FEATURE_ASSETS_WAREHOUSE=str(root / "warehouse"), DAGSTER_HOME=str(root / "dagster_home"))
    return env


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A user's environment: a warehouse holding data.clicks for every day, a new Dagster home."""
    write_partitioned(clicks(), str(tmp_path / "warehouse"), "data.clicks")
    return user_env(tmp_path)


def backfill(repo: Path, env: dict[str, str], start: str = START, end: str = END) -> subprocess.CompletedProcess:
    return run_cli(["backfill", "--conf", JOIN_CONF, "--start-ds", start, "--end-ds", end], repo, env)


def runs_recorded(dagster_home: str) -> list:
    if not Path(dagster_home, "dagster.yaml").exists():
        return []
    with DagsterInstance.from_config(dagster_home) as instance:
        return list(instance.get_runs())


@pytest.mark.spark
def test_backfill_prints_each_partitions_own_row_count_and_nothing_else(repo, env):
    result = backfill(repo, env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # No Dagster telemetry banner on a new Dagster home, no Spark start-up lines: only the command's own.
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("materialized ") for line in lines), lines

    per_day = clicks().groupby("ds").size()
    for ds in ("2024-01-05", "2024-01-06", "2024-01-07"):
        assert f"materialized data/clicks [{ds}] rows={per_day[ds]}" in lines
        assert f"materialized {JOIN_ASSET} [{ds}] rows={per_day[ds]}" in lines  # one row per left row

    # The UI's "Row count" of each partition is that partition's own, and the range total has its own name.
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.fetch_materializations(AssetKey(JOIN_ASSET.split("/")), limit=10).records
        metadata = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    assert sorted(metadata) == ["2024-01-05", "2024-01-06", "2024-01-07"]
    for ds, values in metadata.items():
        assert values["dagster/row_count"].value == per_day[ds]
        assert values["range_rows"].value == per_day[START:END].sum()


def test_backfill_without_its_inputs_is_refused_before_any_run(repo, env):
    result = backfill(repo, env, start="2024-01-07", end="2024-01-10")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    clicks_folder = Path(env["FEATURE_ASSETS_WAREHOUSE"]) / "data" / "clicks"
    assert lines == [
        "feature-assets backfill: source table 'data.clicks' has no partition for 2 day(s): 2024-01-09, 2024-01-10 "
        f"(looked in {clicks_folder}); generate or load them, or pick days that exist",
        "feature-assets backfill: nothing was run (no Dagster run was started)",
    ]
    assert runs_recorded(env["DAGSTER_HOME"]) == []


@pytest.mark.spark
def test_failed_backfill_is_a_short_summary_with_the_cause_and_the_run(repo, env):
    # A partition that exists (the input check passes) but cannot be read: the run fails in the source asset.
    corrupt_day = Path(env["FEATURE_ASSETS_WAREHOUSE"]) / "data" / "clicks" / "ds=2024-01-06"
    for data_file in corrupt_day.glob("*.parquet"):
        data_file.write_bytes(b"not parquet")

    result = backfill(repo, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert len(output.splitlines()) <= 15, output
    assert "CheckError" not in output and "Traceback" not in output
    assert "data/clicks [2024-01-05..2024-01-07]" in result.stderr
    assert "ds=2024-01-06" in result.stderr and "is not a Parquet file" in result.stderr
    assert f"not run: {JOIN_ASSET}" in result.stderr
    assert "what to do:" in result.stderr

    (run,) = runs_recorded(env["DAGSTER_HOME"])
    assert run.status == DagsterRunStatus.FAILURE
    assert RUN_ID.search(result.stderr).group() == run.run_id
    log_file = Path(env["DAGSTER_HOME"]) / "logs" / f"{run.run_id}.log"
    assert f"full trace in {log_file}" in result.stderr
    log = log_file.read_text()
    assert "STEP_FAILURE" in log and "Py4JJavaError" in log  # the whole trace is there
    assert "Using incubator modules" in log  # and Spark's own output, kept off the terminal


def bad_arguments(warehouse: str) -> list[tuple[list[str], str]]:
    return [
        (["backfill", "--conf", JOIN_CONF, "--start-ds", END, "--end-ds", START], f"--end-ds {START} is before"),
        (["backfill", "--conf", JOIN_CONF, "--start-ds", "2024/01/05", "--end-ds", END], "'2024/01/05' is not a day"),
        (["backfill", "--conf", "production/joins/shop/nope.v1", "--start-ds", START, "--end-ds", END], "no such"),
        (["backfill", "--conf", "joins/shop/training.py", "--start-ds", START, "--end-ds", END], "run `feature-assets"),
        (["backfill", "--conf", JOIN_CONF, "--start-ds", START, "--end-ds", "2999-01-01"], "last daily partition"),
        (["show", "--table", "data.nope", "--ds", START], f"no table 'data.nope' in the warehouse {warehouse}"),
        (["show", "--table", "data.clicks", "--ds", "2024-02-01"], "(it has 8 day(s): 2024-01-01..2024-01-08)"),
        (["show", "--table", "data.clicks", "--ds", "01-02-2024"], "'01-02-2024' is not a day"),
        (["generate-data", "--start-ds", "2024-01-02", "--end-ds", "2024-01-01"], "--end-ds 2024-01-01 is before"),
    ]


def test_every_bad_argument_is_one_line_and_exit_code_2(repo, env):
    for arguments, expected in bad_arguments(env["FEATURE_ASSETS_WAREHOUSE"]):
        result = run_cli(arguments, repo, env)
        assert result.returncode == 2, (arguments, result.stdout + result.stderr)
        assert result.stdout == "", arguments
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"feature-assets {arguments[0]}: ") and expected in line, (arguments, line)
    assert runs_recorded(env["DAGSTER_HOME"]) == []
