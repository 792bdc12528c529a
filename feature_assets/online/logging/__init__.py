"""Fetch logging: encoding of served keys and values (`codec`), sampling, and the buffered background writer
(`logger`) to a sink (`sinks`: MongoDB or Kafka), chosen from the environment by `environment`."""

from feature_assets.online.logging.codec import JoinCodec, parse_schema_json, schema_hash, schema_json
from feature_assets.online.logging.environment import (
    FETCH_LOG_ENV,
    FETCH_LOG_TOPIC_ENV,
    FetchLogConfigError,
    logger_from_environment,
)
from feature_assets.online.logging.logger import SCHEMA_PUBLISH_EVENT, FetchLogger, LogCounters
from feature_assets.online.logging.sampling import is_sampled, md5_long
from feature_assets.online.logging.sinks.base import LogRecord, LogSink, MemorySink

__all__ = [
    "FETCH_LOG_ENV",
    "FETCH_LOG_TOPIC_ENV",
    "SCHEMA_PUBLISH_EVENT",
    "FetchLogConfigError",
    "FetchLogger",
    "JoinCodec",
    "LogCounters",
    "LogRecord",
    "LogSink",
    "MemorySink",
    "is_sampled",
    "logger_from_environment",
    "md5_long",
    "parse_schema_json",
    "schema_hash",
    "schema_json",
]
