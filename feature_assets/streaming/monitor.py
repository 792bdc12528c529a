"""What a streaming job has left to do, read from the broker: consumer lag and dead-letter topic sizes.

Queries only: the consumer made here never joins its group (no subscribe, no assign), so asking about a
group never triggers a rebalance of the running streaming consumers; it fetches the group's committed offsets
and the partitions' watermarks, and is closed before returning.

- consumer lag of a topic: the sum over its partitions of the high watermark minus the group's committed
  offset, or minus the low watermark when the group has committed nothing there (everything still in the
  topic is ahead of it). A committed offset below the low watermark (retention removed the events the group
  had not read) counts from the low watermark: those events can no longer be applied.
- messages in a dead-letter topic: the sum of high minus low watermarks.

A topic that does not exist counts 0 (a dead-letter topic is created by the first bad message; an input
topic may not have been written yet). Every query shares one deadline (`timeout` seconds); a broker that does
not answer by then raises `BrokerUnavailable`.

The local broker (tansu 0.6) reports a partition's high watermark as the base offset of its last record batch
plus one: after a producer sent several messages in one batch, the lag and sizes read here are too small
(never negative: each partition counts at least 0). Kafka itself reports the end of the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

DEFAULT_TIMEOUT_S = 10.0
_LOGGER = logging.getLogger(__name__)


class _DebugLog:
    """librdkafka's log lines at debug level: a broker that is down would otherwise print a connection error
    to stderr every 50 ms; the error raised here names the cause."""

    def log(self, level: int, message: str, *args: object) -> None:
        _LOGGER.debug(message, *args)


class MonitorError(RuntimeError):
    """A broker query that failed; the message names the broker, the topic or group, and the cause."""


class BrokerUnavailable(MonitorError):
    """The broker did not answer within the timeout."""


class _Deadline:
    def __init__(self, seconds: float, bootstrap: str) -> None:
        self.seconds = seconds
        self.bootstrap = bootstrap
        self.end = time.monotonic() + seconds

    def left(self, asking: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailable(self.no_answer(asking))
        return remaining

    def no_answer(self, asking: str, cause: object = None) -> str:
        reason = f": {cause}" if cause else ""
        return f"Kafka at {self.bootstrap} did not answer {asking} within {self.seconds:.3g} s{reason}"


def consumer_lag(
    client_config: Mapping[str, Any], group: str, topics: list[str], timeout: float = DEFAULT_TIMEOUT_S
) -> dict[str, int]:
    """{topic: events not yet committed by consumer group `group`} for each of `topics` (0 when missing)."""
    deadline = _Deadline(timeout, str(client_config.get("bootstrap.servers")))
    lags: dict[str, int] = {}
    with _querying_consumer(client_config, group) as consumer:
        for topic in topics:
            partitions = _partitions(consumer, topic, deadline)
            if not partitions:
                lags[topic] = 0
                continue
            committed = _committed(consumer, group, topic, partitions, deadline)
            lag = 0
            for partition in partitions:
                low, high = _watermarks(consumer, topic, partition, deadline)
                start = committed.get(partition, OFFSET_INVALID)
                lag += max(0, high - max(start, low))
            lags[topic] = lag
    return lags


def dead_letter_count(client_config: Mapping[str, Any], topic: str, timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Messages in the dead-letter topic `topic` (0 when it does not exist yet)."""
    deadline = _Deadline(timeout, str(client_config.get("bootstrap.servers")))
    # No group is read or written; librdkafka only needs a name to create a consumer.
    with _querying_consumer(client_config, "feature-assets.monitor") as consumer:
        count = 0
        for partition in _partitions(consumer, topic, deadline):
            low, high = _watermarks(consumer, topic, partition, deadline)
            count += max(0, high - low)
    return count


@contextmanager
def _querying_consumer(client_config: Mapping[str, Any], group: str) -> Iterator[Consumer]:
    consumer = Consumer(
        {
            **client_config,
            "group.id": group,
            "enable.auto.commit": False,
            # Asking about a topic must not create it on a broker that auto-creates topics.
            "allow.auto.create.topics": False,
            "logger": _DebugLog(),
        }
    )
    try:
        yield consumer
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topic: str, deadline: _Deadline) -> list[int]:
    """The partition ids of `topic`, [] when it does not exist."""
    asking = f"for the partitions of topic {topic!r}"
    try:
        metadata = consumer.list_topics(topic, timeout=deadline.left(asking))
    except KafkaException as error:
        raise _translate(error, deadline, asking) from error
    found = metadata.topics.get(topic)
    if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        return []
    if found.error is not None:
        raise MonitorError(f"Kafka at {deadline.bootstrap} refused the metadata of topic {topic!r}: {found.error}")
    return sorted(found.partitions)


def _committed(
    consumer: Consumer, group: str, topic: str, partitions: list[int], deadline: _Deadline
) -> dict[int, int]:
    asking = f"for the offsets consumer group {group!r} committed on topic {topic!r}"
    try:
        answers = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=deadline.left(asking))
    except KafkaException as error:
        raise _translate(error, deadline, asking) from error
    for answer in answers:
        if answer.error is not None:
            raise MonitorError(
                f"Kafka at {deadline.bootstrap} refused the committed offset of group {group!r} on "
                f"{topic}[{answer.partition}]: {answer.error}"
            )
    return {answer.partition: answer.offset for answer in answers}


def _watermarks(consumer: Consumer, topic: str, partition: int, deadline: _Deadline) -> tuple[int, int]:
    asking = f"for the watermarks of {topic}[{partition}]"
    try:
        answer = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=deadline.left(asking))
    except KafkaException as error:
        raise _translate(error, deadline, asking) from error
    if answer is None:
        raise BrokerUnavailable(deadline.no_answer(asking))
    low, high = answer
    return int(low), int(high)


def _translate(error: KafkaException, deadline: _Deadline, asking: str) -> MonitorError:
    kafka_error = error.args[0] if error.args else None
    code = kafka_error.code() if isinstance(kafka_error, KafkaError) else None
    if code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
        return BrokerUnavailable(deadline.no_answer(asking, kafka_error.str() if kafka_error else error))
    return MonitorError(f"Kafka at {deadline.bootstrap} refused a query {asking}: {error}")
