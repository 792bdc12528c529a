"""Bootstrap benchmark: what reusing precomputed features saves.

The same join of two TEMPORAL group-bys over the quickstart data (at --scale; 1.0 is the full scale of
`benchmarks/backfill.py`: 500k left rows, 5M events), run in one process as the asset graph runs it (the
bootstrap table, each join part and the output written and read back):

- no bootstrap (the baseline);
- 95% of the rows covered for the purchases group-by (the returns group-by computed for every row);
- 100% of the rows covered for both group-bys (nothing to compute).

Every scenario runs --warmup times untimed, then --rounds times in turn (the order turning each round). Prints
the scale, each round's time, each scenario's median, its ratio to the baseline's median and the targets (95%
<= 1.0x, 100% <= 0.33x), each step's median (bootstrap table, each part, output), and checks that every
bootstrapped output equals the computed one.

    flock /tmp/spark-tests.lock .venv/bin/python benchmarks/bootstrap.py --scale 1.0
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.backfill import END, START, generate, join_config  # noqa: E402
from benchmarks.common import timed  # noqa: E402
from feature_assets.model.configs import Join  # noqa: E402

PLAIN, PARTIAL, FULL = "no bootstrap", "95% covered for purchases", "100% covered for both parts"
TARGETS = {PARTIAL: 1.0, FULL: 0.33}


def run(warehouse, config: dict, out_table: str, steps: dict[str, float] | None = None) -> dict:
    """The join as the asset graph runs it: the bootstrap table, then each join part, then the output.
    Each step's seconds go to `steps` when given (keys: bootstrap table, the part names, output)."""
    from feature_assets.offline.bootstrap import write_bootstrap_table
    from feature_assets.offline.join import read_left, write_join_output, write_join_part

    steps = {} if steps is None else steps
    started = time.monotonic()

    def step_done(name: str) -> None:
        nonlocal started
        steps[name] = time.monotonic() - started
        started = time.monotonic()

    join = Join.from_json(config)
    left = read_left(warehouse, join, START, END)
    write_bootstrap_table(warehouse, join, left, out_table + "_bootstrap", START, END)
    step_done("bootstrap table")
    flagged = warehouse.read(out_table + "_bootstrap", START, END)
    parts, computed = [], {}
    for part in join.join_parts:
        name = part.group_by.name.split(".")[1]
        stats = write_join_part(
            warehouse, join, part, flagged, f"{out_table}_{name}", START, END, None, stored_as=out_table + "_bootstrap"
        )
        parts.append((part, warehouse.read(f"{out_table}_{name}", START, END)))
        computed[name] = stats["rows_computed"]
        step_done(f"{name} part")
    write_join_output(warehouse, join, flagged, parts, out_table, START, END)
    step_done("output")
    return computed


def same_rows(warehouse, table: str, reference) -> bool:
    output = warehouse.read(table, START, END).select(*reference.columns)
    return output.exceptAll(reference).isEmpty() and reference.exceptAll(output).isEmpty()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.2, help="share of the full data set (1.0 = full scale)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of every scenario (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs of every scenario before the rounds")
    parser.add_argument("--users", type=int, default=200_000, help="users at full scale (scaled like the rest)")
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
    print(f"scale {args.scale}: {counts}")
    base = join_config()
    run(warehouse, base, "default.bench_plain")  # the computed output, which the precomputed tables copy
    plain = warehouse.read("default.bench_plain", START, END)
    purchases = [c for c in plain.columns if c.startswith("bench_purchases_v1_")]
    returns = [c for c in plain.columns if c.startswith("bench_returns_v1_")]
    # Precomputed tables, as another join's output would be: the computed values for a share of the rows.
    sample = F.abs(F.hash("request_id")) % 100
    warehouse.write_partitions(
        plain.where(sample < 95).select("request_id", *purchases, "ds"), "boot.purchases_95", START, END
    )
    warehouse.write_partitions(plain.select("request_id", *purchases, *returns, "ds"), "boot.all_100", START, END)
    reference = warehouse.read("default.bench_plain", START, END)  # read from disk: no cached rows between runs

    partial = copy.deepcopy(base)
    partial["bootstrapParts"] = [{"table": "boot.purchases_95", "query": {}, "keyColumns": ["request_id"]}]
    full = copy.deepcopy(base)
    full["bootstrapParts"] = [{"table": "boot.all_100", "query": {}, "keyColumns": ["request_id"]}]
    outputs = {PLAIN: "default.bench_plain_timed", PARTIAL: "default.bench_partial", FULL: "default.bench_full"}
    configs = {PLAIN: base, PARTIAL: partial, FULL: full}
    # Every scenario runs --warmup times untimed (new query plans, code paths and files to cache; the JVM
    # compiles the code Spark generates for each plan over its first few runs: one scenario's output took
    # 12.6, 9.0, 8.2 and 7.7 s in its first four), then --rounds times in turn, so a slow moment of the
    # machine falls on all of them alike; each is reported by its median round. The order turns by one
    # scenario each round: none always follows the same one (and pays for what it left behind: garbage to
    # collect, files still being flushed).
    for warm_up in range(args.warmup):
        for label, config in configs.items():
            computed = run(warehouse, config, outputs[label])
            print(f"warm-up {warm_up + 1} {label}: rows computed per part: {computed}", flush=True)
    rounds: dict[str, list[float]] = {label: [] for label in configs}
    step_rounds: dict[str, list[dict[str, float]]] = {label: [] for label in configs}
    labels = list(configs)
    for round_number in range(args.rounds):
        turn = round_number % len(labels)
        for label in labels[turn:] + labels[:turn]:
            config = configs[label]
            result: dict = {}
            steps: dict[str, float] = {}
            with timed(f"round {round_number + 1}: {label}", result):
                run(warehouse, config, outputs[label], steps)
            rounds[label].append(result[f"round {round_number + 1}: {label}"]["seconds"])
            step_rounds[label].append(steps)

    medians = {label: statistics.median(times) for label, times in rounds.items()}
    baseline = medians[PLAIN]
    left_rows = counts["data.checkouts"]
    print(
        f"\nsummary at scale {args.scale} ({left_rows} left rows; median of {args.rounds} rounds; "
        "ratio = time / time without bootstrap)"
    )
    for label, seconds in medians.items():
        ratio = seconds / baseline
        target = ""
        if label in TARGETS:
            target = f"  target <= {TARGETS[label]:.2f}x: {'met' if ratio <= TARGETS[label] else 'MISSED'}"
        each = ", ".join(f"{t:.1f}" for t in rounds[label])
        print(f"  {label:<32} {seconds:7.1f} s   {ratio:5.2f}x{target}   (rounds: {each} s)")
    print("\nper step (median seconds over the rounds; the steps of one round add up to its time, within rounding)")
    for label, per_round in step_rounds.items():
        medians_by_step = {name: statistics.median(r[name] for r in per_round) for name in per_round[0]}
        print(f"  {label:<32} " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in medians_by_step.items()))
    for label, table in outputs.items():
        print(f"  {label}: output equals the computed output: {same_rows(warehouse, table, reference)}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
