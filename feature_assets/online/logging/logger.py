"""The fetch logger: join fetches become log records, written by a background thread.

A fetch encodes its own records: the key (for the sampling decision), the values (Avro), and the record as the
sink stores it (`LogSink.encode`), about 15 us per record, then appends them to a bounded buffer. The
logger's thread only hands batches of encoded records to the sink: it shares Python's GIL with the fetches, and
a fetch waiting for the GIL while that thread encodes a batch would cost far more than encoding its own record.
A full buffer drops the record and counts it; a failing sink is retried with exponential backoff (the same
batch, the same record ids) while new records queue up behind it, then drop once the buffer is full. Nothing in
here raises into a fetch.

Each logger publishes a schema once: a SCHEMA_PUBLISH_EVENT record, queued just before the first record with
that schema hash (so written in the same batch or an earlier one).
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from feature_assets.model import MILLIS_PER_DAY, Join
from feature_assets.online.batch_encoding import ds_of_millis
from feature_assets.online.logging.codec import JoinCodec
from feature_assets.online.logging.sampling import is_sampled
from feature_assets.online.logging.sinks.base import LogRecord, LogSink

SCHEMA_PUBLISH_EVENT = "SCHEMA_PUBLISH_EVENT"
DEFAULT_BUFFER_SIZE = 10_000
DEFAULT_BATCH_SIZE = 1000
# Records wait up to this long to be written together: one insert per many fetches instead of one per fetch
# keeps the log's load off the store that serves the fetches.
DEFAULT_LINGER_SECONDS = 1.0
_log = logging.getLogger(__name__)


@dataclass
class LogCounters:
    """What happened to the logger's records so far (fetch responses, schema records apart)."""

    logged: int = 0  # written by the sink
    sampled_out: int = 0  # not logged: the key is outside the join's sample_percent
    dropped: int = 0  # the buffer was full (or the logger closed before the sink took them)
    failed: int = 0  # sink writes that raised (each retried)
    unencodable: int = 0  # a key or value the join's Avro schema could not take
    schemas_published: int = 0


class _SchemaRecord:
    """A SCHEMA_PUBLISH_EVENT record in the buffer (the others are what the sink's `encode` made of them)."""

    __slots__ = ("encoded", "schema_hash")

    def __init__(self, encoded: Any, schema_hash: str):
        self.encoded, self.schema_hash = encoded, schema_hash


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def schema_record(codec: JoinCodec, ts_millis: int) -> LogRecord:
    return {
        "name": SCHEMA_PUBLISH_EVENT,
        "schema_hash": codec.schema_hash,
        "key_base64": _b64(codec.schema_hash.encode("utf-8")),
        "value_base64": _b64(codec.schema_json.encode("utf-8")),
        "ts_millis": ts_millis,
        "ds": ds_of_millis(ts_millis),
    }


class FetchLogger:
    def __init__(
        self,
        sink: LogSink[Any],
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        retry_initial_seconds: float = 0.1,
        retry_max_seconds: float = 10.0,
    ):
        if buffer_size < 1 or batch_size < 1:
            raise ValueError(f"buffer_size and batch_size must be positive, got {buffer_size} and {batch_size}")
        self.sink = sink
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self._flushing = 0  # callers waiting in flush: the writer stops lingering
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self._counters = LogCounters()
        self._buffer: deque[Any] = deque()  # encoded records, and _SchemaRecord
        self._day = (0, 0, "")  # the day of the last logged time: (start millis, end millis, ds)
        self._in_flight = 0
        self._published: set[str] = set()  # schema hashes queued or written
        self._id_prefix = uuid.uuid4().hex
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ fetch side
    def log_join(
        self,
        join: Join,
        codec: JoinCodec,
        requests: Sequence[Any],
        values: Sequence[Mapping[str, Any] | None],
        ts_millis: int,
    ) -> None:
        """Queue the served values of a join fetch's requests (None values: an invalid request, not logged)."""
        encoded: list[Any] = []
        sampled_out = unencodable = 0
        day = self._day
        if not day[0] <= ts_millis < day[1]:
            start = ts_millis - ts_millis % MILLIS_PER_DAY
            self._day = day = (start, start + MILLIS_PER_DAY, ds_of_millis(ts_millis))
        for request, served in zip(requests, values):
            if served is None or not isinstance(request, Mapping):
                continue
            try:
                key_bytes = codec.encode_key(request)
                if not is_sampled(key_bytes, join.sample_percent):
                    sampled_out += 1
                    continue
                record: LogRecord = {
                    "name": codec.join_name,
                    "schema_hash": codec.schema_hash,
                    "key_base64": _b64(key_bytes),
                    "value_base64": _b64(codec.encode_value(served)),
                    "ts_millis": ts_millis,
                    "ds": day[2],
                }
                encoded.append(self.sink.encode(record, self._next_id()))
            except Exception:  # noqa: BLE001 - a key or value the schema cannot take is counted, never raised
                unencodable += 1
        schema = None
        if encoded and codec.schema_hash not in self._published:
            try:
                published = self.sink.encode(schema_record(codec, ts_millis), self._next_id())
                schema = _SchemaRecord(published, codec.schema_hash)
            except Exception:  # noqa: BLE001
                unencodable, encoded = unencodable + len(encoded), []
        with self._condition:
            if sampled_out or unencodable:
                self._counters.sampled_out += sampled_out
                self._counters.unencodable += unencodable
            if not encoded:
                return
            if schema is not None and schema.schema_hash not in self._published:
                encoded.insert(0, schema)  # just before the first record with its hash
            was_empty = not self._buffer
            room = 0 if self._closed.is_set() else self.buffer_size - len(self._buffer)
            taken = encoded if room >= len(encoded) else encoded[: max(room, 0)]
            self._buffer.extend(taken)
            if taken and taken[0].__class__ is _SchemaRecord:
                self._published.add(taken[0].schema_hash)
            if len(taken) < len(encoded):
                self._counters.dropped += sum(1 for e in encoded[len(taken) :] if e.__class__ is not _SchemaRecord)
            # wake the writer only to start a batch or to end its wait early (not once per fetch)
            if taken and (was_empty or len(self._buffer) >= self.batch_size):
                self._condition.notify()
        if self._thread is None:
            self._start()

    def _next_id(self) -> str:
        # Unique across loggers and processes, fixed before the first write so that a retry repeats it.
        return f"{self._id_prefix}-{next(self._sequence)}"

    def count_unencodable(self, n: int = 1) -> None:
        with self._condition:
            self._counters.unencodable += n

    # ------------------------------------------------------------------------ control
    def counters(self) -> dict[str, int]:
        with self._condition:
            return asdict(self._counters)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is written (True) or `timeout` seconds pass (False)."""
        with self._condition:
            self._flushing += 1
            self._condition.notify_all()
            try:
                return self._condition.wait_for(lambda: not self._buffer and not self._in_flight, timeout)
            finally:
                self._flushing -= 1

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for up to `timeout` seconds, then stop the thread; records still queued are dropped (counted).
        Closing again does nothing."""
        if self._closed.is_set():
            return True
        flushed = self.flush(timeout)
        self._closed.set()
        with self._condition:
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with self._condition:
            self._counters.dropped += sum(1 for e in self._buffer if e.__class__ is not _SchemaRecord)
            self._buffer.clear()
        try:
            self.sink.close()
        except Exception as error:  # noqa: BLE001 - closing must not fail the caller
            _log.warning("fetch log sink %r did not close: %s", self.sink, error)
        return flushed

    def __repr__(self) -> str:
        return f"FetchLogger({self.sink!r}, {self.counters()})"

    # ------------------------------------------------------------------------ writer thread
    def _start(self) -> None:
        with self._condition:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="fetch-logger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._buffer or self._closed.is_set())
                if self.linger_seconds > 0:
                    self._condition.wait_for(
                        lambda: len(self._buffer) >= self.batch_size or self._flushing or self._closed.is_set(),
                        self.linger_seconds,
                    )
                if self._closed.is_set():
                    return
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._in_flight = len(batch)
            try:
                self._write(batch)
            finally:
                with self._condition:
                    self._in_flight = 0
                    self._condition.notify_all()

    def _write(self, batch: list[Any]) -> None:
        schemas = [entry.schema_hash for entry in batch if entry.__class__ is _SchemaRecord]
        if schemas:
            batch = [entry.encoded if entry.__class__ is _SchemaRecord else entry for entry in batch]
        written = self._write_with_retries(batch)
        with self._condition:
            if written:
                self._counters.logged += len(batch) - len(schemas)
                self._counters.schemas_published += len(schemas)
            else:
                self._counters.dropped += len(batch) - len(schemas)
                self._published.difference_update(schemas)  # a later fetch publishes them again

    def _write_with_retries(self, encoded: list[Any]) -> bool:
        """Write until the sink takes the batch (True) or the logger closes (False)."""
        delay = self.retry_initial_seconds
        while True:
            try:
                self.sink.write_encoded(encoded)
                return True
            except Exception as error:  # noqa: BLE001 - any sink failure is retried
                with self._condition:
                    self._counters.failed += 1
                _log.warning("fetch log sink %r failed (retrying in %.1fs): %s", self.sink, delay, error)
            if self._closed.wait(delay):
                return False
            delay = min(delay * 2, self.retry_max_seconds)
