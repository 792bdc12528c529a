"""What the commands need around a Dagster run, without Spark: the instance file, the input check before a run,
and a failed step's error in a few lines."""

from __future__ import annotations

import pytest
from dagster._utils.error import SerializableErrorInfo

from feature_assets.definitions.factory import LocalWarehouse
from feature_assets.definitions.graph import SOURCE, Edge, Node
from feature_assets.definitions.runs import (
    DEFAULT_INSTANCE_YAML,
    default_instance,
    error_lines,
    missing_inputs,
    upstream_sources,
)

PY4J_MESSAGE = (
    "py4j.protocol.Py4JJavaError: An error occurred while calling o80.collectToPython.\n"
    ": org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while reading file "
    "file:///w/data/clicks/ds=2024-01-06/part-0.parquet.  SQLSTATE: KD001\n"
    "\tat org.apache.spark.sql.errors.QueryExecutionErrors$.cannotReadFilesError(QueryExecutionErrors.scala:920)\n"
    "\tat org.apache.spark.sql.execution.FileSourceScanExec$$anon$1.hasNext(DataSourceScanExec.scala:826)\n"
    "Caused by: java.lang.RuntimeException: file:/w/data/clicks/ds=2024-01-06/part-0.parquet is not a Parquet file\n"
    "\t... 23 more\n"
)


def error(cls_name: str, message: str, cause: SerializableErrorInfo | None = None) -> SerializableErrorInfo:
    return SerializableErrorInfo(message=message, stack=["  File x, line 1\n"], cls_name=cls_name, cause=cause)


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_new_dagster_home_gets_telemetry_off(dagster_home):
    instance = default_instance()
    try:
        assert (dagster_home / "dagster.yaml").read_text() == DEFAULT_INSTANCE_YAML
        assert "enabled: false" in DEFAULT_INSTANCE_YAML
    finally:
        instance.dispose()


def test_a_users_dagster_yaml_is_kept(dagster_home):
    dagster_home.mkdir()
    own = "run_retries:\n  enabled: false\n"
    (dagster_home / "dagster.yaml").write_text(own)
    default_instance().dispose()
    assert (dagster_home / "dagster.yaml").read_text() == own


def test_a_spark_error_is_its_message_and_root_cause():
    wrapped = error(
        "DagsterExecutionStepExecutionError",
        'dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing op "data__clicks":\n',
        cause=error("Py4JJavaError", PY4J_MESSAGE),
    )
    assert error_lines(wrapped) == [
        "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file "
        "file:///w/data/clicks/ds=2024-01-06/part-0.parquet. SQLSTATE: KD001",
        "caused by: file:/w/data/clicks/ds=2024-01-06/part-0.parquet is not a Parquet file",
    ]


def test_a_python_error_keeps_its_class_name():
    analysis = error(
        "AnalysisException",
        "pyspark.errors.exceptions.captured.AnalysisException: [UNRESOLVED_COLUMN] `x` cannot be resolved.\n"
        "'Project ['x]\n\nJVM stacktrace:\norg.apache.spark.sql.AnalysisException: [UNRESOLVED_COLUMN] ...\n",
    )
    assert error_lines(analysis) == ["AnalysisException: [UNRESOLVED_COLUMN] `x` cannot be resolved."]
    assert error_lines(error("KeyError", "KeyError: 'amount'\n")) == ["KeyError: 'amount'"]


def test_inputs_are_the_source_days_of_the_range_and_an_optional_table_may_miss_days(tmp_path):
    for ds in ("2024-01-01", "2024-01-02"):
        (tmp_path / "data" / "clicks" / f"ds={ds}").mkdir(parents=True)
    graph = {
        "data.clicks": Node("data.clicks", SOURCE, "sources"),
        "data.log": Node("data.log", SOURCE, "sources", optional=True),
        "default.t": Node("default.t", "join", "shop", upstream=[Edge("data.clicks", -30, 0), Edge("data.log")]),
    }
    sources = upstream_sources(graph, "default.t")
    assert [node.table for node in sources] == ["data.clicks", "data.log"]
    listing = LocalWarehouse(str(tmp_path))
    # Days a window reaches back to before the data starts are not required; the log table may not exist.
    assert missing_inputs(sources, "2024-01-01", "2024-01-02", listing) == []
    (gap,) = missing_inputs(sources, "2024-01-02", "2024-01-04", listing)
    assert (gap.table, gap.days, gap.where) == (
        "data.clicks",
        ["2024-01-03", "2024-01-04"],
        listing.table_path("data.clicks"),
    )
    assert gap.message.startswith("source table 'data.clicks' has no partition for 2 day(s): 2024-01-03, 2024-01-04")
    # A log table with some days dumped: the others are read as empty (nothing to stitch), not refused.
    (tmp_path / "data" / "log" / "ds=2024-01-01").mkdir(parents=True)
    assert missing_inputs(sources, "2024-01-01", "2024-01-02", listing) == []
