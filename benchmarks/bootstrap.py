"""Bootstrap benchmark: what reusing precomputed features saves.

The same join of two TEMPORAL group-bys over the quickstart data (at --scale), run three ways in one process:
no bootstrap; a bootstrap table covering 95% of the rows for the purchases group-by; and one covering
100% of the rows for the returns group-by (plus the 95% for purchases). Prints each time and the ratio
to the run without bootstrap.

    .venv/bin/python benchmarks/bootstrap.py --scale 0.2
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.backfill import END, START, generate, join_config  # noqa: E402
from benchmarks.common import timed  # noqa: E402
from feature_assets.model.configs import Join  # noqa: E402


def run(warehouse, config: dict, out_table: str) -> dict:
    from feature_assets.offline.bootstrap import enrich_left
    from feature_assets.offline.join import assemble_join, compute_needed_join_part, read_left

    join = Join.from_json(config)
    left = read_left(warehouse, join, START, END)
    enriched, _ = enrich_left(warehouse, join, left, START, END)
    warehouse.write_partitions(enriched, out_table + "_bootstrap", START, END)
    enriched = warehouse.read(out_table + "_bootstrap", START, END)
    parts, computed = [], {}
    for part in join.join_parts:
        name = part.group_by.name.split(".")[1]
        frame, stats = compute_needed_join_part(warehouse, join, part, enriched, START, END, read_snapshot=None)
        warehouse.write_partitions(frame, f"{out_table}_{name}", START, END)
        parts.append((part, warehouse.read(f"{out_table}_{name}", START, END)))
        computed[name] = stats["rows_computed"]
    warehouse.write_partitions(assemble_join(join, enriched, parts), out_table, START, END)
    return computed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--users", type=int, default=200_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import functions as F

    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    spark = SparkResource(conf={"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": "16"}).get_session()
    spark.sparkContext.setLogLevel("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-bootstrap-"))
    warehouse = Warehouse(spark, str(workdir / "warehouse"))
    counts = generate(warehouse.root, args.scale, args.users, 1.1)
    print(f"{counts}")
    base = join_config()
    results: dict = {}

    run(warehouse, base, "default.bench_plain")  # warm-up: JIT, Python workers and file caches
    with timed("no bootstrap", results):
        computed = run(warehouse, base, "default.bench_plain")
    print(f"    rows computed per part: {computed}")
    plain = warehouse.read("default.bench_plain", START, END)
    purchases = [c for c in plain.columns if c.startswith("bench_purchases_v1_")]
    returns = [c for c in plain.columns if c.startswith("bench_returns_v1_")]
    # Precomputed tables, as another join's output would be: the plain run's values for a share of the rows.
    sample = F.abs(F.hash("request_id")) % 100
    warehouse.write_partitions(
        plain.where(sample < 95).select("request_id", *purchases, "ds"), "boot.purchases_95", START, END
    )
    warehouse.write_partitions(plain.select("request_id", *returns, "ds"), "boot.returns_100", START, END)

    partial = copy.deepcopy(base)
    partial["bootstrapParts"] = [{"table": "boot.purchases_95", "query": {}, "keyColumns": ["request_id"]}]
    with timed("95% of rows covered for purchases", results):
        computed = run(warehouse, partial, "default.bench_partial")
    print(f"    rows computed per part: {computed}")

    full = copy.deepcopy(partial)
    full["bootstrapParts"].append({"table": "boot.returns_100", "query": {}, "keyColumns": ["request_id"]})
    with timed("+ 100% covered for returns", results):
        computed = run(warehouse, full, "default.bench_full")
    print(f"    rows computed per part: {computed}")

    same = warehouse.read("default.bench_full", START, END).exceptAll(plain).count() == 0
    baseline = results["no bootstrap"]["seconds"]
    print("\nsummary (ratio = time / time without bootstrap)")
    for label, result in results.items():
        print(f"  {label:<40} {result['seconds']:7.1f} s   {result['seconds'] / baseline:5.2f}x")
    print(f"  bootstrapped output equals the computed output: {same}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
