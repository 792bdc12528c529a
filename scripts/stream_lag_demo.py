"""Stream lag as the online/offline consistency check sees it, with the real commands on embedded servers.

The quickstart says "online offline consistency helps determine if stream lag is making an effect on the
features being served". In a new folder: the quickstart's repo and five days of its data, the batch of
2023-11-03 loaded. Day one (2023-11-04): the streaming job runs, the day's returns reach Kafka, every checkout
of the day is fetched at its time with its request id (logged), and the log is dumped, flattened and compared:
every feature agrees. Day two (2023-11-05): the job is stopped, the batch of 2023-11-04 loaded, the day's returns
reach Kafka and nobody applies them; the day's checkouts are fetched and compared: the TEMPORAL features
(returns, kept fresh by the stream) mismatch, the SNAPSHOT ones (purchases, batch only) do not, and the trend
check reports the jump against the day before. The numbers are then loaded into the online store and fetched.

    .venv/bin/python scripts/stream_lag_demo.py [--folder DIR]

Each command is printed as `$ feature-assets ...` with its output (long outputs shortened).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_DAY, BATCH_DAY, DAY, LAG_DAY = "2023-11-01", "2023-11-03", "2023-11-04", "2023-11-05"
JOIN = "production/joins/quickstart/training_set.v2"
RETURNS = "production/group_bys/quickstart/returns.v1"
MAX_LINES = 30


def feature_assets(
    *arguments: str, expect: tuple[int, ...] = (0,), stdin: bytes | None = None, stderr: bool = False
) -> str:
    """Run a command, print it and its output (with `stderr`, its progress lines on stderr too)."""
    print(f"$ feature-assets {' '.join(arguments)}", flush=True)
    binary = ROOT / ".venv" / "bin" / "feature-assets"
    done = subprocess.run([str(binary), *arguments], input=stdin, capture_output=True, check=False)
    output = done.stdout.decode()
    lines = output.splitlines() + (done.stderr.decode().splitlines() if stderr else [])
    shown = (
        lines
        if len(lines) <= MAX_LINES
        else [*lines[: MAX_LINES - 1], f"... ({len(lines) - MAX_LINES + 1} more lines)"]
    )
    for line in shown:
        print(line)
    if done.returncode not in expect:
        sys.stderr.write(done.stderr.decode()[-4000:])
        raise SystemExit(f"feature-assets {arguments[0]} exited {done.returncode}")
    if done.returncode:
        print(f"(exit {done.returncode})")
    return "\n".join(lines)


def returns_lines(warehouse: str, ds: str) -> bytes:
    """The day's returns as the seed's CSV lines (ts,return_id,user_id,product_id,refund_amt)."""
    from feature_assets.dev.datagen.parquet_tables import read_table

    rows = read_table(warehouse, "data.returns", ds, ds).sort_values("ts")
    columns = ["ts", "return_id", "user_id", "product_id", "refund_amt"]
    return "".join(
        ",".join("" if v is None else str(v) for v in row) + "\n" for row in rows[columns].itertuples(index=False)
    ).encode()


def fetch_checkouts(warehouse: str, ds: str) -> None:
    """Every checkout of the day fetched with the Python fetcher at its time, its request id among the keys."""
    from feature_assets.dev.datagen.parquet_tables import read_table
    from feature_assets.online.fetch.fetcher import Fetcher
    from feature_assets.online.logging import logger_from_environment
    from feature_assets.online.store import MongoKVStore

    checkouts = read_table(warehouse, "data.checkouts", ds, ds)
    store = MongoKVStore.from_uri(os.environ["FEATURE_ASSETS_MONGO_URI"])
    logger = logger_from_environment(store)
    fetcher = Fetcher(store, logger=logger)
    for request_id, user_id, ts in checkouts[["request_id", "user_id", "ts"]].itertuples(index=False):
        fetcher.fetch_join("quickstart/training_set.v2", {"user_id": user_id, "request_id": request_id}, int(ts))
    if logger is not None:
        logger.close(timeout=60)
    store.close()
    print(f"(Python: Fetcher.fetch_join of the {len(checkouts)} checkouts of {ds}, each at its time: logged)")


def load_batch(ds: str) -> None:
    for group_by in ("purchases", "returns"):
        conf = f"production/group_bys/quickstart/{group_by}.v1"
        feature_assets("backfill", "--conf", conf, "--start-ds", ds, "--end-ds", ds)
    feature_assets("upload", "--conf", JOIN, "--ds", ds)
    feature_assets("load", "--conf", JOIN, "--ds", ds)


@contextlib.contextmanager
def streaming_job(log_path: Path) -> Iterator[Callable[[int], None]]:
    """`feature-assets streaming` of the returns in the background; yields a function that waits until the job
    has read a number of messages; SIGTERM at the end (the job commits and prints its counts)."""
    binary = ROOT / ".venv" / "bin" / "feature-assets"
    print(f"$ feature-assets streaming --conf {RETURNS} &")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(binary), "streaming", "--conf", RETURNS], stdout=log, stderr=subprocess.STDOUT)

    def lines() -> list[str]:
        return log_path.read_text().splitlines()

    def wait_for(done: Callable[[list[str]], bool], what: str) -> None:
        deadline = time.monotonic() + 90
        while not done(lines()):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the streaming job {what}: " + "\n".join(lines()[-10:]))
            time.sleep(0.5)

    def applied(messages: int) -> None:
        def read(current: list[str]) -> bool:
            counts = [int(line.split()[1]) for line in current if line.startswith(("progress: ", "stopped: "))]
            return bool(counts) and max(counts) >= messages

        wait_for(read, f"did not read {messages} messages")

    try:
        wait_for(lambda current: any(line.startswith("assigned: ") for line in current), "got no partitions")
        yield applied
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        for line in lines():
            print(f"  (streaming) {line}")


def compare(ds: str, expect: int) -> None:
    feature_assets("log-dump", "--ds", ds)
    feature_assets("backfill", "--conf", "production/group_bys/quickstart/schema.v1", "--start-ds", ds, "--end-ds", ds)
    feature_assets("log-flattener", "--conf", JOIN, "--ds", ds)
    feature_assets("consistency-metrics-compute", "--conf", JOIN, "--ds", ds, expect=(expect,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="where the demo repo goes (default: a new temporary folder)")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="stream-lag-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("group_bys", "joins"):
        shutil.rmtree(folder / name, ignore_errors=True)
        shutil.copytree(ROOT / "quickstart" / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "feature_repo.yaml").write_text(f'start_date: "{FIRST_DAY}"\nend_date: "{LAG_DAY}"\n')
    warehouse = str(folder / "data" / "warehouse")
    os.chdir(folder)
    os.environ.update(
        {
            "FEATURE_ASSETS_WAREHOUSE": warehouse,
            "DAGSTER_HOME": str(folder / ".dagster_home"),
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
    )
    (folder / ".dagster_home").mkdir(exist_ok=True)
    for name in ("FEATURE_ASSETS_MONGO_URI", "FEATURE_ASSETS_KAFKA_BOOTSTRAP", "FEATURE_ASSETS_START_DATE"):
        os.environ.pop(name, None)
    print(f"# demo repo: {folder}")

    from feature_assets.dev.services.local import local_services

    with local_services(folder / ".services", mongo=True, kafka=True):
        feature_assets("generate-data", "--start-ds", FIRST_DAY, "--end-ds", LAG_DAY)
        feature_assets("compile")
        load_batch(BATCH_DAY)
        feature_assets("metadata-upload", "--conf", JOIN)

        from feature_assets.resources.kafka import KafkaResource

        KafkaResource.from_environment().ensure_topics(["events.returns"], partitions=2)  # as a cluster has it
        print(f"# {DAY}: the streaming job runs (in the background) while the day's returns arrive and are served")
        with streaming_job(folder / "streaming.log") as applied:
            produced = feature_assets(
                "produce", "--topic", "events.returns", stdin=returns_lines(warehouse, DAY), stderr=True
            )
            applied(int(produced.split()[1]) if produced.startswith("sent ") else 0)
            fetch_checkouts(warehouse, DAY)
        compare(DAY, expect=0)

        print(f"# {LAG_DAY}: the streaming job is stopped; the batch of {DAY} is loaded, the day's returns reach Kafka")
        load_batch(DAY)
        feature_assets("produce", "--topic", "events.returns", stdin=returns_lines(warehouse, LAG_DAY), stderr=True)
        fetch_checkouts(warehouse, LAG_DAY)
        compare(LAG_DAY, expect=1)

        print("# the consistency numbers online, per feature and hour")
        feature_assets("load", "--table", "default.quickstart_training_set_v2_consistency_upload")
        feature_assets(
            "fetch",
            "--type",
            "join-consistency",
            "--name",
            "quickstart/training_set.v2",
            "-k",
            '{"startTs":"0","endTs":"1800000000000"}',
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
