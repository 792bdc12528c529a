"""The warehouse's partition writes: empty days, sizes, and local paths in their URL forms."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.spark
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]


def test_local_path_forms():
    from feature_assets.storage.warehouse import local_path

    assert local_path("file:///tmp/w/ns/t") == "/tmp/w/ns/t"
    assert local_path("file:/tmp/w/ns/t") == "/tmp/w/ns/t"
    assert local_path("/tmp/w/ns/t") == "/tmp/w/ns/t"
    assert local_path("data/warehouse/ns/t") == "data/warehouse/ns/t"
    assert local_path("s3a://bucket/w/ns/t") is None
    assert local_path("hdfs://namenode:8020/w/ns/t") is None


@pytest.mark.parametrize("scheme", ["", "file://", "through Hadoop"])
def test_empty_partitions_replace_rows_and_keep_the_schema(spark, tmp_path, monkeypatch, scheme):
    """Local tables are listed, sized and dropped with the OS; any other goes through Hadoop's file system, as a
    local table does here when the warehouse is made to see it as remote."""
    from feature_assets.storage import Warehouse
    from feature_assets.storage import warehouse as warehouse_module

    if scheme == "through Hadoop":
        monkeypatch.setattr(warehouse_module, "local_path", lambda path: None)
        scheme = "file://"
    store = Warehouse(spark, scheme + str(tmp_path / "warehouse"))
    assert not store.exists("ns.table") and store.partitions("ns.table") == []
    rows = spark.createDataFrame(
        [("a", 1.5, 10, day) for day in DAYS], "key string, value double, count bigint, ds string"
    )
    store.write_partitions(rows, "ns.table", DAYS[0], DAYS[-1])
    assert store.read("ns.table").count() == 3
    sizes = [store.size_bytes("ns.table", day, day) for day in DAYS]
    assert all(size > 0 for size in sizes)
    assert store.size_bytes("ns.table", DAYS[0], DAYS[-1]) == sum(sizes)
    assert store.size_bytes("ns.table", "2024-04-01", "2024-04-30") == 0

    store.write_empty_partitions("ns.table", rows.schema, DAYS[0], DAYS[1])
    assert store.exists("ns.table") and store.partitions("ns.table") == DAYS
    kept = store.read("ns.table")
    assert [(r["key"], r["ds"]) for r in kept.collect()] == [("a", DAYS[2])]
    assert kept.schema == store.read("ns.table", DAYS[0], DAYS[1]).schema
    assert store.read("ns.table", DAYS[0], DAYS[1]).count() == 0
    assert not (tmp_path / "warehouse" / "ns" / "table" / "_empty_template").exists()
    store.drop_partitions("ns.table", [DAYS[0], "2024-05-01"])  # a day that has no folder is no error
    assert store.partitions("ns.table") == DAYS[1:]


def test_empty_partitions_of_every_column_type_read_back_with_spark_types(spark, tmp_path):
    """Empty days are written without a Spark job; Spark reads them, alone or beside real rows, with the
    table's own types (timestamps, decimals, lists, maps and structs included)."""
    import datetime
    import decimal

    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from feature_assets.storage import Warehouse

    schema = T.StructType(
        [
            T.StructField(name, data_type)
            for name, data_type in [
                ("text", T.StringType()),
                ("whole", T.LongType()),
                ("small", T.IntegerType()),
                ("tiny", T.ByteType()),
                ("real", T.DoubleType()),
                ("flag", T.BooleanType()),
                ("at", T.TimestampType()),
                ("local_at", T.TimestampNTZType()),
                ("day", T.DateType()),
                ("money", T.DecimalType(10, 2)),
                ("raw", T.BinaryType()),
                ("recent", T.ArrayType(T.DoubleType())),
                ("by_name", T.MapType(T.StringType(), T.LongType())),
                (
                    "nested",
                    T.StructType([T.StructField("a", T.LongType()), T.StructField("b", T.ArrayType(T.StringType()))]),
                ),
            ]
        ]
    )
    store = Warehouse(spark, str(tmp_path / "warehouse"))
    store.write_empty_partitions("ns.typed", schema, DAYS[0], DAYS[1])
    read = store.read("ns.typed")
    assert read.schema == T.StructType(schema.fields + [T.StructField("ds", T.StringType())])
    assert read.count() == 0

    moment = datetime.datetime(2024, 3, 3, 12, 30)
    row = (
        "x",
        1,
        2,
        3,
        1.5,
        True,
        moment,
        moment,
        moment.date(),
        decimal.Decimal("1.25"),
        b"ab",
        [1.0],
        {"k": 1},
        (1, ["b"]),
    )
    store.write_partitions(
        spark.createDataFrame([row], schema).withColumn("ds", F.lit(DAYS[2])), "ns.typed", DAYS[2], DAYS[2]
    )
    both = store.read("ns.typed", DAYS[0], DAYS[2])
    assert both.schema == read.schema
    assert [tuple(r)[:-1] for r in both.collect()] == [row]
    assert sorted(r["ds"] for r in both.collect()) == [DAYS[2]]


def test_a_table_read_again_reuses_its_schema_until_its_files_change(spark, tmp_path):
    from feature_assets.storage import Warehouse

    store = Warehouse(spark, str(tmp_path / "warehouse"))
    first = spark.createDataFrame([("a", 1, DAYS[0])], "key string, value bigint, ds string")
    store.write_partitions(first, "ns.evolving", DAYS[0], DAYS[0])
    assert store.read("ns.evolving").columns == ["key", "value", "ds"]

    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("second read", "second read")
    try:
        again = store.read("ns.evolving")
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert list(tracker.getJobIdsForGroup("second read")) == []  # no inference job: the files did not change
    assert again.collect()[0]["value"] == 1

    # Rewritten with one more column: new files, so the schema is inferred again and has the column.
    second = spark.createDataFrame([("a", 1, 2.5, DAYS[0])], "key string, value bigint, score double, ds string")
    store.write_partitions(second, "ns.evolving", DAYS[0], DAYS[0])
    assert store.read("ns.evolving").columns == ["key", "value", "score", "ds"]
    assert store.read("ns.evolving").collect()[0]["score"] == 2.5


def test_a_stored_table_of_empty_days_is_known_empty_from_its_footers(spark, tmp_path):
    from pyspark.sql import functions as F

    from feature_assets.offline.frames import has_no_rows
    from feature_assets.storage import Warehouse

    store = Warehouse(spark, str(tmp_path / "warehouse"))
    rows = spark.createDataFrame([("a", 1, DAYS[2])], "key string, value bigint, ds string")
    store.write_empty_partitions("ns.part", rows.schema, DAYS[0], DAYS[1])
    empty = store.read("ns.part", DAYS[0], DAYS[1])
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("footers", "footers")
    try:
        assert has_no_rows(empty)
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert list(tracker.getJobIdsForGroup("footers")) == []

    store.write_partitions(rows, "ns.part", DAYS[2], DAYS[2])
    assert not has_no_rows(store.read("ns.part"))
    assert has_no_rows(store.read("ns.part").where(F.col("value") > 1))  # rows on disk, none selected
    assert not has_no_rows(empty.unionByName(spark.createDataFrame([("b", 2, DAYS[0])], rows.schema)))


def test_day_row_counts_from_files_match_spark(spark, tmp_path):
    """Rows and unflagged rows per day, counted from footers (or, for a row group mixing true and false flags,
    from its flag column) exactly, or None when the files cannot say: a null flag, a flag that is not
    boolean, or a table on another file system."""
    import numpy as np
    from pyspark.sql import functions as F

    from feature_assets.storage import Warehouse

    store = Warehouse(spark, str(tmp_path / "warehouse"))
    rng = np.random.default_rng(5)
    days = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
    # per day: all flagged, none flagged, none flagged, mixed, and no rows at all
    flags = {days[0]: True, days[1]: False, days[2]: False}
    rows = []
    for ds, flag in flags.items():
        rows += [(int(key), flag, ds) for key in rng.integers(0, 50, int(rng.integers(1, 400)))]
    mixed = [(int(key), bool(rng.random() < 0.5), days[3]) for key in rng.integers(0, 50, 300)]
    frame = spark.createDataFrame(rows + mixed, "key long, covered boolean, ds string").repartition(3)
    store.write_partitions(frame, "ns.flags", days[0], days[-1], shuffle=False)  # several files per day
    assert len(list((tmp_path / "warehouse" / "ns" / "flags" / f"ds={days[0]}").glob("*.parquet"))) > 1

    def spark_counts(first, last, flag):
        read = store.read("ns.flags", first, last)
        unflagged = ~F.col(flag) if flag else F.lit(True)
        found = read.groupBy("ds").agg(F.count(F.lit(1)).alias("rows"), F.sum(unflagged.cast("long")).alias("u"))
        counted = {r["ds"]: (r["rows"], r["u"]) for r in found.collect()}
        return {ds: counted.get(ds, (0, 0)) for ds in store.partitions("ns.flags") if first <= ds <= last}

    for first, last in [(days[0], days[-1]), (days[0], days[2]), (days[3], days[3]), (days[4], days[4])]:
        assert store.day_row_counts("ns.flags", first, last, "covered") == spark_counts(first, last, "covered")
    # Without the flag (a join without bootstrap has none), every row is unflagged; mixed days count too.
    assert store.day_row_counts("ns.flags", days[0], days[-1], None) == spark_counts(days[0], days[-1], None)
    assert store.day_row_counts("ns.flags", days[0], days[-1], "absent") == spark_counts(days[0], days[-1], None)

    nulls = spark.createDataFrame([(1, None, days[0]), (2, None, days[0])], "key long, covered boolean, ds string")
    store.write_partitions(nulls, "ns.null_flags", days[0], days[0])
    assert store.day_row_counts("ns.null_flags", days[0], days[0], "covered") is None
    assert store.day_row_counts("ns.flags", days[3], days[3], "key") is None  # not a boolean column
    assert Warehouse(spark, "s3a://bucket/warehouse").day_row_counts("ns.flags", days[0], days[0]) is None
    assert store.day_row_counts("ns.missing", days[0], days[0]) is None


@pytest.mark.parametrize("writers", [2, 32])
def test_in_place_write_keeps_every_row_with_or_without_enough_open_writers(spark, tmp_path, monkeypatch, writers):
    """A write of tasks as they are (`shuffle=False`) opens one writer per day; a task holding more days than
    the limit (2 here, with days interleaved in each task) has Spark sort the rest. Every row lands in its
    day either way, and the session's setting is left as it was."""
    import random

    from feature_assets.storage import Warehouse, date_range
    from feature_assets.storage import warehouse as warehouse_module

    monkeypatch.setattr(warehouse_module, "MAX_CONCURRENT_DAY_WRITERS", writers)
    days = date_range("2024-03-01", "2024-03-06")
    rng = random.Random(writers)
    rows = [(i, rng.choice([None, rng.random()]), rng.choice(days)) for i in range(600)]
    frame = spark.createDataFrame(rows, "id long, value double, ds string").repartition(3)
    store = Warehouse(spark, str(tmp_path / "warehouse"))
    before = spark.conf.get(warehouse_module.CONCURRENT_WRITERS_CONF, None)
    store.write_partitions(frame, "ns.in_place", days[0], days[-1], shuffle=False)
    assert spark.conf.get(warehouse_module.CONCURRENT_WRITERS_CONF, None) == before
    stored = sorted((r["id"], r["value"], r["ds"]) for r in store.read("ns.in_place").collect())
    assert stored == sorted(rows)
    assert store.partitions("ns.in_place") == days
