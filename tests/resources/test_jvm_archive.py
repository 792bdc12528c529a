"""The Spark driver's class archive: named for exactly one JVM and set of jars, and mapped only when it exists."""

from __future__ import annotations

import os

import pytest

from feature_assets.resources import jvm_archive
from feature_assets.resources.spark import SparkResource


@pytest.fixture
def fake_install(tmp_path, monkeypatch):
    """A JAVA_HOME and SPARK_HOME of our own, and an archive folder in tmp_path."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("java")
    jars = tmp_path / "spark" / "jars"
    jars.mkdir(parents=True)
    for name in ("spark-core.jar", "spark-sql.jar"):
        (jars / name).write_text(name)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "spark"))
    monkeypatch.setenv(jvm_archive.ARCHIVE_DIR_ENV, str(tmp_path / "archives"))
    return java, jars


def test_the_archive_name_changes_with_the_jvm_or_any_jar(fake_install):
    java, jars = fake_install
    first = jvm_archive.archive_path()
    assert first is not None and first.parent.name == "archives"
    assert jvm_archive.archive_path() == first
    (jars / "spark-sql.jar").write_text("another build")
    second = jvm_archive.archive_path()
    assert second != first
    (jars / "extra.jar").write_text("extra")
    third = jvm_archive.archive_path()
    assert third not in (first, second)
    os.utime(java, ns=(1, 1))
    assert jvm_archive.archive_path() not in (first, second, third)


def test_a_local_session_maps_the_archive_only_when_it_exists(fake_install):
    assert jvm_archive.java_options() == ""
    options = SparkResource().spark_conf()["spark.driver.extraJavaOptions"]
    assert "SharedArchiveFile" not in options and "log4j2.configurationFile" in options

    path = jvm_archive.archive_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    options = SparkResource().spark_conf()["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={path}" in options and "log4j2.configurationFile" in options
    assert (
        "SharedArchiveFile" not in SparkResource(use_class_archive=False).spark_conf()["spark.driver.extraJavaOptions"]
    )
    # A cluster's driver options are the user's own.
    assert "spark.driver.extraJavaOptions" not in SparkResource(master="spark://host:7077").spark_conf()


def test_without_java_there_is_no_archive(fake_install, monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert jvm_archive.archive_path() is None
    assert jvm_archive.java_options() == ""


@pytest.mark.spark
def test_the_shared_session_runs_on_the_archive_setup_built(spark):
    """Setup builds the archive for this environment; the tests' own session maps it (and still runs jobs)."""
    path = jvm_archive.archive_path()
    if path is None or not path.is_file():
        pytest.skip("no class archive in this environment: scripts/setup.sh builds it")
    arguments = list(spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={path}" in arguments
    assert spark.range(10).count() == 10
