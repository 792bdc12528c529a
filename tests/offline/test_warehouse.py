"""The warehouse's partition writes: empty days, sizes, and local paths in their URL forms."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.spark
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]


def test_local_path_forms():
    from feature_assets.storage.warehouse import _local_path

    assert _local_path("file:///tmp/w/ns/t") == "/tmp/w/ns/t"
    assert _local_path("file:/tmp/w/ns/t") == "/tmp/w/ns/t"
    assert _local_path("/tmp/w/ns/t") == "/tmp/w/ns/t"
    assert _local_path("data/warehouse/ns/t") == "data/warehouse/ns/t"
    assert _local_path("s3a://bucket/w/ns/t") is None
    assert _local_path("hdfs://namenode:8020/w/ns/t") is None


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_empty_partitions_replace_rows_and_keep_the_schema(spark, tmp_path, scheme):
    from feature_assets.storage import Warehouse

    store = Warehouse(spark, scheme + str(tmp_path / "warehouse"))
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
    assert store.partitions("ns.table") == DAYS
    kept = store.read("ns.table")
    assert [(r["key"], r["ds"]) for r in kept.collect()] == [("a", DAYS[2])]
    assert kept.schema == store.read("ns.table", DAYS[0], DAYS[1]).schema
    assert store.read("ns.table", DAYS[0], DAYS[1]).count() == 0
    assert not (tmp_path / "warehouse" / "ns" / "table" / "_empty_template").exists()
