"""The quickstart's online configs and events, loaded into an online store without Spark (the kernel computes
the daily values, encoded like the Spark upload does)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_assets.aggregation.windows import compute_features
from feature_assets.compiler import load_compiled_file
from feature_assets.model import GroupBy
from feature_assets.online.batch_encoding import (
    encode_snapshot_rows,
    encode_temporal_rows,
    end_of_day_millis,
    load_rows,
    make_schema,
)
from feature_assets.online.store import upload_metadata
from support.paths import QUICKSTART_PRODUCTION

DAY = 86_400_000


def compiled(path: str):
    return load_compiled_file(QUICKSTART_PRODUCTION / path)


PURCHASES = compiled("group_bys/quickstart/purchases.v1")
RETURNS = compiled("group_bys/quickstart/returns.v1")
TRAINING_SET = compiled("joins/quickstart/training_set.v2")


def purchases_events(seed: int = 0, users: int = 8, days: int = 40, start: str = "2023-11-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    start_ms = end_of_day_millis(start) - DAY
    return pd.DataFrame(
        {
            "user_id": [str(u) for u in rng.integers(1, users + 1, n)],
            "ts": np.sort(start_ms + rng.integers(0, days * DAY, n)).astype(np.int64),
            "purchase_price": rng.integers(1, 500, n).astype(np.int64),
        }
    )


def returns_events(seed: int = 1, **kwargs) -> pd.DataFrame:
    frame = purchases_events(seed, **kwargs).rename(columns={"purchase_price": "refund_amt"})
    return frame


def snapshot_upload(events: pd.DataFrame, group_by: GroupBy, ds: str) -> tuple[pd.DataFrame, dict]:
    """The daily values at the end of ds (the kernel), encoded like the Spark upload does."""
    specs = group_by.specs
    users = sorted(events["user_id"].unique())
    queries = pd.DataFrame({"user_id": users, "ts": end_of_day_millis(ds)})
    daily = compute_features(events, queries, ["user_id"], specs, frozenset({"purchase_price"}))
    from pyspark.sql.types import LongType

    from feature_assets.offline.specs import output_type

    types = {s.column_name: output_type(s, LongType()).simpleString() for s in specs}
    schema = make_schema(group_by, {"user_id": "string"}, types)
    return encode_snapshot_rows(daily, schema), schema


def temporal_upload(events: pd.DataFrame, group_by: GroupBy, ds: str) -> tuple[pd.DataFrame, dict]:
    schema = make_schema(group_by, {"user_id": "string"}, {"refund_amt": "bigint"})
    return encode_temporal_rows(events, schema, group_by, end_of_day_millis(ds)), schema


def load_quickstart(store, ds: str, purchases=None, returns=None):
    purchases = purchases_events() if purchases is None else purchases
    returns = returns_events() if returns is None else returns
    upload_metadata(store, "joins", TRAINING_SET)
    rows, schema = snapshot_upload(purchases, PURCHASES, ds)
    first = load_rows(store, PURCHASES, ds, rows, schema)
    rows, schema = temporal_upload(returns, RETURNS, ds)
    second = load_rows(store, RETURNS, ds, rows, schema)
    return first, second
