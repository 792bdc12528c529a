"""Deterministic generator of the Chronon quickstart source tables.

Tables (namespace ``data`` by default), each partitioned by ``ds`` (UTC date):

* ``data.purchases``  ``ts, purchase_id, user_id, product_id, purchase_price``
* ``data.returns``    ``ts, return_id, user_id, product_id, refund_amt``
* ``data.checkouts``  ``ts, request_id, user_id, product_id``
* ``data.users``      daily snapshot ``user_id, account_created_ds, email_verified, user_segment``

Every (table, day) partition is produced by its own ``numpy.random.Generator``
seeded with ``[seed, table code, day ordinal]``; the data of a day therefore only
depends on the seed, the day and the size parameters, not on the date range
requested.  Generation is vectorized and done one day at a time directly into
arrow, so the benchmark scale (5M events, 200k Zipf-skewed keys) stays fast and
memory-bounded.

Run ``python -m feature_assets.dev.datagen.quickstart --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feature_assets.dev.datagen.parquet_tables import default_warehouse, write_partition

DAY_MS = 86_400_000
# The quickstart's days: the seed uploads 2023-12-01 and streams its realtime event at 2023-12-02 00:00 UTC,
# right after the last batch day.
START_DS, END_DS = "2023-11-01", "2023-12-01"
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

TABLES = ("purchases", "returns", "checkouts", "users")
_TABLE_CODES = {"purchases": 1, "returns": 2, "checkouts": 3, "users": 4}
_USER_PERM_CODE = 101
_PRODUCT_PERM_CODE = 102
_USER_ATTR_CODE = 103

USER_SEGMENTS = ("bronze", "silver", "gold", "platinum")
_USER_SEGMENT_P = (0.45, 0.30, 0.17, 0.08)

SCHEMAS: dict[str, pa.Schema] = {
    "purchases": pa.schema(
        [
            ("ts", pa.int64()),
            ("purchase_id", pa.string()),
            ("user_id", pa.string()),
            ("product_id", pa.string()),
            ("purchase_price", pa.int64()),
        ]
    ),
    "returns": pa.schema(
        [
            ("ts", pa.int64()),
            ("return_id", pa.string()),
            ("user_id", pa.string()),
            ("product_id", pa.string()),
            ("refund_amt", pa.int64()),
        ]
    ),
    "checkouts": pa.schema(
        [
            ("ts", pa.int64()),
            ("request_id", pa.string()),
            ("user_id", pa.string()),
            ("product_id", pa.string()),
        ]
    ),
    "users": pa.schema(
        [
            ("user_id", pa.string()),
            ("account_created_ds", pa.string()),
            ("email_verified", pa.int64()),
            ("user_segment", pa.string()),
        ]
    ),
}

__all__ = [
    "END_DS",
    "SCHEMAS",
    "START_DS",
    "TABLES",
    "QuickstartConfig",
    "date_range",
    "ds_of_ts",
    "zipf_cdf",
    "uuid_strings",
    "iter_quickstart_partitions",
    "quickstart_frames",
    "generate_quickstart_data",
    "main",
]


# --------------------------------------------------------------------------- helpers


def date_range(start_ds: str, end_ds: str) -> list[dt.date]:
    start, end = dt.date.fromisoformat(start_ds), dt.date.fromisoformat(end_ds)
    if end < start:
        raise ValueError(f"end_ds {end_ds} is before start_ds {start_ds}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def day_start_ms(day: dt.date) -> int:
    return (day.toordinal() - EPOCH_ORDINAL) * DAY_MS


def ds_of_ts(ts_millis) -> np.ndarray:
    """UTC date strings (``YYYY-MM-DD``) of epoch-millis timestamps."""
    ts = np.asarray(ts_millis, dtype=np.int64)
    return np.datetime_as_string(ts.astype("datetime64[ms]"), unit="D").astype(object)


def zipf_cdf(n: int, s: float) -> np.ndarray:
    """CDF of the bounded Zipf law P(rank r) ∝ 1 / r**s for r = 1..n."""
    w = np.arange(1, n + 1, dtype=np.float64) ** (-float(s))
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return cdf


def sample_ranks(rng: np.random.Generator, n: int, size: int, cdf: np.ndarray | None) -> np.ndarray:
    """``size`` ranks in ``[0, n)``: uniform when ``cdf`` is None, else from ``cdf``."""
    if cdf is None:
        return rng.integers(0, n, size=size)
    ranks = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(ranks, n - 1)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_HEX_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid_strings(rng: np.random.Generator, n: int) -> pa.StringArray:
    """``n`` version-4-shaped UUID strings drawn from ``rng`` (vectorized)."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _UUID_HEX_POS] = hexed
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _sequence_ids(prefix: str, n: int) -> pa.Array:
    """``prefix`` + zero-padded 0..n-1 as an arrow string array."""
    width = max(7, len(str(max(n - 1, 0))))
    nums = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, nums, "")


def _dup_timestamps(rng: np.random.Generator, ts: np.ndarray, keys: np.ndarray, frac: float) -> None:
    """In place: give a fraction of rows the (key, ts) of another random row."""
    n = len(ts)
    m = int(n * frac)
    if n < 2 or m == 0:
        return
    dst = rng.choice(n, size=m, replace=False)
    src = rng.integers(0, n, size=m)
    ts[dst] = ts[src]
    keys[dst] = keys[src]


# --------------------------------------------------------------------------- config


class QuickstartConfig:
    """Pre-computed, seed-derived state shared by every partition."""

    def __init__(
        self,
        *,
        n_users: int,
        n_products: int,
        purchases_per_day: int,
        returns_per_day: int,
        checkouts_per_day: int,
        zipf_s: float | None,
        seed: int,
        start_ds: str,
        duplicate_ts_fraction: float = 0.02,
    ) -> None:
        if n_users < 1 or n_products < 1:
            raise ValueError("n_users and n_products must be >= 1")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.n_users = int(n_users)
        self.n_products = int(n_products)
        self.per_day = {
            "purchases": int(purchases_per_day),
            "returns": int(returns_per_day),
            "checkouts": int(checkouts_per_day),
        }
        self.zipf_s = zipf_s
        self.seed = int(seed)
        self.duplicate_ts_fraction = duplicate_ts_fraction
        self.user_cdf = zipf_cdf(self.n_users, zipf_s) if zipf_s else None
        # rank -> user id: a seeded permutation so the hottest key is not always "1".
        perm = np.random.default_rng([self.seed, _USER_PERM_CODE]).permutation(self.n_users) + 1
        self.user_ids = pc.cast(pa.array(perm, pa.int64()), pa.string())  # indexed by rank
        self.user_id_by_index = pc.cast(pa.array(np.arange(1, self.n_users + 1), pa.int64()), pa.string())
        self.product_cdf = zipf_cdf(self.n_products, 1.0)  # products are mildly skewed
        pperm = np.random.default_rng([self.seed, _PRODUCT_PERM_CODE]).permutation(self.n_products) + 1
        self.product_ids = pc.binary_join_element_wise("P", pc.cast(pa.array(pperm, pa.int64()), pa.string()), "")
        self._user_attrs(start_ds)

    def _user_attrs(self, start_ds: str) -> None:
        rng = np.random.default_rng([self.seed, _USER_ATTR_CODE])
        n = self.n_users
        start_ord = dt.date.fromisoformat(start_ds).toordinal()
        # 90% of the accounts exist before the range, 10% are created during the first 30 days.
        new = rng.random(n) < 0.10
        created = np.where(new, start_ord + rng.integers(0, 30, n), start_ord - rng.integers(1, 731, n))
        # 75% verify their email 0..60 days after account creation, the rest never do.
        verifies = rng.random(n) < 0.75
        verified = np.where(verifies, created + rng.integers(0, 61, n), np.iinfo(np.int64).max)
        self.user_created_ord = created.astype(np.int64)
        self.user_verified_ord = verified.astype(np.int64)
        self.user_created_ds = pc.cast(pa.array((created - EPOCH_ORDINAL).astype(np.int32), pa.date32()), pa.string())
        self.user_segment = pa.array(
            np.asarray(USER_SEGMENTS, dtype=object)[rng.choice(len(USER_SEGMENTS), size=n, p=_USER_SEGMENT_P)],
            pa.string(),
        )

    # ------------------------------------------------------------------ partitions

    def rng(self, table: str, day: dt.date) -> np.random.Generator:
        return np.random.default_rng([self.seed, _TABLE_CODES[table], day.toordinal()])

    def events(self, table: str, day: dt.date) -> pa.Table:
        rng = self.rng(table, day)
        n = self.per_day[table]
        base = day_start_ms(day)
        ts = base + rng.integers(0, DAY_MS, size=n, dtype=np.int64)
        users = sample_ranks(rng, self.n_users, n, self.user_cdf)
        _dup_timestamps(rng, ts, users, self.duplicate_ts_fraction)
        products = sample_ranks(rng, self.n_products, n, self.product_cdf)
        order = np.argsort(ts, kind="stable")
        ts, users, products = ts[order], users[order], products[order]
        user_col = self.user_ids.take(pa.array(users, pa.int64()))
        product_col = self.product_ids.take(pa.array(products, pa.int64()))
        compact = day.strftime("%Y%m%d")
        if table == "purchases":
            price = np.round(rng.lognormal(mean=3.6, sigma=0.8, size=n)).astype(np.int64) + 1
            cols = [ts, _sequence_ids(f"P{compact}-", n), user_col, product_col, price]
        elif table == "returns":
            refund = np.round(rng.lognormal(mean=3.3, sigma=0.8, size=n)).astype(np.int64) + 1
            cols = [ts, _sequence_ids(f"R{compact}-", n), user_col, product_col, refund]
        elif table == "checkouts":
            cols = [ts, uuid_strings(rng, n), user_col, product_col]
        else:
            raise ValueError(f"not an event table: {table}")
        schema = SCHEMAS[table]
        return pa.Table.from_arrays(
            [pa.array(c, f.type) if isinstance(c, np.ndarray) else c for c, f in zip(cols, schema)], schema=schema
        )

    def users_snapshot(self, day: dt.date) -> pa.Table:
        ord_ = day.toordinal()
        idx = np.nonzero(self.user_created_ord <= ord_)[0]
        take = pa.array(idx, pa.int64())
        verified = (self.user_verified_ord[idx] <= ord_).astype(np.int64)
        return pa.Table.from_arrays(
            [
                self.user_id_by_index.take(take),
                self.user_created_ds.take(take),
                pa.array(verified, pa.int64()),
                self.user_segment.take(take),
            ],
            schema=SCHEMAS["users"],
        )

    def partition(self, table: str, day: dt.date) -> pa.Table:
        return self.users_snapshot(day) if table == "users" else self.events(table, day)


# --------------------------------------------------------------------------- API


def _config(
    start_ds, n_users, n_products, purchases_per_day, returns_per_day, checkouts_per_day, zipf_s, seed
) -> QuickstartConfig:
    return QuickstartConfig(
        n_users=n_users,
        n_products=n_products,
        purchases_per_day=purchases_per_day,
        returns_per_day=returns_per_day,
        checkouts_per_day=checkouts_per_day,
        zipf_s=zipf_s,
        seed=seed,
        start_ds=start_ds,
    )


def _check_tables(tables: Iterable[str] | None) -> tuple[str, ...]:
    if tables is None:
        return TABLES
    tables = tuple(tables)
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise ValueError(f"unknown quickstart tables {bad}; choose from {TABLES}")
    return tables


def iter_quickstart_partitions(
    start_ds: str = START_DS,
    end_ds: str = END_DS,
    n_users: int = 100,
    purchases_per_day: int = 300,
    returns_per_day: int = 60,
    checkouts_per_day: int = 100,
    zipf_s: float | None = None,
    seed: int = 0,
    *,
    n_products: int = 50,
    tables: Iterable[str] | None = None,
) -> Iterator[tuple[str, str, pa.Table]]:
    """Yield ``(table short name, ds, arrow table without ds)`` day by day."""
    tables = _check_tables(tables)
    cfg = _config(start_ds, n_users, n_products, purchases_per_day, returns_per_day, checkouts_per_day, zipf_s, seed)
    for day in date_range(start_ds, end_ds):
        ds = day.isoformat()
        for table in tables:
            yield table, ds, cfg.partition(table, day)


def quickstart_frames(
    start_ds: str = START_DS,
    end_ds: str = END_DS,
    n_users: int = 100,
    purchases_per_day: int = 300,
    returns_per_day: int = 60,
    checkouts_per_day: int = 100,
    zipf_s: float | None = None,
    seed: int = 0,
    *,
    n_products: int = 50,
    tables: Iterable[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """In-memory pandas frames (with a string ``ds`` column) keyed by short table name."""
    tables = _check_tables(tables)
    parts: dict[str, list[pa.Table]] = {t: [] for t in tables}
    for table, ds, tbl in iter_quickstart_partitions(
        start_ds,
        end_ds,
        n_users,
        purchases_per_day,
        returns_per_day,
        checkouts_per_day,
        zipf_s,
        seed,
        n_products=n_products,
        tables=tables,
    ):
        parts[table].append(tbl.append_column("ds", pa.repeat(pa.scalar(ds, pa.string()), tbl.num_rows)))
    return {t: pa.concat_tables(p).to_pandas() for t, p in parts.items()}


def generate_quickstart_data(
    warehouse: str | None = None,
    start_ds: str = START_DS,
    end_ds: str = END_DS,
    n_users: int = 100,
    purchases_per_day: int = 300,
    returns_per_day: int = 60,
    checkouts_per_day: int = 100,
    zipf_s: float | None = None,
    seed: int = 0,
    namespace: str = "data",
    *,
    n_products: int = 50,
    tables: Iterable[str] | None = None,
) -> dict[str, int]:
    """Generate and write the quickstart tables; return row counts keyed by ``ns.table``.

    ``warehouse`` defaults to ``$FEATURE_ASSETS_WAREHOUSE`` / ``data/warehouse`` in the current folder.
    Each day's partition replaces the existing one (idempotent re-runs).
    ``zipf_s`` (e.g. 1.1) draws user ids with bounded Zipf skew instead of uniformly.
    ``tables`` restricts generation to a subset of ``purchases, returns, checkouts, users``.
    """
    warehouse = warehouse or default_warehouse()
    tables = _check_tables(tables)
    counts = {f"{namespace}.{t}": 0 for t in tables}
    for table, ds, tbl in iter_quickstart_partitions(
        start_ds,
        end_ds,
        n_users,
        purchases_per_day,
        returns_per_day,
        checkouts_per_day,
        zipf_s,
        seed,
        n_products=n_products,
        tables=tables,
    ):
        write_partition(tbl, warehouse, f"{namespace}.{table}", ds)
        counts[f"{namespace}.{table}"] += tbl.num_rows
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m feature_assets.dev.datagen.quickstart",
        description="Generate the Chronon quickstart source tables as ds-partitioned parquet.",
    )
    p.add_argument(
        "--warehouse", default=None, help="warehouse root (default: $FEATURE_ASSETS_WAREHOUSE or data/warehouse)"
    )
    p.add_argument("--start-ds", default=START_DS)
    p.add_argument("--end-ds", default=END_DS)
    p.add_argument("--users", type=int, default=100, help="number of users (ids '1'..'N')")
    p.add_argument("--products", type=int, default=50)
    p.add_argument("--purchases-per-day", type=int, default=300)
    p.add_argument("--returns-per-day", type=int, default=60)
    p.add_argument("--checkouts-per-day", type=int, default=100)
    p.add_argument("--zipf-s", type=float, default=None, help="Zipf exponent for user ids (default: uniform)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--namespace", default="data")
    p.add_argument("--tables", default=",".join(TABLES), help="comma separated subset of " + ",".join(TABLES))
    p.add_argument(
        "--json", action="store_true", help="print only the row counts, as JSON (feature-assets generate-data)"
    )
    args = p.parse_args(argv)
    warehouse = args.warehouse or default_warehouse()
    t0 = time.perf_counter()
    counts = generate_quickstart_data(
        warehouse=warehouse,
        start_ds=args.start_ds,
        end_ds=args.end_ds,
        n_users=args.users,
        purchases_per_day=args.purchases_per_day,
        returns_per_day=args.returns_per_day,
        checkouts_per_day=args.checkouts_per_day,
        zipf_s=args.zipf_s,
        seed=args.seed,
        namespace=args.namespace,
        n_products=args.products,
        tables=[t.strip() for t in args.tables.split(",") if t.strip()],
    )
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    for table, n in counts.items():
        print(f"{table}: {n} rows")
    print(f"wrote {sum(counts.values())} rows to {warehouse} in {elapsed:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
