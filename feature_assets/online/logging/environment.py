"""The fetch logger the CLI and the HTTP service create, chosen by the environment:

- `FEATURE_ASSETS_FETCH_LOG`: `mongo` (default: the `fetch_log` collection of the online store's database),
  `kafka`, or `off`;
- `FEATURE_ASSETS_FETCH_LOG_TOPIC`: the Kafka topic (default `fetch_log`), on the brokers of
  `FEATURE_ASSETS_KAFKA_BOOTSTRAP`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from feature_assets.online.logging.logger import FetchLogger
from feature_assets.online.logging.sinks.kafka import DEFAULT_TOPIC, KafkaLogSink
from feature_assets.online.logging.sinks.mongo import MongoLogSink

FETCH_LOG_ENV = "FEATURE_ASSETS_FETCH_LOG"
FETCH_LOG_TOPIC_ENV = "FEATURE_ASSETS_FETCH_LOG_TOPIC"
KAFKA_BOOTSTRAP_ENV = "FEATURE_ASSETS_KAFKA_BOOTSTRAP"
CHOICES = ("mongo", "kafka", "off")


class FetchLogConfigError(ValueError):
    pass


def logger_from_environment(store: Any, environ: Mapping[str, str] | None = None) -> FetchLogger | None:
    """A logger writing where the environment says, or None (`off`, or `mongo` on a store without a MongoDB
    database, such as the in-memory store)."""
    environ = os.environ if environ is None else environ
    choice = (environ.get(FETCH_LOG_ENV) or "mongo").strip().lower()
    if choice not in CHOICES:
        raise FetchLogConfigError(
            f"{FETCH_LOG_ENV}={environ.get(FETCH_LOG_ENV)!r}: expected one of {', '.join(CHOICES)}"
        )
    if choice == "off":
        return None
    if choice == "kafka":
        bootstrap = environ.get(KAFKA_BOOTSTRAP_ENV)
        if not bootstrap:
            raise FetchLogConfigError(f"{FETCH_LOG_ENV}=kafka needs {KAFKA_BOOTSTRAP_ENV} (the brokers to log to)")
        topic = environ.get(FETCH_LOG_TOPIC_ENV) or DEFAULT_TOPIC
        return FetchLogger(KafkaLogSink({"bootstrap.servers": bootstrap}, topic))
    database = getattr(store, "db", None)
    if database is None:
        return None
    return FetchLogger(MongoLogSink(database))
