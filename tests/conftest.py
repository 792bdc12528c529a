"""Shared fixtures: one local SparkSession for the whole run (a cold start costs 12-18 s here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# The oracle and the shared helpers live beside the tests: importable as `oracle` and `support` under plain
# pytest (test modules never import each other; what they share is in support/).
sys.path.insert(0, str(Path(__file__).parent))

from support.paths import QUICKSTART  # noqa: E402  (needs tests/ on sys.path)


@pytest.fixture(scope="session")
def spark():
    from feature_assets.resources.spark import SparkResource

    session = SparkResource(
        conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled": "false",
        }
    ).get_session()
    session.sparkContext.setLogLevel("ERROR")
    yield session


@pytest.fixture
def warehouse(spark, tmp_path):
    from feature_assets.storage import Warehouse

    return Warehouse(spark, str(tmp_path / "warehouse"))


@pytest.fixture(scope="session")
def quickstart_compiled():
    from feature_assets.compiler import load_compiled

    return load_compiled(QUICKSTART)
