"""Tests of the synthetic data generators and the parquet table helpers (pandas only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from feature_assets.dev.datagen import parquet_tables
from feature_assets.dev.datagen.parquet_tables import list_partitions, read_table, write_partitioned
from feature_assets.dev.datagen.quickstart import (
    SCHEMAS,
    generate_quickstart_data,
    main,
    quickstart_frames,
    uuid_strings,
)
from feature_assets.dev.datagen.random_events import apply_mutations, random_event_case

SMALL = dict(
    start_ds="2023-11-01",
    end_ds="2023-11-05",
    n_users=50,
    purchases_per_day=200,
    returns_per_day=40,
    checkouts_per_day=80,
)


def utc_ds(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, unit="ms", utc=True).dt.strftime("%Y-%m-%d")


# --------------------------------------------------------------------------- quickstart


@pytest.fixture(scope="module")
def qs_frames():
    return quickstart_frames(**SMALL, seed=7)


def test_quickstart_deterministic(qs_frames):
    again = quickstart_frames(**SMALL, seed=7)
    other = quickstart_frames(**SMALL, seed=8)
    for name, df in qs_frames.items():
        pd.testing.assert_frame_equal(df, again[name])
        assert not df.equals(other[name]), name


def test_quickstart_day_independent_of_range(qs_frames):
    one_day = quickstart_frames(
        **{**SMALL, "start_ds": "2023-11-03", "end_ds": "2023-11-03"}, seed=7, tables=["purchases", "checkouts"]
    )
    for name in ("purchases", "checkouts"):
        full = qs_frames[name]
        expected = full[full.ds == "2023-11-03"].reset_index(drop=True)
        pd.testing.assert_frame_equal(one_day[name], expected)


def test_quickstart_schemas(qs_frames):
    expected = {
        "purchases": {
            "ts": "int64",
            "purchase_id": "object",
            "user_id": "object",
            "product_id": "object",
            "purchase_price": "int64",
            "ds": "object",
        },
        "returns": {
            "ts": "int64",
            "return_id": "object",
            "user_id": "object",
            "product_id": "object",
            "refund_amt": "int64",
            "ds": "object",
        },
        "checkouts": {
            "ts": "int64",
            "request_id": "object",
            "user_id": "object",
            "product_id": "object",
            "ds": "object",
        },
        "users": {
            "user_id": "object",
            "account_created_ds": "object",
            "email_verified": "int64",
            "user_segment": "object",
            "ds": "object",
        },
    }
    for name, cols in expected.items():
        df = qs_frames[name]
        assert {c: str(t) for c, t in df.dtypes.items()} == cols, name
        assert list(df.columns[:-1]) == SCHEMAS[name].names
        assert df.drop(columns="ds").notna().all().all(), name
        assert all(isinstance(v, str) for v in df.select_dtypes("object").iloc[:50].to_numpy().ravel())


def test_quickstart_content(qs_frames):
    p, r, c, u = (qs_frames[t] for t in ("purchases", "returns", "checkouts", "users"))
    assert len(p) == 5 * 200 and len(r) == 5 * 40 and len(c) == 5 * 80
    valid_users = {str(i) for i in range(1, 51)}
    for df in (p, r, c):
        assert (df.ds == utc_ds(df.ts)).all()
        assert set(df.user_id) <= valid_users
    assert p.purchase_id.is_unique and r.return_id.is_unique
    assert c.request_id.is_unique
    assert c.request_id.str.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}").all()
    assert (p.purchase_price > 0).all() and (r.refund_amt > 0).all()
    # events spread across the day, with duplicate timestamps for the same user
    ms_of_day = p.ts % 86_400_000
    assert ms_of_day.min() < 3_600_000 and ms_of_day.max() > 82_800_000
    assert p.duplicated(["user_id", "ts"]).sum() > 0
    # users: one row per existing user per day, growing over time
    assert not u.duplicated(["user_id", "ds"]).any()
    assert (u.account_created_ds <= u.ds).all()
    assert set(u.email_verified) <= {0, 1}
    counts = u.groupby("ds").size()
    assert counts.is_monotonic_increasing and counts.iloc[-1] <= 50
    # attributes of a user are stable across days; email_verified never goes 1 -> 0
    assert (u.groupby("user_id").account_created_ds.nunique() == 1).all()
    assert (u.sort_values("ds").groupby("user_id").email_verified.apply(lambda s: s.is_monotonic_increasing)).all()


def test_quickstart_default_users_fetchable():
    f = quickstart_frames(start_ds="2023-11-01", end_ds="2023-11-02", tables=["purchases", "users"])
    assert "5" in set(f["purchases"].user_id)
    assert set(f["users"].user_id) <= {str(i) for i in range(1, 101)}


def test_quickstart_defaults_cover_the_seeds_days(tmp_path):
    """The seed uploads 2023-12-01 and streams its realtime event at 2023-12-02 00:00 UTC (1701475200000): the
    quickstart's data runs from 2023-11-01 through 2023-12-01, the last event just before that instant."""
    counts = generate_quickstart_data(str(tmp_path), checkouts_per_day=2, tables=["checkouts"])
    days = list_partitions(str(tmp_path), "data.checkouts")
    assert (days[0], days[-1], len(days)) == ("2023-11-01", "2023-12-01", 31) and counts == {"data.checkouts": 62}
    assert read_table(str(tmp_path), "data.checkouts").ts.max() < 1701475200000
    main(["--warehouse", str(tmp_path / "cli"), "--tables", "returns", "--returns-per-day", "1"])
    assert list_partitions(str(tmp_path / "cli"), "data.returns")[-1] == "2023-12-01"


def test_zipf_skew():
    f = quickstart_frames(
        start_ds="2023-11-01",
        end_ds="2023-11-02",
        n_users=2000,
        purchases_per_day=20000,
        zipf_s=1.1,
        tables=["purchases"],
    )["purchases"]
    counts = f.user_id.value_counts()
    assert counts.iloc[0] > 50 * counts.median()
    uniform = quickstart_frames(
        start_ds="2023-11-01", end_ds="2023-11-02", n_users=2000, purchases_per_day=20000, tables=["purchases"]
    )["purchases"]
    ucounts = uniform.user_id.value_counts()
    assert ucounts.iloc[0] < 3 * ucounts.median()


def test_uuid_strings_unique():
    ids = uuid_strings(np.random.default_rng(0), 50_000).to_pylist()
    assert len(set(ids)) == len(ids) and all(len(s) == 36 for s in ids[:100])


def test_generate_writes_partitions(tmp_path, qs_frames):
    wh = str(tmp_path / "wh")
    counts = generate_quickstart_data(warehouse=wh, **SMALL, seed=7)
    assert counts == {f"data.{t}": len(df) for t, df in qs_frames.items()}
    days = [f"2023-11-0{i}" for i in range(1, 6)]
    for name, df in qs_frames.items():
        assert list_partitions(wh, f"data.{name}") == days
        for ds in days:
            part = tmp_path / "wh" / "data" / name / f"ds={ds}"
            assert [p.name for p in part.iterdir()] == ["part-00000.parquet"]
            assert "ds" not in pq.read_schema(part / "part-00000.parquet").names
        back = read_table(wh, f"data.{name}")
        pd.testing.assert_frame_equal(back, df)
    sub = read_table(wh, "data.purchases", "2023-11-02", "2023-11-03")
    assert sorted(sub.ds.unique()) == ["2023-11-02", "2023-11-03"]
    assert len(sub) == 400
    # re-running replaces partitions instead of appending
    again = generate_quickstart_data(warehouse=wh, **SMALL, seed=7)
    assert again == counts
    pd.testing.assert_frame_equal(read_table(wh, "data.purchases"), qs_frames["purchases"])


def test_main_cli_and_env_default(tmp_path, monkeypatch, capsys):
    wh = tmp_path / "envwh"
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", str(wh))
    assert parquet_tables.default_warehouse() == str(wh)
    main(
        [
            "--start-ds",
            "2023-11-01",
            "--end-ds",
            "2023-11-02",
            "--users",
            "10",
            "--purchases-per-day",
            "7",
            "--returns-per-day",
            "3",
            "--checkouts-per-day",
            "5",
            "--zipf-s",
            "1.3",
            "--seed",
            "3",
            "--tables",
            "purchases,checkouts",
        ]
    )
    out = capsys.readouterr().out
    assert "data.purchases: 14 rows" in out and "data.checkouts: 10 rows" in out
    assert len(read_table(None, "data.purchases")) == 14
    assert not (wh / "data" / "users").exists()


def test_default_warehouse_location(tmp_path, monkeypatch):
    """Under the current folder, wherever the package is installed."""
    monkeypatch.delenv("FEATURE_ASSETS_WAREHOUSE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert parquet_tables.default_warehouse() == os.path.join(str(tmp_path), "data", "warehouse")


def test_cli_generate_data_writes_under_the_current_folder(tmp_path):
    """`feature-assets generate-data` prints the row counts as JSON; without settings the tables go to
    ./data/warehouse of the folder it runs in."""
    env = {k: v for k, v in os.environ.items() if k != "FEATURE_ASSETS_WAREHOUSE"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "feature_assets.cli",
            "generate-data",
            "--start-ds",
            "2023-11-01",
            "--end-ds",
            "2023-11-02",
            "--users",
            "10",
            "--seed",
            "3",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout)
    assert counts == {"data.purchases": 600, "data.returns": 120, "data.checkouts": 200, "data.users": 20}
    assert list_partitions(str(tmp_path / "data" / "warehouse"), "data.purchases") == ["2023-11-01", "2023-11-02"]


# --------------------------------------------------------------------------- parquet helpers


def test_write_partitioned_replaces_partition(tmp_path):
    wh = str(tmp_path)
    df = pd.DataFrame(
        {
            "k": ["a", "b", None, "c"],
            "v": pd.array([1, None, 3, 4], dtype="Int64"),
            "ds": ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-03"],
        }
    )
    assert write_partitioned(df, wh, "ns.t") == ["2024-01-01", "2024-01-02", "2024-01-03"]
    pd.testing.assert_frame_equal(read_table(wh, "ns.t"), df)
    # a stray extra file in the partition is removed on rewrite
    (tmp_path / "ns" / "t" / "ds=2024-01-01" / "part-00001.parquet").write_bytes(b"junk")
    new = pd.DataFrame({"k": ["z"], "v": pd.array([9], dtype="Int64"), "ds": ["2024-01-01"]})
    write_partitioned(new, wh, "ns.t")
    back = read_table(wh, "ns.t")
    assert len(back) == 3
    assert back[back.ds == "2024-01-01"].k.tolist() == ["z"]
    assert back[back.ds == "2024-01-02"].k.isna().all()  # other partitions untouched
    write_partitioned(new, wh, "ns.t")  # same rows again: count unchanged
    assert len(read_table(wh, "ns.t")) == 3
    assert os.listdir(tmp_path / "ns" / "t" / "ds=2024-01-01") == ["part-00000.parquet"]
    # empty partitions and empty ranges keep the schema
    write_partitioned(new, wh, "ns.t", partitions=["2024-01-04"])
    assert list_partitions(wh, "ns.t")[-1] == "2024-01-04"
    empty = read_table(wh, "ns.t", "2024-01-04", "2024-01-04")
    assert list(empty.columns) == ["k", "v", "ds"] and len(empty) == 0
    assert list(read_table(wh, "ns.t", "2030-01-01").columns) == ["k", "v", "ds"]
    assert len(read_table(wh, "ns.missing")) == 0


def test_file_uri_warehouse(tmp_path):
    df = pd.DataFrame({"x": [1, 2], "ds": ["2024-01-01", "2024-01-02"]})
    write_partitioned(df, tmp_path.as_uri(), "a.b")
    assert (tmp_path / "a" / "b" / "ds=2024-01-02" / "part-00000.parquet").exists()
    pd.testing.assert_frame_equal(read_table(tmp_path.as_uri(), "a.b"), df)


# --------------------------------------------------------------------------- random cases


@pytest.fixture(scope="module", params=["string", "long", "composite"])
def case(request):
    return random_event_case(11, key_type=request.param)


def test_random_case_deterministic():
    a, b, c = random_event_case(3), random_event_case(3), random_event_case(4)
    for name, df in a.tables().items():
        pd.testing.assert_frame_equal(df, b.tables()[name])
        assert not df.equals(c.tables()[name]), name
    assert a.boundary_row_ids == b.boundary_row_ids


def test_random_case_dtypes(case):
    key_dtypes = {
        "string": {"key": "object"},
        "long": {"key": "Int64"},
        "composite": {"key_a": "object", "key_b": "Int64"},
    }[case.key_type]
    assert list(key_dtypes) == case.key_columns
    ev = {c: str(t) for c, t in case.events.dtypes.items()}
    assert ev == {
        **key_dtypes,
        "ts": "int64",
        "ds": "object",
        "value_long": "Int64",
        "value_double": "float64",
        "value_str": "object",
    }
    assert {c: str(t) for c, t in case.left.dtypes.items()} == {
        **key_dtypes,
        "ts": "int64",
        "ds": "object",
        "row_id": "object",
    }
    assert {c: str(t) for c, t in case.entity_mutations.dtypes.items()} == {
        **key_dtypes,
        "mutation_ts": "int64",
        "ds": "object",
        "is_before": "bool",
        "value_long": "Int64",
        "value_str": "object",
    }
    assert {c: str(t) for c, t in case.entity_snapshots.dtypes.items()} == {
        **key_dtypes,
        "ds": "object",
        "value_long": "Int64",
        "value_str": "object",
    }
    assert case.left.row_id.is_unique
    assert (case.events.ds == utc_ds(case.events.ts)).all()
    assert (case.left.ds == utc_ds(case.left.ts)).all()
    assert (case.entity_mutations.ds == utc_ds(case.entity_mutations.mutation_ts)).all()


def test_random_case_edge_cases(case):
    ev, left, keys = case.events, case.left, case.key_columns
    # an empty day strictly inside the range, with left rows on it
    assert case.start_ds < case.empty_ds < case.end_ds
    assert case.empty_ds not in set(ev.ds) and case.empty_ds in set(left.ds)
    assert case.empty_ds not in set(case.entity_mutations.ds)
    assert set(ev.ds) == set(case.days) - {case.empty_ds}
    # nulls in keys and values
    assert ev[keys[0]].isna().any() and left[keys[0]].isna().any()
    for col in ("value_long", "value_double", "value_str"):
        frac = ev[col].isna().mean()
        assert 0.03 < frac < 0.2, col
    assert ev.value_str.dropna().nunique() <= 5
    # duplicate timestamps for the same (non-null) key
    nn = ev.dropna(subset=keys)
    assert nn.duplicated(keys + ["ts"]).any()
    # Zipf skew
    counts = nn.groupby(keys).size().sort_values(ascending=False)
    assert counts.iloc[0] > 4 * counts.median()
    # left keys absent from the events
    ev_keys = set(map(tuple, nn[keys].astype(object).to_numpy().tolist()))
    lk = left.dropna(subset=keys)
    left_keys = set(map(tuple, lk[keys].astype(object).to_numpy().tolist()))
    assert left_keys - ev_keys
    # left rows at exact midnights
    assert (left.ts % 86_400_000 == 0).any() and (left.ts % 86_400_000 == 86_399_999).any()


def test_random_case_boundary_events(case):
    ev, left, keys = case.events, case.left, case.key_columns
    assert case.boundary_row_ids
    merged = left[left.row_id.isin(case.boundary_row_ids)].merge(ev.dropna(subset=keys), on=keys, suffixes=("_l", "_e"))
    delta = merged.ts_l - merged.ts_e
    assert (delta == 0).any()
    for w in case.windows_millis:
        assert (delta == w).any(), w
        assert (delta == w + 1).any() and (delta == w - 1).any(), w
    # boundary events exist for sampled rows whose t - W is inside the range, off the empty day
    assert len(case.boundary_row_ids) >= 10


def test_random_case_snapshots_consistent_with_mutations(case):
    keys = case.key_columns
    snaps, muts = case.entity_snapshots, case.entity_mutations
    days = sorted(snaps.ds.unique())
    assert days[0] < case.start_ds and days[1:] == case.days
    assert not snaps.duplicated(keys + ["ds"]).any()
    # updates are (before, after) pairs at the same ts; inserts/deletes are single rows
    per = muts.groupby(keys + ["mutation_ts"]).is_before.agg(["sum", "count"])
    assert set(map(tuple, per.to_numpy().tolist())) == {(1, 2), (0, 1), (1, 1)}
    # some keys appear and disappear
    key_sets = [set(map(tuple, snaps[snaps.ds == d][keys].astype(object).to_numpy().tolist())) for d in days]
    assert any(a - b for a, b in zip(key_sets, key_sets[1:])) and any(b - a for a, b in zip(key_sets, key_sets[1:]))
    # mutations exactly at some left ts
    assert muts.mutation_ts.isin(case.left.ts).any()

    def norm(df):
        return df.sort_values(keys).reset_index(drop=True)[keys + ["value_long", "value_str"]]

    for prev, day in zip(days, days[1:]):
        expected = apply_mutations(snaps[snaps.ds == prev], muts[muts.ds == day], keys)
        pd.testing.assert_frame_equal(norm(expected), norm(snaps[snaps.ds == day]))


def test_random_case_write(tmp_path, case):
    wh = str(tmp_path)
    counts = case.write(wh)
    assert counts == {f"rnd.{n}": len(df) for n, df in case.tables().items()}
    assert list_partitions(wh, "rnd.events") == case.days  # empty day landed as an empty partition
    assert len(read_table(wh, "rnd.events", case.empty_ds, case.empty_ds)) == 0
    for name, df in case.tables().items():
        back = read_table(wh, f"rnd.{name}")
        expected = df.sort_values("ds", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(back[list(df.columns)], expected)
