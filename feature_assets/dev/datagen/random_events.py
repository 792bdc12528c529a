"""Random test cases for a point-in-time feature engine.

:func:`random_event_case` builds a small, seeded :class:`RandomCase` full of the
edge cases a point-in-time join/aggregation engine tends to get wrong:

* Zipf-skewed keys, null keys (and, for composite keys, partially null keys),
  keys queried on the left that never occur in the events;
* null values in every value column, duplicate timestamps for the same key;
* one completely empty day (no events, no mutations) in the middle of the range,
  with left rows on that day;
* for a sample of left rows, events placed exactly at the left ``ts`` and exactly
  at ``ts - W`` for every window ``W`` (plus the 1 ms neighbours ``ts - 1``,
  ``ts - W - 1`` and ``ts - W + 1``) so off-by-one window bounds are caught;
* left rows at exact midnights and on the last millisecond of a day, duplicated
  left rows (same key and ts, different ``row_id``);
* an entity snapshot table and a mutation log consistent with it: the snapshot of
  day ``d`` is the snapshot of day ``d - 1`` with all mutations of day ``d``
  applied in ``mutation_ts`` order.  Some mutations happen exactly at a left
  row's ``ts``.

``value_double`` values are multiples of 0.25 in [-100, 100), so sums are exact
in float64 regardless of summation order.

Key columns: ``key`` (``object`` strings for ``key_type="string"``, pandas
``Int64`` for ``"long"``) or ``key_a`` (``object`` strings) + ``key_b`` (``Int64``)
for ``"composite"``.  Nullable integers use pandas ``Int64``, null doubles are NaN,
null strings are ``None``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feature_assets.dev.datagen.parquet_tables import write_partitioned

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

DEFAULT_WINDOWS_MILLIS: tuple[int, ...] = (10 * 60_000, HOUR_MS, DAY_MS, 2 * DAY_MS)
VALUE_STRINGS = ("alpha", "beta", "gamma", "delta", "epsilon")
KEY_TYPES = ("string", "long", "composite")

__all__ = [
    "DEFAULT_WINDOWS_MILLIS",
    "KEY_TYPES",
    "RandomCase",
    "random_event_case",
    "apply_mutations",
]


@dataclass
class RandomCase:
    """A random point-in-time test case (all frames are pandas)."""

    seed: int
    key_type: str
    key_columns: list[str]
    start_ds: str
    end_ds: str
    empty_ds: str
    windows_millis: list[int]
    events: pd.DataFrame
    left: pd.DataFrame
    entity_snapshots: pd.DataFrame
    entity_mutations: pd.DataFrame
    boundary_row_ids: list[str] = field(default_factory=list)

    @property
    def days(self) -> list[str]:
        start, end = dt.date.fromisoformat(self.start_ds), dt.date.fromisoformat(self.end_ds)
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "events": self.events,
            "left": self.left,
            "entity_snapshots": self.entity_snapshots,
            "entity_mutations": self.entity_mutations,
        }

    def write(self, warehouse: str | None, namespace: str = "rnd") -> dict[str, int]:
        """Write ``<ns>.events``, ``<ns>.left``, ``<ns>.entity_snapshots``, ``<ns>.entity_mutations``.

        Days of the range without rows (the empty day) are written as empty
        partitions for ``events`` and ``entity_mutations``, i.e. the data landed
        but had no rows.  Returns row counts keyed by ``ns.table``.
        """
        counts = {}
        for name, df in self.tables().items():
            extra = self.days if name in ("events", "entity_mutations") else None
            write_partitioned(df, warehouse, f"{namespace}.{name}", partitions=extra)
            counts[f"{namespace}.{name}"] = len(df)
        return counts


# --------------------------------------------------------------------------- keys


class _Keys:
    """Maps integer key indices (-1 = null) to the key column(s) of a key type."""

    def __init__(self, key_type: str, n_total: int) -> None:
        if key_type not in KEY_TYPES:
            raise ValueError(f"key_type must be one of {KEY_TYPES}, got {key_type!r}")
        self.key_type = key_type
        self.modulus = max(2, int(np.ceil(np.sqrt(n_total))))
        self.columns = ["key_a", "key_b"] if key_type == "composite" else ["key"]

    def frame(self, idx: np.ndarray, partial_null: np.ndarray | None = None) -> dict[str, pd.Series]:
        idx = np.asarray(idx, dtype=np.int64)
        null = idx < 0
        safe = np.where(null, 0, idx)
        if self.key_type == "string":
            vals = np.array([f"k{i:03d}" for i in safe], dtype=object)
            vals[null] = None
            return {"key": pd.Series(vals, dtype=object)}
        if self.key_type == "long":
            # Odd multiplier mod 2**40 is a bijection: distinct, large, unordered ids.
            vals = (safe * 2_654_435_761) % (1 << 40) + 1
            return {"key": pd.Series(pd.array(np.where(null, 0, vals), dtype="Int64")).mask(null)}
        a = np.array([f"a{i % self.modulus}" for i in safe], dtype=object)
        a[null] = None
        b_null = null if partial_null is None else (null | partial_null)
        b = pd.Series(pd.array(safe // self.modulus, dtype="Int64")).mask(b_null)
        return {"key_a": pd.Series(a, dtype=object), "key_b": b}


# --------------------------------------------------------------------------- values


def _zipf_sampler(rng: np.random.Generator, n: int, s: float):
    w = np.arange(1, n + 1, dtype=np.float64) ** (-float(s)) if s else np.ones(n)
    cdf = np.cumsum(w) / w.sum()
    perm = rng.permutation(n)

    def sample(size: int) -> np.ndarray:
        return perm[np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n - 1)]

    return sample


def _values(rng: np.random.Generator, n: int, null_fraction: float) -> dict[str, pd.Series]:
    vl = rng.integers(-1000, 1001, size=n)
    vd = rng.integers(-400, 400, size=n) / 4.0
    vs = np.asarray(VALUE_STRINGS, dtype=object)[rng.integers(0, len(VALUE_STRINGS), size=n)]
    vl_null = rng.random(n) < null_fraction
    vd[rng.random(n) < null_fraction] = np.nan
    vs[rng.random(n) < null_fraction] = None
    return {
        "value_long": pd.Series(pd.array(vl, dtype="Int64")).mask(vl_null),
        "value_double": pd.Series(vd, dtype=np.float64),
        "value_str": pd.Series(vs, dtype=object),
    }


def _ds(ts: np.ndarray) -> pd.Series:
    ts = np.asarray(ts, dtype=np.int64)
    return pd.Series(np.datetime_as_string(ts.astype("datetime64[ms]"), unit="D").astype(object), dtype=object)


def _entity_value(rng: np.random.Generator, null_fraction: float) -> tuple[object, object]:
    vl = None if rng.random() < null_fraction else int(rng.integers(-100, 101))
    vs = None if rng.random() < null_fraction else str(VALUE_STRINGS[rng.integers(0, len(VALUE_STRINGS))])
    return vl, vs


# --------------------------------------------------------------------------- main


def random_event_case(
    seed: int,
    n_keys: int = 40,
    n_events: int = 2000,
    n_left: int = 300,
    start_ds: str = "2024-01-01",
    n_days: int = 6,
    key_type: str = "string",
    null_fraction: float = 0.1,
    zipf_s: float = 1.2,
    windows_millis: Sequence[int] | None = None,
    *,
    null_key_fraction: float = 0.03,
    duplicate_ts_fraction: float = 0.05,
    absent_key_fraction: float = 0.1,
    boundary_fraction: float = 0.1,
    boundary_neighbors: bool = True,
    mutations_per_day: int | None = None,
) -> RandomCase:
    """Build a seeded random :class:`RandomCase`.

    ``n_events`` random events are generated, then boundary events (at the left
    ``ts`` and ``ts - W`` for a ``boundary_fraction`` sample of left rows) are
    added on top.  Events and mutations never fall on ``empty_ds`` (a day strictly
    inside the range) nor before ``start_ds``.
    """
    if n_days < 3:
        raise ValueError("n_days must be >= 3 (an empty day is placed strictly inside the range)")
    if n_keys < 2:
        raise ValueError("n_keys must be >= 2")
    windows = sorted({int(w) for w in (DEFAULT_WINDOWS_MILLIS if windows_millis is None else windows_millis)})
    if any(w <= 0 for w in windows):
        raise ValueError("windows_millis must be positive")
    rng = np.random.default_rng(seed)
    start = dt.date.fromisoformat(start_ds)
    start_ms = (start.toordinal() - EPOCH_ORDINAL) * DAY_MS
    end_ms = start_ms + n_days * DAY_MS  # exclusive
    empty_day = int(rng.integers(1, n_days - 1))
    empty_lo, empty_hi = start_ms + empty_day * DAY_MS, start_ms + (empty_day + 1) * DAY_MS
    non_empty_days = np.array([d for d in range(n_days) if d != empty_day])

    n_absent = max(3, int(np.ceil(n_keys * 0.1)))
    keys = _Keys(key_type, n_keys + n_absent)
    absent_idx = np.arange(n_keys, n_keys + n_absent)

    def valid_event_ts(ts: np.ndarray | int) -> np.ndarray:
        ts = np.asarray(ts)
        return (ts >= start_ms) & (ts < end_ms) & ~((ts >= empty_lo) & (ts < empty_hi))

    # ---------------------------------------------------------------- events
    sample_key = _zipf_sampler(rng, n_keys, zipf_s)
    ev_key = sample_key(n_events)
    ev_day = rng.choice(non_empty_days, size=n_events)
    ev_ts = start_ms + ev_day * DAY_MS + rng.integers(0, DAY_MS, size=n_events)
    ev_key[rng.random(n_events) < null_key_fraction] = -1
    ev_partial = np.zeros(n_events, dtype=bool)
    if key_type == "composite":  # key_b null but key_a set
        ev_partial = (ev_key >= 0) & (rng.random(n_events) < null_key_fraction)
    n_dup = int(n_events * duplicate_ts_fraction)
    if n_dup:
        dst = rng.choice(n_events, size=n_dup, replace=False)
        src = rng.integers(0, n_events, size=n_dup)
        ev_key[dst], ev_ts[dst], ev_partial[dst] = ev_key[src], ev_ts[src], ev_partial[src]

    # ---------------------------------------------------------------- left rows
    r = rng.random(n_left)
    lf_key = np.where(r < 0.5, sample_key(n_left), rng.integers(0, n_keys, size=n_left))
    lf_key = np.where(r >= 1 - absent_key_fraction, rng.choice(absent_idx, size=n_left), lf_key)
    lf_key[rng.random(n_left) < 0.05] = -1
    lf_partial = np.zeros(n_left, dtype=bool)
    if key_type == "composite":
        lf_partial = (lf_key >= 0) & (rng.random(n_left) < 0.03)
    lf_day = rng.integers(0, n_days, size=n_left)
    lf_ts = start_ms + lf_day * DAY_MS + rng.integers(0, DAY_MS, size=n_left)
    # Guarantee rows on the empty day, at exact midnights, on a day's last millisecond.
    n_special = max(3, n_left // 30)
    pos = rng.permutation(n_left)
    on_empty, midnight, last_ms = pos[:n_special], pos[n_special : 2 * n_special], pos[2 * n_special : 3 * n_special]
    lf_ts[on_empty] = empty_lo + rng.integers(0, DAY_MS, size=len(on_empty))
    lf_ts[midnight] = start_ms + rng.integers(0, n_days, size=len(midnight)) * DAY_MS
    lf_ts[last_ms] = start_ms + rng.integers(1, n_days + 1, size=len(last_ms)) * DAY_MS - 1
    # Duplicate left rows: same key and ts, different row_id.
    dup = pos[3 * n_special : 4 * n_special]
    dup_src = rng.integers(0, n_left, size=len(dup))
    lf_key[dup], lf_ts[dup], lf_partial[dup] = lf_key[dup_src], lf_ts[dup_src], lf_partial[dup_src]
    row_ids = np.array([f"r{i:05d}" for i in range(n_left)], dtype=object)

    # ---------------------------------------------------------------- boundary events
    candidates = np.nonzero((lf_key >= 0) & (lf_key < n_keys) & ~lf_partial)[0]
    n_b = min(len(candidates), max(1, int(round(n_left * boundary_fraction))))
    chosen = set(rng.choice(candidates, size=n_b, replace=False).tolist()) if n_b else set()
    for w in windows:  # make sure every window gets at least one placeable boundary event
        if not any(valid_event_ts(lf_ts[i] - w) for i in chosen):
            ok = [i for i in candidates if valid_event_ts(lf_ts[i] - w)]
            if ok:
                chosen.add(int(rng.choice(ok)))
    if not any(valid_event_ts(lf_ts[i]) for i in chosen):
        ok = [i for i in candidates if valid_event_ts(lf_ts[i])]
        if ok:
            chosen.add(int(rng.choice(ok)))
    b_key, b_ts, b_rows = [], [], set()
    for i in sorted(chosen):
        t = int(lf_ts[i])
        offsets = [0] + [w for w in windows]
        if boundary_neighbors:
            offsets += [1] + [w + 1 for w in windows] + [w - 1 for w in windows]
        for off in offsets:
            if valid_event_ts(t - off):
                b_key.append(lf_key[i])
                b_ts.append(t - off)
                b_rows.add(row_ids[i])
    b_key_arr = np.asarray(b_key, dtype=np.int64)
    b_ts_arr = np.asarray(b_ts, dtype=np.int64)

    all_key = np.concatenate([ev_key, b_key_arr])
    all_ts = np.concatenate([ev_ts, b_ts_arr]).astype(np.int64)
    all_partial = np.concatenate([ev_partial, np.zeros(len(b_key_arr), dtype=bool)])
    assert valid_event_ts(all_ts).all()
    order = np.argsort(all_ts, kind="stable")
    all_key, all_ts, all_partial = all_key[order], all_ts[order], all_partial[order]
    events = pd.DataFrame(
        {
            **keys.frame(all_key, all_partial),
            "ts": all_ts,
            "ds": _ds(all_ts),
            **_values(rng, len(all_ts), null_fraction),
        }
    )

    lorder = np.lexsort((row_ids, lf_ts))
    left = pd.DataFrame(
        {
            **keys.frame(lf_key[lorder], lf_partial[lorder]),
            "ts": lf_ts[lorder].astype(np.int64),
            "ds": _ds(lf_ts[lorder]),
            "row_id": pd.Series(row_ids[lorder], dtype=object),
        }
    )

    # ---------------------------------------------------------------- entities
    n_mut = mutations_per_day if mutations_per_day is not None else max(4, int(n_keys * 0.5))
    state: dict[int, tuple[object, object]] = {}
    for k in range(n_keys):
        if rng.random() < 0.7:
            state[k] = _entity_value(rng, null_fraction)
    snap_rows: list[tuple[int, str, object, object]] = []
    mut_rows: list[tuple[int, int, bool, object, object]] = []

    def snapshot(day_index: int) -> None:
        ds = (start + dt.timedelta(days=day_index)).isoformat()
        for k in sorted(state):
            snap_rows.append((k, ds, *state[k]))

    snapshot(-1)  # initial state: the day before the range
    for d in range(n_days):
        if d != empty_day:
            lo = start_ms + d * DAY_MS
            m_key = rng.integers(0, n_keys, size=n_mut)
            m_ts = lo + rng.integers(0, DAY_MS, size=n_mut)
            # Mutations exactly at the ts of some left rows of that day.
            on_day = [i for i in candidates if lo <= lf_ts[i] < lo + DAY_MS]
            if on_day:
                pick = rng.choice(on_day, size=min(len(on_day), 3), replace=False)
                m_key = np.concatenate([m_key, lf_key[pick]])
                m_ts = np.concatenate([m_ts, lf_ts[pick]])
            # One (key, ts) per mutation; process in ts order (ties across keys are fine).
            seen = set()
            for j in np.lexsort((m_key, m_ts)):
                k, t = int(m_key[j]), int(m_ts[j])
                if (k, t) in seen:
                    continue
                seen.add((k, t))
                if k in state:
                    old = state[k]
                    if rng.random() < 0.25:  # delete
                        del state[k]
                        mut_rows.append((k, t, True, *old))
                    else:  # update: before + after at the same mutation_ts
                        new = _entity_value(rng, null_fraction)
                        state[k] = new
                        mut_rows.append((k, t, True, *old))
                        mut_rows.append((k, t, False, *new))
                else:  # insert
                    new = _entity_value(rng, null_fraction)
                    state[k] = new
                    mut_rows.append((k, t, False, *new))
        snapshot(d)

    snap_key = np.array([r[0] for r in snap_rows], dtype=np.int64)
    entity_snapshots = pd.DataFrame(
        {
            **keys.frame(snap_key),
            "ds": pd.Series([r[1] for r in snap_rows], dtype=object),
            "value_long": pd.Series([r[2] for r in snap_rows], dtype="Int64"),
            "value_str": pd.Series([r[3] for r in snap_rows], dtype=object),
        }
    )
    mut_key = np.array([r[0] for r in mut_rows], dtype=np.int64)
    mut_ts = np.array([r[1] for r in mut_rows], dtype=np.int64)
    entity_mutations = pd.DataFrame(
        {
            **keys.frame(mut_key),
            "mutation_ts": mut_ts,
            "ds": _ds(mut_ts),
            "is_before": pd.Series([r[2] for r in mut_rows], dtype=bool),
            "value_long": pd.Series([r[3] for r in mut_rows], dtype="Int64"),
            "value_str": pd.Series([r[4] for r in mut_rows], dtype=object),
        }
    )

    end_ds = (start + dt.timedelta(days=n_days - 1)).isoformat()
    return RandomCase(
        seed=seed,
        key_type=key_type,
        key_columns=list(keys.columns),
        start_ds=start_ds,
        end_ds=end_ds,
        empty_ds=(start + dt.timedelta(days=empty_day)).isoformat(),
        windows_millis=list(windows),
        events=events,
        left=left,
        entity_snapshots=entity_snapshots,
        entity_mutations=entity_mutations,
        boundary_row_ids=sorted(b_rows),
    )


def _key_tuple(row: tuple, n: int) -> tuple:
    return tuple(None if pd.isna(v) else v for v in row[:n])


def apply_mutations(
    snapshot: pd.DataFrame,
    mutations: pd.DataFrame,
    key_columns: Sequence[str],
    value_columns: Sequence[str] = ("value_long", "value_str"),
    *,
    strict: bool = True,
) -> pd.DataFrame:
    """Apply a mutation log to a snapshot (both without caring about ``ds``).

    Mutations are applied in ``mutation_ts`` order, ``is_before`` rows first at
    equal ts: a before row removes the key (checking, when ``strict``, that the
    current values equal the before values), an after row sets the key.  Returns
    the resulting snapshot sorted by key, with the snapshot's value dtypes.
    """
    key_columns, value_columns = list(key_columns), list(value_columns)
    nk = len(key_columns)
    state: dict[tuple, tuple] = {}
    for row in snapshot[key_columns + value_columns].itertuples(index=False, name=None):
        state[_key_tuple(row, nk)] = tuple(None if pd.isna(v) else v for v in row[nk:])
    muts = mutations.sort_values(["mutation_ts", "is_before"], ascending=[True, False], kind="stable")
    for row in muts[key_columns + value_columns + ["is_before"]].itertuples(index=False, name=None):
        key = _key_tuple(row, nk)
        vals = tuple(None if pd.isna(v) else v for v in row[nk:-1])
        if row[-1]:
            old = state.pop(key, None)
            if strict and old != vals:
                raise AssertionError(f"before-image mismatch for key {key}: state {old} vs mutation {vals}")
        else:
            state[key] = vals
    items = sorted(state.items(), key=lambda kv: tuple((1, 0) if v is None else (0, v) for v in kv[0]))
    out = (
        pd.DataFrame([k + v for k, v in items], columns=key_columns + value_columns)
        if items
        else pd.DataFrame(columns=key_columns + value_columns)
    )
    for c in key_columns + value_columns:
        if c in snapshot.columns:
            out[c] = out[c].astype(snapshot[c].dtype)
    return out
