"""Production guards of the fetch service, as one pure ASGI middleware (`harden(app, settings)`).

Settings come from the environment (`HardeningSettings.from_environment`):
- `FEATURE_ASSETS_API_KEYS`: comma-separated keys. When set, every request but `/healthz` carries
  `Authorization: Bearer <key>`, else 401 (`WWW-Authenticate: Bearer`). Unset: no authentication.
- `FEATURE_ASSETS_MAX_BODY_BYTES` (default 1 MiB): a larger body is answered 413 without reading it all.
- `FEATURE_ASSETS_MAX_KEY_LENGTH` (default 256): a fetch whose key name or string value is longer is
  answered 400 naming the key (and the request's index in a batch). The batch size is bounded by the
  service's `max_batch` (413).
- `FEATURE_ASSETS_REQUEST_TIMEOUT_SECONDS` (default 10): a request not answered by then gets 504.
- `FEATURE_ASSETS_TLS_CERTFILE` / `FEATURE_ASSETS_TLS_KEYFILE`: serve HTTPS (`uvicorn_ssl_options`); the key
  file may be omitted when the certificate file holds the key too.
- `FEATURE_ASSETS_ACCESS_LOG` (`on` by default, `off`): one JSON line per request to the
  `feature_assets.access` logger (method, path, route, status, duration_ms, bytes, client, api_key index).
  `start_access_log` writes those lines from a background thread, so the event loop never waits on I/O.
- `FEATURE_ASSETS_METRICS_DIR`: with several workers (uvicorn processes sharing one port) each worker writes
  its counters there about once a second and `/metrics` answers the sum over all workers; without it each
  worker's `/metrics` shows only its own requests.

`GET /metrics` answers the Prometheus text format (0.0.4): requests by method, route and status, a latency
histogram per route, timeouts, store errors (503 answers: the online store was unreachable) and the fetch
log's counters (records logged, dropped because the buffer was full, failed sink writes, ...).

Rejections answer `{"detail": ...}` like the service's own errors, and the OpenAPI document lists them
(401, 413, 504, and 400 wherever query parameters are validated).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
import logging.handlers
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

API_KEYS_ENV = "FEATURE_ASSETS_API_KEYS"
MAX_BODY_BYTES_ENV = "FEATURE_ASSETS_MAX_BODY_BYTES"
MAX_KEY_LENGTH_ENV = "FEATURE_ASSETS_MAX_KEY_LENGTH"
REQUEST_TIMEOUT_ENV = "FEATURE_ASSETS_REQUEST_TIMEOUT_SECONDS"
TLS_CERTFILE_ENV = "FEATURE_ASSETS_TLS_CERTFILE"
TLS_KEYFILE_ENV = "FEATURE_ASSETS_TLS_KEYFILE"
ACCESS_LOG_ENV = "FEATURE_ASSETS_ACCESS_LOG"
METRICS_DIR_ENV = "FEATURE_ASSETS_METRICS_DIR"

ACCESS_LOGGER = "feature_assets.access"
METRICS_PATH = "/metrics"
OPEN_PATHS = frozenset({"/healthz"})
FETCH_PATH_PREFIX = "/v1/fetch/"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; fetches answer in about a millisecond, a batch or a slow store in tens to hundreds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METRICS_WRITE_INTERVAL_SECONDS = 1.0
ACCESS_LOG_LINGER_SECONDS = 0.05

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HardeningConfigError(ValueError):
    """An environment variable of the service's guards with an unusable value."""


@dataclass(frozen=True)
class HardeningSettings:
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 1 << 20
    max_key_length: int = 256
    request_timeout_seconds: float = 10.0
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    access_log: bool = True
    metrics_dir: str | None = None
    open_paths: frozenset[str] = field(default=OPEN_PATHS)

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise HardeningConfigError(f"{MAX_BODY_BYTES_ENV} must be positive, got {self.max_body_bytes}")
        if self.max_key_length < 1:
            raise HardeningConfigError(f"{MAX_KEY_LENGTH_ENV} must be positive, got {self.max_key_length}")
        if not self.request_timeout_seconds > 0 or math.isinf(self.request_timeout_seconds):
            raise HardeningConfigError(
                f"{REQUEST_TIMEOUT_ENV} must be a positive number of seconds, got {self.request_timeout_seconds}"
            )
        if self.tls_keyfile and not self.tls_certfile:
            raise HardeningConfigError(f"{TLS_KEYFILE_ENV} is set without {TLS_CERTFILE_ENV}")
        for name, path in ((TLS_CERTFILE_ENV, self.tls_certfile), (TLS_KEYFILE_ENV, self.tls_keyfile)):
            if path and not os.path.isfile(path):
                raise HardeningConfigError(f"{name}: no such file {path!r}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> HardeningSettings:
        env = os.environ if environ is None else environ
        access_log = env.get(ACCESS_LOG_ENV, "on").strip().lower()
        if access_log not in ("on", "off"):
            raise HardeningConfigError(f"{ACCESS_LOG_ENV} must be 'on' or 'off', got {access_log!r}")
        return cls(
            api_keys=tuple(key.strip() for key in env.get(API_KEYS_ENV, "").split(",") if key.strip()),
            max_body_bytes=_integer(env, MAX_BODY_BYTES_ENV, cls.max_body_bytes),
            max_key_length=_integer(env, MAX_KEY_LENGTH_ENV, cls.max_key_length),
            request_timeout_seconds=_number(env, REQUEST_TIMEOUT_ENV, cls.request_timeout_seconds),
            tls_certfile=env.get(TLS_CERTFILE_ENV) or None,
            tls_keyfile=env.get(TLS_KEYFILE_ENV) or None,
            access_log=access_log == "on",
            metrics_dir=env.get(METRICS_DIR_ENV) or None,
        )

    def uvicorn_ssl_options(self) -> dict[str, str]:
        """`ssl_certfile`/`ssl_keyfile` for `uvicorn.Config` (empty without a certificate: plain HTTP)."""
        options = {"ssl_certfile": self.tls_certfile} if self.tls_certfile else {}
        if self.tls_keyfile:
            options["ssl_keyfile"] = self.tls_keyfile
        return options


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    try:
        return int(text) if text else default
    except ValueError:
        raise HardeningConfigError(f"{name} must be an integer, got {text!r}") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise HardeningConfigError(f"{name} must be a number, got {text!r}") from None


# ---------------------------------------------------------------------------------------------- metrics
class Metrics:
    """Counters of one worker process. Updated on the event loop only, so plain dicts suffice."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        # route -> per-bucket counts (not cumulative; the last one is +Inf), then sum of seconds
        self.latency: dict[str, list[float]] = {}
        self.timeouts = 0
        self.store_errors = 0
        self.in_flight = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        index = 0
        while index < len(LATENCY_BUCKETS) and seconds > LATENCY_BUCKETS[index]:
            index += 1
        histogram[index] += 1
        histogram[-1] += seconds
        if status == 503:
            self.store_errors += 1

    def state(self, fetch_log: Mapping[str, int] | None) -> dict[str, Any]:
        return {
            "requests": [[*key, count] for key, count in self.requests.items()],
            "latency": {route: list(values) for route, values in self.latency.items()},
            "timeouts": self.timeouts,
            "store_errors": self.store_errors,
            "in_flight": self.in_flight,
            "fetch_log": dict(fetch_log or {}),
        }


def merge_states(states: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of several workers' `Metrics.state`s."""
    requests: dict[tuple[str, str, str], int] = {}
    latency: dict[str, list[float]] = {}
    totals = {"timeouts": 0, "store_errors": 0, "in_flight": 0}
    fetch_log: dict[str, int] = {}
    for state in states:
        for method, route, status, count in state.get("requests", []):
            requests[(method, route, status)] = requests.get((method, route, status), 0) + count
        for route, values in state.get("latency", {}).items():
            merged = latency.setdefault(route, [0.0] * len(values))
            for index, value in enumerate(values):
                merged[index] += value
        for name in totals:
            totals[name] += state.get(name, 0)
        for name, count in state.get("fetch_log", {}).items():
            fetch_log[name] = fetch_log.get(name, 0) + count
    return {
        "requests": [[*key, count] for key, count in requests.items()],
        "latency": latency,
        **totals,
        "fetch_log": fetch_log,
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def prometheus_text(state: Mapping[str, Any]) -> str:
    """A (merged) metrics state in the Prometheus text exposition format, version 0.0.4."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("feature_assets_http_requests_total", "counter", "HTTP requests answered, by method, route and status")
    for method, route, status, count in sorted(state["requests"]):
        labels = f'method="{_label(method)}",route="{_label(route)}",status="{_label(status)}"'
        lines.append(f"feature_assets_http_requests_total{{{labels}}} {count}")
    name = "feature_assets_http_request_duration_seconds"
    family(name, "histogram", "Time from a request's arrival to the end of its answer, by route")
    for route, values in sorted(state["latency"].items()):
        cumulative = 0.0
        label = f'route="{_label(route)}"'
        for bound, count in zip((*LATENCY_BUCKETS, math.inf), values[:-1]):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else repr(bound)
            lines.append(f'{name}_bucket{{{label},le="{le}"}} {_number_text(cumulative)}')
        lines.append(f"{name}_sum{{{label}}} {_number_text(values[-1])}")
        lines.append(f"{name}_count{{{label}}} {_number_text(cumulative)}")
    family("feature_assets_http_request_timeouts_total", "counter", "Requests answered 504 (request timeout)")
    lines.append(f"feature_assets_http_request_timeouts_total {state['timeouts']}")
    family("feature_assets_http_requests_in_flight", "gauge", "Requests being answered")
    lines.append(f"feature_assets_http_requests_in_flight {state['in_flight']}")
    family("feature_assets_store_errors_total", "counter", "Requests answered 503: the online store was unreachable")
    lines.append(f"feature_assets_store_errors_total {state['store_errors']}")
    family(
        "feature_assets_fetch_log_records_total",
        "counter",
        "Fetch log records by outcome (dropped: the log buffer was full or closed)",
    )
    counters = state["fetch_log"]
    for outcome in sorted(set(counters) - {"failed"}):
        lines.append(f'feature_assets_fetch_log_records_total{{outcome="{_label(outcome)}"}} {counters[outcome]}')
    family("feature_assets_fetch_log_write_failures_total", "counter", "Fetch log sink writes that raised (retried)")
    lines.append(f"feature_assets_fetch_log_write_failures_total {counters.get('failed', 0)}")
    return "\n".join(lines) + "\n"


class WorkerMetricsFiles:
    """Each worker's metrics state as `worker-<pid>.json` in a directory shared by the workers of one port.
    Files of stopped workers stay (their counts stay in the totals, as counters must not go down); start a
    service with an empty directory."""

    def __init__(self, directory: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"worker-{os.getpid()}.json"
        self.next_write = 0.0

    def write(self, state: Mapping[str, Any]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.path)  # readers see a whole file, never a half-written one
        self.next_write = time.monotonic() + METRICS_WRITE_INTERVAL_SECONDS

    def others(self) -> list[dict[str, Any]]:
        states = []
        for path in sorted(self.directory.glob("worker-*.json")):
            if path != self.path:
                try:
                    states.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue  # a worker's file being replaced right now: counted at the next scrape
        return states


# ---------------------------------------------------------------------------------------------- middleware
class _Rejection(Exception):
    def __init__(self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


def long_key(body: Any, max_length: int) -> str | None:
    """What is wrong with the first key name or string key value of a fetch body longer than `max_length`."""
    requests = body if isinstance(body, list) else [body]
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            continue  # the fetcher answers it as an invalid request
        where = f" (request {index} of the batch)" if isinstance(body, list) else ""
        for name, value in request.items():
            if len(name) > max_length:
                return f"key name {name[:40]!r}... is longer than {max_length} characters{where}"
            if isinstance(value, str) and len(value) > max_length:
                return f"key {name!r} is longer than {max_length} characters ({len(value)}){where}"
    return None


class HardeningMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        settings: HardeningSettings,
        metrics: Metrics,
        metrics_files: WorkerMetricsFiles | None = None,
        fetch_log_counters: Callable[[], Mapping[str, int] | None] = lambda: None,
    ):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.metrics_files = metrics_files
        self.fetch_log_counters = fetch_log_counters
        self.api_keys = [key.encode("utf-8") for key in settings.api_keys]
        self.access_log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        self.metrics.in_flight += 1
        response: dict[str, int] = {"status": 0, "bytes": 0}
        request_bytes = 0
        key_index: int | None = None

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
            elif message["type"] == "http.response.body":
                response["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            key_index = self.authenticate(scope)
            body = await self.read_body(scope, receive)
            request_bytes = len(body)
            self.check_keys(scope, body)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: the disconnect

            deadline = asyncio.timeout(self.settings.request_timeout_seconds)
            try:
                async with deadline:
                    await self.app(scope, replay, send_counted)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the app's own, not the request timeout
                self.metrics.timeouts += 1
                if response["status"]:
                    raise  # the answer had started: only dropping the connection is left
                timeout = self.settings.request_timeout_seconds
                raise _Rejection(504, f"the request took longer than the timeout of {timeout:g} s") from None
        except _Rejection as rejection:
            await self.reject(rejection, send_counted)
        except BaseException:
            response["status"] = response["status"] or 500  # what the server's error middleware answers
            raise
        finally:
            self.metrics.in_flight -= 1
            self.finish(scope, started, response, request_bytes, key_index)

    def authenticate(self, scope: Scope) -> int | None:
        """The 1-based index of the request's API key (None when keys are off or the path is open)."""
        if not self.api_keys or scope["path"] in self.settings.open_paths:
            return None
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() == b"bearer" and token:
            # Every key is compared, in constant time: the answer's timing tells nothing about the keys.
            matches = [hmac.compare_digest(token, key) for key in self.api_keys]
            if any(matches):
                return matches.index(True) + 1
        detail = "invalid API key" if authorization else "missing API key: send 'Authorization: Bearer <key>'"
        raise _Rejection(401, detail, [(b"www-authenticate", b"Bearer")])

    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _Rejection(413, f"request body of {int(value)} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Rejection(400, "the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Rejection(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def check_keys(self, scope: Scope, body: bytes) -> None:
        # A body shorter than the limit cannot hold a longer key: most fetches skip the parse.
        if len(body) <= self.settings.max_key_length or not scope["path"].startswith(FETCH_PATH_PREFIX):
            return
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return  # the service answers a body that is not JSON itself
        problem = long_key(parsed, self.settings.max_key_length)
        if problem:
            raise _Rejection(400, problem)

    async def reject(self, rejection: _Rejection, send: Send) -> None:
        payload = json.dumps({"detail": rejection.detail}).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode("ascii")),
            *rejection.headers,
        ]
        await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def finish(
        self, scope: Scope, started: float, response: Mapping[str, int], request_bytes: int, key_index: int | None
    ) -> None:
        seconds = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        status = response["status"] or 500
        self.metrics.observe(scope["method"], route, status, seconds)
        if self.metrics_files is not None and time.monotonic() >= self.metrics_files.next_write:
            try:
                self.metrics_files.write(self.metrics.state(self.fetch_log_counters()))
            except OSError:
                self.metrics_files.next_write = time.monotonic() + METRICS_WRITE_INTERVAL_SECONDS
        if self.settings.access_log and self.access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            line = json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_bytes": request_bytes,
                    "response_bytes": response["bytes"],
                    "client": client[0] if client else None,
                    "api_key": key_index,
                }
            )
            # A record made here skips `Logger.info`'s caller lookup (a stack walk), a third of the log's cost.
            self.access_log.handle(logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, line, None, None))


# ---------------------------------------------------------------------------------------------- harden
def harden(app: FastAPI, settings: HardeningSettings | None = None) -> FastAPI:
    """`app` behind the guards of `settings` (default: from the environment), with `GET /metrics`."""
    settings = settings if settings is not None else HardeningSettings.from_environment()
    metrics = Metrics()
    metrics_files = WorkerMetricsFiles(settings.metrics_dir) if settings.metrics_dir else None

    def fetch_log_counters() -> Mapping[str, int] | None:
        logger = getattr(getattr(app.state, "fetcher", None), "logger", None)
        counters = getattr(logger, "counters", None)
        return counters() if callable(counters) else None

    def metrics_text() -> str:
        state = metrics.state(fetch_log_counters())
        if metrics_files is not None:
            metrics_files.write(state)
            state = merge_states([state, *metrics_files.others()])
        return prometheus_text(state)

    def get_metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(metrics_text(), media_type=PROMETHEUS_CONTENT_TYPE)

    app.add_api_route(METRICS_PATH, get_metrics, methods=["GET"], include_in_schema=False)
    app.state.metrics = metrics
    app.state.metrics_text = metrics_text
    if settings.access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    app.add_middleware(
        HardeningMiddleware,
        settings=settings,
        metrics=metrics,
        metrics_files=metrics_files,
        fetch_log_counters=fetch_log_counters,
    )
    app.openapi_schema = document_guards(app.openapi(), settings)
    return app


def document_guards(schema: Mapping[str, Any], settings: HardeningSettings) -> dict[str, Any]:
    """The OpenAPI document with what the guards answer: the bearer scheme, 401, 413, 504 and `/metrics`."""
    document = copy.deepcopy(dict(schema))
    components = document.setdefault("components", {})
    error_ref = {"$ref": "#/components/schemas/ErrorBody"} if "ErrorBody" in components.get("schemas", {}) else {}
    error_body = {"content": {"application/json": {"schema": error_ref or {"type": "object"}}}}
    limit = settings.max_body_bytes
    added = {
        "413": f"A request body over {limit} bytes, or a batch over the service's limit (`serve --max-batch`)",
        "504": f"No answer within the request timeout ({settings.request_timeout_seconds:g} s)",
    }
    if settings.api_keys:
        components.setdefault("securitySchemes", {})["apiKey"] = {"type": "http", "scheme": "bearer"}
        added["401"] = "Missing or invalid API key (`Authorization: Bearer <key>`)"
    document.setdefault("paths", {})[METRICS_PATH] = {
        "get": {
            "summary": "Request counts, latency histograms, store errors and fetch log counters",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "The Prometheus text format, version 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in added.items():
                if code == "401" and path in settings.open_paths:
                    continue
                responses.setdefault(code, {"description": description, **error_body})
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", {"description": "Invalid request parameters", **error_body})
            if settings.api_keys and path not in settings.open_paths:
                operation["security"] = [{"apiKey": []}]
    return document


class _PlainQueueHandler(logging.handlers.QueueHandler):
    """Queues the record as it is: an access line is a finished string (no arguments, no exception), so
    QueueHandler's copy and pre-format are not needed."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class AccessLogWriter:
    """Writes the queued access lines to a stream from a background thread, all lines queued so far in one
    write: a busy service pays one write and one flush per batch of requests, not per request."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lines: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self.handler = _PlainQueueHandler(self.lines)
        self.thread = threading.Thread(target=self._run, name="access-log", daemon=True)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            records = [self.lines.get()]
            while True:
                try:
                    records.append(self.lines.get_nowait())
                except queue.Empty:
                    break
            stopping = None in records
            text = "".join(record.getMessage() + "\n" for record in records if record is not None)
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stream must not stop the service
            if not stopping:
                time.sleep(ACCESS_LOG_LINGER_SECONDS)  # let lines gather: the thread takes the GIL less often

    def stop(self) -> None:
        """Write what is queued, then stop (the handler is removed first: later lines are not queued)."""
        logger = logging.getLogger(ACCESS_LOGGER)
        logger.removeHandler(self.handler)
        logger.propagate = True
        self.lines.put(None)
        self.thread.join(timeout=5)


def start_access_log(stream: IO[str] | None = None) -> AccessLogWriter:
    """Write the access log's JSON lines to `stream` (stderr) from a background thread; `.stop()` flushes."""
    writer = AccessLogWriter(stream if stream is not None else sys.stderr)
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(writer.handler)
    logger.propagate = False  # one line per request, not also through the root logger's handlers
    writer.thread.start()
    return writer
