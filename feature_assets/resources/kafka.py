"""Dagster resource for Kafka (or any broker speaking its protocol): clients and topics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import ConfigurableResource

ADMIN_TIMEOUT_S = 10.0


class KafkaResource(ConfigurableResource):
    """Producers, consumers and an admin client for one Kafka cluster.

    ``bootstrap_servers`` comes from ``EnvVar("FEATURE_ASSETS_KAFKA_BOOTSTRAP")``; SASL
    credentials, when the cluster needs them, from environment variables too.
    """

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    group_prefix: str = "feature-assets"

    def client_config(self) -> dict[str, Any]:
        """Connection settings shared by every client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
        }
        config.update({key: value for key, value in optional.items() if value})
        return config

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
