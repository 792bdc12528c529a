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
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

from feature_assets.compiler.columns import (apply_derivation_names, external_part_columns, group_by_value_columns)
from feature_assets.engine.join import part_feature_prefix, part_key_columns
from feature_assets.engine.specs import agg_specs
from feature_assets.online import codec
from feature_assets.online.ir import Events, empty_value, evaluate, ir_from_wire, spec_operation
from feature_assets.online.keys import InvalidKey, key_json, request_key
from feature_assets.online.kv_store import (KVStore, batch_dataset, batch_pointer_key, config_key,
                                            streaming_dataset)
from feature_assets.online.upload import (FLOATING, INTEGRAL, SNAPSHOT, TEMPORAL, ds_of_millis, end_of_day_millis,
                                          online_kind)
from feature_assets.storage import shift_ds

DEFAULT_MAX_BATCH = 1000
_IDENTIFIER = re.compile(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?$")


class UnknownName(LookupError):
    """No config of that kind and name in the metadata store."""


class BatchTooLarge(ValueError):
    pass


class UnsupportedDerivation(ValueError):
    pass


def normalize_name(name: str) -> str:
    return name.strip().replace("/", ".")


def now_millis() -> int:
    return int(time.time() * 1000)


def derive(values: dict, base: list[str], derivations: list[dict], scope: str) -> dict:
    """Apply `*` and column renames like `apply_derivations` does offline (same output columns and order)."""
    if not derivations:
        return values
    out = {}
    names = [d["name"] for d in derivations if d["name"] != "*"]
    if any(d["name"] == "*" for d in derivations):
        out = {c: values.get(c) for c in base if c not in names}
    for derivation in derivations:
        if derivation["name"] == "*":
            continue
        match = _IDENTIFIER.match((derivation.get("expression") or "").strip())
        if not match or match.group(1) not in values:
            raise UnsupportedDerivation(
                f"{scope}: derivation {derivation['name']!r} = {derivation.get('expression')!r} is not supported "
                "online (only '*' and renames of a feature column are)")
        out[derivation["name"]] = values.get(match.group(1))
    return out


def check_derivations(base: list[str], derivations: list[dict], scope: str) -> None:
    derive({c: None for c in base}, base, derivations, scope)


def _coerce_value(value, type_name: str):
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


@dataclass
class _Plan:
    """What a fetch of one group-by needs, derived once from its config."""
    group_by: dict
    name: str
    kind: str
    base: list[str]
    outputs: list[str]
    specs: list
    operations: list
    unwindowed: list[int]  # indices into specs
    count_like: frozenset

    @classmethod
    def of(cls, group_by: dict) -> "_Plan":
        specs = agg_specs(group_by) if group_by.get("aggregations") else []
        base = group_by_value_columns(group_by)
        check_derivations(base, group_by.get("derivations") or [], f"group-by {group_by['metaData']['name']}")
        return cls(group_by, group_by["metaData"]["name"], online_kind(group_by), base,
                   apply_derivation_names(base, group_by.get("derivations") or []), specs,
                   [spec_operation(s) for s in specs], [i for i, s in enumerate(specs) if s.window_millis is None],
                   frozenset(s.column_name for s in specs if empty_value(s) == 0))

    def nulls(self) -> dict:
        return {c: None for c in self.outputs}

    def finish(self, base_values: dict) -> dict:
        return derive(base_values, self.base, self.group_by.get("derivations") or [], f"group-by {self.name}")


class Fetcher:
    def __init__(self, store: KVStore, config_ttl: float = 10.0, pointer_ttl: float = 5.0,
                 max_batch: int = DEFAULT_MAX_BATCH, clock=time.monotonic):
        self.store = store
        self.config_ttl = config_ttl
        self.pointer_ttl = pointer_ttl
        self.max_batch = max_batch
        self.clock = clock
        self._cache: dict[tuple, tuple[float, object]] = {}
        self._plans: dict[tuple, tuple[dict, object]] = {}
        self._refreshing: set[tuple] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------ caches
    def _cached(self, key: tuple, ttl: float, load):
        """`load()`'s value, reloaded at most every `ttl` seconds. An expired value is still served while one
        background thread reloads it (stale-while-revalidate): requests never wait on a metadata read except
        the first, so refreshes do not show in tail latency. A failed refresh keeps the old value and is retried
        on the next request after it."""
        now = self.clock()
        entry = self._cache.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
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
        return entry[1]

    def _refresh(self, key: tuple, ttl: float, load) -> None:
        try:
            value = load()
            with self._lock:
                self._cache[key] = (self.clock() + ttl, value)
        except Exception:  # noqa: BLE001 - the stale value stays; the next request after expiry retries
            pass
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def config(self, kind: str, name: str) -> dict:
        name = normalize_name(name)

        def load():
            doc = self.store.get_metadata(config_key(kind, name))
            if doc is None:
                return None
            return json.loads(doc["config"])

        config = self._cached(("config", kind, name), self.config_ttl, load)
        if config is None:
            label = "join" if kind == "joins" else "group-by"
            raise UnknownName(f"{label} {name!r} is not in the metadata store (run metadata-upload for it)")
        return config

    def _derived(self, kind: str, config: dict, build, scope: str = ""):
        """An object built from a config, rebuilt only when the config object changes (bounded by names)."""
        key = (kind, scope, config["metaData"]["name"])
        entry = self._plans.get(key)
        if entry is None or entry[0] is not config:
            entry = (config, build(config))
            self._plans[key] = entry
        return entry[1]

    def _plan(self, group_by: dict, scope: str = "") -> _Plan:
        return self._derived("plan", group_by, _Plan.of, scope)

    def _join_config(self, name: str) -> dict:
        join = self.config("joins", name)
        self._derived("join-check", join, lambda j: check_derivations(
            _join_base_columns(j), j.get("derivations") or [], f"join {j['metaData']['name']}") or True)
        return join

    def versions(self, group_by_name: str) -> dict:
        def load():
            pointer = self.store.get_metadata(batch_pointer_key(group_by_name)) or {}
            return {ds: info for ds, info in (pointer.get("versions") or {}).items() if info}
        return self._cached(("pointer", group_by_name), self.pointer_ttl, load)

    # ------------------------------------------------------------------------ public API
    def fetch_group_by(self, name: str, keys, at_millis: int | None = None):
        pending, single = self._start_group_by(name, keys, at_millis)
        return self._finish_group_by(self._read([pending])[0], single)

    def fetch_join(self, name: str, keys, at_millis: int | None = None):
        join, requests, single, pendings = self._start_join(name, keys, at_millis)
        return self._finish_join(join, requests, single, pendings, self._read(pendings))

    async def afetch_group_by(self, name: str, keys, at_millis: int | None = None):
        """`fetch_group_by` for an event loop: the store reads are awaited (`KVStore.async_reads`)."""
        pending, single = self._start_group_by(name, keys, at_millis)
        return self._finish_group_by((await self._aread([pending]))[0], single)

    async def afetch_join(self, name: str, keys, at_millis: int | None = None):
        """`fetch_join` for an event loop: every part's reads are awaited together, so they overlap."""
        join, requests, single, pendings = self._start_join(name, keys, at_millis)
        return self._finish_join(join, requests, single, pendings, await self._aread(pendings))

    # ------------------------------------------------------------------------ internals
    def _start_group_by(self, name: str, keys, at_millis):
        group_by = self.config("group_bys", name)
        requests, single = self._requests(keys)
        at = now_millis() if at_millis is None else int(at_millis)
        return self._prepare(self._plan(group_by), [(r, None) for r in requests], at, day_offset=-1,
                             streaming=True), single

    @staticmethod
    def _finish_group_by(results: list, single: bool):
        responses = [{"values": values, "error": error, "error_type": error_type}
                     for values, error, error_type in results]
        return responses[0] if single else responses

    def _start_join(self, name: str, keys, at_millis):
        join = self._join_config(name)
        requests, single = self._requests(keys)
        at = now_millis() if at_millis is None else int(at_millis)
        entity_left = next(iter(join["left"])) == "entities"
        pendings = []
        for part_index, part in enumerate(join["joinParts"]):
            plan = self._plan(part["groupBy"], f"{join['metaData']['name']}#{part_index}")
            mapping = {gb_key: left_col for left_col, gb_key in part_key_columns(part)}
            pendings.append(self._prepare(plan, [(r, mapping) for r in requests], at,
                                          day_offset=0 if entity_left else -1, streaming=not entity_left))
        return join, requests, single, pendings

    def _finish_join(self, join: dict, requests: list, single: bool, pendings: list, part_results: list):
        responses = [{"values": {}, "error": None, "error_type": None} for _ in requests]
        errors: list[list[str]] = [[] for _ in requests]
        for part, pending, results in zip(join["joinParts"], pendings, part_results):
            plan, prefix = pending.plan, part_feature_prefix(part)
            for index, (values, error, error_type) in enumerate(results):
                response = responses[index]
                if error_type == "invalid_key":
                    response["values"] = None
                    response["error_type"] = "invalid_key"
                    errors[index] = [error]
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
                for external in join.get("onlineExternalParts") or []:
                    contextual = external["source"]["name"] == "contextual"
                    for column, (field, _) in zip(external_part_columns(external), external["source"]["valueFields"]):
                        response["values"][column] = request.get(field) if contextual else None
                response["values"] = derive(response["values"], list(response["values"]),
                                            join.get("derivations") or [], f"join {join['metaData']['name']}")
            response["error"] = "; ".join(errors[index]) or None
        return responses[0] if single else responses

    def _requests(self, keys) -> tuple[list, bool]:
        if isinstance(keys, dict):
            return [keys], True
        requests = list(keys)
        if len(requests) > self.max_batch:
            raise BatchTooLarge(f"batch of {len(requests)} requests is over the limit of {self.max_batch}")
        return requests, False

    def _read(self, pendings: list["_Pending"]) -> list[list]:
        """Run the prepared fetches' store reads one after the other, then complete each."""
        results = [getattr(self.store, method)(*args) for pending in pendings for method, args in pending.reads]
        return self._complete(pendings, results)

    async def _aread(self, pendings: list["_Pending"]) -> list[list]:
        """The same reads awaited together (a join of two parts: up to four overlapping reads)."""
        import asyncio
        reads = self.store.async_reads()
        results = await asyncio.gather(*(getattr(reads, method)(*args)
                                         for pending in pendings for method, args in pending.reads))
        return self._complete(pendings, list(results))

    @staticmethod
    def _complete(pendings: list["_Pending"], results: list) -> list[list]:
        out, position = [], 0
        for pending in pendings:
            out.append(pending.complete(results[position:position + len(pending.reads)]))
            position += len(pending.reads)
        return out

    def _prepare(self, plan: _Plan, requests: list[tuple[dict, dict | None]], at: int, day_offset: int,
                 streaming: bool) -> "_Pending":
        """Parse the keys, pick the batch version, and list the store reads the fetch needs."""
        versions = self.versions(plan.name)
        target = shift_ds(ds_of_millis(at), day_offset)
        eligible = [ds for ds in versions if ds <= target]
        chosen = max(eligible) if eligible else None
        schema = versions[chosen]["schema"] if chosen else (versions[max(versions)]["schema"] if versions else None)
        key_types = schema["keys"] if schema else [[k, None] for k in plan.group_by["keyColumns"]]
        results: list = [None] * len(requests)
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
                results[index] = (plan.nulls(), f"no batch data at or before {target} "
                                  f"(loaded: {', '.join(sorted(versions)) or 'none'}); run upload and load", "no_data")
            else:
                wanted[index] = key_json(key)
        pending = _Pending(self, plan, results, wanted)
        if not wanted:
            return pending
        pending.fingerprint = codec.schema_fingerprint(schema)
        key_jsons = list(dict.fromkeys(wanted.values()))
        version = versions[chosen]["version"]
        pending.reads.append(("multi_get", (batch_dataset(plan.name), version, key_jsons)))
        if plan.kind == TEMPORAL:
            batch_end = end_of_day_millis(chosen)
            pending.eval_at = at if streaming else batch_end
            pending.columns = schema["columns"]
            if streaming and pending.eval_at > batch_end:
                pending.reads.append(("range_read", (streaming_dataset(plan.name), key_jsons, batch_end,
                                                     pending.eval_at)))
        return pending

    @staticmethod
    def _snapshot_values(plan: _Plan, value: bytes | None, fingerprint: int) -> dict:
        if value is None:
            return {c: (0 if c in plan.count_like else None) for c in plan.base}
        row = codec.decode(value, codec.KIND_SNAPSHOT, fingerprint)
        return dict(zip(plan.base, row))

    @staticmethod
    def _temporal_values(plan: _Plan, value: bytes | None, stream_docs, columns: list, at: int,
                         fingerprint: int) -> dict:
        names = [c for c, _ in columns]
        if value is None:
            events, heads = Events.empty(names), [None] * len(plan.unwindowed)
        else:
            tail_ts, tail_columns, heads = codec.decode(value, codec.KIND_TEMPORAL, fingerprint)
            events = Events(tail_ts, dict(zip(names, tail_columns)))
        if stream_docs:
            stream_ts = [int(d["ts"]) for d in stream_docs]
            stream_columns = {c: [_coerce_value((d.get("d") or {}).get(c), t) for d in stream_docs]
                              for c, t in columns}
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

    def __init__(self, fetcher: "Fetcher", plan: _Plan, results: list, wanted: dict[int, str]):
        self.fetcher, self.plan, self.results, self.wanted = fetcher, plan, results, wanted
        self.reads: list = []
        self.fingerprint = 0
        self.eval_at = 0
        self.columns: list = []

    def complete(self, read_results: list) -> list[tuple[dict | None, str | None, str | None]]:
        if not self.wanted:
            return self.results
        plan, results = self.plan, self.results
        found = read_results[0]
        stream = read_results[1] if len(read_results) > 1 else {}
        for index, kj in self.wanted.items():
            try:
                if plan.kind == SNAPSHOT:
                    base = Fetcher._snapshot_values(plan, found.get(kj), self.fingerprint)
                else:
                    base = Fetcher._temporal_values(plan, found.get(kj), stream.get(kj, ()), self.columns,
                                                    self.eval_at, self.fingerprint)
                results[index] = (plan.finish(base), None, None)
            except codec.CodecError as error:
                results[index] = (plan.nulls(), f"unreadable batch value for {kj}: {error}", "bad_data")
        return results


def _join_base_columns(join: dict) -> list[str]:
    from feature_assets.compiler.columns import join_part_columns
    columns = [c for part in join["joinParts"] for c in join_part_columns(part)]
    for external in join.get("onlineExternalParts") or []:
        columns += external_part_columns(external)
    return columns
