"""Build the Spark driver's class-data sharing archive (`feature_assets.resources.jvm_archive`) for this
environment: `python -m feature_assets.dev.jvm_archive` (the setup script runs it; a no-op once built)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from feature_assets.resources.jvm_archive import QUIET, archive_path
from feature_assets.resources.spark import QUIET_LOG4J, SparkResource


def _exercise(session, workdir: Path) -> None:
    """Run the kinds of work the engine does, so their classes are in the archive: Parquet by day, joins
    (broadcast and sort-merge), aggregation, Arrow to pandas and back, and a co-grouped Arrow function."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    table = str(workdir / "table")
    rows = session.range(20_000).select(
        (F.col("id") % 97).cast("string").alias("key"),
        (F.col("id") * 1000).alias("ts"),
        F.rand(1).alias("value"),
        F.concat(F.lit("2024-01-0"), (F.col("id") % 3 + 1).cast("string")).alias("ds"),
    )
    rows.write.mode("overwrite").partitionBy("ds").parquet(table)
    read = session.read.parquet(table)
    keys = read.groupBy("key").agg(F.max("ts").alias("latest"), F.collect_list("value").alias("values"))
    read.join(F.broadcast(keys), "key").count()
    read.hint("merge").join(keys.hint("merge"), "key").where(F.col("ts") <= F.col("latest")).count()
    read.limit(100).toPandas()
    session.createDataFrame(read.limit(100).toPandas()).count()

    def passthrough(left: pa.Table, right: pa.Table) -> pa.Table:
        return left

    read.groupBy("key").cogroup(read.groupBy("key")).applyInArrow(passthrough, read.schema).count()


def build(path: Path) -> bool:
    """Dump the archive to `path` from a session that runs `_exercise`; False if the JVM wrote none.

    Runs in this process: the JVM writes the archive when it exits, so the session is stopped, the JVM is
    told to exit (its stdin closed, as when Python exits) and waited for, and only then is the file renamed
    into place.
    """
    from pyspark import SparkContext

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    options = f"-Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()} -XX:ArchiveClassesAtExit={partial} {QUIET}"
    session = SparkResource(conf={"spark.driver.extraJavaOptions": options}, use_class_archive=False).get_session()
    with tempfile.TemporaryDirectory(prefix="jvm-archive-") as workdir:
        _exercise(session, Path(workdir))
    session.stop()
    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    if gateway is None or process is None:
        return False
    gateway.shutdown()
    process.stdin.close()
    process.wait(timeout=300)
    SparkContext._gateway = None
    if not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        return False
    os.replace(partial, path)
    for stale in path.parent.glob("spark-driver-*.jsa"):  # dumped for a JVM or jars no longer installed
        if stale != path:
            stale.unlink(missing_ok=True)
    return True


def main() -> int:
    path = archive_path()
    if path is None:
        print("no java or Spark jars found: no class archive built", file=sys.stderr)
        return 1
    if path.is_file():
        print(f"Spark class archive: {path} (already built)")
        return 0
    if not build(path):
        print("the JVM wrote no class archive; Spark starts without one", file=sys.stderr)
        return 1
    print(f"Spark class archive: {path} ({path.stat().st_size // 2**20} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
