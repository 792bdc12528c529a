"""Online/offline consistency end to end on the real servers (the embedded MongoDB-protocol server and Kafka
broker), with the quickstart's repo as a user has it and the CLI in-process:

- agreement: the day's returns streamed through Kafka while the streaming job runs, the day's checkouts fetched
  (logged, with their request ids) while it still runs; dumped, flattened and compared: no mismatch, the check
  passes;
- stream lag: the next day's returns produced while the streaming job is stopped, its checkouts fetched and
  logged, then compared: the TEMPORAL features (returns, streamed) mismatch, the SNAPSHOT ones (purchases,
  batch only) do not, and the check fails naming the lagging features.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
import time

import pytest
from support.paths import QUICKSTART
from support.streaming import RETURNS_COLUMNS, RETURNS_TOPIC, csv_lines, produce

from feature_assets.dev.datagen.parquet_tables import read_table
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.quality.consistency import ALL_COLUMNS

pytestmark = [pytest.mark.spark, pytest.mark.services]

FIRST_DAY, BATCH_DAY, DAY, LAG_DAY = "2023-11-01", "2023-11-03", "2023-11-04", "2023-11-05"
JOIN_CONF = "production/joins/quickstart/training_set.v2"
RETURNS_CONF = "production/group_bys/quickstart/returns.v1"
PURCHASES_CONF = "production/group_bys/quickstart/purchases.v1"
SCHEMA_CONF = "production/group_bys/quickstart/schema.v1"
CONSISTENCY_TABLE = "default.quickstart_training_set_v2_consistency"
UPLOAD_TABLE = "default.quickstart_training_set_v2_consistency_upload"
JOIN_NAME = "quickstart/training_set.v2"
HOUR = 3_600_000
PURCHASE_PREFIX, RETURN_PREFIX = "quickstart_purchases_v1_", "quickstart_returns_v1_"


class Repo:
    """The quickstart repo in a temporary folder, its warehouse, and the CLI in-process."""

    def __init__(self, spark, folder) -> None:
        from feature_assets.cli import main
        from feature_assets.storage import Warehouse

        self.folder, self.main = folder, main
        self.root = str(folder / "warehouse")
        self.warehouse = Warehouse(spark, self.root)

    def cli(self, *arguments: str, expect: int = 0) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.main(list(arguments))
        assert code == expect, (arguments, out.getvalue()[-3000:], err.getvalue()[-3000:])
        return out.getvalue()

    def load_batch(self, ds: str) -> None:
        """The group-bys' day backfilled, uploaded and loaded: what the online store serves the next day."""
        for conf in (PURCHASES_CONF, RETURNS_CONF):
            self.cli("backfill", "--conf", conf, "--start-ds", ds, "--end-ds", ds)
        self.cli("upload", "--conf", JOIN_CONF, "--ds", ds)
        self.cli("load", "--conf", JOIN_CONF, "--ds", ds)

    def produce_returns(self, ds: str) -> int:
        """The day's returns (the rows the offline tables hold) sent to the topic as the seed's CSV lines."""
        rows = read_table(self.root, "data.returns", ds, ds).sort_values("ts")
        rows = rows[RETURNS_COLUMNS].astype(object).where(rows[RETURNS_COLUMNS].notna(), None)
        produce(os.environ["FEATURE_ASSETS_KAFKA_BOOTSTRAP"], RETURNS_TOPIC, csv_lines(rows))
        return len(rows)

    def fetch_checkouts(self, ds: str) -> int:
        """Every checkout of the day fetched at its time with its request id among the keys, logged."""
        from feature_assets.online.fetch.fetcher import Fetcher
        from feature_assets.online.logging import logger_from_environment
        from feature_assets.online.store import MongoKVStore

        checkouts = read_table(self.root, "data.checkouts", ds, ds)
        store = MongoKVStore.from_uri(os.environ["FEATURE_ASSETS_MONGO_URI"])
        logger = logger_from_environment(store)
        assert logger is not None
        fetcher = Fetcher(store, logger=logger)
        for request_id, user_id, ts in checkouts[["request_id", "user_id", "ts"]].itertuples(index=False):
            answer = fetcher.fetch_join(
                "quickstart/training_set.v2", {"user_id": user_id, "request_id": request_id}, int(ts)
            )
            assert answer["error"] is None, answer
        assert logger.close(timeout=60)
        counters = logger.counters()
        store.close()
        assert counters["logged"] == len(checkouts) and counters["dropped"] == 0, counters
        return len(checkouts)

    def compare(self, ds: str, expect: int) -> tuple[str, dict[str, dict]]:
        """The day's log dumped, flattened and compared; the command's output and the consistency per column."""
        self.cli("log-dump", "--ds", ds)
        self.cli("backfill", "--conf", SCHEMA_CONF, "--start-ds", ds, "--end-ds", ds)
        self.cli("log-flattener", "--conf", JOIN_CONF, "--ds", ds)
        output = self.cli("consistency-metrics-compute", "--conf", JOIN_CONF, "--ds", ds, expect=expect)
        totals: dict[str, dict] = {}
        for row in self.warehouse.read(CONSISTENCY_TABLE, ds, ds).collect():
            column = totals.setdefault(row["column_name"], {"total": 0, "mismatch": 0})
            column["total"] += row["total"]
            column["mismatch"] += row["mismatch"]
        return output, totals


@pytest.fixture(scope="module")
def repo(spark, tmp_path_factory):
    """The quickstart repo compiled, its data through LAG_DAY, BATCH_DAY's batch loaded and the join's metadata
    stored, with an embedded MongoDB-protocol server and Kafka broker whose addresses are in the environment."""
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data
    from feature_assets.dev.services.local import local_services

    folder = tmp_path_factory.mktemp("consistency-e2e")
    shutil.copytree(QUICKSTART / "group_bys", folder / "group_bys", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(QUICKSTART / "joins", folder / "joins", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "feature_repo.yaml").write_text(f'start_date: "{FIRST_DAY}"\nend_date: "{LAG_DAY}"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("FEATURE_ASSETS_WAREHOUSE", str(folder / "warehouse"))
        patch.setenv("DAGSTER_HOME", str(folder / "dagster_home"))
        patch.setenv("FEATURE_ASSETS_SPARK_LOG", str(folder / "spark.log"))
        for name in (
            "FEATURE_ASSETS_MONGO_URI",
            "FEATURE_ASSETS_MONGO_DATABASE",
            "FEATURE_ASSETS_START_DATE",
            "FEATURE_ASSETS_FETCH_LOG",
            "FEATURE_ASSETS_KAFKA_BOOTSTRAP",
        ):
            patch.delenv(name, raising=False)
        repo = Repo(spark, folder)
        generate_quickstart_data(repo.root, FIRST_DAY, LAG_DAY, tables=["purchases", "returns", "checkouts", "users"])
        with local_services(folder / "services", mongo=True, kafka=True):
            repo.cli("compile")
            repo.load_batch(BATCH_DAY)
            repo.cli("metadata-upload", "--conf", JOIN_CONF)
            yield repo


def streaming_job():
    """The returns group-by's streaming job, as `feature-assets streaming` builds it."""
    from feature_assets.cli.streaming import kafka_settings
    from feature_assets.compiler import load_compiled_file
    from feature_assets.online.store import MongoKVStore
    from feature_assets.streaming.job import StreamingJob
    from feature_assets.streaming.status import consumer_group_id

    group_by = load_compiled_file(RETURNS_CONF)
    kafka = kafka_settings()
    kafka.ensure_topics([RETURNS_TOPIC], partitions=2)
    store = MongoKVStore.from_uri(os.environ["FEATURE_ASSETS_MONGO_URI"])
    job = StreamingJob(
        group_by,
        store,
        kafka.consumer_config(consumer_group_id(group_by)),
        kafka.producer_config(),
        log=io.StringIO(),
        warehouse_root=os.environ["FEATURE_ASSETS_WAREHOUSE"],
    )
    return job, store


def test_fetches_served_while_the_stream_runs_agree_with_the_backfill(repo):
    job, store = streaming_job()
    runner = threading.Thread(target=job.run, kwargs={"from_beginning": True}, daemon=True)
    runner.start()
    try:
        produced = repo.produce_returns(DAY)
        deadline = time.monotonic() + 90
        while job.counts.messages < produced and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.counts.messages == produced and job.counts.dead_lettered == 0, job.counts
        assert runner.is_alive()  # the fetches below are served while the job runs
        fetched = repo.fetch_checkouts(DAY)
        assert runner.is_alive()
    finally:
        job.stop.set()
        runner.join(60)
        store.close()

    output, totals = repo.compare(DAY, expect=0)
    assert "check consistency_drift of default/quickstart_training_set_v2_consistency: passed" in output, output
    features = [c for c in totals if c.startswith((PURCHASE_PREFIX, RETURN_PREFIX))]
    assert any(c.startswith(RETURN_PREFIX) for c in features) and any(c.startswith(PURCHASE_PREFIX) for c in features)
    for column in features:
        assert totals[column] == {"total": fetched, "mismatch": 0}, (column, totals[column])


def test_events_the_stopped_stream_did_not_apply_show_as_temporal_mismatch(repo):
    repo.load_batch(DAY)
    produced = repo.produce_returns(LAG_DAY)  # nobody consumes them: the streaming job is stopped
    assert produced > 0
    fetched = repo.fetch_checkouts(LAG_DAY)

    output, totals = repo.compare(LAG_DAY, expect=1)
    assert "check consistency_drift of default/quickstart_training_set_v2_consistency: ERROR" in output, output
    temporal = {c: t for c, t in totals.items() if c.startswith(RETURN_PREFIX)}
    snapshot = {c: t for c, t in totals.items() if c.startswith(PURCHASE_PREFIX)}
    assert temporal and snapshot
    assert all(t == {"total": fetched, "mismatch": 0} for t in snapshot.values()), snapshot
    lagging = sorted(c for c, t in temporal.items() if t["mismatch"] > 0)
    assert lagging, temporal
    # The returns counted in the last 3 days miss the day's earlier returns for most users who had one.
    assert any(c.endswith("_count_3d") for c in lagging), lagging
    for column in lagging:
        assert f"    ERROR {column}: mismatch rate {temporal[column]['mismatch'] / fetched:.4g} (" in output, output
    assert "check consistency_trend of default/quickstart_training_set_v2_consistency: WARN" in output, output

    # The numbers online: the upload table loaded by name, fetched per feature and hour.
    loaded = repo.cli("load", "--table", UPLOAD_TABLE)
    for ds in (DAY, LAG_DAY):
        assert f"loaded {UPLOAD_TABLE} [{ds}] into QUICKSTART_TRAINING_SET_V2_CONSISTENCY: " in loaded
    keys = json.dumps({"startTs": str(end_of_day_millis(DAY)), "endTs": str(end_of_day_millis(LAG_DAY))})
    fetched_buckets = json.loads(repo.cli("fetch", "--type", "join-consistency", "--name", JOIN_NAME, "-k", keys))
    assert set(fetched_buckets) == set(totals) - {ALL_COLUMNS}
    for column, buckets in fetched_buckets.items():
        assert [b["ts"] for b in buckets] == sorted(b["ts"] for b in buckets)
        assert all(b["ts"] % HOUR == 0 for b in buckets)
        assert list(buckets[0])[:7] == ["ts", "total", "mismatch", "both_null", "left_null", "right_null", "smape"]
        assert sum(b["total"] for b in buckets) == fetched
        assert sum(b["mismatch"] for b in buckets) == totals[column]["mismatch"]
    repo.cli("fetch", "--type", "join-consistency", "--name", JOIN_NAME, "-k", '{"startTs":"0"}', expect=2)
