"""The offline warehouse: where tables live and how partitions are read and replaced.

A table `ns.t` is a parquet dataset partitioned by `ds` (YYYY-MM-DD, UTC) at `<root>/ns/t/ds=YYYY-MM-DD/`.
This is the only module that knows paths. File-system work goes through Spark's Hadoop file system, so
the root can be a local folder, `hdfs://` or `s3a://` alike; a local table is listed, sized and dropped
with the OS instead (the same answers without a JVM round trip per call).
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from feature_assets.naming import qualified

PARTITION_COLUMN = "ds"
# Where Spark keeps a table's own schema in each parquet footer (and reads it from first).
SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata"


# Feature columns are mostly high-cardinality numbers: parquet's dictionary encoding falls back for them
# after paying for the attempt, which doubled write times of wide feature tables in the benchmark.
WRITE_OPTIONS = {"parquet.enable.dictionary": "false"}


# Open file writers per task when writing a frame read in place (see `Warehouse.write_partitions`).
CONCURRENT_WRITERS_CONF = "spark.sql.maxConcurrentOutputFileWriters"
MAX_CONCURRENT_DAY_WRITERS = 32


class TableNotFound(FileNotFoundError):
    pass


@contextmanager
def _session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """`key` set to `value` in the session for the block, then restored (or unset) as it was."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def default_root() -> str:
    """$FEATURE_ASSETS_WAREHOUSE, else `data/warehouse` under the working directory."""
    return os.environ.get("FEATURE_ASSETS_WAREHOUSE") or str(Path.cwd() / "data" / "warehouse")


def date_range(start_ds: str, end_ds: str) -> list[str]:
    start, end = date.fromisoformat(start_ds), date.fromisoformat(end_ds)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def shift_ds(ds: str, days: int) -> str:
    return (date.fromisoformat(ds) + timedelta(days=days)).isoformat()


def local_path(path: str) -> str | None:
    """The local file-system path of a warehouse path, or None for another file system (hdfs://, s3a://)."""
    if path.startswith("file:"):
        return urlparse(path).path
    return None if "://" in path else path


# Schemas Spark inferred for local tables, by table path, with the files they were inferred from. Inference
# runs a Spark job that reads a footer (100-150 ms, more than the rest of a read): a table read again with
# the same files gets the same schema without it.
_INFERRED_SCHEMAS: dict[str, tuple[tuple, StructType]] = {}
_INFERRED_SCHEMAS_KEPT = 512


def _data_files(local_table: str) -> tuple | None:
    """What Spark's schema inference of a local ds-partitioned table depends on: its data files (Spark skips
    names starting with `_` or `.`) with their sizes and modification times; None if it cannot be listed."""
    try:
        files = []
        with os.scandir(local_table) as partitions:
            for partition in partitions:
                if not partition.is_dir() or not partition.name.startswith(f"{PARTITION_COLUMN}="):
                    continue
                with os.scandir(partition.path) as entries:
                    for entry in entries:
                        if entry.name[0] not in "_." and entry.is_file():
                            stat = entry.stat()
                            files.append((partition.name, entry.name, stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(files))
    except OSError:
        return None


def _flag_counts(path: str, flag: str | None) -> tuple[int, int] | None:
    """(rows, rows whose `flag` is false; every row without `flag`) of one parquet file: from its footer, or
    for a row group that mixes true and false (or has no statistics) from that group's flag column, read with
    Arrow. None when the file cannot say (see `Warehouse.day_row_counts`)."""
    import pyarrow as pa  # only here: importing the warehouse stays light
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError):  # not a parquet file Arrow can read: leave it to Spark
        return None
    metadata = parquet.metadata
    paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    column = paths.index(flag) if flag in paths else None
    rows = unflagged = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        rows += group.num_rows
        if column is None or group.num_rows == 0:
            unflagged += group.num_rows
            continue
        stats = group.column(column).statistics
        if stats is not None and stats.has_min_max and stats.null_count == 0 and stats.min == stats.max:
            unflagged += 0 if stats.min else group.num_rows
            continue
        try:
            values = parquet.read_row_group(index, columns=[flag]).column(0)
        except (OSError, ValueError):
            return None
        if values.type != pa.bool_() or values.null_count:
            return None  # a null flag is neither covered nor not: leave it to Spark
        unflagged += len(values) - (pc.sum(values).as_py() or 0)
    return rows, unflagged


def _empty_parquet(schema: StructType) -> bytes | None:
    """A parquet file with no rows that Spark reads as `schema` (without a Spark job): Spark takes a file's
    schema from the `org.apache.spark.sql.parquet.row.metadata` entry it writes in every footer. None for a
    type Arrow cannot represent (the caller then has Spark write the file)."""
    import pyarrow.parquet as pq  # only here: importing the warehouse stays light
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        arrow_schema = to_arrow_schema(schema, timezone="UTC")
    except (TypeError, ValueError, NotImplementedError):
        return None
    arrow_schema = arrow_schema.with_metadata({SPARK_SCHEMA_KEY: schema.json()})
    sink = io.BytesIO()
    pq.write_table(arrow_schema.empty_table(), sink)
    return sink.getvalue()


class Warehouse:
    def __init__(self, spark: SparkSession, root: str | None = None):
        self.spark = spark
        self.root = (root or default_root()).rstrip("/")

    # --- paths -------------------------------------------------------------------------------
    def table_path(self, table: str) -> str:
        namespace, name = qualified(table).split(".", 1)
        return f"{self.root}/{namespace}/{name}"

    def partition_path(self, table: str, ds: str) -> str:
        return f"{self.table_path(table)}/{PARTITION_COLUMN}={ds}"

    def _jvm(self) -> Any:
        jvm = self.spark._jvm
        if jvm is None:  # a Spark Connect session has no JVM gateway
            raise RuntimeError("the warehouse needs a classic SparkSession (with a JVM), not Spark Connect")
        return jvm

    def _fs(self, path: str):
        jvm = self._jvm()
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        return hadoop_path.getFileSystem(self.spark._jsc.hadoopConfiguration()), hadoop_path

    def exists(self, table: str) -> bool:
        local_table = local_path(self.table_path(table))
        if local_table is not None:  # local tables skip the JVM round trips of Hadoop's file system
            return os.path.exists(local_table)
        fs, path = self._fs(self.table_path(table))
        return fs.exists(path)

    def partitions(self, table: str) -> list[str]:
        """The `ds` values that have a partition folder, sorted."""
        local_table = local_path(self.table_path(table))
        if local_table is not None:
            if not os.path.isdir(local_table):
                return []
            with os.scandir(local_table) as entries:
                return sorted(
                    e.name.split("=", 1)[1] for e in entries if e.name.startswith(f"{PARTITION_COLUMN}=") and e.is_dir()
                )
        fs, path = self._fs(self.table_path(table))
        if not fs.exists(path):
            return []
        found = []
        for status in fs.listStatus(path):
            name = status.getPath().getName()
            if status.isDirectory() and name.startswith(f"{PARTITION_COLUMN}="):
                found.append(name.split("=", 1)[1])
        return sorted(found)

    # --- reads -------------------------------------------------------------------------------
    def read(self, table: str, start_ds: str | None = None, end_ds: str | None = None) -> DataFrame:
        """A table's rows in [start_ds, end_ds] (inclusive, either may be open), with `ds` as a string column."""
        if not self.exists(table):
            raise TableNotFound(f"table {qualified(table)!r} not found at {self.table_path(table)}")
        path = self.table_path(table)
        frame = self._read_parquet(path)
        if start_ds is not None and end_ds is not None:
            return frame.where(F.col(PARTITION_COLUMN).between(start_ds, end_ds))
        if start_ds is not None:
            return frame.where(F.col(PARTITION_COLUMN) >= start_ds)
        if end_ds is not None:
            return frame.where(F.col(PARTITION_COLUMN) <= end_ds)
        return frame

    def _read_parquet(self, path: str) -> DataFrame:
        """The parquet table at `path`; a local table whose files are unchanged since its last read reuses the
        schema Spark inferred then."""
        reader = self.spark.read.option("basePath", path)
        local = local_path(path)
        files = _data_files(local) if local is not None else None
        known = _INFERRED_SCHEMAS.get(path)
        if files is not None and known is not None and known[0] == files:
            return reader.schema(known[1]).parquet(path)
        frame = reader.parquet(path)
        if files:
            if len(_INFERRED_SCHEMAS) >= _INFERRED_SCHEMAS_KEPT:
                _INFERRED_SCHEMAS.pop(next(iter(_INFERRED_SCHEMAS)))
            _INFERRED_SCHEMAS[path] = (files, frame.schema)
        return frame

    def size_bytes(self, table: str, start_ds: str, end_ds: str) -> int:
        """Stored bytes of the table's partitions in [start_ds, end_ds] (0 for a missing table)."""
        total = 0
        for ds in self.partitions(table):
            if start_ds <= ds <= end_ds:
                local_partition = local_path(self.partition_path(table, ds))
                if local_partition is not None:  # Hadoop's sizes leave out its checksum files (`.*.crc`)
                    with os.scandir(local_partition) as entries:
                        total += sum(e.stat().st_size for e in entries if e.name[0] != "." and e.is_file())
                    continue
                fs, path = self._fs(self.partition_path(table, ds))
                total += fs.getContentSummary(path).getLength()
        return total

    def day_row_counts(
        self, table: str, start_ds: str, end_ds: str, flag: str | None = None
    ) -> dict[str, tuple[int, int]] | None:
        """Per day in [start_ds, end_ds] with a data file in a local table: (rows, rows whose boolean `flag`
        column is false; every row without `flag`), without a Spark job: from the parquet footers, and where a
        row group mixes true and false, from that group's flag column alone (read with Arrow).

        None when the files cannot say: a table on another file system, a file Arrow cannot read, or a flag
        that is null or not boolean.
        """
        local_table = local_path(self.table_path(table))
        if local_table is None:
            return None
        files = _data_files(local_table)
        if files is None:
            return None
        counts: dict[str, tuple[int, int]] = {}
        for partition, name, _, _ in files:
            ds = partition.split("=", 1)[1]
            if not start_ds <= ds <= end_ds:
                continue
            found = _flag_counts(os.path.join(local_table, partition, name), flag)
            if found is None:
                return None
            rows, unflagged = counts.get(ds, (0, 0))
            counts[ds] = (rows + found[0], unflagged + found[1])
        return counts

    def schema(self, table: str) -> StructType:
        return self.read(table).schema

    # --- the Spark catalog ----------------------------------------------------------------------
    def tables(self) -> list[str]:
        """Every `ns.t` under the root (a folder holding `ds=` partitions)."""
        fs, root = self._fs(self.root)
        if not fs.exists(root):
            return []
        found = []
        for namespace in fs.listStatus(root):
            if not namespace.isDirectory():
                continue
            for table in fs.listStatus(namespace.getPath()):
                if table.isDirectory():
                    found.append(f"{namespace.getPath().getName()}.{table.getPath().getName()}")
        return sorted(t for t in found if self.partitions(t))

    def register(self, tables: list[str] | None = None) -> list[str]:
        """Make warehouse tables visible to Spark SQL by their `ns.t` names (external parquet tables)."""
        registered = []
        for table in tables if tables is not None else self.tables():
            table = qualified(table)
            if not self.partitions(table):
                continue
            namespace = table.split(".", 1)[0]
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS `{namespace}`")
            self.spark.sql(f"DROP TABLE IF EXISTS {table}")
            self.spark.catalog.createTable(table, path=self.table_path(table), source="parquet")
            self.spark.sql(f"ALTER TABLE {table} RECOVER PARTITIONS")
            registered.append(table)
        return registered

    # --- writes ------------------------------------------------------------------------------
    def write_partitions(self, frame: DataFrame, table: str, start_ds: str, end_ds: str, shuffle: bool = True) -> None:
        """Replace the partitions [start_ds, end_ds] of `table` with `frame` (which has a `ds` column).

        Rows outside the range are a bug upstream and are refused. Days of the range with no row get
        an empty partition, so re-materializing a day that became empty leaves no stale rows behind.
        Rows are shuffled by day first, one file per day; `shuffle=False` writes each task as it is (one file
        per day and task), for a frame whose tasks read a ds-partitioned table in place and so hold whole days.
        """
        frame = frame.where(F.col(PARTITION_COLUMN).between(start_ds, end_ds))
        # Clear the range first: dynamic overwrite alone would keep a day that now has no rows.
        self.drop_partitions(table, date_range(start_ds, end_ds))
        columns = [c for c in frame.columns if c != PARTITION_COLUMN] + [PARTITION_COLUMN]
        ordered = frame.select(*columns)
        writer = (
            (ordered.repartition(PARTITION_COLUMN) if shuffle else ordered)
            .write.mode("overwrite")
            .options(**WRITE_OPTIONS)
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy(PARTITION_COLUMN)
        )
        if shuffle:
            writer.parquet(self.table_path(table))
        else:
            # A task that read whole days in place holds a few days, each in a run of rows: one open writer
            # per day spares Spark's sort of every row by day before writing (which holds what the task read,
            # as the open writers do). Past the limit Spark sorts the rest, as without it.
            writers = min(len(date_range(start_ds, end_ds)), MAX_CONCURRENT_DAY_WRITERS)
            with _session_conf(self.spark, CONCURRENT_WRITERS_CONF, str(writers)):
                writer.parquet(self.table_path(table))
        written = set(self.partitions(table))
        empty_days = [ds for ds in date_range(start_ds, end_ds) if ds not in written]
        if empty_days:
            data_schema = StructType([f for f in frame.schema.fields if f.name != PARTITION_COLUMN])
            self._write_empty_partitions(table, data_schema, empty_days)

    def write_empty_partitions(self, table: str, schema: StructType, start_ds: str, end_ds: str) -> None:
        """Replace the partitions [start_ds, end_ds] of `table` with empty ones of `schema` (no `ds` field):
        what `write_partitions` does for a frame known to have no rows, without running its plan."""
        days = date_range(start_ds, end_ds)
        self.drop_partitions(table, days)
        self._write_empty_partitions(table, StructType([f for f in schema.fields if f.name != PARTITION_COLUMN]), days)

    def _write_empty_partitions(self, table: str, schema: StructType, days: list[str]) -> None:
        """An empty parquet file with the schema in each day: written directly for a local table, else one
        Spark write of an empty file and a file-system copy per day."""
        local_table = local_path(self.table_path(table))
        empty = _empty_parquet(schema) if local_table is not None else None
        if empty is not None:
            name = f"part-00000-{uuid.uuid4()}-empty.parquet"
            for ds in days:
                target = local_path(self.partition_path(table, ds))
                assert target is not None
                os.makedirs(target, exist_ok=True)
                with open(os.path.join(target, name), "wb") as out:
                    out.write(empty)
            return
        template = f"{self.table_path(table)}/_empty_template"
        self.spark.createDataFrame([], schema).coalesce(1).write.mode("overwrite").parquet(template)
        fs, template_path = self._fs(template)
        files = [s.getPath() for s in fs.listStatus(template_path) if s.getPath().getName().endswith(".parquet")]
        jvm = self._jvm()
        conf = self.spark._jsc.hadoopConfiguration()
        for ds in days:
            _, target = self._fs(self.partition_path(table, ds))
            fs.mkdirs(target)
            for source in files:
                jvm.org.apache.hadoop.fs.FileUtil.copy(
                    fs, source, fs, jvm.org.apache.hadoop.fs.Path(target, source.getName()), False, conf
                )
        fs.delete(template_path, True)

    def drop_partitions(self, table: str, days: list[str]) -> None:
        for ds in days:
            local_partition = local_path(self.partition_path(table, ds))
            if local_partition is not None:
                if os.path.isdir(local_partition):
                    shutil.rmtree(local_partition)
                continue
            fs, path = self._fs(self.partition_path(table, ds))
            if fs.exists(path):
                fs.delete(path, True)
