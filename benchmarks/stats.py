"""Stats benchmark: the daily stats of the backfill benchmark's join output against the join's own backfill.

The backfill benchmark's data and join (`benchmarks/backfill.py`: 500k left rows, 5M events, two TEMPORAL
group-bys with 24 windowed features each, LAST_K lists and percentile arrays) is backfilled once, then its
output summarized as the stats asset does: the stats table (hourly buckets) at the join's default sample
share (10%) and at 100%, the upload table, a drift report per day, and the charts (timed apart). Printed:
each step's wall time and the ratio stats / backfill (target <= 0.3 at the default share), from one run.

    .venv/bin/python benchmarks/stats.py                 # full scale
    .venv/bin/python benchmarks/stats.py --scale 0.1     # a tenth of it
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.backfill import END, START, generate, join_config, run_engine  # noqa: E402
from benchmarks.common import timed  # noqa: E402
from feature_assets.model.configs import Join  # noqa: E402

OUTPUT = "default.bench_stats_join"


def summarize(warehouse, join: Join, sample_percent: float) -> tuple[int, list]:
    """What the stats asset computes for the range: stats table, upload table, one drift report per day."""
    from feature_assets.quality.drift_report import day_report
    from feature_assets.quality.stats_tables import join_stats, read_day_summaries, upload_frame
    from feature_assets.storage import date_range

    days = date_range(START, END)
    warehouse.write_partitions(
        join_stats(warehouse, join, START, END, False, sample_percent), join.daily_stats_table, START, END
    )
    stats = warehouse.read(join.daily_stats_table, START, END)
    warehouse.write_partitions(upload_frame(stats), join.daily_stats_upload_table, START, END)
    summaries = read_day_summaries(warehouse, join.daily_stats_table, days)
    reports = [day_report(ds, summaries, join.drift_reference, join.drift_thresholds) for ds in days]
    return stats.count(), reports


def charts(warehouse, join: Join, reports: list, folder: Path) -> None:
    from feature_assets.quality.charts import render_day_chart
    from feature_assets.quality.stats_tables import read_day_summaries
    from feature_assets.storage import date_range

    summaries = read_day_summaries(warehouse, join.daily_stats_table, date_range(START, END))
    for report in reports:
        window = [ds for ds in sorted(summaries) if ds <= report.ds][-14:]
        render_day_chart(
            folder / f"{report.ds}.png", join.daily_stats_table, report, summaries, window, join.drift_thresholds
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the default data size")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--workdir", help="keep the data here (default: a temporary folder, removed)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    spark = SparkResource(
        conf={"spark.driver.memory": args.driver_memory, "spark.sql.shuffle.partitions": "16"}
    ).get_session()
    spark.sparkContext.setLogLevel("ERROR")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stats-bench-"))
    print(f"machine: {os.cpu_count()} cores; Spark {spark.version} local; workdir {workdir}")
    results: dict = {}
    try:
        root = str(workdir / "warehouse")
        counts = generate(root, args.scale, args.users, args.zipf_s)
        warehouse = Warehouse(spark, root)
        config = join_config()
        config["metaData"]["name"] = "bench.stats_join"
        join = Join.from_json(config)
        assert join.output_table == OUTPUT
        with timed("join backfill (parts persisted, as the assets run it)", results):
            rows = run_engine(warehouse, join, join.output_table)
        columns = len(warehouse.read(join.output_table, START, START).columns)
        with timed(f"stats at the default {join.stats_sample_percent:g}% (table, upload, drift reports)", results):
            stats_rows, reports = summarize(warehouse, join, join.stats_sample_percent)
        with timed("charts: one PNG per day", results):
            charts(warehouse, join, reports, workdir / "charts")
        with timed("stats at 100% (table, upload, drift reports)", results):
            summarize(warehouse, join, 100.0)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    backfill = results["join backfill (parts persisted, as the assets run it)"]["seconds"]
    default = results[f"stats at the default {join.stats_sample_percent:g}% (table, upload, drift reports)"]["seconds"]
    drawn = results["charts: one PNG per day"]["seconds"]
    full = results["stats at 100% (table, upload, drift reports)"]["seconds"]
    print(
        f"\nsummary: {counts.get('data.checkouts', rows)} left rows, {rows} output rows, {columns} columns, "
        f"{stats_rows} stats rows"
    )
    print(f"  stats / backfill at {join.stats_sample_percent:g}% = {default / backfill:.2f}x (target <= 0.3x)")
    print(f"  with the charts = {(default + drawn) / backfill:.2f}x")
    print(f"  stats / backfill at 100% = {full / backfill:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
