"""examples/bootstrap run as its script runs it: the CLI in-process on a copy of the example repo, on two days.

v1 is served on the second day (its fetches logged with their request ids), the purchases of the first day
then change (a late batch), and one backfill of v2 rebuilds v1 (stitched from its log), v2_dev and v2.
Expected values: a logged request keeps what its fetch served; the other values follow the bootstrap rules
applied in pandas (`support.bootstrap.by_priority`) to the parts' outputs and the independent oracle's values.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pandas as pd
import pytest
from oracle.naive import naive_join_part
from support.bootstrap import assert_frames_equal, by_priority
from support.paths import PROJECT_ROOT

from feature_assets.dev.datagen.parquet_tables import read_table, write_partitioned
from feature_assets.dev.datagen.quickstart import generate_quickstart_data

pytestmark = [pytest.mark.spark, pytest.mark.services]

EXAMPLE = PROJECT_ROOT / "examples" / "bootstrap"
BATCH_DAY, DAY = "2023-11-06", "2023-11-07"  # fetches on DAY read the batch of BATCH_DAY
V1_CONF, V2_CONF = "production/joins/payments/model.v1", "production/joins/payments/model.v2"
P = "payments_purchases_v1_purchase_price_"
R = "payments_returns_v1_refund_amt_"
V1_COLUMNS = [P + "sum_3d", P + "sum_7d", P + "count_7d"]
V2_COLUMNS = [R + "sum_7d", R + "count_7d"]
CONTEXTUAL = "ext_contextual_request_id"
FETCHED = 4  # requests of DAY served by v1
LATE_PRICE = 5000


class ExampleRepo:
    """A copy of the example repo and its warehouse; the CLI run in-process there."""

    def __init__(self, repo, root: str) -> None:
        from feature_assets.cli import main

        self.repo, self.root, self.main = repo, root, main
        self.served: dict[str, dict] = {}  # request id -> the values its fetch answered
        self.v2_backfill = ""  # what the backfill of v2 printed

    def cli(self, *arguments: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.main(list(arguments))
        assert code == 0, (arguments, out.getvalue()[-3000:], err.getvalue()[-3000:])
        return out.getvalue()

    def table(self, name: str) -> pd.DataFrame:
        return read_table(self.root, name, BATCH_DAY, DAY).reset_index(drop=True)

    def join(self, conf: str):
        from feature_assets.compiler import load_compiled_file

        return load_compiled_file(self.repo / conf)


def copy_sources(repo) -> None:
    """The example's config sources (compiled again here); its settings with the same days, without the
    folders (the test sets them)."""
    for folder in ("group_bys", "staging_queries", "joins"):
        shutil.copytree(EXAMPLE / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "feature_repo.yaml").write_text(f'start_date: "{BATCH_DAY}"\nend_date: "{DAY}"\n')


def committed_configs() -> dict[str, str]:
    return {str(p.relative_to(EXAMPLE)): p.read_text() for p in sorted((EXAMPLE / "production").rglob("*.v*"))}


def oracle_values(example: ExampleRepo, left: pd.DataFrame, conf: str, tables: dict) -> pd.DataFrame:
    """Every part column of the join for the left rows, from the independent oracle."""
    join = example.join(conf)
    out = pd.DataFrame(index=left.index)
    for part, raw in zip(join.join_parts, join.raw["joinParts"]):
        values = naive_join_part(left, raw["groupBy"], tables)
        for column in values.columns:
            out[part.feature_prefix + column] = values[column]
    return out


def covered(example: ExampleRepo, conf: str) -> dict[str, set[str]]:
    """Per join part (its group-by's name), the request ids its bootstrap table flags covered."""
    join = example.join(conf)
    flags = example.table(join.bootstrap_table)
    return {
        part.group_by.name: set(flags.loc[flags[join.coverage_column(part)], "request_id"]) for part in join.join_parts
    }


@pytest.fixture(scope="module")
def example(spark, tmp_path_factory):
    """The example's walk on two days: v1 served and logged on DAY, then a late purchases batch, then v2."""
    from feature_assets.dev.services.local import local_services

    folder = tmp_path_factory.mktemp("bootstrap-example")
    repo, root = folder / "repo", str(folder / "warehouse")
    copy_sources(repo)
    generate_quickstart_data(
        root, BATCH_DAY, DAY, n_users=20, purchases_per_day=60, returns_per_day=20, checkouts_per_day=40,
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
            example = ExampleRepo(repo, root)
            example.cli("compile")
            example.cli("backfill", "--conf", "production/group_bys/payments/purchases.v1", "--start-ds", BATCH_DAY,
                        "--end-ds", BATCH_DAY)  # fmt: skip
            example.cli("upload", "--conf", V1_CONF, "--ds", BATCH_DAY)
            example.cli("load", "--conf", V1_CONF, "--ds", BATCH_DAY)
            example.cli("metadata-upload", "--conf", V1_CONF)
            checkouts = read_table(root, "data.checkouts", DAY, DAY).sort_values("ts")
            for row in checkouts.iloc[:: len(checkouts) // FETCHED].head(FETCHED).itertuples():
                keys = json.dumps({"user_id": row.user_id, "request_id": row.request_id})
                answer = json.loads(example.cli("fetch", "--type", "join", "--name", "payments/model.v1", "-k", keys,
                                                "--at-millis", str(row.ts)))  # fmt: skip
                assert answer["error"] is None, answer
                example.served[row.request_id] = answer["values"]
            add_late_purchases(root, sorted(set(checkouts["user_id"])))
            example.cli("log-dump", "--start-ds", BATCH_DAY, "--end-ds", DAY)
            example.cli("backfill", "--conf", "production/group_bys/payments/schema.v1", "--start-ds", BATCH_DAY,
                        "--end-ds", DAY)  # fmt: skip
            example.cli("log-flattener", "--conf", V1_CONF, "--schema-table", "default.payments_schema_v1",
                        "--start-ds", BATCH_DAY, "--end-ds", DAY)  # fmt: skip
            example.v2_backfill = example.cli("backfill", "--conf", V2_CONF, "--start-ds", BATCH_DAY, "--end-ds", DAY)
            yield example


def add_late_purchases(root: str, users: list[str]) -> None:
    """A late purchase of each user of DAY's checkouts in BATCH_DAY: the recomputed v1 features of DAY
    differ from the ones served before it arrived."""
    existing = read_table(root, "data.purchases", BATCH_DAY, BATCH_DAY)
    late = pd.DataFrame(
        {
            "ts": pd.Series(range(len(users)), dtype="int64") + pd.Timestamp(DAY).value // 1_000_000 - 3_600_000,
            "purchase_id": [f"late-{i}" for i in range(len(users))],
            "user_id": users,
            "product_id": "P1",
            "purchase_price": LATE_PRICE,
            "ds": BATCH_DAY,
        }
    )
    write_partitioned(pd.concat([existing, late[existing.columns]], ignore_index=True), root, "data.purchases")


def test_committed_configs_are_what_the_example_compiles_to(example):
    compiled = {
        str(p.relative_to(example.repo)): p.read_text() for p in sorted(example.repo.rglob("production/**/*.v*"))
    }
    assert compiled == committed_configs()


def test_v1_keeps_the_served_values_of_logged_requests_and_computes_the_rest(example):
    tables = {t: example.table(t) for t in ("data.purchases", "data.returns")}
    left = example.table("default.payments_payments_driver_v1")
    served = pd.DataFrame([{"request_id": r, **values} for r, values in example.served.items()])
    expected = by_priority(
        left, oracle_values(example, left, V1_CONF, tables), [served], {"v1": V1_COLUMNS}, [CONTEXTUAL]
    )
    v1 = example.table("default.payments_model_v1")
    assert len(v1) == len(left) == 80
    assert_frames_equal(v1, expected, V1_COLUMNS + [CONTEXTUAL])
    assert covered(example, V1_CONF) == {"payments.purchases.v1": set(example.served)}
    # The late batch changed every logged request's recomputed features: stitching, not recomputation, gave them.
    recomputed = oracle_values(example, left, V1_CONF, tables).set_index(left["request_id"])
    for request_id, values in example.served.items():
        assert (values[P + "sum_7d"] or 0) + LATE_PRICE == recomputed.loc[request_id, P + "sum_7d"]


def test_v2_dev_reuses_v1_on_its_downsample_and_computes_the_new_features(example):
    tables = {t: example.table(t) for t in ("data.purchases", "data.returns")}
    v1 = example.table("default.payments_model_v1")
    left = v1[(v1["label"] == 1) | (v1["rng"] < 0.05)].reset_index(drop=True)
    v2_dev = example.table("default.payments_model_v2_dev")
    assert 0 < len(v2_dev) == len(left) < len(v1)
    sources = [v1[["request_id"] + V1_COLUMNS]]
    expected = by_priority(
        left, oracle_values(example, left, "production/joins/payments/model.v2_dev", tables), sources,
        {"v1": V1_COLUMNS, "v2": V2_COLUMNS}, [],
    )  # fmt: skip
    assert_frames_equal(v2_dev, expected, V1_COLUMNS + V2_COLUMNS)
    assert covered(example, "production/joins/payments/model.v2_dev") == {
        "payments.purchases.v1": set(left["request_id"]),
        "payments.returns.v1": set(),
    }


def test_v2_takes_v1_then_v2_dev_and_fills_the_holes(example):
    tables = {t: example.table(t) for t in ("data.purchases", "data.returns")}
    v1 = example.table("default.payments_model_v1")
    v2_dev = example.table("default.payments_model_v2_dev")
    left = example.table("default.payments_payments_driver_v2")
    sources = [v1[["request_id"] + V1_COLUMNS + [CONTEXTUAL]], v2_dev[["request_id"] + V1_COLUMNS + V2_COLUMNS]]
    expected = by_priority(
        left, oracle_values(example, left, V2_CONF, tables), sources, {"v1": V1_COLUMNS, "v2": V2_COLUMNS},
        [CONTEXTUAL],
    )  # fmt: skip
    v2 = example.table("default.payments_model_v2")
    assert len(v2) == len(left) == len(v1)
    assert_frames_equal(v2, expected, V1_COLUMNS + V2_COLUMNS + [CONTEXTUAL])
    # v1's features of logged requests are the served ones, through v1's output.
    by_request = v2.set_index("request_id")
    for request_id, values in example.served.items():
        assert [by_request.loc[request_id, c] for c in V1_COLUMNS] == [values[c] for c in V1_COLUMNS]
    coverage = covered(example, V2_CONF)
    assert coverage == {
        "payments.purchases.v1": set(left["request_id"]),
        "payments.returns.v1": set(v2_dev["request_id"]),
    }
    # The backfill computed no purchases row and the returns of the rows v2_dev did not cover.
    lines = example.v2_backfill.splitlines()
    assert f"materialized default/payments_model_v2_payments_purchases_v1 [{DAY}] rows=0" in lines
    computed_returns = [
        line for line in lines if line.startswith("materialized default/payments_model_v2_payments_returns_v1")
    ]
    assert len(computed_returns) == 2 and all(not line.endswith("rows=0") for line in computed_returns)
