"""Compile-time validation: one test per rule, each on a tiny feature repo written into tmp_path.

Every error must name the config file (relative to the repo), the object (`team.file.variable`) and
the field at fault. Pure Python: no Spark.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from feature_assets.compiler import CompileError, compile_configs, write_compiled
from feature_assets.model import Join

API = "from feature_assets.api import *\n"

EVENTS = """
source = EventSource(
    table="data.purchases",
    topic={topic!r},
    query=Query(selects=select({selects}), time_column={time_column!r}),
)
"""

LEFT = """
left = EventSource(
    table="data.checkouts",
    query=Query(selects=select({selects}), time_column="ts"),
)
"""


def write(repo: Path, relative: str, text: str) -> Path:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(API + textwrap.dedent(text))
    return path


def group_by_file(
    repo: Path,
    body: str,
    *,
    selects='"user_id", "price"',
    time_column="ts",
    topic=None,
    relative: str = "group_bys/team/x.py",
) -> Path:
    source = EVENTS.format(selects=selects, time_column=time_column, topic=topic)
    return write(repo, relative, source + textwrap.dedent(body))


SUM_3D = 'Aggregation(input_column="price", operation=Operation.SUM, windows=[Window(3, TimeUnit.DAYS)])'


def simple_group_by(online: bool = False, extra: str = "") -> str:
    return f"""
v1 = GroupBy(sources=[source], keys=["user_id"], online={online},
             aggregations=[{SUM_3D}]{extra})
"""


def compile_error(repo: Path, conf: str | None) -> CompileError:
    with pytest.raises(CompileError) as info:
        compile_configs(repo, conf)
    return info.value


def assert_names(error: CompileError, file: str, obj: str | None, field: str | None) -> None:
    assert (error.file, error.obj, error.field) == (file, obj, field), error.message
    assert error.message


# --- group-by source queries ---------------------------------------------------------------------


def test_key_column_not_selected(tmp_path):
    group_by_file(tmp_path, simple_group_by(), selects='"price"')
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].query.selects")
    assert "key column" in error.message and "user_id" in error.message


def test_input_column_not_selected(tmp_path):
    group_by_file(tmp_path, simple_group_by(), selects='"user_id"')
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].query.selects")
    assert "input column" in error.message and "price" in error.message


def test_ts_must_not_be_selected(tmp_path):
    group_by_file(tmp_path, simple_group_by(), selects='"user_id", "price", "ts"')
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].query.selects.ts")


@pytest.mark.parametrize("how", ["explicit", "topic"])
def test_temporal_event_source_needs_time_column(tmp_path, how):
    if how == "explicit":  # accuracy=TEMPORAL set by the user
        group_by_file(tmp_path, simple_group_by(extra=", accuracy=Accuracy.TEMPORAL"), time_column=None)
    else:  # TEMPORAL by default because the source has a topic
        group_by_file(tmp_path, simple_group_by(), time_column=None, topic="events.purchases")
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].query.time_column")
    assert "TEMPORAL" in error.message


def test_hour_window_needs_temporal_accuracy(tmp_path):
    group_by_file(
        tmp_path,
        """
        v1 = GroupBy(sources=[source], keys=["user_id"], accuracy=Accuracy.SNAPSHOT, aggregations=[
            Aggregation(input_column="price", operation=Operation.SUM, windows=[Window(3, TimeUnit.DAYS)]),
            Aggregation(input_column="price", operation=Operation.COUNT, windows=[Window(6, TimeUnit.HOURS)]),
        ])
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "aggregations[1].windows[0]")


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_percentile_outside_unit_interval(tmp_path, bad):
    group_by_file(
        tmp_path,
        f"""
        v1 = GroupBy(sources=[source], keys=["user_id"], aggregations=[
            Aggregation(input_column="price", operation=Operation.APPROX_PERCENTILE([0.5, {bad}])),
        ])
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "aggregations[0].operation.percentiles")


def test_duplicate_output_names(tmp_path):
    group_by_file(
        tmp_path,
        f"""
        v1 = GroupBy(sources=[source], keys=["user_id"], aggregations=[{SUM_3D}, {SUM_3D}])
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "aggregations")
    assert "price_sum_3d" in error.message


def test_group_by_derivation_names_missing_column(tmp_path):
    group_by_file(
        tmp_path,
        simple_group_by(
            extra=', derivations=[Derivation("doubled", "price_sum_3d * 2"), Derivation("bad", "price_sum_7d + 1")]'
        ),
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "derivations[1].expression")
    assert "price_sum_7d" in error.message


def test_unknown_operation(tmp_path):
    group_by_file(
        tmp_path,
        """
        v1 = GroupBy(sources=[source], keys=["user_id"], aggregations=[
            Aggregation(input_column="price", operation="MEDIAN"),
        ])
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "aggregations[0].operation")
    assert "MEDIAN" in error.message


def test_mutation_source_refuses_operations_it_cannot_retract(tmp_path):
    write(
        tmp_path,
        "group_bys/team/x.py",
        """
        v1 = GroupBy(
            sources=[EntitySource(snapshot_table="data.users", mutation_table="data.users_mutations",
                                  query=Query(selects=select("user_id", "score"), mutation_time_column="mutation_ts",
                                              reversal_column="is_before"))],
            keys=["user_id"], accuracy=Accuracy.TEMPORAL,
            aggregations=[Aggregation(input_column="score", operation=Operation.MAX)],
        )
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "aggregations[0].operation")


def test_unsupported_source_object(tmp_path):
    # A source that is neither an EventSource, an EntitySource nor a JoinSource (a bare table name).
    write(
        tmp_path,
        "group_bys/team/x.py",
        """
        v1 = GroupBy(sources=["data.purchases"], keys=["user_id"])
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0]")


def test_unsupported_join_left_object(tmp_path):
    group_by_file(tmp_path, simple_group_by())
    write(
        tmp_path,
        "joins/team/y.py",
        """
        from group_bys.team.x import v1 as x_v1
        v1 = Join(left="data.checkouts", right_parts=[JoinPart(group_by=x_v1)])
    """,
    )
    error = compile_error(tmp_path, "joins/team/y.py")
    assert_names(error, "joins/team/y.py", "team.y.v1", "left")


# --- joins -------------------------------------------------------------------------------------


def join_file(repo: Path, body: str, *, left_selects='"user_id", "request_id"', online_group_by=False) -> Path:
    group_by_file(repo, simple_group_by(online=online_group_by))
    return write(
        repo,
        "joins/team/y.py",
        "from group_bys.team.x import v1 as x_v1\n" + LEFT.format(selects=left_selects) + textwrap.dedent(body),
    )


def test_join_derivation_names_missing_column(tmp_path):
    join_file(
        tmp_path,
        """
        v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"], derivations=[
            Derivation("ok", "team_x_v1_price_sum_3d + 1"),
            Derivation("bad", "team_x_v1_price_sum_30d + 1"),
        ])
    """,
    )
    error = compile_error(tmp_path, "joins/team/y.py")
    assert_names(error, "joins/team/y.py", "team.y.v1", "derivations[1].expression")
    assert "team_x_v1_price_sum_30d" in error.message


def test_online_join_cannot_use_offline_group_by(tmp_path):
    join_file(
        tmp_path,
        """
        v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"], online=True)
    """,
        online_group_by=False,
    )
    error = compile_error(tmp_path, "joins/team/y.py")
    assert_names(error, "joins/team/y.py", "team.y.v1", "right_parts[0].group_by")
    assert "team.x.v1" in error.message


def test_left_source_missing_join_key(tmp_path):
    join_file(
        tmp_path,
        """
        v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"])
    """,
        left_selects='"customer_id", "request_id"',
    )
    error = compile_error(tmp_path, "joins/team/y.py")
    assert_names(error, "joins/team/y.py", "team.y.v1", "right_parts[0].key_mapping")
    assert "user_id" in error.message


def test_key_mapping_satisfies_join_key(tmp_path):
    # The counterpart of the rule above: mapping left customer_id -> group-by key user_id compiles.
    join_file(
        tmp_path,
        """
        v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1, key_mapping={"customer_id": "user_id"})],
                  row_ids=["request_id"])
    """,
        left_selects='"customer_id", "request_id"',
    )
    assert ("joins", "team.y.v1") in compile_configs(tmp_path, "joins/team/y.py").compiled


def test_row_id_not_selected(tmp_path):
    join_file(
        tmp_path,
        """
        v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id", "session_id"])
    """,
    )
    error = compile_error(tmp_path, "joins/team/y.py")
    assert_names(error, "joins/team/y.py", "team.y.v1", "row_ids[1]")
    assert "session_id" in error.message


# --- overwriting online configs ----------------------------------------------------------------


@pytest.mark.parametrize("change", ["window", "to_offline"])
def test_changing_online_config_needs_force(tmp_path, change):
    path = group_by_file(tmp_path, simple_group_by(online=True))
    written = write_compiled(compile_configs(tmp_path, "group_bys/team/x.py"))
    compiled_file = tmp_path / "production/group_bys/team/x.v1"
    assert written == [compiled_file]
    before = compiled_file.read_text()

    # Change the config (the window 3d -> 7d keeps the file size: the new source must still be read).
    old_text = path.read_text()
    new_text = (
        old_text.replace("Window(3,", "Window(7,")
        if change == "window"
        else old_text.replace("online=True", "online=False")
    )
    assert new_text != old_text
    path.write_text(new_text)

    compilation = compile_configs(tmp_path, "group_bys/team/x.py")
    with pytest.raises(CompileError) as info:
        write_compiled(compilation)
    assert_names(info.value, "group_bys/team/x.py", "team.x.v1", "online")
    assert compiled_file.read_text() == before  # nothing written

    write_compiled(compilation, force=True)
    after = json.loads(compiled_file.read_text())
    if change == "window":
        assert after["aggregations"][0]["windows"] == [{"length": 7, "timeUnit": "DAYS"}]
    else:
        assert after["metaData"]["online"] is False


def test_unchanged_online_config_and_offline_changes_need_no_force(tmp_path):
    path = group_by_file(tmp_path, simple_group_by(online=True))
    write_compiled(compile_configs(tmp_path, "group_bys/team/x.py"))
    write_compiled(compile_configs(tmp_path, "group_bys/team/x.py"))  # same output: fine

    path.write_text(path.read_text().replace("online=True", "online=False"))
    write_compiled(compile_configs(tmp_path, "group_bys/team/x.py"), force=True)
    path.write_text(path.read_text().replace("Window(3,", "Window(7,"))
    write_compiled(compile_configs(tmp_path, "group_bys/team/x.py"))  # offline: no force needed


# --- staging queries ---------------------------------------------------------------------------


def test_staging_query_unknown_macro(tmp_path):
    write(
        tmp_path,
        "staging_queries/team/z.py",
        """
        v1 = StagingQuery(
            query="SELECT * FROM data.purchases WHERE ds BETWEEN '{{ start_date }}' AND '{{ today }}'",
            start_partition="2023-11-01",
        )
    """,
    )
    error = compile_error(tmp_path, "staging_queries/team/z.py")
    assert_names(error, "staging_queries/team/z.py", "team.z.v1", "query")
    assert "today" in error.message


def test_staging_query_missing_start_partition(tmp_path):
    write(
        tmp_path,
        "staging_queries/team/z.py",
        """
        v1 = StagingQuery(query="SELECT * FROM data.purchases WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'")
    """,
    )
    error = compile_error(tmp_path, "staging_queries/team/z.py")
    assert_names(error, "staging_queries/team/z.py", "team.z.v1", "start_partition")


def test_staging_query_accepts_chronon_start_partition(tmp_path):
    write(
        tmp_path,
        "staging_queries/team/z.py",
        """
        v1 = StagingQuery(query="SELECT * FROM data.purchases WHERE ds = '{{ end_date }}'", startPartition="2023-11-01")
    """,
    )
    compiled = compile_configs(tmp_path, "staging_queries/team/z.py").compiled["staging_queries", "team.z.v1"]
    assert compiled["startPartition"] == "2023-11-01"


# --- files that fail to load -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "v1 = GroupBy(\n",
        "raise RuntimeError('boom')\n",
        "from group_bys.team.missing import v1\n",
        "v1 = JoinPart(group_by=None, keymapping={})\n",  # misspelt keyword
        "v1 = StagingQuery(query='SELECT 1', start_partition='2023-11-01', ds='x')\n",
    ],
)
def test_config_that_fails_to_import_names_the_file(tmp_path, body):
    write(tmp_path, "group_bys/team/x.py", body)
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert error.file == "group_bys/team/x.py"
    assert "failed to import" in error.message


def test_broken_file_fails_a_whole_repo_compile(tmp_path):
    group_by_file(tmp_path, simple_group_by(), relative="group_bys/team/good.py")
    write(tmp_path, "group_bys/team/x.py", "v1 = GroupBy(sources=[source])\n")  # NameError: source
    error = compile_error(tmp_path, None)
    assert error.file == "group_bys/team/x.py"
    assert "NameError" in error.message


# --- Chronon arguments: honored (kept in the JSON) or refused ------------------------------------


@pytest.mark.parametrize(
    "extra, field",
    [
        (", env={'backfill': {'EXECUTOR_MEMORY': '4G'}}", "env"),
        (", lag=1", "lag"),
    ],
)
def test_group_by_arguments_that_would_be_ignored_are_refused(tmp_path, extra, field):
    group_by_file(tmp_path, simple_group_by(extra=extra))
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", field)
    assert "not supported" in error.message


def join_with_arguments(repo: Path, extra: str) -> None:
    group_by_file(repo, simple_group_by())
    write(
        repo,
        "joins/team/y.py",
        LEFT.format(selects='"user_id", "request_id"')
        + f"""
from group_bys.team.x import v1 as x_v1
v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"]{extra})
""",
    )


@pytest.mark.parametrize(
    "extra, field",
    [
        (", skew_keys={'user_id': ['1']}", "skew_keys"),
        (", additional_args=['--x']", "additional_args"),
        (", additional_env=['A=1']", "additional_env"),
        (", env={'backfill': {'A': '1'}}", "env"),
        (", lag=2", "lag"),
        (", historical_backfill=False", "historical_backfill"),
        (", label_part=object()", "label_part"),
        (", offline_schedule='every day'", "offline_schedule"),
        (", sample_percent=150", "sample_percent"),
        (", consistency_sample_percent=-1", "consistency_sample_percent"),
    ],
)
def test_join_arguments_that_would_be_ignored_or_are_invalid_are_refused(tmp_path, extra, field):
    join_with_arguments(tmp_path, extra)
    error = compile_error(tmp_path, "joins/team/y.py")
    assert_names(error, "joins/team/y.py", "team.y.v1", field)


def test_schedule_tags_sampling_and_consistency_are_kept_in_the_compiled_json(tmp_path):
    join_with_arguments(
        tmp_path,
        ", offline_schedule='@hourly', tags={'owner': 'ml'}, check_consistency=True, "
        "sample_percent=10, consistency_sample_percent=50",
    )
    compiled = compile_configs(tmp_path, "joins/team/y.py").compiled["joins", "team.y.v1"]["metaData"]
    assert compiled["offlineSchedule"] == "@hourly"
    assert compiled["tags"] == {"owner": "ml"}
    assert compiled["consistencyCheck"] is True
    assert (compiled["samplePercent"], compiled["consistencySamplePercent"]) == (10, 50)
    meta = Join.from_json(compile_configs(tmp_path, "joins/team/y.py").compiled["joins", "team.y.v1"]).meta
    assert (meta.offline_schedule, meta.check_consistency, meta.sample_percent) == ("@hourly", True, 10)


def test_defaults_leave_the_compiled_json_as_it_was(tmp_path):
    join_with_arguments(tmp_path, "")
    compiled = compile_configs(tmp_path, "joins/team/y.py").compiled["joins", "team.y.v1"]["metaData"]
    assert not {"offlineSchedule", "tags", "consistencyCheck"} & set(compiled)
    group_by_file(tmp_path, simple_group_by(extra=", offline_schedule='0 3 * * *'"))
    compiled = compile_configs(tmp_path, "group_bys/team/x.py").compiled["group_bys", "team.x.v1"]["metaData"]
    assert compiled["offlineSchedule"] == "0 3 * * *"


def test_source_arguments_that_would_be_ignored_are_refused(tmp_path):
    write(
        tmp_path,
        "group_bys/team/x.py",
        """
source = EventSource(table="data.purchases", is_cumulative=True,
                     query=Query(selects=select("user_id", "price"), time_column="ts"))
v1 = GroupBy(sources=[source], keys=["user_id"],
             aggregations=[Aggregation(input_column="price", operation=Operation.SUM)])
""",
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].is_cumulative")
    write(
        tmp_path,
        "group_bys/team/x.py",
        """
source = EventSource(table="data.purchases",
                     query=Query(selects=select("user_id", "price"), time_column="ts", partition_column="dt"))
v1 = GroupBy(sources=[source], keys=["user_id"],
             aggregations=[Aggregation(input_column="price", operation=Operation.SUM)])
""",
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].query.partition_column")


# --- streamed sources -------------------------------------------------------------------------------------------

STREAM_TOPIC = "events.purchases/fields=ts,user_id,price"


@pytest.mark.parametrize(
    "topic, fragment",
    [("bad topic", "not a valid Kafka topic name"), ("t/format=csv", "no fields"), ("t/fields=a/port=x", "port")],
)
def test_bad_topic_spec_names_the_topic_field(tmp_path, topic, fragment):
    group_by_file(tmp_path, simple_group_by(), topic=topic)
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].topic")
    assert fragment in error.message


@pytest.mark.parametrize(
    "selects, field, fragment",
    [
        ('"user_id", price="regexp_extract(note, \'x\', 0)"', "sources[0].query.selects.price", "regexp_extract"),
        ('"user_id", price="price * 2 + discount"', "sources[0].query.selects.price", "discount"),
    ],
)
def test_online_streamed_query_must_run_on_streamed_rows(tmp_path, selects, field, fragment):
    group_by_file(tmp_path, simple_group_by(online=True), selects=selects, topic=STREAM_TOPIC)
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", field)
    assert fragment in error.message


def test_streamed_query_with_supported_expressions_compiles(tmp_path):
    group_by_file(
        tmp_path, simple_group_by(online=True), selects='"user_id", price="price * 2 + 1"', topic=STREAM_TOPIC
    )
    assert compile_configs(tmp_path, "group_bys/team/x.py")
    # offline only: the topic is not consumed, so its query is not checked against streamed rows
    group_by_file(tmp_path, simple_group_by(), selects='"user_id", price="regexp_extract(p, \'x\', 0)"', topic="t")
    assert compile_configs(tmp_path, "group_bys/team/x.py")


def test_online_entity_mutation_topic_is_refused(tmp_path):
    write(
        tmp_path,
        "group_bys/team/x.py",
        """
        v1 = GroupBy(
            sources=[EntitySource(snapshot_table="data.users", mutation_table="data.users_mutations",
                                  mutation_topic="users.mutations",
                                  query=Query(selects=select("user_id", "score"), mutation_time_column="mutation_ts",
                                              reversal_column="is_before"))],
            keys=["user_id"], accuracy=Accuracy.TEMPORAL, online=True,
            aggregations=[Aggregation(input_column="score", operation=Operation.SUM)],
        )
    """,
    )
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].mutation_topic")
    assert "stale" in error.message


def test_online_topic_on_a_group_by_served_from_batch_only_is_refused(tmp_path):
    body = """
    v1 = GroupBy(sources=[source], keys=["user_id"], online=True, accuracy=Accuracy.SNAPSHOT,
                 aggregations=[Aggregation(input_column="price", operation=Operation.SUM)])
    """
    group_by_file(tmp_path, body, topic=STREAM_TOPIC)
    error = compile_error(tmp_path, "group_bys/team/x.py")
    assert_names(error, "group_bys/team/x.py", "team.x.v1", "sources[0].topic")
    assert "never be read" in error.message
