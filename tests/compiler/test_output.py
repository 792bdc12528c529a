"""Compiler output: deterministic JSON, the committed quickstart files, names, accuracy, column names,
table names resolved while a config module executes, Chronon keyword variants, whole-repo compiles.

Pure Python: no Spark.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from support.paths import QUICKSTART

from feature_assets.compiler import compile_configs, compiled_path, load_compiled, to_json, write_compiled
from feature_assets.model import GroupBy, Join

TRAINING_SET = "joins/quickstart/training_set.py"
SCHEMA = "group_bys/quickstart/schema.py"  # the fetch log's schema table
EXPECTED_FILES = [
    "production/group_bys/quickstart/purchases.v1",
    "production/group_bys/quickstart/returns.v1",
    "production/group_bys/quickstart/schema.v1",
    "production/group_bys/quickstart/users.v1",
    "production/joins/quickstart/training_set.v1",
    "production/joins/quickstart/training_set.v2",
]


def copy_quickstart(destination: Path) -> Path:
    shutil.copytree(QUICKSTART, destination, ignore=shutil.ignore_patterns("production", "__pycache__"))
    return destination


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "production").rglob("*")) if p.is_file()}


def write(repo: Path, relative: str, text: str) -> Path:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart compiled into a fresh copy: (repo, compilation, written paths)."""
    repo = copy_quickstart(tmp_path_factory.mktemp("quickstart") / "repo")
    compilation = compile_configs(repo, TRAINING_SET)
    written = write_compiled(compilation) + write_compiled(compile_configs(repo, SCHEMA))
    return repo, compilation, written


# --- the quickstart ----------------------------------------------------------------------------


def test_quickstart_writes_exactly_the_expected_files(quickstart):
    repo, _, written = quickstart
    assert sorted(str(p.relative_to(repo)) for p in written) == EXPECTED_FILES
    assert sorted(files_under(repo)) == EXPECTED_FILES


def test_quickstart_compile_is_deterministic(quickstart, tmp_path):
    repo, _, _ = quickstart
    first = files_under(repo)
    # Again into the same copy (unchanged online configs need no --force) ...
    write_compiled(compile_configs(repo, TRAINING_SET))
    assert files_under(repo) == first
    # ... and into a second, fresh copy.
    other = copy_quickstart(tmp_path / "repo")
    write_compiled(compile_configs(other, TRAINING_SET))
    write_compiled(compile_configs(other, SCHEMA))
    assert files_under(other) == first


def test_committed_quickstart_files_are_up_to_date(quickstart):
    repo, _, _ = quickstart
    committed = files_under(QUICKSTART)
    assert sorted(committed) == EXPECTED_FILES, "stale or missing files under quickstart/production"
    for relative, content in files_under(repo).items():
        assert committed[relative] == content, f"{relative} is out of date: recompile the quickstart"


def test_quickstart_names_follow_file_place(quickstart):
    _, compilation, _ = quickstart
    assert sorted(compilation.compiled) == [
        ("group_bys", "quickstart.purchases.v1"),
        ("group_bys", "quickstart.returns.v1"),
        ("group_bys", "quickstart.users.v1"),
        ("joins", "quickstart.training_set.v1"),
        ("joins", "quickstart.training_set.v2"),
    ]
    purchases = compilation.compiled["group_bys", "quickstart.purchases.v1"]["metaData"]
    assert purchases["name"] == "quickstart.purchases.v1"
    assert purchases["team"] == "quickstart"
    assert purchases["sourceFile"] == "group_bys/quickstart/purchases.py"
    assert compilation.compiled["joins", "quickstart.training_set.v2"]["metaData"]["sourceFile"] == TRAINING_SET
    # the group-by imported as `purchases_v1` (and `users`) keeps the name of its defining file and variable
    join = compilation.compiled["joins", "quickstart.training_set.v1"]
    assert [p["groupBy"]["metaData"]["name"] for p in join["joinParts"]] == [
        "quickstart.purchases.v1",
        "quickstart.returns.v1",
        "quickstart.users.v1",
    ]
    assert compiled_path(Path("/r"), "joins", "quickstart.training_set.v1") == Path(
        "/r/production/joins/quickstart/training_set.v1"
    )


def test_quickstart_accuracy_defaults(quickstart):
    _, compilation, _ = quickstart
    accuracy = {name: c["accuracy"] for (kind, name), c in compilation.compiled.items() if kind == "group_bys"}
    assert accuracy == {
        "quickstart.returns.v1": "TEMPORAL",  # has a topic
        "quickstart.purchases.v1": "SNAPSHOT",  # batch only
        "quickstart.users.v1": "SNAPSHOT",
    }


def test_quickstart_output_column_names(quickstart):
    _, compilation, _ = quickstart
    purchases = compilation.compiled["group_bys", "quickstart.purchases.v1"]
    assert GroupBy.from_json(purchases).output_columns == [
        f"purchase_price_{op}_{window}" for op in ("sum", "count", "average") for window in ("3d", "14d", "30d")
    ] + ["purchase_price_last10"]
    assert GroupBy.from_json(compilation.compiled["group_bys", "quickstart.returns.v1"]).output_columns[-1] == (
        "refund_amt_last2"
    )
    assert GroupBy.from_json(compilation.compiled["group_bys", "quickstart.users.v1"]).output_columns == [
        "account_created_ds",
        "email_verified",
    ]

    join = compilation.compiled["joins", "quickstart.training_set.v1"]
    columns = [part.columns for part in Join.from_json(join).join_parts]
    assert columns[0][0] == "quickstart_purchases_v1_purchase_price_sum_3d"
    assert "quickstart_purchases_v1_purchase_price_average_30d" in columns[0]
    assert columns[0][-1] == "quickstart_purchases_v1_purchase_price_last10"
    assert columns[1][0] == "quickstart_returns_v1_refund_amt_sum_3d"
    assert columns[2] == ["quickstart_users_v1_account_created_ds", "quickstart_users_v1_email_verified"]


def test_quickstart_compiled_json_is_key_sorted(quickstart):
    repo, compilation, _ = quickstart
    for (kind, name), compiled in compilation.compiled.items():
        text = compiled_path(repo, kind, name).read_text()
        assert text == to_json(compiled)
        assert text.endswith("}\n")


# --- a small repo of our own -------------------------------------------------------------------

GROUP_BY = """
from feature_assets.api import (Aggregation, EntitySource, EventSource, GroupBy, Operation, Query, TimeUnit,
                                Window, get_group_by_output_table_name, select)

source = EventSource(table="data.purchases", query=Query(selects=select("user_id", "price"), time_column="ts"))

v1 = GroupBy(sources=[source], keys=["user_id"], online=True, aggregations=[
    Aggregation(input_column="price", operation=Operation.SUM, windows=[Window(3, TimeUnit.DAYS)]),
])
V1_TABLE = get_group_by_output_table_name(v1, full_name=True)
assert V1_TABLE == "default.team_x_v1", V1_TABLE
"""

SEED_JOIN = """
from feature_assets.api import (BootstrapPart, EventSource, Join, JoinPart, Query, get_join_output_table_name,
                                select)
from group_bys.team.x import v1 as x_v1

left = EventSource(table="data.checkouts", query=Query(selects=select("user_id", "request_id"), time_column="ts"))

v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"])
other = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"], output_namespace="features")

# Resolved while this module is still executing: v1 and other are bound, the module is not yet imported.
SEED_TABLE = get_join_output_table_name(v1, full_name=True)
OTHER_TABLE = get_join_output_table_name(other, full_name=True)
SHORT_NAME = get_join_output_table_name(v1)
assert (SEED_TABLE, OTHER_TABLE, SHORT_NAME) == ("default.team_y_v1", "features.team_y_other", "team_y_v1"), (
    SEED_TABLE, OTHER_TABLE, SHORT_NAME)

v2 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"],
          bootstrap_parts=[BootstrapPart(table=SEED_TABLE), BootstrapPart(table=OTHER_TABLE)])
"""


def test_join_output_table_name_while_module_executes(tmp_path):
    write(tmp_path, "group_bys/team/x.py", GROUP_BY)
    write(tmp_path, "joins/team/y.py", SEED_JOIN)
    compilation = compile_configs(tmp_path, "joins/team/y.py")
    assert sorted(compilation.compiled) == [
        ("group_bys", "team.x.v1"),
        ("joins", "team.y.other"),
        ("joins", "team.y.v1"),
        ("joins", "team.y.v2"),
    ]
    v2 = compilation.compiled["joins", "team.y.v2"]
    assert [(p["table"], p["keyColumns"]) for p in v2["bootstrapParts"]] == [
        ("default.team_y_v1", ["request_id"]),
        ("features.team_y_other", ["request_id"]),
    ]
    assert compilation.compiled["joins", "team.y.other"]["metaData"]["outputNamespace"] == "features"


SNAKE = {
    "group_bys/team/x.py": """
        from feature_assets.api import *

        source = EventSource(table="data.purchases", topic="events.purchases", is_cumulative=False,
                             query=Query(selects=select("user_id", "price"), time_column="ts",
                                         start_partition="2023-11-01", mutation_time_column=None))
        v1 = GroupBy(sources=[source], keys=["user_id"], online=True, aggregations=[
            Aggregation(input_column="price", operation=Operation.SUM,
                        windows=[Window(length=3, time_unit=TimeUnit.DAYS), Window(length=6, time_unit=TimeUnit.HOURS)]),
            Aggregation(input_column="price", operation=Operation.LAST_K(3)),
        ])
        users = GroupBy(sources=[EntitySource(snapshot_table="data.users",
                                              query=Query(selects=select("user_id", "age")))],
                        keys=["user_id"], online=True)
    """,
    "joins/team/y.py": """
        from feature_assets.api import *
        from group_bys.team.x import users, v1 as x_v1

        left = EventSource(table="data.checkouts",
                           query=Query(selects=select("customer_id", "request_id"), time_column="ts"))
        v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1, key_mapping={"customer_id": "user_id"}),
                                          JoinPart(group_by=users, key_mapping={"customer_id": "user_id"})],
                  row_ids=["request_id"], online=True)
    """,
}

CHRONON = {
    "group_bys/team/x.py": """
        from feature_assets.api import *

        source = Source(events=EventSource(table="data.purchases", topic="events.purchases", isCumulative=False,
                                           query=Query(selects=select("user_id", "price"), timeColumn="ts",
                                                       startPartition="2023-11-01")))
        v1 = GroupBy(sources=source, keys=["user_id"], online=True, aggregations=[
            Aggregation(inputColumn="price", operation=Operation.SUM,
                        windows=[Window(3, TimeUnit.DAYS), Window(6, timeUnit=TimeUnit.HOURS)]),
            Aggregation(inputColumn="price", operation=Operation.LAST_K(3)),
        ])
        users = GroupBy(sources=[Source(entities=EntitySource(snapshotTable="data.users",
                                                              query=Query(selects=select("user_id", "age"))))],
                        keys=["user_id"], online=True)
    """,
    "joins/team/y.py": """
        from feature_assets.api import *
        from group_bys.team.x import users, v1 as x_v1

        left = Source(events=EventSource(table="data.checkouts",
                                         query=Query(selects=select("customer_id", "request_id"), timeColumn="ts")))
        v1 = Join(left=left, right_parts=[JoinPart(groupBy=x_v1, keyMapping={"customer_id": "user_id"}),
                                          JoinPart(groupBy=users, keyMapping={"customer_id": "user_id"})],
                  row_ids=["request_id"], online=True)
    """,
}


def test_chronon_keyword_variants_compile_to_the_same_json(tmp_path):
    outputs = []
    for flavour, files in (("snake", SNAKE), ("chronon", CHRONON)):
        repo = tmp_path / flavour
        for relative, text in files.items():
            write(repo, relative, text)
        compilation = compile_configs(repo, "joins/team/y.py")
        outputs.append({key: to_json(compiled) for key, compiled in compilation.compiled.items()})
    snake, chronon = outputs
    assert sorted(snake) == [("group_bys", "team.x.users"), ("group_bys", "team.x.v1"), ("joins", "team.y.v1")]
    assert chronon == snake
    assert '"timeColumn": "ts"' in snake["group_bys", "team.x.v1"]
    assert '"timeUnit": "HOURS"' in snake["group_bys", "team.x.v1"]


WHOLE_REPO = {
    "group_bys/team/x.py": GROUP_BY,
    "group_bys/team/unused.py": """
        from feature_assets.api import EntitySource, GroupBy, Query, select

        v1 = GroupBy(sources=[EntitySource(snapshot_table="data.users", query=Query(selects=select("user_id", "age")))],
                     keys=["user_id"])
    """,
    "joins/team/y.py": SEED_JOIN,
    "staging_queries/team/z.py": """
        from feature_assets.api import StagingQuery

        v1 = StagingQuery(
            query="SELECT * FROM data.purchases WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'",
            start_partition="2023-11-01",
        )
    """,
}


def test_compile_without_conf_compiles_every_file(tmp_path):
    for relative, text in WHOLE_REPO.items():
        write(tmp_path, relative, text)
    one_file = compile_configs(tmp_path, "joins/team/y.py")
    assert ("group_bys", "team.unused.v1") not in one_file.compiled
    assert ("staging_queries", "team.z.v1") not in one_file.compiled

    compilation = compile_configs(tmp_path)
    assert sorted(compilation.compiled) == [
        ("group_bys", "team.unused.v1"),
        ("group_bys", "team.x.v1"),
        ("joins", "team.y.other"),
        ("joins", "team.y.v1"),
        ("joins", "team.y.v2"),
        ("staging_queries", "team.z.v1"),
    ]
    written = write_compiled(compilation)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == [
        "production/group_bys/team/unused.v1",
        "production/group_bys/team/x.v1",
        "production/joins/team/y.other",
        "production/joins/team/y.v1",
        "production/joins/team/y.v2",
        "production/staging_queries/team/z.v1",
    ]
    assert compilation.compiled["staging_queries", "team.z.v1"]["startPartition"] == "2023-11-01"

    loaded = load_compiled(tmp_path)
    expected: dict = {"group_bys": {}, "joins": {}, "staging_queries": {}}
    for (kind, name), compiled in compilation.compiled.items():
        expected[kind][name] = compiled
    assert {kind: {name: config.raw for name, config in loaded[kind].items()} for kind in expected} == expected


def test_load_compiled_reads_the_quickstart(quickstart):
    repo, compilation, _ = quickstart
    loaded = load_compiled(repo)
    assert sorted(loaded["group_bys"]) == [
        "quickstart.purchases.v1",
        "quickstart.returns.v1",
        "quickstart.schema.v1",
        "quickstart.users.v1",
    ]
    assert sorted(loaded["joins"]) == ["quickstart.training_set.v1", "quickstart.training_set.v2"]
    assert loaded["staging_queries"] == {}
    assert loaded.joins["quickstart.training_set.v2"].raw == compilation.compiled["joins", "quickstart.training_set.v2"]
    assert {n: j.raw for n, j in load_compiled(QUICKSTART).joins.items()} == {n: j.raw for n, j in loaded.joins.items()}
