"""Online fetches of group-bys and joins, with the offline join's semantics.

`Fetcher(store).fetch_group_by(name, keys, at_millis=None)` and `fetch_join(name, keys, at_millis=None)` take
one request (a dict of keys) or a list of them and answer one response or a list, in order:
`{"values": {feature: value} | None, "error": str | None, "error_type": None | "invalid_key" | "no_data" |
"bad_data"}`. An invalid request (missing or mistyped key) gets `values: None`; a part with no batch data
gets null features and an error naming it; the other requests and parts are still answered.

Time: `at_millis` (default: now) is the request time t. Configs come from the metadata store (written by
metadata-upload) and are cached for `config_ttl` seconds; batch pointers for `pointer_ttl` seconds; expired
entries are refreshed in the background while the old value is served (a new batch version or config is seen
within a TTL plus one metadata read; `pointer_ttl=0` reads the pointer on every request).

- TEMPORAL event group-bys (and such join parts, for event-left joins): the batch version of the latest
  day D <= day(t) - 1 (so its end E <= t) gives each key's tail events and head IRs; the streaming events
  with E <= ts < t are added, and every window [t - W, t) is evaluated exactly (`ir.evaluate`). The values
  equal the offline join's for a left row at t, provided streaming holds every event since E.
- SNAPSHOT and entity group-bys: the finished values of the batch of day(t) - 1 — the daily table the
  offline join reads for an event left row at t — or, when that day is not loaded, of the latest loaded
  day before it (stale but available; the response does not flag it). A key absent from the batch has
  empty windows: counts 0, other features null.
- Entity-left joins read the daily values of day(t) itself (offline: same-day snapshot); their TEMPORAL
  parts are evaluated at that day's end, without streaming events.
- A null key value gives null features (counts included), as offline.

Join fetches map request fields to each part's keys (`keyMapping`), prefix feature names exactly as the
offline join output (`<prefix>_<group_by>_<feature>`), echo contextual external parts from the request
(`ext_contextual_<field>`) and give other external parts null. Derivations (group-by and join): `*` and
renames of a column are applied; any other expression is refused with `UnsupportedDerivation`.

Logging: `Fetcher(store, logger=FetchLogger(...))` logs every join fetch (sync and async, single and batch)
with its request time (`at_millis`, else now); contextual fields are read from the request's keys. The logger
only queues the records (see `feature_assets.online.logging`); it never fails or holds up a fetch.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from feature_assets.aggregation import codec
from feature_assets.aggregation.evaluate import Events, evaluate, ir_from_wire, spec_operation
from feature_assets.aggregation.ir import Operation
from feature_assets.aggregation.spec import AggSpec
from feature_assets.aggregation.values import FLOATING, INTEGRAL
from feature_assets.model import GROUP_BYS, JOINS, MILLIS_PER_DAY, Derivation, GroupBy, Join
from feature_assets.naming import normalize_name
from feature_assets.online.batch_encoding import SNAPSHOT, TEMPORAL, ds_of_millis, end_of_day_millis
from feature_assets.online.fetch import consistency, stats
from feature_assets.online.fetch.keys import InvalidKey, request_key
from feature_assets.online.logging import FetchLogger, JoinCodec
from feature_assets.online.store import KVStore, batch_versions, canonical_key_json, stored_config

DEFAULT_MAX_BATCH = 1000
_IDENTIFIER = re.compile(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?$")
V = TypeVar("V")
Result = tuple[dict[str, Any] | None, str | None, str | None]  # (values, error, error_type)


class UnknownName(LookupError):
    """No config of that kind and name in the metadata store."""


class BatchTooLarge(ValueError):
    pass


class UnsupportedDerivation(ValueError):
    pass


def now_millis() -> int:
    return int(time.time() * 1000)


def derive(values: dict[str, Any], base: list[str], derivations: Iterable[Derivation], scope: str) -> dict[str, Any]:
    """Apply `*` and column renames like `apply_derivations` does offline (same output columns and order)."""
    derivations = tuple(derivations)
    if not derivations:
        return values
    out: dict[str, Any] = {}
    names = [d.name for d in derivations if not d.is_star]
    if any(d.is_star for d in derivations):
        out = {c: values.get(c) for c in base if c not in names}
    for derivation in derivations:
        if derivation.is_star:
            continue
        match = _IDENTIFIER.match((derivation.expression or "").strip())
        if not match or match.group(1) not in values:
            raise UnsupportedDerivation(
                f"{scope}: derivation {derivation.name!r} = {derivation.expression!r} is not supported "
                "online (only '*' and renames of a feature column are)"
            )
        out[derivation.name] = values.get(match.group(1))
    return out


def check_derivations(base: list[str], derivations: Iterable[Derivation], scope: str) -> None:
    derive({c: None for c in base}, base, derivations, scope)


def _coerce_value(value: Any, type_name: str) -> Any:
    if value is None:
        return None
    try:
        if type_name in INTEGRAL:
            return int(value)
        if type_name in FLOATING:
            return float(value)
        if type_name == "string" and not isinstance(value, str):
            return str(value)
    except (TypeError, ValueError):
        return None
    return value


def _check_join_derivations(join: Join) -> bool:
    check_derivations(join.feature_columns, join.derivations, f"join {join.name}")
    return True


@dataclass
class _Plan:
    """What a fetch of one group-by needs, derived once from its model."""

    group_by: GroupBy
    name: str
    kind: str  # GroupBy.online_kind
    base: list[str]
    outputs: list[str]
    specs: list[AggSpec]
    operations: list[Operation]
    unwindowed: list[int]  # indices into specs
    count_like: frozenset[str]

    @classmethod
    def of(cls, group_by: GroupBy) -> _Plan:
        specs = group_by.specs
        base = group_by.value_columns
        check_derivations(base, group_by.derivations, f"group-by {group_by.name}")
        return cls(
            group_by,
            group_by.name,
            group_by.online_kind,
            base,
            group_by.output_columns,
            specs,
            [spec_operation(s) for s in specs],
            [i for i, s in enumerate(specs) if s.window_millis is None],
            frozenset(group_by.count_columns),
        )

    def nulls(self) -> dict[str, Any]:
        return {c: None for c in self.outputs}

    def finish(self, base_values: dict[str, Any]) -> dict[str, Any]:
        return derive(base_values, self.base, self.group_by.derivations, f"group-by {self.name}")


class Fetcher:
    def __init__(
        self,
        store: KVStore,
        config_ttl: float = 10.0,
        pointer_ttl: float = 5.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
        logger: FetchLogger | None = None,
    ):
        self.store = store
        self.logger = logger
        self.config_ttl = config_ttl
        self.pointer_ttl = pointer_ttl
        self.max_batch = max_batch
        self.clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._plans: dict[tuple[str, ...], tuple[object, Any]] = {}
        self._refreshing: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()
        self._codecs: dict[str, tuple[Join, tuple[Any, ...], JoinCodec]] = {}

    # ------------------------------------------------------------------------ caches
    def _cached(self, key: tuple[str, ...], ttl: float, load: Callable[[], V]) -> V:
        """`load()`'s value, reloaded at most every `ttl` seconds. An expired value is still served while one
        background thread reloads it (stale-while-revalidate): requests never wait on a metadata read except
        the first, so refreshes do not show in tail latency. A failed refresh keeps the old value and is retried
        on the next request after it."""
        now = self.clock()
        entry = self._cache.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]  # type: ignore[no-any-return]
        if entry is None or ttl <= 0:
            value = load()
            with self._lock:
                self._cache[key] = (now + ttl, value)
            return value
        with self._lock:
            start = key not in self._refreshing
            self._refreshing.add(key)
        if start:
            threading.Thread(target=self._refresh, args=(key, ttl, load), daemon=True).start()
        return entry[1]  # type: ignore[no-any-return]

    def _refresh(self, key: tuple[str, ...], ttl: float, load: Callable[[], Any]) -> None:
        try:
            value = load()
            with self._lock:
                self._cache[key] = (self.clock() + ttl, value)
        except Exception:  # noqa: BLE001 - the stale value stays; the next request after expiry retries
            pass
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def config(self, kind: str, name: str) -> GroupBy | Join:
        """The model of a stored config, built once per metadata read (cached for `config_ttl`)."""
        name = normalize_name(name)
        config = self._cached(("config", kind, name), self.config_ttl, lambda: stored_config(self.store, kind, name))
        if config is None:
            label = "join" if kind == JOINS else "group-by"
            raise UnknownName(f"{label} {name!r} is not in the metadata store (run metadata-upload for it)")
        assert isinstance(config, (GroupBy, Join))
        return config

    def _derived(self, kind: str, config: GroupBy | Join, build: Callable[[Any], V], scope: str = "") -> V:
        """An object built from a model, rebuilt only when the model object changes (bounded by names)."""
        key = (kind, scope, config.name)
        entry = self._plans.get(key)
        if entry is None or entry[0] is not config:
            entry = (config, build(config))
            self._plans[key] = entry
        return entry[1]

    def _plan(self, group_by: GroupBy, scope: str = "") -> _Plan:
        return self._derived("plan", group_by, _Plan.of, scope)

    def _join_config(self, name: str) -> Join:
        join = self.config(JOINS, name)
        assert isinstance(join, Join)
        self._derived("join-check", join, _check_join_derivations)
        return join

    def versions(self, group_by_name: str) -> dict[str, dict[str, Any]]:
        return self._cached(
            ("pointer", group_by_name), self.pointer_ttl, lambda: batch_versions(self.store, group_by_name)
        )

    # ------------------------------------------------------------------------ public API
    def fetch_group_by(self, name: str, keys: Any, at_millis: int | None = None) -> Any:
        pending, single = self._start_group_by(name, keys, at_millis)
        return self._finish_group_by(self._read([pending])[0], single)

    def fetch_join(self, name: str, keys: Any, at_millis: int | None = None) -> Any:
        join, requests, single, pendings, at = self._start_join(name, keys, at_millis)
        return self._finish_join(join, requests, single, pendings, self._read(pendings), at)

    # ------------------------------------------------------------------------ stats
    def fetch_join_stats(self, name: str, start_ts: int, end_ts: int, logged: bool = False) -> dict[str, Any]:
        """Per column of the join's output (`logged`: of its log), the stats buckets in [start_ts, end_ts) in time
        order (see `online.fetch.stats`). Raises `UnknownName` when no stats of the join are loaded."""
        try:
            return stats.fetch_stats(self.store, stats.join_stats_dataset(name, logged), start_ts, end_ts)
        except stats.NoStats as error:
            raise UnknownName(str(error)) from None

    def join_stats_drift(
        self, name: str, current: tuple[int, int], reference: tuple[int, int], logged: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Per column, the drift of the stats merged over `current` ([start, end) millis) against those merged
        over `reference`, graded by the join's thresholds (the defaults when its config is not stored)."""
        try:
            join = self.config(JOINS, name)
            thresholds = join.drift_thresholds if isinstance(join, Join) else None
        except UnknownName:
            thresholds = None
        dataset = stats.join_stats_dataset(name, logged)
        try:
            return stats.stats_drift(self.store, dataset, current, reference, thresholds)
        except stats.NoStats as error:
            raise UnknownName(str(error)) from None

    # ------------------------------------------------------------------------ consistency
    def fetch_join_consistency(self, name: str, start_ts: int, end_ts: int) -> dict[str, Any]:
        """Per compared feature column of the join, its online/offline consistency buckets in [start_ts, end_ts)
        in time order (see `online.fetch.consistency`). Raises `UnknownName` when none of the join are loaded."""
        dataset = consistency.join_consistency_dataset(name)
        try:
            return consistency.fetch_consistency(self.store, dataset, start_ts, end_ts)
        except consistency.NoConsistency as error:
            raise UnknownName(str(error)) from None

    async def afetch_group_by(self, name: str, keys: Any, at_millis: int | None = None) -> Any:
        """`fetch_group_by` for an event loop: the store reads are awaited (`KVStore.async_reads`)."""
        pending, single = self._start_group_by(name, keys, at_millis)
        return self._finish_group_by((await self._aread([pending]))[0], single)

    async def afetch_join(self, name: str, keys: Any, at_millis: int | None = None) -> Any:
        """`fetch_join` for an event loop: every part's reads are awaited together, so they overlap."""
        join, requests, single, pendings, at = self._start_join(name, keys, at_millis)
        return self._finish_join(join, requests, single, pendings, await self._aread(pendings), at)

    # ------------------------------------------------------------------------ internals
    def _start_group_by(self, name: str, keys: Any, at_millis: int | None) -> tuple[_Pending, bool]:
        group_by = self.config(GROUP_BYS, name)
        assert isinstance(group_by, GroupBy)
        requests, single = self._requests(keys)
        at = now_millis() if at_millis is None else int(at_millis)
        return self._prepare(
            self._plan(group_by), [(r, None) for r in requests], at, day_offset=-1, streaming=True
        ), single

    @staticmethod
    def _finish_group_by(results: list[Result], single: bool) -> Any:
        responses = [
            {"values": values, "error": error, "error_type": error_type} for values, error, error_type in results
        ]
        return responses[0] if single else responses

    def _start_join(
        self, name: str, keys: Any, at_millis: int | None
    ) -> tuple[Join, list[Any], bool, list[_Pending], int]:
        join = self._join_config(name)
        requests, single = self._requests(keys)
        at = now_millis() if at_millis is None else int(at_millis)
        pendings = []
        for part_index, part in enumerate(join.join_parts):
            plan = self._plan(part.group_by, f"{join.name}#{part_index}")
            mapping = {gb_key: left_col for left_col, gb_key in part.key_pairs}
            pendings.append(
                self._prepare(
                    plan,
                    [(r, mapping) for r in requests],
                    at,
                    day_offset=join.snapshot_offset,
                    streaming=not join.entity_left,
                )
            )
        return join, requests, single, pendings, at

    def _finish_join(
        self,
        join: Join,
        requests: list[Any],
        single: bool,
        pendings: list[_Pending],
        part_results: list[list[Result]],
        at: int,
    ) -> Any:
        responses: list[dict[str, Any]] = [{"values": {}, "error": None, "error_type": None} for _ in requests]
        errors: list[list[str]] = [[] for _ in requests]
        for part, pending, results in zip(join.join_parts, pendings, part_results):
            plan, prefix = pending.plan, part.feature_prefix
            for index, (values, error, error_type) in enumerate(results):
                response = responses[index]
                if error_type == "invalid_key":
                    response["values"] = None
                    response["error_type"] = "invalid_key"
                    errors[index] = [error or ""]
                    continue
                if response["values"] is None:
                    continue
                for column in plan.outputs:
                    response["values"][prefix + column] = (values or {}).get(column)
                if error:
                    errors[index].append(f"{plan.name}: {error}")
                    response["error_type"] = response["error_type"] or error_type
        for index, request in enumerate(requests):
            response = responses[index]
            if response["values"] is not None:
                for external in join.external_parts:
                    for column, field, _ in external.column_fields:
                        response["values"][column] = request.get(field) if external.is_contextual else None
                response["values"] = derive(
                    response["values"], list(response["values"]), join.derivations, f"join {join.name}"
                )
            response["error"] = "; ".join(errors[index]) or None
        if self.logger is not None:
            self._log_join(join, requests, responses, at)
        return responses[0] if single else responses

    def _log_join(self, join: Join, requests: list[Any], responses: list[dict[str, Any]], at: int) -> None:
        """Hand the served values to the logger (which never raises into a fetch; neither does this)."""
        assert self.logger is not None
        try:
            codec = self.log_codec(join)
            self.logger.log_join(join, codec, requests, [r["values"] for r in responses], at)
        except Exception:  # noqa: BLE001 - logging must not fail a fetch; counted instead
            self.logger.count_unencodable(len(requests))

    def log_codec(self, join: Join) -> JoinCodec:
        """The join's logging codec, typed by each part's newest visible batch schema; rebuilt only when the
        config or a part's batch pointer (cached by `versions`) changes."""
        pointers = tuple(self.versions(part.group_by.name) for part in join.join_parts)
        entry = self._codecs.get(join.name)
        if entry is None or entry[0] is not join or any(a is not b for a, b in zip(entry[1], pointers)):
            schemas = {
                part.group_by.name: (versions[max(versions)]["schema"] if versions else None)
                for part, versions in zip(join.join_parts, pointers)
            }
            entry = (join, pointers, JoinCodec.of(join, schemas))
            self._codecs[join.name] = entry
        return entry[2]

    def _requests(self, keys: Any) -> tuple[list[Any], bool]:
        if isinstance(keys, dict):
            return [keys], True
        requests = list(keys)
        if len(requests) > self.max_batch:
            raise BatchTooLarge(f"batch of {len(requests)} requests is over the limit of {self.max_batch}")
        return requests, False

    def _read(self, pendings: list[_Pending]) -> list[list[Result]]:
        """Run the prepared fetches' store reads one after the other, then complete each."""
        results = [getattr(self.store, method)(*args) for pending in pendings for method, args in pending.reads]
        return self._complete(pendings, results)

    async def _aread(self, pendings: list[_Pending]) -> list[list[Result]]:
        """The same reads awaited together (a join of two parts: up to four overlapping reads)."""
        reads = self.store.async_reads()
        results = await asyncio.gather(
            *(getattr(reads, method)(*args) for pending in pendings for method, args in pending.reads)
        )
        return self._complete(pendings, list(results))

    @staticmethod
    def _complete(pendings: list[_Pending], results: list[Any]) -> list[list[Result]]:
        out, position = [], 0
        for pending in pendings:
            out.append(pending.complete(results[position : position + len(pending.reads)]))
            position += len(pending.reads)
        return out

    def _prepare(
        self, plan: _Plan, requests: list[tuple[Any, dict[str, str] | None]], at: int, day_offset: int, streaming: bool
    ) -> _Pending:
        """Parse the keys, pick the batch version, and list the store reads the fetch needs."""
        versions = self.versions(plan.name)
        target = ds_of_millis(at + day_offset * MILLIS_PER_DAY)
        eligible = [ds for ds in versions if ds <= target]
        chosen = max(eligible) if eligible else None
        schema = versions[chosen]["schema"] if chosen else (versions[max(versions)]["schema"] if versions else None)
        key_types = schema["keys"] if schema else [[k, None] for k in plan.group_by.key_columns]
        results: list[Result | None] = [None] * len(requests)
        wanted: dict[int, str] = {}
        for index, (request, mapping) in enumerate(requests):
            try:
                key = request_key(request, key_types, mapping)
            except InvalidKey as error:
                results[index] = (None, str(error), "invalid_key")
                continue
            if any(v is None for v in key.values()):
                results[index] = (plan.nulls(), None, None)
            elif chosen is None:
                results[index] = (
                    plan.nulls(),
                    f"no batch data at or before {target} "
                    f"(loaded: {', '.join(sorted(versions)) or 'none'}); run upload and load",
                    "no_data",
                )
            else:
                wanted[index] = canonical_key_json(key)
        pending = _Pending(plan, results, wanted)
        if not wanted or chosen is None or schema is None:
            return pending
        pending.fingerprint = codec.schema_fingerprint(schema)
        key_jsons = list(dict.fromkeys(wanted.values()))
        pending.reads.append(("multi_get", (plan.group_by.batch_dataset, versions[chosen]["version"], key_jsons)))
        if plan.kind == TEMPORAL:
            batch_end = end_of_day_millis(chosen)
            pending.eval_at = at if streaming else batch_end
            pending.columns = schema["columns"]
            if streaming and pending.eval_at > batch_end:
                pending.reads.append(
                    ("range_read", (plan.group_by.streaming_dataset, key_jsons, batch_end, pending.eval_at))
                )
        return pending


def _snapshot_values(plan: _Plan, value: bytes | None, fingerprint: int) -> dict[str, Any]:
    if value is None:
        return {c: (0 if c in plan.count_like else None) for c in plan.base}
    row = codec.decode(value, codec.KIND_SNAPSHOT, fingerprint)
    return dict(zip(plan.base, row))


def _temporal_values(
    plan: _Plan, value: bytes | None, stream_docs: Any, columns: list[list[str]], at: int, fingerprint: int
) -> dict[str, Any]:
    names = [c for c, _ in columns]
    if value is None:
        events, heads = Events.empty(names), [None] * len(plan.unwindowed)
    else:
        tail_ts, tail_columns, heads = codec.decode(value, codec.KIND_TEMPORAL, fingerprint)
        events = Events(tail_ts, dict(zip(names, tail_columns)))
    if stream_docs:
        stream_ts = [int(d["ts"]) for d in stream_docs]
        stream_columns = {c: [_coerce_value((d.get("d") or {}).get(c), t) for d in stream_docs] for c, t in columns}
        events = events.extend(stream_ts, stream_columns)
    out = {}
    head_of = dict(zip(plan.unwindowed, heads))
    for index, (spec, op) in enumerate(zip(plan.specs, plan.operations)):
        if spec.window_millis is None:
            head = ir_from_wire(spec, head_of.get(index), op)
            out[spec.column_name] = evaluate(spec, events, at, head=head, op=op)
        else:
            out[spec.column_name] = evaluate(spec, events, at, op=op)
    return out


class _Pending:
    """A prepared fetch of one group-by: answers known without reading, the store reads it needs as
    (method, args) of `KVStore` (run by `Fetcher._read`, or awaited by `Fetcher._aread`), then `complete`."""

    def __init__(self, plan: _Plan, results: list[Result | None], wanted: dict[int, str]):
        self.plan, self.results, self.wanted = plan, results, wanted
        self.reads: list[tuple[str, tuple[Any, ...]]] = []
        self.fingerprint = 0
        self.eval_at = 0
        self.columns: list[list[str]] = []

    def complete(self, read_results: list[Any]) -> list[Result]:
        if not self.wanted:
            return self.results  # type: ignore[return-value]
        plan, results = self.plan, self.results
        found = read_results[0]
        stream = read_results[1] if len(read_results) > 1 else {}
        for index, kj in self.wanted.items():
            try:
                if plan.kind == SNAPSHOT:
                    base = _snapshot_values(plan, found.get(kj), self.fingerprint)
                else:
                    base = _temporal_values(
                        plan, found.get(kj), stream.get(kj, ()), self.columns, self.eval_at, self.fingerprint
                    )
                results[index] = (plan.finish(base), None, None)
            except codec.CodecError as error:
                results[index] = (plan.nulls(), f"unreadable batch value for {kj}: {error}", "bad_data")
        return results  # type: ignore[return-value]
