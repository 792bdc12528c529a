"""`feature-assets serve`: the fetcher over HTTP (FastAPI on uvicorn).

- `POST /v1/fetch/join/{name}` and `POST /v1/fetch/groupby/{name}` (`name` like `quickstart/training_set.v2`
  or `quickstart.training_set.v2`); body: one request (a JSON object of keys) or a batch (a JSON array of
  them); optional query parameter `at_millis`. Answers one response or a list of them (see `fetcher`).
- `GET /healthz`: 200 when MongoDB answers a ping, else 503. OpenAPI at `/openapi.json`, docs at `/docs`.

Errors: 404 unknown join or group-by (not in the metadata store); 400 a missing or mistyped key (the
message names the request index and the key), a body that is not an object or array, or a derivation the
online fetcher cannot apply; 413 a batch over `max_batch` requests; 503 while MongoDB is unreachable. The
pymongo client reconnects by itself, so the service recovers when the server returns, without a restart.
Fetch handlers are coroutines: the store reads go through pymongo's `AsyncMongoClient` and all of a join's
reads are awaited together (`Fetcher.afetch_join`), with no thread hop per request. Configs and batch pointers
come from the fetcher's caches (refreshed in background threads); only the very first request of a name
reads them on the loop. `/healthz` is a plain `def` (FastAPI's thread pool) since its ping blocks.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from feature_assets.online.fetch.fetcher import BatchTooLarge, Fetcher, UnknownName, UnsupportedDerivation
from feature_assets.online.store import DEFAULT_DATABASE, MONGO_URI_ENV, KVStore, MongoKVStore, StoreUnavailable

RequestBody = dict[str, Any] | list[dict[str, Any]]
AT_MILLIS = "request time in epoch millis (default: now)"
# Short timeouts: an outage answers 503 within about a second instead of hanging requests.
SERVICE_CLIENT_OPTIONS = {"serverSelectionTimeoutMS": 1000, "connectTimeoutMS": 1000, "socketTimeoutMS": 5000}


def create_app(store: KVStore | None = None, fetcher: Fetcher | None = None, max_batch: int = 1000) -> FastAPI:
    if fetcher is None:
        if store is None:
            uri = os.environ.get(MONGO_URI_ENV)
            if not uri:
                raise RuntimeError(f"set {MONGO_URI_ENV} to the online store's MongoDB URI")
            store = MongoKVStore.from_uri(
                uri, os.environ.get("FEATURE_ASSETS_MONGO_DATABASE", DEFAULT_DATABASE), **SERVICE_CLIENT_OPTIONS
            )
        fetcher = Fetcher(store, max_batch=max_batch)
    fetcher.max_batch = max_batch
    app = FastAPI(
        title="feature-assets online fetcher",
        version="1",
        description="Point-in-time correct feature values of online group-bys and joins.",
    )
    app.state.fetcher = fetcher

    @app.exception_handler(RequestValidationError)
    def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()[:5]
        )
        return JSONResponse({"detail": f"invalid request body: {problems}"}, status_code=400)

    async def run(kind: str, name: str, body: Any, at_millis: int | None) -> JSONResponse:
        if not isinstance(body, (dict, list)):
            raise HTTPException(400, "the body must be a JSON object of keys or an array of them")
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
        responses = result if isinstance(result, list) else [result]
        invalid = [
            f"request {i}: {r['error']}" if isinstance(body, list) else r["error"]
            for i, r in enumerate(responses)
            if r["error_type"] == "invalid_key"
        ]
        if invalid:
            raise HTTPException(400, "; ".join(invalid[:20]))
        return JSONResponse(result)  # plain json.dumps: values are already JSON-ready

    @app.post("/v1/fetch/join/{name:path}", summary="Fetch a join's features for one request or a batch")
    async def fetch_join(
        name: str,
        body: RequestBody = Body(..., examples=[{"user_id": "5"}]),
        at_millis: int | None = Query(None, description=AT_MILLIS),
    ) -> JSONResponse:
        return await run("join", name, body, at_millis)

    @app.post("/v1/fetch/groupby/{name:path}", summary="Fetch a group-by's features for one request or a batch")
    async def fetch_group_by(
        name: str,
        body: RequestBody = Body(..., examples=[{"user_id": "5"}]),
        at_millis: int | None = Query(None, description=AT_MILLIS),
    ) -> JSONResponse:
        return await run("groupby", name, body, at_millis)

    @app.get("/healthz", summary="Liveness and MongoDB reachability", response_model=None)
    def healthz() -> Any:
        try:
            fetcher.store.ping()
        except StoreUnavailable as error:
            return JSONResponse({"status": "unavailable", "detail": str(error)}, status_code=503)
        return {"status": "ok"}

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, max_batch: int = 1000, workers: int = 1) -> None:
    app = create_app(max_batch=max_batch)
    # Everything imported so far lives for the whole process: keep it out of the collector's scans, so
    # collections during requests stay short (they showed in the p99 latency).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
