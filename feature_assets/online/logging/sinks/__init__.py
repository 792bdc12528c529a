"""Where fetch log records go: one `LogSink` interface, one module per backend (MongoDB, Kafka)."""

from feature_assets.online.logging.sinks.base import LogRecord, LogSink, MemorySink

__all__ = ["LogRecord", "LogSink", "MemorySink"]
