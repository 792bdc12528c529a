"""Naive reference implementation of group-by backfills and join parts.

Everything here is plain python over pandas frames: loops over left rows,
exact arithmetic, no sketches.  Clarity over speed; events are only
pre-grouped by key and sorted by timestamp so that a few thousand left rows
run in seconds.

Conventions of the results:

* every output value is a plain python object (``int``, ``float``, ``str``,
  ``bool``, ``list``, ``dict``) or ``None`` for null; result frames use
  ``object`` dtype so that integer sums stay integers next to nulls;
* times are epoch milliseconds (UTC); ``ds`` partitions are ``YYYY-MM-DD``
  strings and midnight means 00:00 UTC.

Semantic choices that the brief left open (documented again in the report):

* a group-by with several snapshot rows of one key in one partition (entity
  group-by without aggregations) yields the *last* such row (table order;
  rows added by mutations come after the snapshot rows, in mutation order);
* mutations with equal ``mutation_ts`` are applied retractions first
  (``is_before = true``), then additions; retracting a row that is not there
  is a no-op;
* entity rows carry a time for FIRST/LAST-style operations: the query's
  ``timeColumn`` if set, else ``midnight(ds + 1) - 1`` of their snapshot
  partition; rows added by a mutation carry their ``mutation_ts``;
* windows are ignored for aggregations over entity sources (the aggregate is
  taken over all current rows of the key, each window column gets the same
  value);
* nearest-rank percentiles use ``ceil(p * n - 1e-9)`` so that a product such
  as ``0.1 * 30 = 3.0000000000000004`` gives rank 3;
* in a bucketed aggregation a bucket only exists if it holds at least one
  non-null input value.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as _dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

_UNIT_MS = {"MINUTES": MINUTE_MS, "HOURS": HOUR_MS, "DAYS": DAY_MS}
_UNIT_SUFFIX = {"MINUTES": "m", "HOURS": "h", "DAYS": "d"}

# Operations whose value over an empty input is 0 (all others give null).
ZERO_DEFAULT_OPS = frozenset({"COUNT", "UNIQUE_COUNT", "APPROX_UNIQUE_COUNT", "BOUNDED_UNIQUE_COUNT"})
_K_OPS = {"FIRST_K": "first", "LAST_K": "last", "TOP_K": "top", "BOTTOM_K": "bottom"}
_BOUNDED_UNIQUE_COUNT_DEFAULT_K = 8

_TS = "__oracle_ts"
_DS = "__oracle_ds"


# ---------------------------------------------------------------------------
# small helpers: nulls, python values, dates and times
# ---------------------------------------------------------------------------


def _is_null(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (list, tuple, dict, set, np.ndarray)):
        return False
    try:
        r = pd.isna(v)
    except (TypeError, ValueError):
        return False
    return bool(r) if isinstance(r, (bool, np.bool_)) else False


def _py(v: Any) -> Any:
    """A plain python value (numpy scalars unwrapped), ``None`` for null."""
    if _is_null(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def ds_to_ms(ds: str) -> int:
    """Epoch millis of 00:00 UTC of ``ds``."""
    d = _dt.datetime.strptime(_norm_ds(ds), "%Y-%m-%d")
    return calendar.timegm(d.timetuple()) * 1000


def ms_to_ds(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.UTC).strftime("%Y-%m-%d")


def shift_ds(ds: str, days: int) -> str:
    d = _dt.datetime.strptime(_norm_ds(ds), "%Y-%m-%d") + _dt.timedelta(days=days)
    return d.strftime("%Y-%m-%d")


def _norm_ds(ds: Any) -> str:
    if isinstance(ds, str):
        return ds[:10]
    if isinstance(ds, (pd.Timestamp, _dt.datetime, _dt.date)):
        return ds.strftime("%Y-%m-%d")
    if isinstance(ds, np.datetime64):
        return pd.Timestamp(ds).strftime("%Y-%m-%d")
    return str(ds)[:10]


def _to_ms(v: Any) -> int | None:
    if _is_null(v):
        return None
    if isinstance(v, (pd.Timestamp, np.datetime64, _dt.datetime)):
        ts = pd.Timestamp(v)
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return int(ts.value // 1_000_000)
    return int(v)


def _ds_range(start_ds: str, end_ds: str) -> list[str]:
    out, d = [], _norm_ds(start_ds)
    end = _norm_ds(end_ds)
    while d <= end:
        out.append(d)
        d = shift_ds(d, 1)
    return out


# ---------------------------------------------------------------------------
# output names
# ---------------------------------------------------------------------------


def _window_ms(window: dict | None) -> int | None:
    if not window:
        return None
    return int(window["length"]) * _UNIT_MS[window["timeUnit"]]


def _window_suffix(window: dict) -> str:
    return f"{int(window['length'])}{_UNIT_SUFFIX[window['timeUnit']]}"


def _op_name(op: str, arg_map: dict | None) -> str:
    if op in _K_OPS:
        return f"{_K_OPS[op]}{int((arg_map or {})['k'])}"
    return op.lower()


@dataclass(frozen=True)
class _AggSpec:
    name: str
    op: str
    arg_map: dict
    input_column: str
    bucket: str | None
    window_ms: int | None


def _agg_specs(group_by: dict) -> list[_AggSpec]:
    specs = []
    for agg in group_by.get("aggregations") or []:
        op = agg["operation"]
        arg_map = agg.get("argMap") or {}
        base = f"{agg['inputColumn']}_{_op_name(op, arg_map)}"
        for bucket in agg.get("buckets") or [None]:
            bname = base if bucket is None else f"{base}_by_{bucket}"
            for window in agg.get("windows") or [None]:
                name = bname if window is None else f"{bname}_{_window_suffix(window)}"
                specs.append(_AggSpec(name, op, arg_map, agg["inputColumn"], bucket, _window_ms(window)))
    return specs


def _selected_columns(group_by: dict) -> list[str]:
    """Selected output columns over all sources, in declared order."""
    cols: list[str] = []
    for src in group_by["sources"]:
        query = _source_query(src)
        for c in query.get("selects") or {}:
            if c not in cols:
                cols.append(c)
    return cols


def output_column_names(group_by: dict) -> list[str]:
    """Chronon output names: ``{input}_{op}[_by_{bucket}][_{window}]``; without
    aggregations the selected non-key columns."""
    if group_by.get("aggregations"):
        return [s.name for s in _agg_specs(group_by)]
    keys = set(group_by["keyColumns"])
    return [c for c in _selected_columns(group_by) if c not in keys]


# ---------------------------------------------------------------------------
# the aggregation operations
# ---------------------------------------------------------------------------


def _sorted_by_time(pairs: list[tuple[int, Any]]) -> list[Any]:
    """Values ordered by (ts, value) ascending: ties on ts -> larger value is later."""
    return [v for _, v in sorted(pairs, key=lambda p: (p[0], p[1]))]


def _moments(xs: list[float]) -> tuple[float, float, float, float]:
    """(mean, m2, m3, m4): population central moments."""
    n = len(xs)
    mean = math.fsum(xs) / n
    if max(xs) == min(xs):
        return float(xs[0]), 0.0, 0.0, 0.0
    d = [x - mean for x in xs]
    m2 = math.fsum(x * x for x in d) / n
    m3 = math.fsum(x**3 for x in d) / n
    m4 = math.fsum(x**4 for x in d) / n
    return mean, m2, m3, m4


def naive_value(op: str, values: Iterable[tuple[int, Any]], arg_map: dict | None = None) -> Any:
    """Aggregate a plain list of ``(ts, value)`` pairs with operation ``op``.

    Null values are dropped first; an empty input gives 0 for the counting
    operations and ``None`` for every other one.
    """
    arg_map = arg_map or {}
    pairs = [(int(ts), _py(v)) for ts, v in values if not _is_null(v)]
    vals = [v for _, v in pairs]
    n = len(vals)
    if n == 0:
        return 0 if op in ZERO_DEFAULT_OPS else None

    if op == "COUNT":
        return n
    if op == "SUM":
        if all(isinstance(v, (bool, int)) for v in vals):
            return int(sum(int(v) for v in vals))
        return float(math.fsum(float(v) for v in vals))
    if op == "AVERAGE":
        return math.fsum(float(v) for v in vals) / n
    if op == "MIN":
        return min(vals)
    if op == "MAX":
        return max(vals)
    if op == "FIRST":
        return _sorted_by_time(pairs)[0]
    if op == "LAST":
        return _sorted_by_time(pairs)[-1]
    if op == "FIRST_K":
        return _sorted_by_time(pairs)[: int(arg_map["k"])]
    if op == "LAST_K":
        return list(reversed(_sorted_by_time(pairs)))[: int(arg_map["k"])]
    if op == "TOP_K":
        return sorted(vals, reverse=True)[: int(arg_map["k"])]
    if op == "BOTTOM_K":
        return sorted(vals)[: int(arg_map["k"])]
    if op in ("UNIQUE_COUNT", "APPROX_UNIQUE_COUNT"):
        return len(set(vals))
    if op == "BOUNDED_UNIQUE_COUNT":
        k = int(arg_map.get("k", _BOUNDED_UNIQUE_COUNT_DEFAULT_K))
        return min(len(set(vals)), k)
    if op == "HISTOGRAM":
        return dict(Counter(vals))
    if op == "APPROX_PERCENTILE":
        ps = arg_map["percentiles"]
        if isinstance(ps, str):
            ps = json.loads(ps)
        s = sorted(vals)
        out = []
        for p in ps:
            rank = max(1, math.ceil(float(p) * n - 1e-9))
            out.append(s[min(rank, n) - 1])
        return out
    if op in ("VARIANCE", "SKEW", "KURTOSIS"):
        xs = [float(v) for v in vals]
        _, m2, m3, m4 = _moments(xs)
        if op == "VARIANCE":
            return m2
        if m2 == 0:
            return None
        if op == "SKEW":
            return m3 / m2**1.5
        return m4 / m2**2 - 3.0
    raise NotImplementedError(f"operation {op!r}")


def naive_bucketed_value(op: str, triples: Iterable[tuple[int, Any, Any]], arg_map: dict | None = None) -> dict | None:
    """``(ts, value, bucket)`` triples -> {bucket: aggregate}; null buckets and
    null values are ignored, an empty result is ``None``."""
    groups: dict[Any, list[tuple[int, Any]]] = defaultdict(list)
    for ts, v, b in triples:
        if _is_null(b) or _is_null(v):
            continue
        groups[_py(b)].append((ts, v))
    if not groups:
        return None
    return {b: naive_value(op, pairs, arg_map) for b, pairs in groups.items()}


def _aggregate(spec: _AggSpec, rows: list[tuple[int, Any, Any]]) -> Any:
    """rows: (ts, value, bucket_value) already restricted to the window."""
    if spec.bucket is None:
        return naive_value(spec.op, [(ts, v) for ts, v, _ in rows], spec.arg_map)
    return naive_bucketed_value(spec.op, rows, spec.arg_map)


# ---------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------


def _source_kind(src: dict) -> str:
    if src.get("events"):
        return "events"
    if src.get("entities"):
        return "entities"
    raise NotImplementedError(f"source kind {list(src)}")


def _source_query(src: dict) -> dict:
    return src[_source_kind(src)].get("query") or {}


def _group_by_kind(group_by: dict) -> str:
    kinds = {_source_kind(s) for s in group_by["sources"]}
    if len(kinds) != 1:
        raise NotImplementedError("mixed event and entity sources")
    return kinds.pop()


def _accuracy(group_by: dict) -> str:
    acc = group_by.get("accuracy")
    if acc:
        return acc
    return "TEMPORAL"


def _plain_column(expr: str, frame: pd.DataFrame, what: str) -> str:
    if expr not in frame.columns:
        raise NotImplementedError(f"oracle supports only plain column names as {what}, got {expr!r}")
    return expr


def _apply_query(frame: pd.DataFrame, query: dict) -> pd.DataFrame:
    """Selected (renamed) columns plus ``ds`` as ``_DS`` (and the query's time
    column as ``_TS`` if it has one)."""
    assert not (query.get("wheres") or []), "the oracle does not evaluate wheres"
    selects = query.get("selects") or {c: c for c in frame.columns if c != "ds"}
    out = pd.DataFrame(index=frame.index)
    for name, expr in selects.items():
        out[name] = frame[_plain_column(expr, frame, "select")]
    time_col = query.get("timeColumn")
    if time_col:
        out[_TS] = [_to_ms(v) for v in frame[_plain_column(time_col, frame, "timeColumn")]]
    if "ds" in frame.columns:
        out[_DS] = [None if _is_null(d) else _norm_ds(d) for d in frame["ds"]]
    elif time_col:
        out[_DS] = [None if t is None else ms_to_ds(t) for t in out[_TS]]
    else:
        raise ValueError("source frame without ds")
    start = query.get("startPartition")
    if start:
        out = out[[d is not None and d >= start for d in out[_DS]]]
    return out


def _records(frame: pd.DataFrame) -> list[dict]:
    cols = list(frame.columns)
    data = [frame[c].tolist() for c in cols]
    return [{c: _py(v) for c, v in zip(cols, row)} for row in zip(*data)]


def _key_of(rec: dict, key_cols: list[str]) -> tuple | None:
    key = tuple(_py(rec.get(c)) for c in key_cols)
    return None if any(k is None for k in key) else key


class _EventIndex:
    """Events grouped by key, sorted by (ts, table order)."""

    def __init__(self, group_by: dict, tables: dict[str, pd.DataFrame]):
        key_cols = group_by["keyColumns"]
        self.by_key: dict[tuple, tuple[list[int], list[dict]]] = {}
        grouped: dict[tuple, list[dict]] = defaultdict(list)
        for src in group_by["sources"]:
            ev = src["events"]
            query = ev.get("query") or {}
            if not query.get("timeColumn"):
                raise ValueError("event source without timeColumn")
            frame = _apply_query(tables[ev["table"]], query)
            for rec in _records(frame):
                key = _key_of(rec, key_cols)
                if key is None or rec[_TS] is None:
                    continue
                grouped[key].append(rec)
        for key, recs in grouped.items():
            recs.sort(key=lambda r: r[_TS])
            self.by_key[key] = ([r[_TS] for r in recs], recs)

    def window(self, key: tuple, lo: int | None, hi: int) -> list[dict]:
        """Events of ``key`` with ``lo <= ts < hi`` (no lower bound if lo is None)."""
        if key not in self.by_key:
            return []
        ts, recs = self.by_key[key]
        i0 = 0 if lo is None else bisect.bisect_left(ts, lo)
        i1 = bisect.bisect_left(ts, hi)
        return recs[i0:i1]

    def aggregates(self, specs: list[_AggSpec], key: tuple, t: int) -> dict[str, Any]:
        out = {}
        for spec in specs:
            lo = None if spec.window_ms is None else t - spec.window_ms
            recs = self.window(key, lo, t)
            rows = [(r[_TS], r.get(spec.input_column), r.get(spec.bucket) if spec.bucket else None) for r in recs]
            out[spec.name] = _aggregate(spec, rows)
        return out


class _EntityIndex:
    """Snapshot rows by (ds, key) and mutations by (ds, key)."""

    def __init__(self, group_by: dict, tables: dict[str, pd.DataFrame]):
        self.key_cols = group_by["keyColumns"]
        self.columns = _selected_columns(group_by)
        self.snapshots: dict[str, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
        self.snapshot_rows: dict[str, list[dict]] = defaultdict(list)  # incl. null keys, table order
        self.mutations: dict[str, dict[tuple, list[tuple[int, bool, int, dict]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.has_mutations = False
        seq = 0
        for src in group_by["sources"]:
            ent = src["entities"]
            query = ent.get("query") or {}
            frame = _apply_query(tables[ent["snapshotTable"]], query)
            for rec in _records(frame):
                ds = rec[_DS]
                if _TS not in rec or rec[_TS] is None:
                    rec[_TS] = ds_to_ms(shift_ds(ds, 1)) - 1
                self.snapshot_rows[ds].append(rec)
                key = _key_of(rec, self.key_cols)
                if key is not None:
                    self.snapshots[ds][key].append(rec)
            if ent.get("mutationTable") and ent["mutationTable"] in tables:
                self.has_mutations = True
                mframe = tables[ent["mutationTable"]]
                mq = dict(query)
                mq["timeColumn"] = query.get("mutationTimeColumn") or "mutation_ts"
                mq["selects"] = dict(query.get("selects") or {c: c for c in mframe.columns if c != "ds"})
                mq["selects"]["__oracle_is_before"] = query.get("reversalColumn") or "is_before"
                sel = _apply_query(mframe, mq)
                for rec in _records(sel):
                    key = _key_of(rec, self.key_cols)
                    if key is None or rec[_TS] is None:
                        continue
                    is_before = bool(rec.pop("__oracle_is_before"))
                    self.mutations[rec[_DS]][key].append((rec[_TS], is_before, seq, rec))
                    seq += 1

    def _row_values(self, rec: dict) -> tuple:
        return tuple(rec.get(c) for c in self.columns)

    def rows(self, key: tuple, snapshot_ds: str, mutation_ds: str | None = None, t: int | None = None) -> list[dict]:
        """Rows of ``key`` in the snapshot of ``snapshot_ds``; then, if
        ``mutation_ds`` is given, the mutations of that partition with
        ``mutation_ts < t`` applied in order."""
        rows = list(self.snapshots.get(snapshot_ds, {}).get(key, []))
        if mutation_ds is None:
            return rows
        muts = self.mutations.get(mutation_ds, {}).get(key, [])
        # equal mutation_ts: retractions (is_before) first, then table order
        for mts, is_before, _, rec in sorted(muts, key=lambda m: (m[0], not m[1], m[2])):
            if mts >= t:
                break
            if is_before:
                target = self._row_values(rec)
                for i, r in enumerate(rows):
                    if self._row_values(r) == target:
                        del rows[i]
                        break
            else:
                rows.append(rec)
        return rows

    def values_of(self, rows: list[dict]) -> dict[str, Any]:
        """No-aggregation result: the last row's non-key selected columns."""
        keys = set(self.key_cols)
        cols = [c for c in self.columns if c not in keys]
        if not rows:
            return {c: None for c in cols}
        return {c: rows[-1].get(c) for c in cols}


def _entity_aggregates(specs: list[_AggSpec], rows: list[dict]) -> dict[str, Any]:
    out = {}
    for spec in specs:  # windows ignored for entities
        triples = [(r[_TS], r.get(spec.input_column), r.get(spec.bucket) if spec.bucket else None) for r in rows]
        out[spec.name] = _aggregate(spec, triples)
    return out


# ---------------------------------------------------------------------------
# join part
# ---------------------------------------------------------------------------


def naive_join_part(
    left: pd.DataFrame,
    group_by: dict,
    tables: dict[str, pd.DataFrame],
    left_is_entity: bool = False,
    key_mapping: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The group-by's columns for every left row (same index as ``left``,
    unprefixed output column names, object dtype)."""
    names = output_column_names(group_by)
    key_cols = group_by["keyColumns"]
    inverse = {gb_col: left_col for left_col, gb_col in (key_mapping or {}).items()}
    left_key_cols = [inverse.get(k, k) for k in key_cols]
    kind = _group_by_kind(group_by)
    accuracy = _accuracy(group_by)
    specs = _agg_specs(group_by)

    if kind == "events":
        if not specs:
            raise NotImplementedError("event group-by without aggregations")
        events = _EventIndex(group_by, tables)
    else:
        entities = _EntityIndex(group_by, tables)

    n_left = len(left)
    left_keys = [left[c].tolist() for c in left_key_cols]
    left_ts = left["ts"].tolist() if "ts" in left.columns else [None] * n_left
    left_ds = left["ds"].tolist() if "ds" in left.columns else [None] * n_left
    results: dict[str, list] = {n: [] for n in names}
    for i in range(n_left):
        key = tuple(_py(col[i]) for col in left_keys)
        if any(k is None for k in key):
            for n in names:
                results[n].append(None)
            continue
        ts = _to_ms(left_ts[i])
        if not _is_null(left_ds[i]):
            ds = _norm_ds(left_ds[i])
        elif ts is not None:
            ds = ms_to_ds(ts)
        else:
            raise ValueError("left row without ds and ts")

        if kind == "events":
            if left_is_entity:
                t = ds_to_ms(shift_ds(ds, 1))
            elif accuracy == "SNAPSHOT":
                t = ds_to_ms(ds)
            else:
                if ts is None:
                    raise ValueError("TEMPORAL event left row without ts")
                t = ts
            vals = events.aggregates(specs, key, t)
        else:
            if left_is_entity:
                rows = entities.rows(key, ds)
            elif accuracy == "TEMPORAL" and entities.has_mutations:
                if ts is None:
                    raise ValueError("TEMPORAL event left row without ts")
                rows = entities.rows(key, shift_ds(ds, -1), mutation_ds=ds, t=ts)
            else:
                rows = entities.rows(key, shift_ds(ds, -1))
            vals = _entity_aggregates(specs, rows) if specs else entities.values_of(rows)
        for n in names:
            results[n].append(vals[n])

    return pd.DataFrame(
        {n: pd.Series(results[n], index=left.index, dtype=object) for n in names}, index=left.index, columns=names
    )


# ---------------------------------------------------------------------------
# daily group-by backfill
# ---------------------------------------------------------------------------


def _sort_key(key: tuple) -> tuple:
    return tuple((type(k).__name__, k) for k in key)


def naive_snapshot_backfill(
    group_by: dict, tables: dict[str, pd.DataFrame], start_ds: str, end_ds: str
) -> pd.DataFrame:
    """The daily snapshot backfill of a group-by over ``[start_ds, end_ds]``:
    key columns, ``ds`` and the aggregates as of the end of each ds.  Rows are
    sorted by (ds, key)."""
    key_cols = group_by["keyColumns"]
    kind = _group_by_kind(group_by)
    specs = _agg_specs(group_by)
    names = output_column_names(group_by)
    out_rows: list[dict] = []

    if kind == "events":
        if not specs:
            raise NotImplementedError("event group-by without aggregations")
        events = _EventIndex(group_by, tables)
        unwindowed = any(s.window_ms is None for s in specs)
        max_window = max((s.window_ms for s in specs if s.window_ms is not None), default=None)
        for d in _ds_range(start_ds, end_ds):
            end = ds_to_ms(shift_ds(d, 1))
            lo = None if unwindowed else end - max_window
            for key in sorted(events.by_key, key=_sort_key):
                if not events.window(key, lo, end):
                    continue
                rec = dict(zip(key_cols, key))
                rec["ds"] = d
                rec.update(events.aggregates(specs, key, end))
                out_rows.append(rec)
        columns = key_cols + ["ds"] + names
    else:
        entities = _EntityIndex(group_by, tables)
        if specs:
            for d in _ds_range(start_ds, end_ds):
                snap = entities.snapshots.get(d, {})
                for key in sorted(snap, key=_sort_key):
                    rec = dict(zip(key_cols, key))
                    rec["ds"] = d
                    rec.update(_entity_aggregates(specs, snap[key]))
                    out_rows.append(rec)
            columns = key_cols + ["ds"] + names
        else:
            for d in _ds_range(start_ds, end_ds):
                for r in entities.snapshot_rows.get(d, []):
                    rec = {c: r.get(c) for c in key_cols}
                    rec.update({c: r.get(c) for c in names})
                    rec["ds"] = d
                    out_rows.append(rec)
            columns = key_cols + names + ["ds"]

    if not out_rows:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.DataFrame({c: pd.Series([r.get(c) for r in out_rows], dtype=object) for c in columns})
