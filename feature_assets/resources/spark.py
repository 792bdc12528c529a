"""Dagster resource that hands out the SparkSession the engine runs on."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource

from feature_assets.resources.jvm_archive import java_options

if TYPE_CHECKING:  # pyspark is imported only when a session is needed, to keep imports light
    from pyspark.sql import SparkSession

# Settings the engine relies on: UTC day boundaries, replace-writes of single partitions, and
# partition values kept as strings (e.g. "2024-01-01" must not become a date). Spark caches the classes it
# generates for query stages, 100 by default: one join's parts and outputs, with and without bootstrap,
# generate about 100 (104 in benchmarks/bootstrap.py), so a process that runs such steps again evicted and
# recompiled them every time, and the JVM compiled the new classes to machine code again (2.5-3 s of CPU
# per join output, against 0.2-0.8 s once cached). 1000 entries hold about 30 MB of source at that size.
COMMON_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.codegen.cache.maxEntries": "1000",
}
# A laptop or CI machine: few shuffle partitions for small data, no web UI port to collide on, broadcasts
# left uncompressed: in one JVM they never cross a network, so compressing them only spends the driver's CPU
# (a join's 500k-row broadcast took about 1 s less in benchmarks/bootstrap.py), and the memory of joins and
# sorts (hash tables, sort buffers) taken off the JVM heap: on it, each page is a large array the one JVM
# must zero and collect, which slowed a join that builds a 361 MB hash table from 7.2 to 9.1 s in
# benchmarks/bootstrap.py. The size is a cap, allocated as used.
LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.broadcast.compress": "false",
    "spark.memory.offHeap.enabled": "true",
    "spark.memory.offHeap.size": "2g",
}
# Spark's log configuration for local sessions: errors only (see the file for why).
QUIET_LOG4J = Path(__file__).with_name("log4j2-quiet.properties")
# A file for the driver JVM's console output (Spark's log, Python worker errors, the JVM's own notices)
# instead of the terminal; the CLI points it at the run's log file so its output is its own lines.
SPARK_LOG_ENV = "FEATURE_ASSETS_SPARK_LOG"
# The Python that executors run. PySpark reads only the variable (spark-submit maps the setting to it), so
# the resource does the same for sessions it starts with the setting in `conf`.
PYTHON_SETTING = "spark.pyspark.python"
PYTHON_ENV = "PYSPARK_PYTHON"
# This package, zipped for the executors of a cluster: one file per content, so a changed package is a new
# file (Spark refuses to re-add a path with other content) and an unchanged one is built once.
PACKAGE = "feature_assets"
PACKAGE_ZIP_DIR = Path(tempfile.gettempdir()) / "feature-assets-pyfiles"


class SparkResource(ConfigurableResource):
    """A SparkSession for ``master``; ``conf`` entries override the defaults above.

    Static settings such as ``spark.driver.memory`` take effect only when this resource creates
    the session (the driver JVM starts then); a session that is already running is reused.
    """

    master: str = "local[*]"
    app_name: str = "feature-assets"
    conf: dict[str, str] = {}
    # On a cluster: ship this package to the executors (`SparkContext.addPyFile`), so workers need only its
    # dependencies, and always run the driver's version of it.
    ship_package: bool = True
    # A local driver JVM maps the class archive built for it, when there is one (`jvm_archive`).
    use_class_archive: bool = True

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")

    def spark_conf(self) -> dict[str, str]:
        """The settings applied to the session: defaults for the master, then ``conf``."""
        settings = dict(COMMON_DEFAULTS)
        if self.is_local:
            settings.update(LOCAL_DEFAULTS)
            options = f"-Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}"
            if self.use_class_archive:
                options = f"{options} {java_options()}".strip()
            settings["spark.driver.extraJavaOptions"] = options
        settings.update(self.conf)
        return settings

    def get_session(self) -> SparkSession:
        from pyspark.sql import SparkSession

        if self.is_local:
            # Avoids Spark binding to a non-loopback interface (and its hostname warnings).
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Python workers must run the interpreter that has this project's packages.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        active = SparkSession.getActiveSession()
        if active is not None:
            self._apply_runtime_settings(active)
            return self._with_package_shipped(active)
        executor_python = self.spark_conf().get(PYTHON_SETTING)
        if executor_python and not self.is_local:
            os.environ[PYTHON_ENV] = executor_python
        log_file = os.environ.get(SPARK_LOG_ENV)
        if log_file:
            self._start_context_logging_to(Path(log_file))
        builder = SparkSession.builder.master(self.master).appName(self.app_name)
        for key, value in self.spark_conf().items():
            builder = builder.config(key, value)
        return self._with_package_shipped(builder.getOrCreate())

    def _with_package_shipped(self, session: SparkSession) -> SparkSession:
        """On a cluster, the session with this package added to its executors' Python path (once)."""
        if self.is_local or not self.ship_package:
            return session
        context = session.sparkContext
        package_zip = package_archive()
        if package_zip.name not in (context._python_includes or []):
            context.addPyFile(str(package_zip))
        return session

    def _start_context_logging_to(self, log_file: Path) -> None:
        """Start the driver JVM with its stdout and stderr appended to `log_file`; the session then reuses it.

        The JVM writes some lines itself, before any log configuration applies (e.g. "Using incubator
        modules"), so only redirecting its output keeps a terminal free of them.
        """
        from pyspark import SparkConf, SparkContext
        from pyspark.java_gateway import launch_gateway

        if SparkContext._active_spark_context is not None:
            return
        conf = SparkConf().setMaster(self.master).setAppName(self.app_name).setAll(list(self.spark_conf().items()))
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:  # the JVM keeps its own copy of the descriptor
            gateway = launch_gateway(conf, popen_kwargs={"stdout": log, "stderr": log})
        SparkContext(conf=conf, gateway=gateway)

    def _apply_runtime_settings(self, session: SparkSession) -> None:
        # A reused session keeps its static settings; the SQL settings the engine relies on
        # can still be changed at runtime.
        for key, value in self.spark_conf().items():
            if session.conf.isModifiable(key) and session.conf.get(key, None) != value:
                session.conf.set(key, value)


def package_archive(package_root: Path | None = None, zip_dir: Path = PACKAGE_ZIP_DIR) -> Path:
    """A zip of the package at `package_root` (default: this package, wherever it is installed; Python sources
    and package data, no bytecode), named by its content; importable from the zip's root, as executors import
    what `addPyFile` gives them."""
    package_root = package_root or Path(str(importlib.resources.files(PACKAGE)))
    files = sorted(
        path
        for path in package_root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package_root)).encode() + b"\0" + path.read_bytes() + b"\0")
    target = zip_dir / f"{package_root.name}-{digest.hexdigest()[:16]}.zip"
    if not target.exists():
        zip_dir.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed: a concurrent reader never sees half a zip.
        with tempfile.NamedTemporaryFile(dir=zip_dir, suffix=".partial", delete=False) as partial:
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in files:
                    archive.write(path, Path(package_root.name) / path.relative_to(package_root))
        os.replace(partial.name, target)
    return target
