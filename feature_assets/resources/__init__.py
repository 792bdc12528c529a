"""Dagster resources (Spark, MongoDB, Kafka), keyed by environment; secrets only via EnvVar."""

from __future__ import annotations

import os

from dagster import ConfigurableResource, EnvVar

from feature_assets.resources.kafka import BOOTSTRAP_ENV as KAFKA_BOOTSTRAP_ENV
from feature_assets.resources.kafka import OPTIONAL_ENV_FIELDS as OPTIONAL_KAFKA_FIELDS
from feature_assets.resources.kafka import KafkaResource
from feature_assets.resources.mongo import MongoResource
from feature_assets.resources.spark import SparkResource
from feature_assets.resources.warehouse import WarehouseResource

ENVIRONMENT_ENV = "FEATURE_ASSETS_ENV"
DEFAULT_ENVIRONMENT = "local"
ENVIRONMENTS = ("local", "production")

# Optional settings: passed to the resource as EnvVar only when the variable is set, because
# Dagster fails a run on an EnvVar whose variable is missing.
OPTIONAL_MONGO_FIELDS = {
    "database": "FEATURE_ASSETS_MONGO_DATABASE",
    "username": "FEATURE_ASSETS_MONGO_USERNAME",
    "password": "FEATURE_ASSETS_MONGO_PASSWORD",
}
# OPTIONAL_KAFKA_FIELDS (security protocol, SASL, SSL) live beside KafkaResource, which reads them outside Dagster too.


def resources_for_environment(env: str | None = None) -> dict[str, ConfigurableResource]:
    """Resources for ``env`` (default: ``$FEATURE_ASSETS_ENV``, else ``local``).

    Keys: ``spark``, ``mongo``, ``kafka``. Addresses and credentials are read through
    ``dagster.EnvVar`` so they never appear in code or in the UI.
    """
    env = env or os.environ.get(ENVIRONMENT_ENV) or DEFAULT_ENVIRONMENT
    if env not in ENVIRONMENTS:
        raise ValueError(f"Unknown {ENVIRONMENT_ENV}={env!r}; expected one of {ENVIRONMENTS}")
    return {
        "spark": _spark_resource(env),
        "warehouse": WarehouseResource(**_env_vars_if_set({"root": "FEATURE_ASSETS_WAREHOUSE"})),
        "mongo": MongoResource(uri=EnvVar("FEATURE_ASSETS_MONGO_URI"), **_env_vars_if_set(OPTIONAL_MONGO_FIELDS)),
        "kafka": KafkaResource(
            bootstrap_servers=EnvVar(KAFKA_BOOTSTRAP_ENV),
            **_env_vars_if_set(OPTIONAL_KAFKA_FIELDS),
        ),
    }


def _spark_resource(env: str) -> SparkResource:
    # Locally the variable is optional (a cluster next to the laptop); in production it is required.
    if env == "production" or os.environ.get("FEATURE_ASSETS_SPARK_MASTER"):
        return SparkResource(master=EnvVar("FEATURE_ASSETS_SPARK_MASTER"))
    return SparkResource(master="local[*]")


def _env_vars_if_set(fields: dict[str, str]) -> dict[str, EnvVar]:
    return {field: EnvVar(name) for field, name in fields.items() if os.environ.get(name)}


__all__ = [
    "KafkaResource",
    "MongoResource",
    "SparkResource",
    "WarehouseResource",
    "resources_for_environment",
]
