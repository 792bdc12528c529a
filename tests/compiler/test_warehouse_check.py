"""Compile against the warehouse: configs must match the source tables that exist (column names, key types).

The tables are real parquet datasets in the warehouse layout, written with pyarrow; no Spark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.paths import PROJECT_ROOT, QUICKSTART
from support.repo import write_repo

from feature_assets.compiler import CompileError, compile_configs, default_warehouse
from feature_assets.compiler.warehouse_check import WarehouseSchemas
from feature_assets.dev.datagen.quickstart import generate_quickstart_data

PURCHASES = {"ts": pa.int64(), "user_id": pa.string(), "product_id": pa.string(), "purchase_price": pa.int64()}
CHECKOUTS = {"ts": pa.int64(), "request_id": pa.string(), "user_id": pa.string()}
FILE = "group_bys/team/x.py"

GROUP_BY = """
from feature_assets.api import *
source = EventSource(table="data.purchases", query=Query(selects={selects}, time_column={time_column!r},
                                                         wheres={wheres!r}))
v1 = GroupBy(sources=[source], keys=["user_id"],
             aggregations=[Aggregation(input_column={input_column!r}, operation=Operation.SUM,
                                       windows=[Window(3, TimeUnit.DAYS)], buckets={buckets!r})])
"""

JOIN = """
from feature_assets.api import *
from group_bys.team.x import v1 as purchases
left = EventSource(table="data.checkouts", query=Query(selects={selects}, time_column="ts"))
v1 = Join(left=left, right_parts=[JoinPart(group_by=purchases)], row_ids=["request_id"])
"""


def write_table(root: Path, table: str, types: dict[str, pa.DataType], days=("2023-11-01", "2023-11-02")) -> None:
    """A table of one row per day, as the warehouse stores it: `ds` only in the folder names."""
    schema = pa.schema(list(types.items()))
    for ds in days:
        folder = root.joinpath(*table.split(".")) / f"ds={ds}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([], schema=schema), folder / "part-00000.parquet")
    (root.joinpath(*table.split(".")) / "_SUCCESS").touch()


def group_by_repo(repo: Path, selects='select("user_id", "purchase_price")', **fields) -> None:
    values = {"time_column": "ts", "wheres": [], "input_column": "purchase_price", "buckets": None, **fields}
    write_repo(repo, {FILE: GROUP_BY.format(selects=selects, **values)})


@pytest.fixture
def warehouse(tmp_path) -> Path:
    root = tmp_path / "warehouse"
    write_table(root, "data.purchases", PURCHASES)
    write_table(root, "data.checkouts", CHECKOUTS)
    return root


def compile_error(repo: Path, warehouse: Path, conf: str = FILE) -> CompileError:
    with pytest.raises(CompileError) as info:
        compile_configs(repo, conf, warehouse)
    return info.value


def assert_error(error: CompileError, obj: str, field: str, *words: str) -> None:
    file = "joins/team/j.py" if obj.startswith("team.j") else FILE
    assert (error.file, error.obj, error.field) == (file, obj, field), str(error)
    for word in words:
        assert word in error.message, error.message


def test_a_misspelled_select_fails_naming_the_table_and_its_columns(tmp_path, warehouse):
    group_by_repo(tmp_path / "repo", selects='select("user_id", "purchase_prise")', input_column="purchase_prise")
    error = compile_error(tmp_path / "repo", warehouse)
    assert_error(
        error,
        "team.x.v1",
        "sources[0].query.selects.purchase_prise",
        "'purchase_prise'",
        "data.purchases",
        "did you mean 'purchase_price'?",
        "ts, user_id, product_id, purchase_price, ds",
        str(warehouse / "data" / "purchases"),
    )


def test_expressions_are_checked_by_the_columns_they_reference(tmp_path, warehouse):
    repo = tmp_path / "repo"
    good = 'select("user_id", purchase_price="CAST(Purchase_Price AS DOUBLE) * 2 + length(ds)")'  # any case, as Spark
    group_by_repo(repo, selects=good, wheres=["purchase_price > 0 AND ds >= '2023-11-01'", "ts < unix_timestamp()"])
    compile_configs(repo, FILE, warehouse)
    group_by_repo(repo, selects='select("user_id", purchase_price="CAST(price AS DOUBLE)")')
    assert_error(compile_error(repo, warehouse), "team.x.v1", "sources[0].query.selects.purchase_price", "'price'")


def test_time_column_and_wheres_must_name_existing_columns(tmp_path, warehouse):
    repo = tmp_path / "repo"
    group_by_repo(repo, time_column="event_ts")
    assert_error(compile_error(repo, warehouse), "team.x.v1", "sources[0].query.time_column", "'event_ts'")
    group_by_repo(repo, wheres=["ts > 0", "country = 'NL'"])
    assert_error(compile_error(repo, warehouse), "team.x.v1", "sources[0].query.wheres[1]", "'country'")


@pytest.mark.parametrize(
    ("fields", "field", "column"),
    [
        ({"input_column": "price"}, "aggregations[0].input_column", "price"),
        ({"buckets": ["shop_id"]}, "aggregations[0].buckets", "shop_id"),
    ],
)
def test_without_selects_keys_inputs_and_buckets_must_be_table_columns(tmp_path, warehouse, fields, field, column):
    repo = tmp_path / "repo"
    group_by_repo(repo, selects=None)
    compile_configs(repo, FILE, warehouse)
    group_by_repo(repo, selects=None, **fields)
    assert_error(compile_error(repo, warehouse), "team.x.v1", field, repr(column))


def test_join_left_columns_and_row_ids(tmp_path, warehouse):
    repo = tmp_path / "repo"
    group_by_repo(repo)
    write_repo(repo, {"joins/team/j.py": JOIN.format(selects='select("user_id", "request_id")')})
    compile_configs(repo, None, warehouse)
    write_repo(repo, {"joins/team/j.py": JOIN.format(selects='select("user_id", request_id="checkout_id")')})
    error = compile_error(repo, warehouse, "joins/team/j.py")
    assert_error(error, "team.j.v1", "left.query.selects.request_id", "'checkout_id'", "data.checkouts")
    shutil.rmtree(warehouse / "data" / "checkouts")
    write_table(warehouse, "data.checkouts", {"ts": pa.int64(), "user_id": pa.string()})
    write_repo(repo, {"joins/team/j.py": JOIN.format(selects=None)})
    error = compile_error(repo, warehouse, "joins/team/j.py")
    assert_error(error, "team.j.v1", "row_ids[0]", "'request_id'")


def test_join_keys_of_different_types_fail(tmp_path, warehouse):
    repo = tmp_path / "repo"
    group_by_repo(repo)
    write_repo(repo, {"joins/team/j.py": JOIN.format(selects='select("user_id", "request_id")')})
    shutil.rmtree(warehouse / "data" / "checkouts")
    write_table(warehouse, "data.checkouts", {**CHECKOUTS, "user_id": pa.int64()})
    error = compile_error(repo, warehouse, "joins/team/j.py")
    assert_error(
        error,
        "team.j.v1",
        "right_parts[0].key_mapping",
        "'user_id' is int64 in data.checkouts",
        "string in data.purchases",
        "team.x.v1",
        "CAST(user_id AS STRING)",
    )
    # A cast in the left's selects makes the type unknown to compile: no false alarm.
    cast = 'select(request_id="request_id", user_id="CAST(user_id AS STRING)")'
    write_repo(repo, {"joins/team/j.py": JOIN.format(selects=cast)})
    compile_configs(repo, "joins/team/j.py", warehouse)


def test_bootstrap_tables_must_hold_their_keys(tmp_path, warehouse):
    repo = tmp_path / "repo"
    group_by_repo(repo)
    join = JOIN.format(selects='select("user_id", "request_id")').replace(
        'row_ids=["request_id"])', 'row_ids=["request_id"], bootstrap_parts=[BootstrapPart(table="boot.rows")])'
    )
    write_repo(repo, {"joins/team/j.py": join})
    compile_configs(repo, None, warehouse)  # boot.rows not written yet: nothing to check
    write_table(warehouse, "boot.rows", {"checkout_id": pa.string(), "team_x_v1_purchase_price_sum_3d": pa.int64()})
    error = compile_error(repo, warehouse, "joins/team/j.py")
    assert_error(error, "team.j.v1", "bootstrap_parts[0].key_columns", "'request_id'", "boot.rows")


def test_entity_mutations_are_checked_against_the_mutation_table(tmp_path, warehouse):
    repo = tmp_path / "repo"
    write_table(warehouse, "data.users", {"user_id": pa.string(), "balance": pa.int64()})
    write_table(
        warehouse, "data.users_mutations", {"user_id": pa.string(), "balance": pa.int64(), "mutation_ts": pa.int64()}
    )
    write_repo(
        repo,
        {
            "group_bys/team/u.py": """
from feature_assets.api import *
v1 = GroupBy(sources=[EntitySource(snapshot_table="data.users", mutation_table="data.users_mutations",
                                   query=Query(selects=select("user_id", "balance")))],
             keys=["user_id"], accuracy=Accuracy.TEMPORAL,
             aggregations=[Aggregation(input_column="balance", operation=Operation.SUM)])
"""
        },
    )
    error = compile_error(repo, warehouse, "group_bys/team/u.py")
    assert (error.file, error.obj, error.field) == (
        "group_bys/team/u.py",
        "team.u.v1",
        "sources[0].query.reversal_column",
    )
    assert "'is_before'" in error.message and "data.users_mutations" in error.message


def test_no_warehouse_or_absent_tables_are_not_checked(tmp_path, warehouse):
    repo = tmp_path / "repo"
    group_by_repo(repo, selects='select("user_id", "purchase_prise")', input_column="purchase_prise")
    compile_configs(repo, FILE)  # no warehouse given
    compile_configs(repo, FILE, tmp_path / "no_warehouse_here")
    compile_configs(repo, FILE, "s3a://bucket/warehouse")  # remote: left to the backfill's checks
    shutil.rmtree(warehouse / "data" / "purchases")
    compile_configs(repo, FILE, warehouse)


def test_the_newest_partition_gives_the_schema(tmp_path):
    root = tmp_path / "warehouse"
    write_table(root, "data.t", {"a": pa.string()}, days=("2023-11-01",))
    write_table(root, "data.t", {"a": pa.string(), "b": pa.large_string()}, days=("2023-11-02",))
    assert WarehouseSchemas(root).columns("data.t") == {"a": pa.string(), "b": pa.string(), "ds": pa.string()}
    assert WarehouseSchemas(root).columns("data.absent") is None


def test_the_quickstart_configs_match_the_quickstart_tables(tmp_path):
    repo = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, repo, ignore=shutil.ignore_patterns("production"))
    generate_quickstart_data(str(tmp_path / "warehouse"), "2023-11-01", "2023-11-01")
    compilation = compile_configs(repo, None, tmp_path / "warehouse")
    assert {name for _, name in compilation.compiled} >= {"quickstart.training_set.v2", "quickstart.purchases.v1"}


def run_compile(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "FEATURE_ASSETS_WAREHOUSE"} | env
    environment["PYTHONPATH"] = str(PROJECT_ROOT)
    command = [sys.executable, "-m", "feature_assets.cli", "compile", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)


def test_cli_compile_checks_the_default_warehouse_or_the_given_one(tmp_path):
    repo = tmp_path / "repo"
    group_by_repo(repo, selects='select("user_id", "purchase_prise")', input_column="purchase_prise")
    write_table(repo / "data" / "warehouse", "data.purchases", PURCHASES)  # ./data/warehouse of the repo folder
    result = run_compile([], repo)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"compile error: {FILE}: team.x.v1: sources[0].query.selects.purchase_prise:")
    elsewhere = tmp_path / "elsewhere"
    assert run_compile([], repo, FEATURE_ASSETS_WAREHOUSE=str(elsewhere)).returncode == 0
    given = run_compile(["--repo", str(repo), "--warehouse", str(repo / "data" / "warehouse")], tmp_path)
    assert given.returncode == 2 and "purchase_prise" in given.stderr


def test_default_warehouse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEATURE_ASSETS_WAREHOUSE", raising=False)
    assert default_warehouse() == tmp_path / "data" / "warehouse"
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", "/elsewhere")
    assert default_warehouse() == Path("/elsewhere")
