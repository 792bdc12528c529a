"""The Kafka sink: one message per record on the `fetch_log` topic (configurable), value = the record as JSON,
key = the record's id (a retried batch may deliver a record twice; readers drop repeated ids)."""

from __future__ import annotations

import json
import time
from typing import Any

from feature_assets.online.logging.sinks.base import LogRecord, LogSink

DEFAULT_TOPIC = "fetch_log"
# produce() holds the GIL, which the writer shares with the fetches: it lets them run every few dozen messages
# (about 100 us) rather than hold them up for a whole batch.
_YIELD_EVERY = 32
# A record as the sink sends it: the message's key and value.
EncodedRecord = tuple[bytes, bytes]


class KafkaLogSink(LogSink[EncodedRecord]):
    def __init__(self, config: dict[str, Any], topic: str = DEFAULT_TOPIC, timeout: float = 10.0):
        self.topic = topic
        self.timeout = timeout
        from confluent_kafka import Producer  # only loaded when logging to Kafka (keeps `fetch` quick)

        # Delivery reports of failed messages only: one Python callback per batch error, not per message.
        self.producer = Producer(
            {
                "linger.ms": 20,
                "message.timeout.ms": int(timeout * 1000),
                "delivery.report.only.error": True,
                **config,
            }
        )

    def encode(self, record: LogRecord, record_id: str) -> EncodedRecord:
        return record_id.encode("ascii"), json.dumps(record, separators=(",", ":")).encode("utf-8")

    def write_encoded(self, batch: list[EncodedRecord]) -> None:
        from confluent_kafka import KafkaException

        errors: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(str(error))

        for index, (key, payload) in enumerate(batch):
            if index % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)
            try:
                self.producer.produce(self.topic, value=payload, key=key, on_delivery=delivered)
            except BufferError:
                self.producer.flush(self.timeout)
                self.producer.produce(self.topic, value=payload, key=key, on_delivery=delivered)
        remaining = self.producer.flush(self.timeout)
        if errors or remaining:
            detail = errors[0] if errors else f"{remaining} messages undelivered after {self.timeout}s"
            raise KafkaException(f"topic {self.topic!r}: {detail}")

    def close(self) -> None:
        self.producer.flush(self.timeout)

    def __repr__(self) -> str:
        return f"KafkaLogSink({self.topic})"
