"""Dagster resource that hands out the SparkSession the engine runs on."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dagster import ConfigurableResource

if TYPE_CHECKING:  # pyspark is imported only when a session is needed, to keep imports light
    from pyspark.sql import SparkSession

# Settings the engine relies on: UTC day boundaries, replace-writes of single partitions, and
# partition values kept as strings (e.g. "2024-01-01" must not become a date).
COMMON_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# A laptop or CI machine: few shuffle partitions for small data, no web UI port to collide on.
LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


class SparkResource(ConfigurableResource):
    """A SparkSession for ``master``; ``conf`` entries override the defaults above.

    Static settings such as ``spark.driver.memory`` take effect only when this resource creates
    the session (the driver JVM starts then); a session that is already running is reused.
    """

    master: str = "local[*]"
    app_name: str = "feature-assets"
    conf: dict[str, str] = {}

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")

    def spark_conf(self) -> dict[str, str]:
        """The settings applied to the session: defaults for the master, then ``conf``."""
        settings = dict(COMMON_DEFAULTS)
        if self.is_local:
            settings.update(LOCAL_DEFAULTS)
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
            return active
        builder = SparkSession.builder.master(self.master).appName(self.app_name)
        for key, value in self.spark_conf().items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    def _apply_runtime_settings(self, session: SparkSession) -> None:
        # A reused session keeps its static settings; the SQL settings the engine relies on
        # can still be changed at runtime.
        for key, value in self.spark_conf().items():
            if session.conf.isModifiable(key) and session.conf.get(key, None) != value:
                session.conf.set(key, value)
