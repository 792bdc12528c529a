"""Dagster resource for Kafka (or any broker speaking its protocol): clients and topics."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import ConfigurableResource

ADMIN_TIMEOUT_S = 10.0

BOOTSTRAP_ENV = "FEATURE_ASSETS_KAFKA_BOOTSTRAP"
# Resource field -> the environment variable that sets it; unset variables leave the field at its default.
OPTIONAL_ENV_FIELDS = {
    "security_protocol": "FEATURE_ASSETS_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "FEATURE_ASSETS_KAFKA_SASL_MECHANISM",
    "sasl_username": "FEATURE_ASSETS_KAFKA_SASL_USERNAME",
    "sasl_password": "FEATURE_ASSETS_KAFKA_SASL_PASSWORD",
    "ssl_ca_location": "FEATURE_ASSETS_KAFKA_SSL_CA_LOCATION",
    "ssl_certificate_location": "FEATURE_ASSETS_KAFKA_SSL_CERTIFICATE_LOCATION",
    "ssl_key_location": "FEATURE_ASSETS_KAFKA_SSL_KEY_LOCATION",
    "ssl_key_password": "FEATURE_ASSETS_KAFKA_SSL_KEY_PASSWORD",
}
# Resource field -> librdkafka setting, passed on only when set.
_OPTIONAL_CLIENT_SETTINGS = {
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_ca_location": "ssl.ca.location",
    "ssl_certificate_location": "ssl.certificate.location",
    "ssl_key_location": "ssl.key.location",
    "ssl_key_password": "ssl.key.password",
}


class KafkaResource(ConfigurableResource):
    """Producers, consumers and an admin client for one Kafka cluster.

    ``bootstrap_servers`` comes from ``EnvVar("FEATURE_ASSETS_KAFKA_BOOTSTRAP")``; the security
    protocol, SASL credentials and SSL files (CA, client certificate and key, the key's password), when the
    cluster needs them, from the environment variables of ``OPTIONAL_ENV_FIELDS`` (``SASL_SSL`` or ``SSL``
    in ``FEATURE_ASSETS_KAFKA_SECURITY_PROTOCOL`` turns TLS on).
    """

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    group_prefix: str = "feature-assets"

    def client_config(self) -> dict[str, Any]:
        """Connection settings shared by every client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        for field, setting in _OPTIONAL_CLIENT_SETTINGS.items():
            value = getattr(self, field)
            if value:
                config[setting] = value
        return config

    @classmethod
    def from_environment(
        cls, default_bootstrap: str | None = None, environ: Mapping[str, str] | None = None
    ) -> KafkaResource:
        """The resource outside Dagster (the CLI's Kafka commands), from the same variables as in Dagster;
        ``default_bootstrap`` (an embedded broker) serves when ``FEATURE_ASSETS_KAFKA_BOOTSTRAP`` is unset."""
        environ = os.environ if environ is None else environ
        bootstrap = environ.get(BOOTSTRAP_ENV) or default_bootstrap
        if not bootstrap:
            raise ValueError(f"no Kafka bootstrap servers: set {BOOTSTRAP_ENV}")
        settings = {field: environ[name] for field, name in OPTIONAL_ENV_FIELDS.items() if environ.get(name)}
        return cls(bootstrap_servers=bootstrap, **settings)

    def producer_config(self) -> dict[str, Any]:
        # Idempotence keeps retried sends from writing duplicates.
        return {**self.client_config(), "acks": "all", "enable.idempotence": True}

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        return {
            **self.client_config(),
            "group.id": self.group_name(group_id),
            # Short sessions: with the defaults every group join on the local broker (tansu)
            # waits about 22 s; harmless on a real cluster.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            # Callers commit after they have stored what they consumed.
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # A fetch waits at most this long for data. Kafka answers as soon as one byte is there, but brokers
            # that only answer at the deadline (tansu) would add up to librdkafka's default 500 ms to every event's
            # path from send to fetchable.
            "fetch.wait.max.ms": 50,
        }

    def group_name(self, group_id: str) -> str:
        return f"{self.group_prefix}.{group_id}" if self.group_prefix else group_id

    def admin(self) -> AdminClient:
        return AdminClient(self.client_config())

    def producer(self) -> Producer:
        return Producer(self.producer_config())

    def consumer(self, group_id: str, topics: Iterable[str]) -> Consumer:
        """A consumer in group ``<group_prefix>.<group_id>``, subscribed to ``topics``."""
        consumer = Consumer(self.consumer_config(group_id))
        consumer.subscribe(list(topics))
        return consumer

    def ensure_topics(self, names: Iterable[str], partitions: int = 1, replication_factor: int = 1) -> list[str]:
        """Create the topics that do not exist yet; returns the names created."""
        admin = self.admin()
        existing = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        missing = sorted(set(names) - set(existing))
        if not missing:
            return []
        new_topics = [NewTopic(name, partitions, replication_factor) for name in missing]
        futures = admin.create_topics(new_topics, operation_timeout=ADMIN_TIMEOUT_S)
        for future in futures.values():
            try:
                future.result(timeout=ADMIN_TIMEOUT_S)
            except KafkaException as error:
                # Another process may have created it in the meantime.
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return missing
