"""The quickstart end to end on embedded defaults: data, compile, backfill through Dagster, and what to open.

Each step is a function that `run` calls in order (`feature-assets quickstart`); later steps (upload, fetch,
streaming, quality) extend the same flow. Run it from the project folder: the feature repo is `./quickstart`
(or `$FEATURE_ASSETS_REPO`), the tables go to `./data/warehouse` (or `$FEATURE_ASSETS_WAREHOUSE`), the
servers' state to `./.services`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from feature_assets.compiler import compile_configs, load_compiled, write_compiled
from feature_assets.definitions import build_definitions
from feature_assets.definitions.factory import METADATA_UPLOAD_JOB, ONLINE_UPLOAD_JOB
from feature_assets.definitions.runs import command_log_path, quiet_dagster_warnings, run_backfill, run_job
from feature_assets.dev.datagen.parquet_tables import list_partitions
from feature_assets.dev.datagen.quickstart import END_DS, START_DS, TABLES, date_range, generate_quickstart_data
from feature_assets.dev.example_fetches import print_example_fetches
from feature_assets.dev.realtime_demo import stream_seed_event
from feature_assets.dev.services.local import default_state_dir, local_services
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.resources.spark import SPARK_LOG_ENV
from feature_assets.storage import default_root

REPO_ENV = "FEATURE_ASSETS_REPO"
QUICKSTART_FOLDER = "quickstart"
# 00:00 UTC after the last batch day (2023-12-02): where the seed streams its realtime event (1701475200000).
AFTER_LAST_BATCH_MILLIS = end_of_day_millis(END_DS)


def quickstart_repo() -> Path:
    """The quickstart feature repo: `$FEATURE_ASSETS_REPO`, else `./quickstart` of the current folder."""
    repo = Path(os.environ.get(REPO_ENV) or Path.cwd() / QUICKSTART_FOLDER).resolve()
    if not any((repo / folder).is_dir() for folder in ("group_bys", "joins", "production")):
        raise SystemExit(
            f"no quickstart feature repo at {repo}: run this from the project folder (the one "
            f"holding quickstart/, as scripts/quickstart.sh does) or set {REPO_ENV} to the repo"
        )
    return repo


def step(title: str):
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def generate_data(warehouse: str) -> None:
    counts = generate_quickstart_data(warehouse, START_DS, END_DS)
    for table, rows in counts.items():
        print(f"    {table}: {rows} rows")


def missing_days(warehouse: str) -> list[str]:
    """`table ds` of every quickstart partition the warehouse lacks (an older run may have stopped earlier)."""
    days = [day.isoformat() for day in date_range(START_DS, END_DS)]
    missing = []
    for table in TABLES:
        present = set(list_partitions(warehouse, f"data.{table}"))
        missing += [f"data.{table} {ds}" for ds in days if ds not in present]
    return missing


def compile_repo(repo: Path, warehouse: str) -> None:
    """Compile every config, checked against the source tables just generated."""
    for path in write_compiled(compile_configs(repo, warehouse=warehouse)):
        print(f"    {path.relative_to(repo)}")


def backfill_joins(repo: Path) -> list[str]:
    """Materialize every join (and everything upstream) for the whole range, one Dagster run per join."""
    defs = build_definitions(repo)
    tables = []
    for name in sorted(load_compiled(repo).joins):
        started = time.monotonic()
        result = run_backfill(defs, "joins", name, START_DS, END_DS)
        materialized = sorted(
            {
                e.event_specific_data.materialization.asset_key.to_user_string()
                for e in result.get_asset_materialization_events()
            }
        )
        failed = [
            f"{e.asset_key.to_user_string()}:{e.check_name}"
            for e in result.get_asset_check_evaluations()
            if not e.passed
        ]
        if not result.success or failed:
            raise SystemExit(f"backfill of {name} failed (run {result.run_id}); failed checks: {failed}")
        print(
            f"    {name}: {len(materialized)} assets x {START_DS}..{END_DS} in {time.monotonic() - started:.1f}s "
            f"(run {result.run_id[:8]})"
        )
        tables += materialized
    return sorted(set(tables))


def refresh_online_store(repo: Path) -> None:
    """The online use cases through Dagster: upload + load the last day, then the online configs' metadata."""
    defs = build_definitions(repo)
    for job, days in ((ONLINE_UPLOAD_JOB, (END_DS, END_DS)), (METADATA_UPLOAD_JOB, (None, None))):
        started = time.monotonic()
        result = run_job(defs, job, *days)
        if not result.success:
            raise SystemExit(f"{job} failed (run {result.run_id})")
        keys = sorted(
            {
                e.event_specific_data.materialization.asset_key.to_user_string()
                for e in result.get_asset_materialization_events()
            }
        )
        print(f"    {job}: {', '.join(keys)} in {time.monotonic() - started:.1f}s")


def show_fetches() -> None:
    uri = os.environ["FEATURE_ASSETS_MONGO_URI"]
    database = os.environ.get("FEATURE_ASSETS_MONGO_DATABASE", "feature_assets")
    print(f"    now (the batch of {END_DS} serves SNAPSHOT features; TEMPORAL windows end now):")
    print_example_fetches(uri, database)
    after = datetime.fromtimestamp(AFTER_LAST_BATCH_MILLIS / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
    print(f"    at {after}, right after that batch (--at-millis {AFTER_LAST_BATCH_MILLIS}):")
    print_example_fetches(uri, database, at_millis=AFTER_LAST_BATCH_MILLIS)


def run(regenerate: bool = False) -> int:
    repo = quickstart_repo()
    # The JVM's own start-up notices go to a log file, not between the quickstart's lines.
    os.environ.setdefault(SPARK_LOG_ENV, str(command_log_path("quickstart")))
    warehouse = default_root()
    os.environ.setdefault("FEATURE_ASSETS_WAREHOUSE", warehouse)
    total = time.monotonic()
    with local_services(default_state_dir()) as services:
        print(f"MongoDB-protocol server: {services.mongo_uri}\nKafka-protocol broker: {services.kafka_bootstrap}")
        step(f"Generating the quickstart source tables into {warehouse}")
        missing = missing_days(warehouse)
        if regenerate or missing:
            generate_data(warehouse)
        else:
            print(f"    already there for {START_DS}..{END_DS} (pass --regenerate to rewrite)")
        step("Compiling the quickstart feature repo")
        compile_repo(repo, warehouse)
        step(f"Backfilling every asset for {START_DS}..{END_DS} through Dagster (local Spark)")
        assets = backfill_joins(repo)
        step(f"Uploading {END_DS} to the online store (MongoDB) and storing online metadata")
        refresh_online_store(repo)
        step("Fetching features online, as `feature-assets fetch` does")
        show_fetches()
        step("Fetching a realtime feature: the seed's event through Kafka and the streaming job")
        stream_seed_event(
            repo,
            services.mongo_uri or os.environ["FEATURE_ASSETS_MONGO_URI"],
            os.environ.get("FEATURE_ASSETS_MONGO_DATABASE", "feature_assets"),
            services.kafka_bootstrap or os.environ["FEATURE_ASSETS_KAFKA_BOOTSTRAP"],
        )
    print(f"\nDone in {time.monotonic() - total:.0f}s. Tables (parquet, partitioned by ds) under {warehouse}:")
    for key in assets:
        print(f"    {key.replace('/', '.')}")
    print(
        "\nLook at a partition:  .venv/bin/feature-assets show --table default.quickstart_training_set_v1 "
        f"--ds {END_DS}"
    )
    print(
        "Open the UI:          bash scripts/ui.sh   (then http://127.0.0.1:3000; "
        f"Dagster home {os.environ.get('DAGSTER_HOME')})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feature-assets quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true", help="rewrite the quickstart source tables")
    regenerate = parser.parse_args(argv).regenerate
    quiet_dagster_warnings()
    return run(regenerate=regenerate)


if __name__ == "__main__":
    sys.exit(main())
