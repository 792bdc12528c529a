"""The streaming job of one group-by: its topics' events into `{GROUP_BY}_STREAMING`, exactly once in effect.

A long-lived process (`feature-assets streaming --conf ...`), supervised by whatever runs processes (a
docker-compose service, systemd, Kubernetes); not a sensor or an asset body, which Dagster times out. Several
processes in one consumer group share a topic's partitions.

Each loop takes a batch of messages, decodes them (`decoders`), applies the group-by's query (`events`), and:

1. sends the messages that fail to the dead-letter topic (`{topic}.dlq` unless the topic spec names one) as a
   JSON record with the error, topic, partition, offset, key and the message (base64), and waits until the
   broker has them;
2. writes the events through the online writer. Each document's `_id` holds the message's topic, partition and
   offset, so writing a message again is a no-op: a consumer killed after writing but before committing
   replays the batch without counting anything twice;
3. commits the offsets after the message of each partition that was handled, only once 1 and 2 are durable;
   a consumer killed before the commit re-reads from the last commit, so no event is lost.

A store outage (unreachable, or writes failing after the store's own retries) pauses the partitions and retries
the same batch with backoff, keeping the consumer in its group; nothing is committed until the write succeeds,
then consumption resumes by itself. SIGTERM/SIGINT stop the loop after the batch in hand is committed.

Retention: every `retention_interval_s` the job removes streaming documents older than the newest loaded
batch's end minus `retention_grace_millis` (default 2 days). Fetches only read events after the end of the batch
they use, so older ones are never read again unless a rollback goes back further than the grace.
"""

from __future__ import annotations

import base64
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from feature_assets.model import EventSource, GroupBy
from feature_assets.model.topics import TopicSpec, parse_topic
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.keys import InvalidKey
from feature_assets.online.store import KVStore, LoadError, StoreUnavailable, batch_versions
from feature_assets.online.streaming_writer import StreamingEvent, StreamingWriter
from feature_assets.streaming import status
from feature_assets.streaming.decoders import DecodeError, Decoder, decoder_for
from feature_assets.streaming.events import EventSelector, RowError, SelectedEvent
from feature_assets.streaming.schemas import source_schema

DAY_MILLIS = 86_400_000
# Dead letters printed one per line between two progress lines; the rest are counted.
DEAD_LETTER_LINES = 20


class NotStreamable(ValueError):
    """A group-by that has nothing to stream (not online, or no source with a topic)."""


@dataclass
class JobSettings:
    batch_size: int = 1000
    poll_timeout_s: float = 0.05
    retention_grace_millis: int = 2 * DAY_MILLIS
    retention_interval_s: float = 600.0
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    progress_interval_s: float = 10.0
    status_interval_s: float = 1.0
    dlq_flush_timeout_s: float = 10.0


@dataclass
class Route:
    """One streamed source: its topic's decoder and the query that turns a row into an event."""

    spec: TopicSpec
    decoder: Decoder
    selector: EventSelector


@dataclass
class Counts:
    applied: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    messages: int = 0
    retention_removed: int = 0

    def add(self, other: Counts) -> None:
        for name in ("applied", "dead_lettered", "filtered", "messages", "retention_removed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_status(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in status.COUNTERS}


@dataclass
class Outcome:
    """What happened to one message: an event to write, a drop, or a dead letter with its reason."""

    message: Message
    event: SelectedEvent | None = None
    error: str | None = None
    selector: EventSelector | None = None


def routes_for(group_by: GroupBy, store: KVStore | None, warehouse_root: str | None = None) -> dict[str, list[Route]]:
    """{topic name: routes} of a group-by's streamed sources, compiled against their tables' schemas."""
    routes: dict[str, list[Route]] = {}
    for source in group_by.sources:
        if not source.topic:
            continue
        if not isinstance(source, EventSource):
            raise NotStreamable(
                f"{group_by.name}: streaming serves event sources only; its entity source's mutation_topic "
                f"{source.topic!r} is not consumed"
            )
        spec = parse_topic(source.topic)
        schema = source_schema(store, source.read_table, warehouse_root)
        routes.setdefault(spec.name, []).append(
            Route(spec, decoder_for(spec, schema), EventSelector(group_by, source, schema))
        )
    if not routes:
        raise NotStreamable(f"{group_by.name} has no source with a topic: there is nothing to stream")
    return routes


def route_message(routes: list[Route], message: Message) -> list[Outcome]:
    """Decode a message and run it through each route's query."""
    value = message.value()
    if value is None:
        return [Outcome(message, error="empty message (no value)")]
    outcomes = []
    for route in routes:
        try:
            event = route.selector.select(route.decoder.decode(value))
        except (DecodeError, RowError) as error:
            return [Outcome(message, error=str(error))]
        outcomes.append(Outcome(message, event, selector=route.selector))
    return outcomes


def dead_letter_record(message: Message, error: str) -> bytes:
    value = message.value() or b""
    key = message.key()
    record = {
        "error": error,
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": message.timestamp()[1],
        "key_base64": base64.b64encode(key).decode() if key is not None else None,
        "value_base64": base64.b64encode(value).decode(),
        "value_text": value.decode("utf-8", errors="replace"),
    }
    return json.dumps(record, ensure_ascii=False).encode()


def position(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (always set on messages without an error)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _partition_list(partitions: list[TopicPartition]) -> str:
    return json.dumps(sorted(f"{p.topic}[{p.partition}]" for p in partitions))


def event_id(message: Message) -> str:
    return f"{message.topic()}:{message.partition()}:{message.offset()}"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (the loop finishes its batch) instead of killing the process mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StreamingJob:
    """Consumes a group-by's topics into its streaming dataset; `run()` returns the counts when it stops."""

    def __init__(
        self,
        group_by: GroupBy,
        store: KVStore,
        consumer_config: Mapping[str, Any],
        producer_config: Mapping[str, Any],
        routes: dict[str, list[Route]] | None = None,
        settings: JobSettings | None = None,
        log: TextIO = sys.stderr,
        warehouse_root: str | None = None,
    ):
        self.group_by = group_by
        self.store = store
        self.routes = routes if routes is not None else routes_for(group_by, store, warehouse_root)
        self.consumer_config = dict(consumer_config)
        self.producer_config = dict(producer_config)
        self.settings = settings or JobSettings()
        self.writer = StreamingWriter(store, group_by)
        self.writer.key_types()  # read once while the store is known to answer (it is cached from then on)
        self.log = log
        self.stop = threading.Event()
        self.counts = Counts()
        self._unrecorded = Counts()  # counted, not yet added to the status document
        self._next_status = 0.0
        self.last_event_ts: int | None = None  # the newest event time this process applied
        self._producer: Producer | None = None
        self._dlq_errors: list[str] = []
        self._dead_letter_lines = 0
        self._reported: tuple[int, ...] = ()

    @property
    def topics(self) -> list[str]:
        return sorted(self.routes)

    def dead_letter_topic(self, topic: str) -> str:
        return self.routes[topic][0].spec.dead_letter_topic

    def _say(self, line: str) -> None:
        print(line, file=self.log, flush=True)

    # ------------------------------------------------------------------------------------------- loop
    def run(
        self, from_beginning: bool = False, max_events: int | None = None, max_seconds: float | None = None
    ) -> Counts:
        consumer = Consumer(self.consumer_config)
        started = time.monotonic()
        deadline = started + max_seconds if max_seconds is not None else None
        next_progress = started + self.settings.progress_interval_s
        next_retention = started  # once at start, then every interval

        rewound: set[tuple[str, int]] = set()

        def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
            self._say(f"assigned: {_partition_list(partitions)}")
            if from_beginning:
                # Once per partition: a later rebalance resumes from the commits made since.
                for partition in partitions:
                    if (partition.topic, partition.partition) not in rewound:
                        partition.offset = OFFSET_BEGINNING
                        rewound.add((partition.topic, partition.partition))
                c.assign(partitions)

        def on_revoke(_c: Consumer, partitions: list[TopicPartition]) -> None:
            # Nothing is pending here: every handled batch was committed before the next poll.
            self._say(f"revoked: {_partition_list(partitions)}")

        consumer.subscribe(self.topics, on_assign=on_assign, on_revoke=on_revoke)
        self._say(
            f"streaming {self.group_by.name}: {', '.join(self.topics)} -> {self.group_by.streaming_dataset} "
            f"(consumer group {self.consumer_config.get('group.id')})"
        )
        try:
            with stop_on_signals(self.stop):
                while not self.stop.is_set():
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    if max_events is not None and self.counts.messages >= max_events:
                        break
                    wanted = self.settings.batch_size
                    if max_events is not None:
                        wanted = min(wanted, max_events - self.counts.messages)
                    messages = [m for m in consumer.consume(wanted, self.settings.poll_timeout_s) if self._usable(m)]
                    if messages:
                        self._handle(consumer, messages)
                    now = time.monotonic()
                    if (self._unrecorded.messages or self._unrecorded.retention_removed) and now >= self._next_status:
                        self._record_status(consumer)
                    if now >= next_retention:
                        self._apply_retention()
                        next_retention = now + self.settings.retention_interval_s
                    if now >= next_progress:
                        self._progress()
                        next_progress = now + self.settings.progress_interval_s
            if self._unrecorded.messages or self._unrecorded.retention_removed:
                self._record_status(consumer)
        finally:
            consumer.close()
            if self._producer is not None:
                self._producer.flush(self.settings.dlq_flush_timeout_s)
        self._progress(final=True)
        return self.counts

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            self._say(f"kafka: {error}")
        return False

    def _handle(self, consumer: Consumer, messages: list[Message]) -> None:
        outcomes = [o for m in messages for o in route_message(self.routes[position(m)[0]], m)]
        batch = Counts(messages=len(messages))
        dead = [o for o in outcomes if o.error is not None]
        documents = []
        for outcome in outcomes:
            if outcome.error is not None:
                continue
            if outcome.event is None:
                batch.filtered += 1
                continue
            try:
                document = self.writer.document(
                    StreamingEvent(outcome.event.key, outcome.event.ts, outcome.event.values, event_id(outcome.message))
                )
            except InvalidKey as error:
                dead.append(Outcome(outcome.message, error=str(error)))
                continue
            if document is None:
                batch.filtered += 1
            else:
                documents.append(document)
        if dead:
            self._send_dead_letters(consumer, dead)
            batch.dead_lettered = len(dead)
            for outcome in dead[: max(0, DEAD_LETTER_LINES - self._dead_letter_lines)]:
                topic, partition, offset = position(outcome.message)
                self._say(
                    f"dead letter {topic}[{partition}]@{offset} -> {self.dead_letter_topic(topic)}: {outcome.error}"
                )
            self._dead_letter_lines += len(dead)
        if documents:
            self._write(consumer, documents)
            batch.applied = len(documents)
        self._commit(consumer, messages)
        self.counts.add(batch)
        self._unrecorded.add(batch)
        newest = max((o.event.ts for o in outcomes if o.event is not None), default=None)
        if newest is not None:
            self.last_event_ts = max(self.last_event_ts or newest, newest)

    def _record_status(self, consumer: Consumer) -> None:
        """Add the counts since the last record to the status document: at most once per `status_interval_s`,
        one small write instead of one per batch, which shortens the path from event to fetch under load."""
        self._next_status = time.monotonic() + self.settings.status_interval_s
        counts, self._unrecorded = self._unrecorded, Counts()
        fields: dict[str, Any] = {"topics": self.topics, "consumer_group": self.consumer_config.get("group.id")}
        if self.last_event_ts is not None:
            fields["last_event_ts"] = self.last_event_ts
        self._retry_store(consumer, lambda: status.record(self.store, self.group_by, counts.as_status(), **fields))

    # ------------------------------------------------------------------------------------------- durability
    def _write(self, consumer: Consumer, documents: list[dict[str, Any]]) -> None:
        dataset = self.group_by.streaming_dataset
        self._retry_store(consumer, lambda: self.store.append(dataset, documents))

    def _retry_store(self, consumer: Consumer, action: Callable[[], object]) -> None:
        """Run a store write until it succeeds; meanwhile the partitions are paused (nothing new is read, nothing
        committed) and the consumer keeps polling so it stays in its group."""
        delay = self.settings.retry_initial_s
        paused: list[TopicPartition] = []
        while True:
            try:
                action()
                break
            except (StoreUnavailable, LoadError) as error:
                if not paused:
                    paused = consumer.assignment()
                    consumer.pause(paused)
                    self._say(f"online store unavailable, consumption paused (retrying): {str(error)[:200]}")
                if self.stop.is_set():
                    raise SystemExit(
                        f"stopped while the online store was unavailable; nothing of the batch was committed: {error}"
                    ) from None
                consumer.poll(min(delay, 1.0))
                time.sleep(max(0.0, delay - 1.0))
                delay = min(delay * 2, self.settings.retry_max_s)
        if paused:
            consumer.resume(paused)
            self._say("online store reachable again, consumption resumed")

    def _send_dead_letters(self, consumer: Consumer, dead: list[Outcome]) -> None:
        producer = self._dead_letter_producer()
        delay = self.settings.retry_initial_s
        while True:
            self._dlq_errors = []
            for outcome in dead:
                message = outcome.message
                producer.produce(
                    self.dead_letter_topic(position(message)[0]),
                    value=dead_letter_record(message, outcome.error or ""),
                    key=message.key(),
                    headers={
                        "error": (outcome.error or "")[:1000],
                        "source_topic": message.topic(),
                        "source_partition": str(message.partition()),
                        "source_offset": str(message.offset()),
                    },
                    on_delivery=self._on_dead_letter_delivery,
                )
            remaining = producer.flush(self.settings.dlq_flush_timeout_s)
            if remaining == 0 and not self._dlq_errors:
                return
            self._say(
                f"dead-letter topic not written ({remaining} pending, errors: {'; '.join(self._dlq_errors[:3])}); "
                "retrying, nothing committed meanwhile"
            )
            if self.stop.is_set():
                raise SystemExit("stopped while the dead-letter topic could not be written; nothing was committed")
            consumer.poll(min(delay, 1.0))
            delay = min(delay * 2, self.settings.retry_max_s)

    def _on_dead_letter_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._dlq_errors.append(str(error))

    def _dead_letter_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.producer_config)
        return self._producer

    def _commit(self, consumer: Consumer, messages: list[Message]) -> None:
        positions: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = position(message)
            positions[(topic, partition)] = max(positions.get((topic, partition), -1), offset + 1)
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            # A rebalance took the partitions away: their new owner re-reads from the last commit and the writes
            # above are idempotent, so this loses and doubles nothing.
            self._say(f"commit not accepted ({error}); the partitions' new owner replays this batch")

    # ------------------------------------------------------------------------------------------- upkeep
    def _apply_retention(self) -> None:
        try:
            versions = batch_versions(self.store, self.group_by.name)
            if not versions:
                return
            cutoff = end_of_day_millis(max(versions)) - self.settings.retention_grace_millis
            removed = self.store.delete_before(self.group_by.streaming_dataset, cutoff)
        except (StoreUnavailable, LoadError) as error:
            self._say(f"retention skipped, online store unavailable: {str(error)[:200]}")
            return
        if removed:
            self.counts.retention_removed += removed
            self._unrecorded.retention_removed += removed
            self._say(f"retention: removed {removed} streaming document(s) older than {cutoff}")

    def _progress(self, final: bool = False) -> None:
        c = self.counts
        self._dead_letter_lines = 0
        state = (c.messages, c.retention_removed)
        if state == self._reported and not final:
            return  # idle: nothing new to say
        self._reported = state
        prefix = "stopped" if final else "progress"
        self._say(
            f"{prefix}: {c.messages} message(s), applied {c.applied}, filtered {c.filtered}, "
            f"dead-lettered {c.dead_lettered}"
        )


# --------------------------------------------------------------------------------------------- debug mode
def local_streaming(
    group_by: GroupBy,
    routes: dict[str, list[Route]],
    consumer_config: Mapping[str, Any],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    from_beginning: bool = False,
    max_events: int | None = None,
    max_seconds: float | None = None,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """The streaming job in debug mode: prints each event as Chronon's local-streaming does and writes nothing.
    Reads from the latest offsets (or the beginning), in a throwaway consumer group that commits nothing.
    Returns the number of messages read."""
    config = {**consumer_config, "group.id": f"local-streaming.{uuid.uuid4().hex[:12]}", "enable.auto.commit": False}
    consumer = Consumer(config)
    stop = threading.Event()
    assigned = threading.Event()

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            # The latest offset as a number, resolved now: a message sent once "listening" is printed is read.
            partition.offset = OFFSET_BEGINNING if from_beginning else c.get_watermark_offsets(partition, timeout=10)[1]
        c.assign(partitions)
        assigned.set()

    consumer.subscribe(sorted(routes), on_assign=on_assign)
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    read = 0
    announced = False
    try:
        with stop_on_signals(stop):
            while not stop.is_set() and (max_events is None or read < max_events):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                message = consumer.poll(0.1)
                if assigned.is_set() and not announced:
                    announced = True
                    where = "the beginning" if from_beginning else "the latest offset"
                    print(f"listening on {', '.join(sorted(routes))} from {where}", file=err, flush=True)
                    if on_listening is not None:
                        on_listening()
                if message is None or message.error() is not None:
                    continue
                read += 1
                for outcome in route_message(routes[position(message)[0]], message):
                    at = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                    if outcome.error is not None:
                        print(f"skipped {at}: {outcome.error}", file=err, flush=True)
                    elif outcome.event is None:
                        print(
                            f"filtered {at}: dropped by the query's wheres, or a null key or time", file=err, flush=True
                        )
                    elif outcome.selector is not None:
                        print(outcome.selector.describe(outcome.event), file=out, flush=True)
    finally:
        consumer.close()
    return read


__all__ = [
    "Counts",
    "JobSettings",
    "NotStreamable",
    "Route",
    "StreamingJob",
    "dead_letter_record",
    "local_streaming",
    "routes_for",
    "status",
]
