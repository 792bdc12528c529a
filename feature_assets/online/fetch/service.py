"""`feature-assets serve`: the fetcher over HTTP (FastAPI on uvicorn).

- `POST /v1/fetch/join/{name}` and `POST /v1/fetch/groupby/{name}` (`name` like `quickstart/training_set.v2`
  or `quickstart.training_set.v2`); body: one request (a JSON object of keys) or a batch (a JSON array of
  them); optional query parameter `at_millis`. Answers one response or a list of them, in request order, the
  shape the CLI's `fetch` prints (`schemas.FetchResponse`).
- `GET /v1/stats/join/{name}?start_ts=&end_ts=` (`&log=true`: the join's log): per column, the loaded stats
  buckets with start_ts <= ts < end_ts in time order, as `fetch --type join-stats` prints them.
  `GET /v1/drift/join/{name}?start_ts=&end_ts=&reference_start_ts=&reference_end_ts=` (`&log=true`): per
  column, PSI, Jensen-Shannon, Hellinger and KS of the first range's merged stats against the reference's.
  404 when no stats of the join are loaded.
- `GET /v1/consistency/join/{name}?start_ts=&end_ts=`: per compared feature column, the loaded online/offline
  consistency buckets with start_ts <= ts < end_ts in time order, as `fetch --type join-consistency` prints
  them; 404 when none of the join are loaded.
- `GET /healthz`: 200 when MongoDB answers a ping, else 503.
- `/docs` (Swagger UI) and `/redoc` load their scripts and styles from this service (the assets ship in the
  fastapi-offline package), so they work without internet; OpenAPI at `/openapi.json`.

Errors (body `schemas.ErrorBody`): 404 unknown join or group-by (not in the metadata store); 400 a body that
is not an object or array, a single request with a missing or mistyped key, or a derivation the online
fetcher cannot apply; 413 a batch over `max_batch` requests; 503 while MongoDB is unreachable. In a batch, a
request with a missing or mistyped key does not fail the others: it is answered with `values: null` and
`error_type: invalid_key`. `serve` adds guards (`hardening.py`): with `FEATURE_ASSETS_API_KEYS` set, 401 without
`Authorization: Bearer <key>` (`/healthz` stays open); 413 a body over `FEATURE_ASSETS_MAX_BODY_BYTES`; 400 a key
over `FEATURE_ASSETS_MAX_KEY_LENGTH` characters; 504 past `FEATURE_ASSETS_REQUEST_TIMEOUT_SECONDS`; one JSON
access-log line per request; `/metrics` in the Prometheus text format; TLS with `FEATURE_ASSETS_TLS_CERTFILE` and
`FEATURE_ASSETS_TLS_KEYFILE`. Several workers: `serve --workers N` runs N processes on one port (uvicorn's
supervisor); their `/metrics` sum through `FEATURE_ASSETS_METRICS_DIR` (a fresh directory by default).
The pymongo client reconnects by itself, so the service recovers when the server
returns, without a restart.
Fetch handlers are coroutines: the store reads go through pymongo's `AsyncMongoClient` and all of a join's
reads are awaited together (`Fetcher.afetch_join`), with no thread hop per request. Configs and batch pointers
come from the fetcher's caches (refreshed in background threads); only the very first request of a name
reads them on the loop. `/healthz` is a plain `def` (FastAPI's thread pool) since its ping blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import Field
from uvicorn.config import STARTUP_FAILURE

from feature_assets.online.fetch.fetcher import BatchTooLarge, Fetcher, UnknownName, UnsupportedDerivation
from feature_assets.online.fetch.hardening import HardeningSettings, harden, start_access_log
from feature_assets.online.fetch.schemas import FetchBatchResponse, FetchResponse, Health, error_responses
from feature_assets.online.logging import logger_from_environment
from feature_assets.online.store import DEFAULT_DATABASE, MONGO_URI_ENV, KVStore, MongoKVStore, StoreUnavailable

MONGO_DATABASE_ENV = "FEATURE_ASSETS_MONGO_DATABASE"
MAX_BATCH_ENV = "FEATURE_ASSETS_MAX_BATCH"
# A batch's entries are checked one by one by the fetcher (a bad entry gets its own error), so the body
# only has to be an object or an array; the document still says what an entry should be.
RequestBody = (
    Annotated[dict[str, Any], Field(title="Request", description="the keys of one request")]
    | Annotated[
        list[Any],
        Field(
            title="Batch",
            description="requests, answered one by one in this order",
            json_schema_extra={"items": {"type": "object", "title": "Request"}},
        ),
    ]
)
AT_MILLIS = "request time in epoch millis (default: now)"
BODY_EXAMPLES = [{"user_id": "5"}, [{"user_id": "5"}, {"user_id": "6"}]]
BODY = "a JSON object of keys (one request) or a JSON array of them (a batch)"
FETCHED = (
    "One response for a request object; for an array, one per request in request order, each with its own "
    "error (a missing or mistyped key gives `values: null`, `error_type: invalid_key`)."
)
# Short timeouts: an outage answers 503 within about a second instead of hanging requests.
SERVICE_CLIENT_OPTIONS = {"serverSelectionTimeoutMS": 1000, "connectTimeoutMS": 1000, "socketTimeoutMS": 5000}


def store_from_environment() -> tuple[MongoKVStore, str, str]:
    """The online store named by the environment, with its URI and database."""
    uri = os.environ.get(MONGO_URI_ENV)
    if not uri:
        raise RuntimeError(f"set {MONGO_URI_ENV} to the online store's MongoDB URI")
    database = os.environ.get(MONGO_DATABASE_ENV, DEFAULT_DATABASE)
    return MongoKVStore.from_uri(uri, database, **SERVICE_CLIENT_OPTIONS), uri, database


def create_app(store: KVStore | None = None, fetcher: Fetcher | None = None, max_batch: int = 1000) -> FastAPI:
    owned_logger = None
    if fetcher is None:
        store = store if store is not None else store_from_environment()[0]
        # Every join fetch is logged (FEATURE_ASSETS_FETCH_LOG: mongo by default, kafka or off).
        owned_logger = logger_from_environment(store)
        fetcher = Fetcher(store, max_batch=max_batch, logger=owned_logger)
    fetcher.max_batch = max_batch

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # What was served before the server stopped is still logged (every worker of a multi-worker server).
        if owned_logger is not None:
            await asyncio.to_thread(owned_logger.close, 5.0)

    app = FastAPIOffline(
        lifespan=lifespan,
        title="feature-assets online fetcher",
        version="1",
        description="Point-in-time correct feature values of online group-bys and joins.",
        # Swagger UI would otherwise load a validation badge from an external host.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.fetcher = fetcher

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = list(dict.fromkeys(describe_invalid(e) for e in error.errors()))  # a union fails twice
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems[:5])}, status_code=400)

    async def run(kind: str, name: str, body: RequestBody, at_millis: int | None) -> JSONResponse:
        if isinstance(body, list) and len(body) > max_batch:
            raise HTTPException(413, f"batch of {len(body)} requests is over the limit of {max_batch}")
        try:
            if kind == "join":
                result = await fetcher.afetch_join(name, body, at_millis)
            else:
                result = await fetcher.afetch_group_by(name, body, at_millis)
        except UnknownName as error:
            raise HTTPException(404, str(error)) from None
        except BatchTooLarge as error:
            raise HTTPException(413, str(error)) from None
        except UnsupportedDerivation as error:
            raise HTTPException(400, str(error)) from None
        except StoreUnavailable as error:
            raise HTTPException(503, str(error)) from None
        # A single invalid request is a bad request; in a batch it is one answer among the others.
        if isinstance(result, dict) and result["error_type"] == "invalid_key":
            raise HTTPException(400, result["error"])
        return JSONResponse(result)  # plain json.dumps: values are already JSON-ready

    # `response_model` types the OpenAPI document only: the handlers return the fetcher's dicts unvalidated.
    fetch_route: dict[str, Any] = {
        "response_model": FetchResponse | FetchBatchResponse,
        "response_description": FETCHED,
        "responses": error_responses(400, 404, 413, 503),
    }

    @app.post(
        "/v1/fetch/join/{name:path}",
        summary="Fetch a join's features for one request or a batch",
        operation_id="fetch_join",
        **fetch_route,
    )
    async def fetch_join(
        name: str,
        body: RequestBody = Body(..., description=BODY, examples=BODY_EXAMPLES),
        at_millis: int | None = Query(None, description=AT_MILLIS),
    ) -> JSONResponse:
        return await run("join", name, body, at_millis)

    @app.post(
        "/v1/fetch/groupby/{name:path}",
        summary="Fetch a group-by's features for one request or a batch",
        operation_id="fetch_group_by",
        **fetch_route,
    )
    async def fetch_group_by(
        name: str,
        body: RequestBody = Body(..., description=BODY, examples=BODY_EXAMPLES),
        at_millis: int | None = Query(None, description=AT_MILLIS),
    ) -> JSONResponse:
        return await run("groupby", name, body, at_millis)

    def stats_call(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except UnknownName as error:
            raise HTTPException(404, str(error)) from None
        except StoreUnavailable as error:
            raise HTTPException(503, str(error)) from None

    # Plain `def`s: the stats reads block, so they run in FastAPI's thread pool.
    @app.get(
        "/v1/stats/join/{name:path}",
        summary="A join's daily stats buckets in a time range, per column",
        operation_id="join_stats",
        responses=error_responses(404, 503),
    )
    def join_stats(
        name: str,
        start_ts: int = Query(0, description="the first bucket's earliest start, epoch millis"),
        end_ts: int = Query(..., description="buckets start before this, epoch millis"),
        log: bool = Query(False, description="the stats of the join's log instead of its output"),
    ) -> Any:
        return stats_call(lambda: fetcher.fetch_join_stats(name, start_ts, end_ts, logged=log))

    @app.get(
        "/v1/drift/join/{name:path}",
        summary="Drift per column between a join's stats over two time ranges",
        operation_id="join_stats_drift",
        responses=error_responses(404, 503),
    )
    def join_stats_drift(
        name: str,
        start_ts: int = Query(..., description="the compared range's start, epoch millis"),
        end_ts: int = Query(..., description="the compared range's end (excluded)"),
        reference_start_ts: int = Query(..., description="the reference range's start"),
        reference_end_ts: int = Query(..., description="the reference range's end (excluded)"),
        log: bool = Query(False, description="the stats of the join's log instead of its output"),
    ) -> Any:
        return stats_call(
            lambda: fetcher.join_stats_drift(
                name, (start_ts, end_ts), (reference_start_ts, reference_end_ts), logged=log
            )
        )

    @app.get(
        "/v1/consistency/join/{name:path}",
        summary="A join's online/offline consistency buckets in a time range, per feature column",
        operation_id="join_consistency",
        responses=error_responses(404, 503),
    )
    def join_consistency(
        name: str,
        start_ts: int = Query(0, description="the first bucket's earliest start, epoch millis"),
        end_ts: int = Query(..., description="buckets start before this, epoch millis"),
    ) -> Any:
        return stats_call(lambda: fetcher.fetch_join_consistency(name, start_ts, end_ts))

    @app.get(
        "/healthz",
        summary="Liveness and MongoDB reachability",
        operation_id="healthz",
        response_model=Health,
        response_model_exclude_none=True,
        responses={503: {"model": Health, "description": "MongoDB does not answer"}},
    )
    def healthz() -> Any:
        try:
            fetcher.store.ping()
        except StoreUnavailable as error:
            return JSONResponse({"status": "unavailable", "detail": str(error)}, status_code=503)
        return {"status": "ok"}

    _drop_unused_validation_error(app)
    return app


def describe_invalid(error: Mapping[str, Any]) -> str:
    """One of FastAPI's validation errors in the user's terms (not pydantic's union branches)."""
    location = [str(part) for part in error.get("loc", ())]
    if location[:1] == ["body"]:
        if error.get("type") == "json_invalid":
            return f"the body is not valid JSON: {(error.get('ctx') or {}).get('error')}"
        if error.get("type") == "missing":
            return f"no body: send {BODY}"
        return f"the body must be {BODY}"
    return f"{' '.join(location)}: {error.get('msg')}"  # e.g. "query at_millis: Input should be a valid integer"


def _drop_unused_validation_error(app: FastAPI) -> None:
    """Validation errors are answered 400 (`invalid_request`), never FastAPI's default 422: remove it from the
    OpenAPI document, which FastAPI builds once and caches in `app.openapi_schema`."""
    schema = app.openapi()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)


def display_uri(uri: str) -> str:
    """A MongoDB URI without user, password and options (options may carry credentials too)."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return uri.rsplit("@", 1)[-1].split("?", 1)[0]
    hosts, slash, path = rest.split("?", 1)[0].partition("/")
    return f"{scheme}://{hosts.rsplit('@', 1)[-1]}{slash}{path}"


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server that prints one line once it listens: after the bind, so a busy port shows only
    uvicorn's error, and with the bound port (right for `--port 0` too)."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[str], str]):
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            host = self.config.host
            scheme = "https" if self.config.ssl_certfile else "http"
            print(self.announce(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"), flush=True)


def app_from_environment() -> FastAPI:
    """One worker's app; uvicorn imports it by name when it runs several workers behind one port."""
    settings = HardeningSettings.from_environment()
    if settings.access_log:
        start_access_log()
    store = store_from_environment()[0]
    return harden(create_app(store=store, max_batch=int(os.environ.get(MAX_BATCH_ENV, "1000"))), settings)


def serve(host: str = "127.0.0.1", port: int = 8000, max_batch: int = 1000, workers: int = 1) -> None:
    settings = HardeningSettings.from_environment()  # bad settings fail before the bind
    store, uri, database = store_from_environment()
    ssl = settings.uvicorn_ssl_options()
    certfile, keyfile = ssl.get("ssl_certfile"), ssl.get("ssl_keyfile")
    if workers > 1:
        os.environ[MAX_BATCH_ENV] = str(max_batch)
        os.environ.setdefault("FEATURE_ASSETS_METRICS_DIR", tempfile.mkdtemp(prefix="feature-assets-metrics-"))
        print(f"serving fetches with {workers} workers on {host}:{port} from {display_uri(uri)}", flush=True)
        uvicorn.run(
            "feature_assets.online.fetch.service:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        return
    access_log = start_access_log() if settings.access_log else None
    app = harden(create_app(store=store, max_batch=max_batch), settings)
    # Everything imported so far lives for the whole process: keep it out of the collector's scans, so
    # collections during requests stay short (they showed in the p99 latency).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, ssl_certfile=certfile, ssl_keyfile=keyfile
    )
    server = AnnouncingServer(
        config,
        lambda url: (
            f"serving fetches at {url} (docs: {url}/docs) from {display_uri(uri)} database {database!r}; Ctrl-C stops"
        ),
    )
    # As `uvicorn.run`: uvicorn handles SIGINT and SIGTERM itself, then re-raises them once shut down.
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if app.state.fetcher.logger is not None:  # closed on shutdown already, unless the server never started
        app.state.fetcher.logger.close(timeout=5.0)
    if access_log is not None:
        access_log.stop()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
