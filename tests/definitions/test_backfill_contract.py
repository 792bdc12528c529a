"""The backfill contract: on a new feature repo with no settings file, the command alone is enough.

`feature-assets compile`, then `feature-assets backfill --conf ... --start-ds ... --end-ds ...`, each run as
a user would (a subprocess in the repo folder, the warehouse and Dagster home given by their environment
variables, no feature_repo.yaml and no FEATURE_ASSETS_START_DATE): the partitions start at --start-ds and
the join table holds one row per left row of the range, with features over all earlier events.
"""

from __future__ import annotations

import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from support.cli import run_cli

from feature_assets.dev.datagen.parquet_tables import read_table, write_partitioned

pytestmark = pytest.mark.spark

FIRST_DS, START, END = "2024-01-01", "2024-01-05", "2024-01-08"
# (user, hour of the day, amount): every user clicks at these hours each day.
DAILY_CLICKS = [("a", 1, 1), ("a", 13, 10), ("b", 7, 100)]

GROUP_BY = """
    from feature_assets.api import Accuracy, Aggregation, EventSource, GroupBy, Operation, Query, select
    v1 = GroupBy(sources=[EventSource(table="data.clicks",
                                      query=Query(selects=select("user_id", "amount"), time_column="ts"))],
                 keys=["user_id"], accuracy=Accuracy.TEMPORAL,
                 aggregations=[Aggregation(input_column="amount", operation=Operation.COUNT),
                               Aggregation(input_column="amount", operation=Operation.SUM)])
"""
JOIN = """
    from feature_assets.api import EventSource, Join, JoinPart, Query, select
    from group_bys.shop.clicks import v1 as clicks
    v1 = Join(left=EventSource(table="data.clicks",
                               query=Query(selects=select("click_id", "user_id"), time_column="ts")),
              right_parts=[JoinPart(group_by=clicks)], row_ids=["click_id"])
"""


def clicks() -> pd.DataFrame:
    rows = []
    for ds in pd.date_range(FIRST_DS, END, freq="D").strftime("%Y-%m-%d"):
        day = datetime.fromisoformat(ds).replace(tzinfo=UTC)
        for user, hour, amount in DAILY_CLICKS:
            ts = int(day.timestamp() * 1000) + hour * 3_600_000
            rows.append({"click_id": f"{ds}-{user}-{hour}", "user_id": user, "amount": amount, "ts": ts, "ds": ds})
    return pd.DataFrame(rows)


def expected_rows(events: pd.DataFrame) -> pd.DataFrame:
    """Each left row of [START, END] with the count and sum of its user's clicks strictly before it."""
    left = events[(events["ds"] >= START) & (events["ds"] <= END)]
    rows = []
    for row in left.itertuples():
        before = events[(events["user_id"] == row.user_id) & (events["ts"] < row.ts)]
        rows.append(
            {
                "click_id": row.click_id,
                "user_id": row.user_id,
                "ds": row.ds,
                "shop_clicks_v1_amount_count": len(before),
                "shop_clicks_v1_amount_sum": before["amount"].sum(),
            }
        )
    return pd.DataFrame(rows).set_index("click_id").sort_index()


def write_repo(repo: Path) -> None:
    for relative, source in {"group_bys/shop/clicks.py": GROUP_BY, "joins/shop/training.py": JOIN}.items():
        path = repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())


def test_backfill_command_alone_on_a_repo_without_settings(tmp_path):
    repo, warehouse, dagster_home = tmp_path / "repo", tmp_path / "warehouse", tmp_path / "dagster_home"
    write_repo(repo)
    events = clicks()
    write_partitioned(events, str(warehouse), "data.clicks")
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEATURE_ASSETS_")}
    env.update(FEATURE_ASSETS_WAREHOUSE=str(warehouse), DAGSTER_HOME=str(dagster_home))

    compiled = run_cli(["compile"], repo, env)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert not (repo / "feature_repo.yaml").exists()

    backfill = run_cli(
        ["backfill", "--conf", "production/joins/shop/training.v1", "--start-ds", START, "--end-ds", END], repo, env
    )
    assert backfill.returncode == 0, (backfill.stdout + backfill.stderr)[-5000:]
    assert f"materialized default/shop_training_v1 [{START}]" in backfill.stdout
    assert f"materialized default/shop_training_v1 [{END}]" in backfill.stdout

    written = read_table(str(warehouse), "default.shop_training_v1").set_index("click_id").sort_index()
    expected = expected_rows(events)
    assert sorted(written["ds"].unique()) == ["2024-01-05", "2024-01-06", "2024-01-07", "2024-01-08"]
    assert list(written.index) == list(expected.index)
    for column in ("user_id", "ds", "shop_clicks_v1_amount_count", "shop_clicks_v1_amount_sum"):
        assert written[column].tolist() == expected[column].tolist(), column
    assert dagster_home.is_dir()  # the run is recorded where DAGSTER_HOME points
