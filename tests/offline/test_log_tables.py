"""The fetch log offline, end to end on the real embedded MongoDB-protocol server: records encoded here with
fastavro (as the online logger writes them) for two schema versions (the second adds a feature), dumped into
the raw log table, the schema table built by the quickstart's schema group-by, then flattened and stitched.
Every decoded value is compared with the value encoded for that record."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random

import fastavro
import pytest

from feature_assets.model import JOINS, config_from_json
from feature_assets.model.logs import ABSENT_FIELDS_COLUMN, LOG_COLLECTION, RAW_LOG_TABLE, SCHEMA_PUBLISH_EVENT
from feature_assets.offline.log_tables import (
    LogSchemaConflict,
    dump_log,
    flatten_log,
    log_rows,
    mongo_log_records,
    parse_schema_value,
    union_columns,
)

pytestmark = [pytest.mark.spark, pytest.mark.services]

JOIN_NAME = "quickstart.training_set.v2"
SCHEMA_TABLE = "default.quickstart_schema_v1"
DAYS = ["2023-11-29", "2023-11-30"]
CONFLICT_DAY = "2023-12-01"
DAY_MILLIS = 86_400_000
DB = "log_tables_test"


def nullable(avro_type):
    return ["null", avro_type]


KEY_FIELDS = [("user_id", "string"), ("request_id", "string")]
V1_VALUES = [
    ("purchase_price_sum_3d", "long"),
    ("purchase_price_average_14d", "double"),
    ("purchase_price_last10", {"type": "array", "items": nullable("long")}),
    ("ext_contextual_request_id", "string"),
    ("flagged", "boolean"),
]
V2_VALUES = V1_VALUES + [("refund_amt_by_product", {"type": "map", "values": nullable("double")})]


def record_schema(name: str, fields) -> dict:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": nullable(t)} for n, t in fields]}


def schema_version(join_name: str, values) -> tuple[str, str, dict, dict]:
    """(hash, schema JSON, key schema, value schema) as the logger computes them."""
    key_schema, value_schema = record_schema("key", KEY_FIELDS), record_schema("value", values)
    text = json.dumps(
        {"join_name": join_name, "key_schema": key_schema, "value_schema": value_schema},
        sort_keys=True,
        separators=(",", ":"),
    )
    return base64.b64encode(hashlib.md5(text.encode()).digest()).decode(), text, key_schema, value_schema


def avro_b64(schema: dict, record: dict) -> str:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return base64.b64encode(buffer.getvalue()).decode()


def random_value(rng: random.Random, avro_type):
    if rng.random() < 0.15:
        return None
    if isinstance(avro_type, dict) and avro_type["type"] == "array":
        return [None if rng.random() < 0.1 else rng.randint(-(2**40), 2**40) for _ in range(rng.randint(0, 4))]
    if isinstance(avro_type, dict):
        return {
            f"p{rng.randint(0, 99)}": None if rng.random() < 0.1 else rng.random() for _ in range(rng.randint(0, 3))
        }
    return {
        "long": lambda: rng.randint(-(2**62), 2**62),
        "double": lambda: rng.uniform(-1e6, 1e6),
        "string": lambda: "".join(rng.choice("abcé€xyz") for _ in range(rng.randint(0, 8))),
        "boolean": lambda: rng.random() < 0.5,
    }[avro_type]()


def day_millis(ds: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC).timestamp() * 1000)


class LogCase:
    """Log records of two schema versions over two days, what each row should decode to, and garbage rows."""

    def __init__(self, seed: int = 7, per_day: int = 40) -> None:
        rng = random.Random(seed)
        self.versions = [schema_version(JOIN_NAME, V1_VALUES), schema_version(JOIN_NAME, V2_VALUES)]
        self.records: list[dict] = []
        self.expected: dict[str, dict] = {}  # request_id -> the decoded row
        self.undecodable = {"bytes do not decode with its schema": 0, "no schema for its hash in the schema table": 0}
        n = 0
        for day_index, ds in enumerate(DAYS):
            start = day_millis(ds)
            for version_index, (schema_hash, text, _, _) in enumerate(self.versions):
                # v1 is published on the first day, v2 on the second: the second day has both hashes.
                if version_index == day_index:
                    self.add(ds, start + 1, SCHEMA_PUBLISH_EVENT, schema_hash, _b64(schema_hash), _b64(text))
            for _ in range(per_day):
                version_index = rng.randint(0, day_index)
                schema_hash, _, key_schema, value_schema = self.versions[version_index]
                values = V1_VALUES if version_index == 0 else V2_VALUES
                request_id = f"r-{n}"
                n += 1
                key = {"user_id": str(rng.randint(0, 9)), "request_id": request_id}
                value = {name: random_value(rng, avro_type) for name, avro_type in values}
                ts = start + 1000 + rng.randint(0, DAY_MILLIS - 2000)
                self.add(ds, ts, JOIN_NAME, schema_hash, avro_b64(key_schema, key), avro_b64(value_schema, value))
                absent = [name for name, _ in V2_VALUES if name not in value]
                self.expected[request_id] = {
                    **key,
                    **value,
                    **dict.fromkeys(absent),
                    "schema_hash": schema_hash,
                    "ts": ts,
                    "ds": ds,
                    ABSENT_FIELDS_COLUMN: absent,
                }
            # The last request fetched again later that day: the flattened table keeps the later values.
            value = {name: random_value(rng, avro_type) for name, avro_type in values}
            self.add(ds, ts + 1, JOIN_NAME, schema_hash, avro_b64(key_schema, key), avro_b64(value_schema, value))
            self.expected[request_id] = {**self.expected[request_id], **value, "ts": ts + 1}
            # Garbage: value bytes cut short, and a hash that no schema record published.
            self.add(
                ds, start + 5, JOIN_NAME, self.versions[day_index][0], self.records[-1]["key_base64"], _b64("\x02")
            )
            self.undecodable["bytes do not decode with its schema"] += 1
            self.add(ds, start + 6, JOIN_NAME, "bm8tc3VjaC1oYXNo", self.records[-1]["key_base64"], _b64(""))
            self.undecodable["no schema for its hash in the schema table"] += 1
        # Another join's rows are not this join's log.
        self.add(DAYS[0], day_millis(DAYS[0]) + 9, "other.join.v1", self.versions[0][0], _b64("x"), _b64("y"))
        # A third version on its own day gives an existing field another type.
        conflicting = [(n, "string") if n == "purchase_price_sum_3d" else (n, t) for n, t in V2_VALUES]
        self.conflict = schema_version(JOIN_NAME, conflicting)
        c_hash, c_text, c_key, c_value = self.conflict
        c_start = day_millis(CONFLICT_DAY)
        self.add(CONFLICT_DAY, c_start + 1, SCHEMA_PUBLISH_EVENT, c_hash, _b64(c_hash), _b64(c_text))
        self.add(
            CONFLICT_DAY,
            c_start + 2,
            JOIN_NAME,
            c_hash,
            avro_b64(c_key, {"user_id": "1", "request_id": "c-1"}),
            avro_b64(c_value, {"purchase_price_sum_3d": "text"}),
        )

    def add(self, ds: str, ts: int, name: str, schema_hash: str, key: str, value: str) -> None:
        self.records.append(
            {
                "_id": f"{ts}-{len(self.records)}",
                "name": name,
                "schema_hash": schema_hash,
                "key_base64": key,
                "value_base64": value,
                "ts_millis": ts,
                "ds": ds,
            }
        )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory):
    from feature_assets.dev.services.local import start_mongo

    folder = tmp_path_factory.mktemp("log-mongo")
    mongo = start_mongo(folder / "mongo", log_path=folder / "mongo.log")
    yield mongo.url
    mongo.stop()


@pytest.fixture(scope="module")
def case(mongo_uri):
    from pymongo import MongoClient

    log = LogCase()
    client = MongoClient(mongo_uri)
    collection = client[DB][LOG_COLLECTION]
    collection.delete_many({})
    collection.insert_many([dict(r) for r in log.records])
    client.close()
    return log


@pytest.fixture
def database(mongo_uri):
    from pymongo import MongoClient

    client = MongoClient(mongo_uri)
    yield client[DB]
    client.close()


def raw_rows(warehouse, start: str, end: str) -> list[tuple]:
    return sorted(tuple(r) for r in warehouse.read(RAW_LOG_TABLE, start, end).collect())


def test_dump_fills_days_from_mongo_and_refilling_gives_the_same_rows(warehouse, case, database):
    rows = log_rows(mongo_log_records(database, LOG_COLLECTION, DAYS[0], DAYS[1]))
    counts = dump_log(warehouse, rows, RAW_LOG_TABLE, DAYS[0], DAYS[1])
    expected = sorted(
        (r["schema_hash"], r["key_base64"], r["value_base64"], r["ts_millis"], r["name"], r["ds"])
        for r in case.records
        if r["ds"] in DAYS
    )
    assert raw_rows(warehouse, DAYS[0], DAYS[1]) == expected
    assert counts == {ds: sum(1 for r in case.records if r["ds"] == ds) for ds in DAYS}
    first = raw_rows(warehouse, DAYS[0], DAYS[1])
    # Refill one day: the same rows, and the other day untouched.
    again = log_rows(mongo_log_records(database, LOG_COLLECTION, DAYS[1], DAYS[1]))
    dump_log(warehouse, again, RAW_LOG_TABLE, DAYS[1], DAYS[1])
    assert raw_rows(warehouse, DAYS[0], DAYS[1]) == first


def test_a_record_delivered_twice_is_one_row_and_a_malformed_one_is_counted():
    record = {"schema_hash": "h", "key_base64": "a", "value_base64": "b", "ts_millis": 5, "name": "j", "ds": "d"}
    rows = log_rows([record, dict(record), {**record, "ts_millis": 6}, {**record, "ts_millis": None}])
    assert rows.rows == [("h", "a", "b", 5, "j", "d"), ("h", "a", "b", 6, "j", "d")]
    assert rows.duplicates == 1 and len(rows.malformed) == 1 and "ts_millis" in rows.malformed[0]
    with_ids = log_rows([{**record, "_id": 1}, {**record, "_id": 2}, {**record, "_id": 1}])
    assert len(with_ids.rows) == 2 and with_ids.duplicates == 1


def build_tables(warehouse, database, quickstart_compiled, end: str = DAYS[1]):
    """Dump the days, then the schema table by the quickstart's schema group-by (the engine's backfill)."""
    from feature_assets.offline.group_by import snapshot_backfill

    rows = log_rows(mongo_log_records(database, LOG_COLLECTION, DAYS[0], end))
    dump_log(warehouse, rows, RAW_LOG_TABLE, DAYS[0], end)
    schema_group_by = quickstart_compiled.group_bys["quickstart.schema.v1"]
    warehouse.write_partitions(snapshot_backfill(warehouse, schema_group_by, DAYS[0], end), SCHEMA_TABLE, DAYS[0], end)


def test_the_schema_table_holds_each_published_schema(warehouse, case, database, quickstart_compiled):
    build_tables(warehouse, database, quickstart_compiled)
    table = warehouse.read(SCHEMA_TABLE, DAYS[1], DAYS[1])
    assert sorted(table.columns) == ["ds", "schema_hash", "schema_value_last"]
    found = {r["schema_hash"]: r["schema_value_last"] for r in table.collect()}
    assert found == {schema_hash: text for schema_hash, text, _, _ in case.versions}
    first_day = {r["schema_hash"] for r in warehouse.read(SCHEMA_TABLE, DAYS[0], DAYS[0]).collect()}
    assert first_day == {case.versions[0][0]}


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "asDict"):
        return plain(value.asDict())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def test_flattening_decodes_every_value_of_both_schema_versions(warehouse, case, database, quickstart_compiled):
    build_tables(warehouse, database, quickstart_compiled)
    join = quickstart_compiled.joins[JOIN_NAME]
    flattened = flatten_log(warehouse, join, RAW_LOG_TABLE, SCHEMA_TABLE, DAYS[0], DAYS[1])
    types = dict(flattened.frame.dtypes)
    assert [c for c in flattened.frame.columns] == [
        "schema_hash",
        "ts",
        "user_id",
        "request_id",
        *[name for name, _ in V2_VALUES],
        ABSENT_FIELDS_COLUMN,
        "ds",
    ]
    assert types["purchase_price_sum_3d"] == "bigint" and types["purchase_price_last10"] == "array<bigint>"
    assert types["refund_amt_by_product"] == "map<string,double>" and types["flagged"] == "boolean"
    assert flattened.schema_hashes == [case.versions[0][0], case.versions[1][0]]
    assert flattened.undecodable == case.undecodable
    assert flattened.undecodable_by_day == {ds: 2 for ds in DAYS}
    decoded = {r["request_id"]: plain(r.asDict()) for r in flattened.frame.collect()}
    flattened.release()
    assert decoded.keys() == case.expected.keys()
    for request_id, expected in case.expected.items():
        assert decoded[request_id] == expected, request_id


def test_a_field_with_two_types_fails_naming_the_field_and_both_hashes(warehouse, case, database, quickstart_compiled):
    build_tables(warehouse, database, quickstart_compiled, end=CONFLICT_DAY)
    join = quickstart_compiled.joins[JOIN_NAME]
    with pytest.raises(LogSchemaConflict) as error:
        flatten_log(warehouse, join, RAW_LOG_TABLE, SCHEMA_TABLE, DAYS[0], CONFLICT_DAY)
    message = str(error.value)
    assert "'purchase_price_sum_3d'" in message and case.versions[0][0] in message and case.conflict[0] in message
    # Pure: the union of versions, keys first, without the flattener.
    schemas = [parse_schema_value(h, text)[1] for h, text, _, _ in case.versions]
    assert union_columns(schemas, JOIN_NAME)[-1] == ("refund_amt_by_product", "map<string,double>")


def test_rows_of_an_older_schema_leave_the_new_feature_to_compute(warehouse, case, database, quickstart_compiled):
    """Bootstrap from the flattened log: a row logged before a feature existed is not covered for its part."""
    from pyspark.sql import functions as F

    from feature_assets.offline.bootstrap import coverage_flags

    build_tables(warehouse, database, quickstart_compiled)
    base = quickstart_compiled.joins[JOIN_NAME]
    join = config_from_json(JOINS, {**base.raw, "bootstrapFromLog": True})
    flattened = flatten_log(warehouse, join, RAW_LOG_TABLE, SCHEMA_TABLE, DAYS[0], DAYS[1])
    # Give the logged features the names of the join parts' columns: the first part's columns are in both
    # versions, one column of the second part only in the newer.
    purchases, returns = (part.columns for part in join.join_parts)
    logged = flattened.frame.select(
        "request_id",
        "ds",
        ABSENT_FIELDS_COLUMN,
        *[F.col("purchase_price_sum_3d").alias(c) for c in purchases],
        *[F.col("refund_amt_by_product").alias(c) for c in returns],
    ).withColumn(
        ABSENT_FIELDS_COLUMN,
        F.transform(ABSENT_FIELDS_COLUMN, lambda name: F.when(name == "refund_amt_by_product", F.lit(returns[0]))),
    )
    warehouse.write_partitions(logged, join.logged_table, DAYS[0], DAYS[1])
    flattened.release()
    left = warehouse.spark.createDataFrame(
        [(r, e["user_id"], e["ts"], e["ds"]) for r, e in case.expected.items()] + [("unlogged", "1", 5, DAYS[0])],
        "request_id string, user_id string, ts bigint, ds string",
    )
    flagged, _ = coverage_flags(warehouse, join, left, DAYS[0], DAYS[1])
    flags = {r["request_id"]: r for r in flagged.collect()}
    covered_purchases, covered_returns = (join.coverage_column(part) for part in join.join_parts)
    for request_id, expected in case.expected.items():
        is_v2 = expected["schema_hash"] == case.versions[1][0]
        assert flags[request_id][covered_purchases] is True
        assert flags[request_id][covered_returns] is is_v2, request_id
    assert not flags["unlogged"][covered_purchases] and not flags["unlogged"][covered_returns]


def test_the_assets_dump_build_the_schema_table_and_flatten_through_dagster(tmp_path, case, mongo_uri):
    """The CLI's path: the log table and `_logged` assets run as Dagster runs; the schema table's backfill job
    reads the log table as it is (it never dumps)."""
    from dagster import AssetCheckKey, AssetKey, DagsterInstance
    from support.paths import QUICKSTART

    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.log_assets import DUMP_JOB, FLATTEN_JOB, SCHEMA_CHANGE_CHECK
    from feature_assets.definitions.log_runs import materialize_logs
    from feature_assets.definitions.runs import run_backfill
    from feature_assets.resources import SparkResource, WarehouseResource
    from feature_assets.resources.mongo import MongoResource

    root = str(tmp_path / "warehouse")
    resources = {
        "spark": SparkResource(),
        "warehouse": WarehouseResource(root=root),
        "mongo": MongoResource(uri=mongo_uri, database=DB),
    }
    defs = build_definitions(QUICKSTART, resources=resources)
    log_key = AssetKey.from_user_string(RAW_LOG_TABLE.replace(".", "/"))
    logged_key = AssetKey.from_user_string("default/quickstart_training_set_v2_logged")
    with DagsterInstance.ephemeral() as instance:
        dumped = materialize_logs(defs, DUMP_JOB, [log_key], DAYS[0], DAYS[1], instance=instance)
        assert dumped.success, dumped.errors
        assert {m.partition: m.metadata["dagster/row_count"] for m in dumped.materialized} == {
            ds: sum(1 for r in case.records if r["ds"] == ds) for ds in DAYS
        }
        schemas = run_backfill(defs, "group_bys", "quickstart.schema.v1", DAYS[0], DAYS[1], instance=instance)
        assert schemas.success
        built = {e.asset_key.to_user_string() for e in schemas.get_asset_materialization_events()}
        assert built == {"default/quickstart_schema_v1"}
        for _ in range(2):
            flattened = materialize_logs(defs, FLATTEN_JOB, [logged_key], DAYS[0], DAYS[1], instance=instance)
            assert flattened.success, flattened.errors
            metadata = flattened.materialized[0].metadata
            assert metadata["undecodable_rows"] == sum(case.undecodable.values())
            assert metadata["schema_hashes"] == [case.versions[0][0], case.versions[1][0]]
        record = instance.get_latest_materialization_event(logged_key).asset_materialization
        assert "refund_amt_by_product map<string,double>" in record.metadata["columns"].value
        check = AssetCheckKey(logged_key, SCHEMA_CHANGE_CHECK)
        assert instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check] is not None


def test_a_request_logged_twice_at_the_same_time_keeps_the_same_row_whatever_the_input_order(
    spark, quickstart_compiled
):
    from feature_assets.offline.log_tables import _latest_per_row_id

    join = quickstart_compiled.joins[JOIN_NAME]
    assert join.row_ids == ("request_id",) or list(join.row_ids) == ["request_id"]
    schema = "schema_hash string, ts bigint, request_id string, price bigint, last array<bigint>, ds string"
    rows = [("h", 5, "r-1", value, [value, None], "2023-11-29") for value in (3, 11, 7)] + [
        ("h", 4, "r-1", 99, None, "2023-11-29"),  # older
        ("h", 5, "r-2", None, [], "2023-11-29"),
    ]
    kept = set()
    for seed in range(4):
        random.Random(seed).shuffle(rows)
        frame = spark.createDataFrame(rows, schema).repartition(3)
        latest = _latest_per_row_id(frame, join, ["request_id", "price", "last"])
        kept.add(tuple(sorted((r["request_id"], r["price"]) for r in latest.collect())))
    assert kept == {(("r-1", 7), ("r-2", None))}  # the latest time, then the greatest values as JSON
