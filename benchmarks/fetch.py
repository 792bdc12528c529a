"""Benchmark of online fetches of `quickstart.training_set.v2` (two group-bys, 20 features).

    .venv/bin/python benchmarks/fetch.py [--keys 100000] [--requests 2000] [--batches 100] [--no-http]
        [--logging-rounds 30] [--logging-only] [--log-sink mongo|kafka|memory]

Steps: synthesize quickstart-like purchases and returns for `--keys` users, encode the batch uploads with the
same pandas encoders the Spark upload runs (purchases: SNAPSHOT finished values; returns: TEMPORAL tail events
and head IRs), bulk-load both into MongoDB (the load rate is printed), write streaming returns after the batch
end for 10% of the users, store the join's metadata, then time fetches:

- in-process (`Fetcher.fetch_join`), single keys and batches of 100, with 1 and 8 concurrent client threads;
- over HTTP (`feature-assets serve` in its own process, httpx clients), the same shapes;
- the floor, from the same run: raw pymongo reads of the same documents (the two batch documents by `_id`
  and the streaming range of the key; `$in` for batches).

- fetch logging: single-key join fetches (with a contextual `request_id`) without a logger and with the
  default one (MongoDB sink: bundles of records in `fetch_log` of the same database), alternating in
  `--logging-rounds` rounds so both see the same machine, the logger flushed after each of its rounds so that
  its writes never fall into a round without it (`--log-sink kafka` logs to a local Kafka-protocol broker,
  `memory` measures the logger alone); p50 / p99 of all rounds and the overhead on p99 (the target: at most
  10%), each round's p99 (how much the machine moves it), and the logger's counters. Then the same for batch
  fetches of `--batch-size` requests (10 rounds of `--log-batches` / 10 batches each; no target).

Prints p50 / p99 latency and throughput per scenario and the server used. MongoDB: `$FEATURE_ASSETS_MONGO_URI`,
else a local SecantusDB started for the run (written in Python, so absolute numbers are far from a real
MongoDB's; compare with the floor of the same run).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql.types import LongType  # noqa: E402

from feature_assets.aggregation.windows import compute_features  # noqa: E402
from feature_assets.compiler import load_compiled_file  # noqa: E402
from feature_assets.model import JOINS  # noqa: E402
from feature_assets.offline.specs import output_type  # noqa: E402
from feature_assets.online.batch_encoding import (  # noqa: E402
    encode_snapshot_rows,
    encode_temporal_rows,
    end_of_day_millis,
    load_rows,
    make_schema,
)
from feature_assets.online.fetch.fetcher import Fetcher  # noqa: E402
from feature_assets.online.logging import FetchLogger, MemorySink  # noqa: E402
from feature_assets.online.logging.sinks.kafka import KafkaLogSink  # noqa: E402
from feature_assets.online.logging.sinks.mongo import MongoLogSink  # noqa: E402
from feature_assets.online.store import MongoKVStore, batch_versions, doc_id, upload_metadata  # noqa: E402
from feature_assets.online.streaming_writer import StreamingWriter  # noqa: E402

DAY = 86_400_000
BATCH_DS = "2023-11-30"
PRODUCTION = ROOT / "quickstart" / "production"


def compiled(path: str):
    return load_compiled_file(PRODUCTION / path)


def synthesize(n_users: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    end = end_of_day_millis(BATCH_DS)
    users = np.array([str(u) for u in range(1, n_users + 1)], dtype=object)

    def events(per_user: float, column: str) -> pd.DataFrame:
        # every user has at least one event (so every key is uploaded), the rest at random
        n = int(n_users * per_user)
        who = np.concatenate([np.arange(n_users), rng.integers(0, n_users, max(n - n_users, 0))])
        return pd.DataFrame(
            {
                "user_id": users[who],
                "ts": (end - rng.integers(1, 29 * DAY, len(who))).astype(np.int64),
                column: rng.integers(1, 500, len(who)).astype(np.int64),
            }
        )

    return events(3.0, "purchase_price"), events(1.5, "refund_amt")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def run_clients(call, requests: list, clients: int) -> dict:
    """Run `call(request)` for every request split over `clients` threads; latency per call in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    shares = [requests[i::clients] for i in range(clients)]

    def worker(share):
        mine = []
        for request in share:
            started = time.perf_counter()
            call(request)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "rps": len(latencies) / elapsed,
        "n": len(latencies),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000, help="users uploaded (default 100000)")
    parser.add_argument("--requests", type=int, default=2000, help="single-key fetches per scenario")
    parser.add_argument("--batches", type=int, default=100, help="batch fetches (of --batch-size keys) per scenario")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", default="1,8", help="concurrent clients, comma separated")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--database", default="fetch_benchmark")
    # A round's p99 moves between 1.1 and 2.4 ms on this machine, with or without logging: with 30 rounds of each
    # mode, the overhead on the pooled p99 spread over 5 points between runs (over 20 with 6 rounds).
    parser.add_argument("--logging-rounds", type=int, default=30, help="alternating rounds without/with logging")
    parser.add_argument("--log-batches", type=int, default=500, help="batch fetches per mode in the logging comparison")
    parser.add_argument("--log-batch-size", type=int, default=None, help="the logger's batch size (default: its own)")
    parser.add_argument("--log-linger", type=float, default=None, help="the logger's linger seconds (default: its own)")
    parser.add_argument(
        "--log-sink",
        choices=("mongo", "kafka", "memory"),
        default="mongo",
        help="where the logged fetches go: the same MongoDB (default), a local tansu broker, or a list in memory "
        "(the logger's own cost, without the log store's)",
    )
    parser.add_argument("--logging-only", action="store_true", help="time only the fetch logging comparison")
    args = parser.parse_args(argv)
    client_counts = [int(c) for c in args.clients.split(",")]

    uri = os.environ.get("FEATURE_ASSETS_MONGO_URI")
    mongo = None
    if not uri:
        from feature_assets.dev.services.local import start_mongo

        state = Path(tempfile.mkdtemp(prefix="fetch-bench-"))
        mongo = start_mongo(state / "mongo", log_path=state / "mongo.log")
        uri = mongo.url
    store = MongoKVStore.from_uri(uri, args.database)
    info = store.db.client.server_info()
    where = "SecantusDB (local, started for this run)" if mongo else uri.split("@")[-1]
    server = f"{where}; reports MongoDB {info.get('version')}"
    print(f"server: {server}")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    try:
        return run(args, store, uri, client_counts)
    finally:
        store.close()
        if mongo:
            mongo.stop()


def run(args, store: MongoKVStore, uri: str, client_counts: list[int]) -> int:
    purchases_gb = compiled("group_bys/quickstart/purchases.v1")
    returns_gb = compiled("group_bys/quickstart/returns.v1")
    join = compiled("joins/quickstart/training_set.v2")
    store.db.client.drop_database(args.database)

    # ---------------------------------------------------------------- build and load the uploads
    started = time.perf_counter()
    purchases, returns = synthesize(args.keys)
    end = end_of_day_millis(BATCH_DS)
    specs = purchases_gb.specs
    users = sorted(purchases["user_id"].unique())
    daily = compute_features(
        purchases, pd.DataFrame({"user_id": users, "ts": end}), ["user_id"], specs, frozenset({"purchase_price"})
    )
    purchase_schema = make_schema(
        purchases_gb, {"user_id": "string"}, {s.column_name: output_type(s, LongType()).simpleString() for s in specs}
    )
    purchase_rows = encode_snapshot_rows(daily, purchase_schema)
    return_schema = make_schema(returns_gb, {"user_id": "string"}, {"refund_amt": "bigint"})
    return_rows = encode_temporal_rows(returns, return_schema, returns_gb, end)
    print(
        f"encoded uploads in {time.perf_counter() - started:.1f}s: {len(purchase_rows)} purchases rows "
        f"(avg {np.mean([len(v) for v in purchase_rows['value']]):.0f} B), {len(return_rows)} returns rows "
        f"(avg {np.mean([len(v) for v in return_rows['value']]):.0f} B)"
    )
    total_rows, load_seconds = 0, 0.0
    for gb, rows, schema in ((purchases_gb, purchase_rows, purchase_schema), (returns_gb, return_rows, return_schema)):
        result = load_rows(store, gb, BATCH_DS, rows, schema)
        total_rows += result["rows"]
        load_seconds += result["seconds"]
        print(
            f"bulk load {gb.batch_dataset}: {result['rows']} keys in {result['seconds']:.1f}s "
            f"= {result['rows'] / result['seconds']:.0f} keys/s"
        )
    print(f"bulk load rate: {total_rows / load_seconds:.0f} keys/s overall ({total_rows} documents)")
    upload_metadata(store, JOINS, join)
    rng = np.random.default_rng(1)
    at = end + 6 * 3_600_000
    streamed = rng.choice(len(users), size=max(1, len(users) // 10), replace=False)
    StreamingWriter(store, returns_gb).write(
        [
            {
                "key": {"user_id": users[i]},
                "ts": int(end + rng.integers(0, 6 * 3_600_000)),
                "values": {"refund_amt": int(rng.integers(1, 300))},
                "event_id": f"s{i}",
            }
            for i in streamed
        ]
    )
    print(f"streaming events written: {len(streamed)}")

    # ---------------------------------------------------------------- requests
    key_pool = [users[i] for i in rng.integers(0, len(users), args.requests)]
    singles = [{"user_id": u} for u in key_pool]
    batches = [
        [{"user_id": users[i]} for i in rng.integers(0, len(users), args.batch_size)] for _ in range(args.batches)
    ]
    fetcher = Fetcher(store)
    fetcher.fetch_join("quickstart/training_set.v2", singles[0], at)  # warm the config caches
    check = fetcher.fetch_join("quickstart/training_set.v2", singles[:3], at)
    assert all(r["error"] is None for r in check), check
    print(f"features per response: {len(check[0]['values'])}")

    versions = {gb.name: batch_versions(store, gb.name)[BATCH_DS]["version"] for gb in (purchases_gb, returns_gb)}
    purchases_coll = store.db[purchases_gb.batch_dataset]
    returns_coll = store.db[returns_gb.batch_dataset]
    stream_coll = store.db[returns_gb.streaming_dataset]

    def key_json(request):
        return json.dumps(request, sort_keys=True, separators=(",", ":"))

    def floor_single(request):
        kj = key_json(request)
        purchases_coll.find_one({"_id": doc_id(versions["quickstart.purchases.v1"], kj)})
        returns_coll.find_one({"_id": doc_id(versions["quickstart.returns.v1"], kj)})
        list(stream_coll.find({"k": kj, "ts": {"$gte": end, "$lt": at}}, {"k": 1, "ts": 1, "d": 1}))

    def floor_batch(requests):
        kjs = [key_json(r) for r in requests]
        list(purchases_coll.find({"_id": {"$in": [doc_id(versions["quickstart.purchases.v1"], k) for k in kjs]}}))
        list(returns_coll.find({"_id": {"$in": [doc_id(versions["quickstart.returns.v1"], k) for k in kjs]}}))
        list(stream_coll.find({"k": {"$in": kjs}, "ts": {"$gte": end, "$lt": at}}, {"k": 1, "ts": 1, "d": 1}))

    def in_process(request):
        fetcher.fetch_join("quickstart/training_set.v2", request, at)

    results = []

    def record(mode, shape, clients, stats, floor=None):
        results.append((mode, shape, clients, stats, floor))
        ratio = f"  p99/floor p99 {stats['p99'] / floor['p99']:.2f}x" if floor else ""
        unit = "req/s" if shape == "single" else f"batches/s ({stats['rps'] * args.batch_size:.0f} keys/s)"
        print(
            f"{mode:10s} {shape:9s} clients={clients}: p50 {stats['p50']:7.2f} ms  p99 {stats['p99']:7.2f} ms  "
            f"{stats['rps']:8.1f} {unit}{ratio}",
            flush=True,
        )

    compare_logging(args, store, singles, at)
    if args.logging_only:
        return 0

    print("\n--- in-process fetches vs the raw pymongo floor (same documents) ---")
    for clients in client_counts:
        floor = run_clients(floor_single, singles, clients)
        record("floor", "single", clients, floor)
        record("in-process", "single", clients, run_clients(in_process, singles, clients), floor)
        floor_b = run_clients(floor_batch, batches, clients)
        record("floor", f"batch{args.batch_size}", clients, floor_b)
        record("in-process", f"batch{args.batch_size}", clients, run_clients(in_process, batches, clients), floor_b)

    if not args.no_http:
        import httpx

        from feature_assets.dev.services.local import find_free_port

        port = find_free_port()
        env = {**os.environ, "FEATURE_ASSETS_MONGO_URI": uri, "FEATURE_ASSETS_MONGO_DATABASE": args.database}
        server = subprocess.Popen(
            [sys.executable, "-m", "feature_assets.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    output = server.stderr.read().decode() if server.stderr else ""
                    raise SystemExit(f"the HTTP server did not start: {output[-2000:]}")
                time.sleep(0.2)
            local = threading.local()
            path = f"/v1/fetch/join/quickstart/training_set.v2?at_millis={at}"
            headers = {"Content-Type": "application/json"}

            def http_call(request):
                # The standard library's client on one keep-alive connection per thread: a model server's
                # client costs little next to httpx's ~1 ms per call, which would mostly time the client.
                connection = getattr(local, "connection", None)
                if connection is None:
                    connection = local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("POST", path, body=json.dumps(request), headers=headers)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")

            http_call(singles[0])
            print("\n--- HTTP fetches (feature-assets serve, uvicorn, one process; client: http.client keep-alive) ---")
            for clients in client_counts:
                record("http", "single", clients, run_clients(http_call, singles, clients))
                record("http", f"batch{args.batch_size}", clients, run_clients(http_call, batches, clients))
        finally:
            server.terminate()
            server.wait(10)

    print("\n--- summary ---")
    for mode, shape, clients, stats, floor in results:
        extra = f" (floor p99 {floor['p99']:.2f} ms, {stats['p99'] / floor['p99']:.2f}x)" if floor else ""
        print(
            f"{mode:10s} {shape:9s} x{clients}: p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms, "
            f"{stats['rps']:.1f}/s{extra}"
        )
    return 0


def compare_logging(args, store: MongoKVStore, singles: list[dict], at: int) -> None:
    """Single-key join fetches without and with the fetch logger, alternating rounds (same keys, same store)."""
    name = "quickstart/training_set.v2"
    requests = [{**request, "request_id": f"r-{index}"} for index, request in enumerate(singles)]
    store.db["fetch_log"].drop()
    options = {"batch_size": args.log_batch_size, "linger_seconds": args.log_linger}
    broker = None
    if args.log_sink == "kafka":
        from feature_assets.dev.services.local import start_kafka

        broker = start_kafka(log_path=Path(tempfile.mkdtemp(prefix="fetch-bench-kafka-")) / "kafka.log")
        sink: Any = KafkaLogSink({"bootstrap.servers": broker.url})
    elif args.log_sink == "memory":
        sink = MemorySink()
    else:
        sink = MongoLogSink(store.db)
    logger = FetchLogger(sink, **{k: v for k, v in options.items() if v is not None})
    plain, logged = Fetcher(store), Fetcher(store, logger=logger)
    for fetcher in (plain, logged):
        fetcher.fetch_join(name, requests[0], at)  # warm the caches (and the logger's thread and codec)
    latencies: dict[str, list[float]] = {"without": [], "with": []}
    round_p99s: dict[str, list[float]] = {"without": [], "with": []}
    flushed = True
    for _ in range(max(1, args.logging_rounds)):
        for label, fetcher in (("without", plain), ("with", logged)):
            round_latencies = []
            for request in requests:
                started = time.perf_counter()
                fetcher.fetch_join(name, request, at)
                round_latencies.append((time.perf_counter() - started) * 1000)
            latencies[label].extend(round_latencies)
            round_p99s[label].append(percentile(round_latencies, 0.99))
            # The logger writes up to its linger after the round: wait, so none of its work lands in the next
            # round without logging (the tail of each round's records is then written untimed).
            flushed = logger.flush(60) and flushed
    batch_stats = compare_logged_batches(args, plain, logged, name, requests, at)
    counters = logger.counters()
    logger.close()
    if broker is not None:
        broker.stop()
    documents = store.db["fetch_log"].count_documents({})
    # the MongoDB sink writes bundles of records (`count` each); older layouts wrote one document per record
    stored = sum(d.get("count", 1) for d in store.db["fetch_log"].find({}, {"count": 1}))
    stats = {label: (percentile(values, 0.5), percentile(values, 0.99)) for label, values in latencies.items()}
    print(
        f"\n--- fetch logging: single-key join fetches, {len(latencies['with'])} per mode, alternating rounds "
        f"(sink {sink!r}, logger batch {logger.batch_size}, linger {logger.linger_seconds}s) ---"
    )
    for label, (p50, p99) in stats.items():
        print(f"{label + ' logging':16s}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    print("p99 per round (ms), without:", " ".join(f"{v:.2f}" for v in round_p99s["without"]))
    print("p99 per round (ms), with:   ", " ".join(f"{v:.2f}" for v in round_p99s["with"]))
    overhead = stats["with"][1] / stats["without"][1] - 1
    for label, (p50, p99) in batch_stats.items():
        print(f"batches of {args.batch_size}, {label + ' logging':16s}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    print(
        f"batches of {args.batch_size}: logging adds {batch_stats['with'][1] / batch_stats['without'][1] - 1:+.1%} "
        f"to p99 ({batch_stats['with'][0] / batch_stats['without'][0] - 1:+.1%} to p50; no target: each request "
        f"is encoded in the fetch's thread)"
    )
    print(
        f"logging adds {overhead * 100:+.1f}% to p99 ({stats['with'][0] / stats['without'][0] - 1:+.1%} to p50); "
        f"logger {'flushed' if flushed else 'NOT flushed'}: {counters}; "
        f"fetch_log: {documents} documents holding {stored} records",
        flush=True,
    )


def compare_logged_batches(args, plain: Fetcher, logged: Fetcher, name: str, requests: list, at: int) -> dict:
    """Batch join fetches of `--batch-size` requests without and with the logger, in 10 alternating rounds of
    `--log-batches` / 10 batches, the logger flushed (untimed) after each of its rounds: {mode: (p50, p99)}."""
    size = max(1, args.batch_size)
    batches = [requests[start : start + size] for start in range(0, len(requests) - size + 1, size)] or [requests]
    per_round = max(1, args.log_batches // 10)
    latencies: dict[str, list[float]] = {"without": [], "with": []}
    for round_index in range(10):
        for label, fetcher in (("without", plain), ("with", logged)):
            for index in range(per_round):
                batch = batches[(round_index * per_round + index) % len(batches)]
                started = time.perf_counter()
                fetcher.fetch_join(name, batch, at)
                latencies[label].append((time.perf_counter() - started) * 1000)
            if fetcher.logger is not None:
                fetcher.logger.flush(60)
    return {label: (percentile(values, 0.5), percentile(values, 0.99)) for label, values in latencies.items()}


if __name__ == "__main__":
    sys.exit(main())
