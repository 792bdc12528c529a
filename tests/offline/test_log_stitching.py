"""Logged fetches stitched into a join's backfill, end to end through the real parts: the quickstart's
group-bys backfilled, uploaded and loaded by the CLI (in-process, on the session's Spark and an embedded
MongoDB-protocol server), `training_set.v2` fetched by a `Fetcher` with the CLI's fetch logger, the day dumped,
its schema table built, flattened, and the join backfilled with `bootstrap_from_log=True` after the offline
data changed under the served values.

Expected values: a logged request keeps exactly what the Fetcher answered; every other value is the
independent oracle's on the final source tables. The module's tests share one repo and run in order: the
second adds a join part (a new schema version) on the day the first logged.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import textwrap

import pandas as pd
import pytest
from oracle.naive import naive_join_part
from support.paths import QUICKSTART
from support.values import close, plain

from feature_assets.dev.datagen.parquet_tables import read_table, write_partitioned
from feature_assets.dev.datagen.quickstart import generate_quickstart_data
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, SCHEMA_HASH_COLUMN
from feature_assets.online.batch_encoding import end_of_day_millis

pytestmark = [pytest.mark.spark, pytest.mark.services]

FIRST_DAY, BATCH_DAY, DAY = "2023-11-01", "2023-11-14", "2023-11-15"
DAY_START = end_of_day_millis(DAY) - 86_400_000
HOUR = 3_600_000
JOIN_NAME = "quickstart.training_set.v2"
JOIN_CONF = "production/joins/quickstart/training_set.v2"
PURCHASES_CONF = "production/group_bys/quickstart/purchases.v1"
RETURNS_CONF = "production/group_bys/quickstart/returns.v1"
SCHEMA_CONF = "production/group_bys/quickstart/schema.v1"
OUTPUT_TABLE = "default.quickstart_training_set_v2"
LOGGED_TABLE = "default.quickstart_training_set_v2_logged"
CONTEXTUAL = "ext_contextual_request_id"
USERS = 50

# The join of the quickstart's training_set.v2, bootstrapping from its own log; `EXTRA_PARTS` is what the
# second test fills in to add features.
TRAINING_SET = """
    from feature_assets.api import ContextualSource, DataType, EventSource, ExternalPart, Join, JoinPart, Query, select
    from group_bys.quickstart.purchases import v1 as purchases_v1
    from group_bys.quickstart.returns import v1 as returns_v1

    source = EventSource(table="data.checkouts", query=Query(selects=select("user_id", "request_id"), time_column="ts"))

    v2 = Join(
        left=source,
        right_parts=[JoinPart(group_by=purchases_v1), JoinPart(group_by=returns_v1)] + EXTRA_PARTS,
        row_ids=["request_id"],
        online=True,
        sample_percent=100,
        online_external_parts=[ExternalPart(ContextualSource(fields=[("request_id", DataType.STRING)]))],
        bootstrap_from_log=True,
    )
"""


# A histogram of a long column is a map<bigint,bigint> offline, its keys strings in the log (Avro map keys).
HISTOGRAM_AFTER = "operation=Operation.LAST_K(10)),\n"
HISTOGRAM = (
    "        Aggregation(input_column='purchase_price', operation=Operation.HISTOGRAM, "
    "windows=[Window(length=3, time_unit=TimeUnit.DAYS)]),\n"
)
HISTOGRAM_COLUMN = "quickstart_purchases_v1_purchase_price_histogram_3d"
AGAIN_PART = '[JoinPart(group_by=purchases_v1, prefix="again")]'
# Late data, after the fetches: purchases of BATCH_DAY (the batch the fetches read) and returns early on DAY.
LATE_PURCHASE_USERS = ["1", "2", "3", "4", "5", "6"]
LATE_RETURN_USERS = ["1", "2", "3", "7", "8"]

Request = tuple[str, str | None, int]  # request id, user id (None: an invalid request), at millis


class Flow:
    """The repo, its warehouse, the CLI in-process and what each fetch served."""

    def __init__(self, spark, repo, root: str) -> None:
        from feature_assets.cli import main
        from feature_assets.storage import Warehouse

        self.repo, self.root, self.main = repo, root, main
        self.warehouse = Warehouse(spark, root)
        self.served: dict[str, dict] = {}  # request id -> user_id, ts, values, the fetch's generation
        self.generation = 0

    def cli(self, *arguments: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.main(list(arguments))
        assert code == 0, (arguments, out.getvalue()[-3000:], err.getvalue()[-3000:])
        return out.getvalue()

    def write_join(self, extra_parts: str = "[]") -> None:
        text = textwrap.dedent(TRAINING_SET).replace("EXTRA_PARTS", extra_parts)
        (self.repo / "joins" / "quickstart" / "training_set.py").write_text(text)

    def compiled_join(self):
        from feature_assets.compiler import load_compiled_file

        return load_compiled_file(self.repo / JOIN_CONF)

    def fetch(self, requests: list[Request]) -> dict[str, int]:
        """Fetch with a new Fetcher and the CLI's logger (the online store's `fetch_log`), one call per time
        (a lone request as one dict, the others as a batch); the logger's counters once it wrote everything."""
        from feature_assets.online.fetch.fetcher import Fetcher
        from feature_assets.online.logging import logger_from_environment
        from feature_assets.online.store import MongoKVStore

        self.generation += 1
        store = MongoKVStore.from_uri(os.environ["FEATURE_ASSETS_MONGO_URI"])
        logger = logger_from_environment(store)
        assert logger is not None
        fetcher = Fetcher(store, logger=logger)
        calls: dict[int, list[tuple[str, str | None]]] = {}
        for request_id, user_id, at in requests:
            calls.setdefault(at, []).append((request_id, user_id))
        for at, group in calls.items():
            keys = [{"request_id": r, **({} if u is None else {"user_id": u})} for r, u in group]
            answer = fetcher.fetch_join("quickstart/training_set.v2", keys[0] if len(keys) == 1 else keys, at)
            for (request_id, user_id), response in zip(group, answer if len(keys) > 1 else [answer]):
                if user_id is None:
                    assert response["error_type"] == "invalid_key" and response["values"] is None
                    continue
                assert response["error"] is None, response
                values = plain(response["values"])
                self.served[request_id] = {"user_id": user_id, "ts": at, "values": values, "gen": self.generation}
        assert logger.close(timeout=60)
        store.close()
        return logger.counters()

    def add_left_rows(self, requests: list[Request]) -> None:
        """The day's checkouts gain a row per valid request, at its fetch's time."""
        rows = pd.DataFrame(
            [(at, r, u, "P1") for r, u, at in requests if u is not None],
            columns=["ts", "request_id", "user_id", "product_id"],
        )
        append(self.root, "data.checkouts", DAY, rows)

    def dump_and_flatten(self) -> list[dict]:
        """The day's log dumped, its schema table built, the join's rows flattened: the `_logged` rows."""
        self.cli("log-dump", "--ds", DAY)
        self.cli("backfill", "--conf", SCHEMA_CONF, "--start-ds", DAY, "--end-ds", DAY)
        self.cli("log-flattener", "--conf", JOIN_CONF, "--ds", DAY)
        return collected(self.warehouse.read(LOGGED_TABLE, DAY, DAY))

    def backfill_join(self) -> dict[str, dict]:
        self.cli("backfill", "--conf", JOIN_CONF, "--start-ds", DAY, "--end-ds", DAY)
        rows = collected(self.warehouse.read(OUTPUT_TABLE, DAY, DAY))
        by_request = {row["request_id"]: row for row in rows}
        assert len(by_request) == len(rows) == self.warehouse.read("data.checkouts", DAY, DAY).count()
        return by_request

    def computed(self, join) -> dict[str, dict]:
        """The oracle's value of every part column for every left row of the day, on the source tables now."""
        left = read_table(self.root, "data.checkouts", DAY, DAY).reset_index(drop=True)
        tables = {t: read_table(self.root, t) for t in ("data.purchases", "data.returns")}
        expected: dict[str, dict] = {r: {} for r in left["request_id"]}
        for part, raw in zip(join.join_parts, join.raw["joinParts"]):
            values = naive_join_part(left, raw["groupBy"], tables)
            for column in values.columns:
                for request_id, value in zip(left["request_id"], values[column]):
                    expected[request_id][part.feature_prefix + column] = plain(value)
        return expected


def collected(frame) -> list[dict]:
    return [row.asDict(recursive=True) for row in frame.collect()]


def append(root: str, table: str, ds: str, rows: pd.DataFrame) -> None:
    existing = read_table(root, table, ds, ds)
    combined = pd.concat([existing, rows.assign(ds=ds)[existing.columns]], ignore_index=True)
    write_partitioned(combined, root, table)


def requests_of(seed: int, prefix: str, known: int, unknown: int, first_hour: int) -> list[Request]:
    """Skewed known users, unknown users and one request without a user id, at times within four hours of
    the day from `first_hour` on: several requests share each time (one call each), some a call alone."""
    rng = random.Random(seed)
    users: list[str | None] = [str(min(int(rng.paretovariate(0.7)), USERS)) for _ in range(known)]
    users += [f"unknown-{seed}-{i}" for i in range(unknown)] + [None]
    times = sorted(DAY_START + first_hour * HOUR + rng.randrange(4 * HOUR) for _ in range(len(users) // 5))
    requests = [(f"{prefix}-{i}", user, rng.choice(times)) for i, user in enumerate(users)]
    return requests + [(f"{prefix}-alone", "2", DAY_START + (first_hour + 4) * HOUR)]


def change_offline_data(flow: Flow) -> None:
    """What the offline recomputation sees and the fetches did not: late purchases in BATCH_DAY (its daily
    table backfilled again) and returns early on DAY."""
    purchases = pd.DataFrame(
        {
            "ts": [DAY_START - 2 * HOUR + i for i in range(len(LATE_PURCHASE_USERS))],
            "purchase_id": [f"late-{u}" for u in LATE_PURCHASE_USERS],
            "user_id": LATE_PURCHASE_USERS,
            "product_id": "P1",
            "purchase_price": 5000,
        }
    )
    append(flow.root, "data.purchases", BATCH_DAY, purchases)
    flow.cli("backfill", "--conf", PURCHASES_CONF, "--start-ds", BATCH_DAY, "--end-ds", BATCH_DAY)
    returns = pd.DataFrame(
        {
            "ts": [DAY_START + 60_000 * (i + 1) for i in range(len(LATE_RETURN_USERS))],
            "return_id": [f"late-{u}" for u in LATE_RETURN_USERS],
            "user_id": LATE_RETURN_USERS,
            "product_id": "P1",
            "refund_amt": 777,
        }
    )
    append(flow.root, "data.returns", DAY, returns)


@pytest.fixture(scope="module")
def flow(spark, tmp_path_factory):
    """The quickstart's group-bys backfilled, uploaded and loaded for BATCH_DAY and training_set.v2's metadata
    stored; then a first round of fetches on DAY (logged), their requests added to the day's checkouts, and
    the offline data changed. The CLI runs in-process with the embedded server of a temporary services folder."""
    from feature_assets.dev.services.local import local_services

    folder = tmp_path_factory.mktemp("log-stitching")
    repo, root = folder / "repo", str(folder / "warehouse")
    shutil.copytree(QUICKSTART / "group_bys", repo / "group_bys", ignore=shutil.ignore_patterns("__pycache__"))
    purchases = repo / "group_bys" / "quickstart" / "purchases.py"
    assert HISTOGRAM_AFTER in purchases.read_text()
    purchases.write_text(purchases.read_text().replace(HISTOGRAM_AFTER, HISTOGRAM_AFTER + HISTOGRAM))
    (repo / "joins" / "quickstart").mkdir(parents=True)
    (repo / "feature_repo.yaml").write_text(f'start_date: "{FIRST_DAY}"\n')
    generate_quickstart_data(
        root, FIRST_DAY, DAY, n_users=USERS, purchases_per_day=80, returns_per_day=25, checkouts_per_day=20,
        tables=["purchases", "returns", "checkouts"],
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(repo)
        patch.setenv("FEATURE_ASSETS_WAREHOUSE", root)
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
        with local_services(folder / "services", mongo=True, kafka=False):
            flow = Flow(spark, repo, root)
            flow.write_join()
            flow.cli("compile")
            for conf in (PURCHASES_CONF, RETURNS_CONF):
                flow.cli("backfill", "--conf", conf, "--start-ds", BATCH_DAY, "--end-ds", BATCH_DAY)
            flow.cli("upload", "--conf", JOIN_CONF, "--ds", BATCH_DAY)
            flow.cli("load", "--conf", JOIN_CONF, "--ds", BATCH_DAY)
            flow.cli("metadata-upload", "--conf", JOIN_CONF)

            requests = requests_of(1, "first", known=48, unknown=6, first_hour=1)
            counters = flow.fetch(requests)
            valid = {r for r, u, _ in requests if u is not None}
            assert counters["logged"] == len(valid)
            assert counters["schemas_published"] == 1 and counters["dropped"] == counters["unencodable"] == 0
            flow.add_left_rows(requests)
            change_offline_data(flow)
            yield flow


def assert_values(row: dict, expected: dict, columns: list[str], what: str) -> None:
    for column in columns:
        assert close(row[column], expected[column]), (what, row["request_id"], column, row[column], expected[column])


def differing(rows: dict[str, dict], expected: dict[str, dict], columns: list[str]) -> int:
    return sum(1 for r in rows if any(not close(rows[r]["values"][c], expected[r][c]) for c in columns))


def test_logged_requests_keep_the_served_values_and_the_other_rows_are_computed(flow):
    join = flow.compiled_join()
    logged = flow.dump_and_flatten()
    assert sorted(row["request_id"] for row in logged) == sorted(flow.served)
    assert len({row[SCHEMA_HASH_COLUMN] for row in logged}) == 1
    assert dict(flow.warehouse.read(LOGGED_TABLE).dtypes)[HISTOGRAM_COLUMN] == "map<bigint,bigint>"
    for row in logged:
        served = flow.served[row["request_id"]]
        assert (row["user_id"], row["ts"], row[ABSENT_FIELDS_COLUMN]) == (served["user_id"], served["ts"], [])
        assert_values(row, served["values"], list(served["values"]), "logged")

    output = flow.backfill_join()
    assert dict(flow.warehouse.read(OUTPUT_TABLE).dtypes)[HISTOGRAM_COLUMN] == "map<bigint,bigint>"
    computed = flow.computed(join)
    parts = join.part_columns
    for request_id, row in output.items():
        if request_id in flow.served:
            assert_values(row, flow.served[request_id]["values"], parts, "stitched")
            assert row[CONTEXTUAL] == request_id
        else:
            assert_values(row, computed[request_id], parts, "computed")
            assert row[CONTEXTUAL] is None
    # The offline data changed under both parts: stitching, not a recomputation, gave the logged rows.
    served = flow.served
    for part in join.join_parts:
        assert differing(served, computed, part.columns) > 0, part.group_by.name
    assert len(output) > len(served) > 40 and sum(s["user_id"].startswith("unknown") for s in served.values()) == 6


def test_a_feature_added_to_the_join_is_computed_for_rows_logged_without_it(flow):
    """A second schema version the same day: the join gains a part, recompiled and its metadata stored, and a
    new Fetcher logs new requests and fetches a few earlier ones again (their latest row is the new schema)."""
    first_served = {r: dict(s) for r, s in flow.served.items()}
    flow.write_join(AGAIN_PART)
    flow.cli("compile", "--conf", "joins/quickstart/training_set.py", "--force")
    flow.cli("metadata-upload", "--conf", JOIN_CONF)
    join = flow.compiled_join()
    new_columns = join.join_parts[2].columns
    fetched_again = [(r, s["user_id"], DAY_START + 9 * HOUR) for r, s in sorted(first_served.items())[:5]]
    requests = requests_of(2, "second", known=24, unknown=3, first_hour=5)
    counters = flow.fetch(requests + fetched_again)
    assert counters["logged"] == sum(1 for _, u, _ in requests if u is not None) + len(fetched_again)
    flow.add_left_rows(requests)

    logged = flow.dump_and_flatten()
    raw = flow.warehouse.read("default.chronon_log_table", DAY, DAY).where(f"name = '{JOIN_NAME}'")
    hashes = {row[0] for row in raw.select(SCHEMA_HASH_COLUMN).distinct().collect()}
    assert len(hashes) == 2
    assert set(new_columns) <= set(logged[0]) and sorted(row["request_id"] for row in logged) == sorted(flow.served)
    old_hash = {row[SCHEMA_HASH_COLUMN] for row in logged if flow.served[row["request_id"]]["gen"] == 1}
    assert len(old_hash) == 1 and old_hash < hashes
    for row in logged:
        served = flow.served[row["request_id"]]
        old_schema = served["gen"] == 1
        assert (row[SCHEMA_HASH_COLUMN] in old_hash) is old_schema
        assert row[ABSENT_FIELDS_COLUMN] == (new_columns if old_schema else [])
        assert_values(row, served["values"], list(served["values"]), "logged")

    output = flow.backfill_join()
    computed = flow.computed(join)
    base = join.join_parts[0].columns + join.join_parts[1].columns
    for request_id, row in output.items():
        served = flow.served.get(request_id)
        if served is None:
            assert_values(row, computed[request_id], join.part_columns, "computed")
        elif served["gen"] == 1:  # logged without the new part: its columns are a hole, computed
            assert_values(row, served["values"], base, "stitched")
            assert_values(row, computed[request_id], new_columns, "hole filled")
        else:
            assert_values(row, served["values"], join.part_columns, "stitched")
    new_schema = {r: s for r, s in flow.served.items() if s["gen"] == 2}
    assert differing(new_schema, computed, new_columns) > 0  # the logged value, not the recomputed one
    filled = [r for r, s in flow.served.items() if s["gen"] == 1 and not s["user_id"].startswith("unknown")]
    assert all(output[r][new_columns[0]] is not None for r in filled)
