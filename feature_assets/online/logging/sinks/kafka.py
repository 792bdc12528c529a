"""The Kafka sink: one message per record on the `fetch_log` topic (configurable), value = the record as JSON,
key = the record's id (a retried batch may deliver a record twice; readers drop repeated ids)."""

from __future__ import annotations

import json
from typing import Any

from feature_assets.online.logging.sinks.base import LogRecord

DEFAULT_TOPIC = "fetch_log"


class KafkaLogSink:
    def __init__(self, config: dict[str, Any], topic: str = DEFAULT_TOPIC, timeout: float = 10.0):
        self.topic = topic
        self.timeout = timeout
        from confluent_kafka import Producer  # only loaded when logging to Kafka (keeps `fetch` quick)

        self.producer = Producer({"linger.ms": 20, "message.timeout.ms": int(timeout * 1000), **config})

    def write(self, records: list[LogRecord], ids: list[str]) -> None:
        from confluent_kafka import KafkaException

        errors: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(str(error))

        for record, record_id in zip(records, ids):
            payload = json.dumps(record, separators=(",", ":")).encode("utf-8")
            try:
                self.producer.produce(self.topic, value=payload, key=record_id.encode("ascii"), on_delivery=delivered)
            except BufferError:
                self.producer.flush(self.timeout)
                self.producer.produce(self.topic, value=payload, key=record_id.encode("ascii"), on_delivery=delivered)
        remaining = self.producer.flush(self.timeout)
        if errors or remaining:
            detail = errors[0] if errors else f"{remaining} messages undelivered after {self.timeout}s"
            raise KafkaException(f"topic {self.topic!r}: {detail}")

    def close(self) -> None:
        self.producer.flush(self.timeout)

    def __repr__(self) -> str:
        return f"KafkaLogSink({self.topic})"
