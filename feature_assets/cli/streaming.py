"""Streaming commands: `streaming` (the job), `local-streaming` (its debug print) and `produce` (stdin lines to a
topic, like kafka-console-producer).

Kafka settings come from the environment (`FEATURE_ASSETS_KAFKA_BOOTSTRAP`, SASL/SSL variables, see
`feature_assets.resources`); without a bootstrap address the embedded broker of the services folder is used
(started, or reused when another command runs it), and only then are missing topics created.
"""

from __future__ import annotations

import argparse
import os
import sys

from feature_assets.cli.arguments import UsageError, compiled_conf

# Commands whose services `cli.main` provides (see online.run_with_services).
NEEDS_KAFKA = {"local-streaming", "produce"}
NEEDS_KAFKA_AND_MONGO = {"streaming"}
MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
# Partitions of a topic created on the embedded broker.
DEFAULT_LOCAL_PARTITIONS = 1


def kafka_settings():
    """The Kafka resource built from the environment's plain values (this process runs outside Dagster)."""
    from feature_assets.resources.kafka import KafkaResource

    try:
        return KafkaResource.from_environment()
    except ValueError as error:
        raise UsageError(str(error)) from None


def _streamed_group_by(conf_arg: str):
    from feature_assets.compiler import load_compiled_file
    from feature_assets.model import GroupBy

    config = load_compiled_file(compiled_conf(conf_arg))
    if not isinstance(config, GroupBy):
        raise UsageError(f"{conf_arg} is not a group-by: streaming runs per group-by (production/group_bys/...)")
    return config


def _routes(group_by, store):
    from feature_assets.compiler.errors import CompileError
    from feature_assets.model.topics import TopicSpecError
    from feature_assets.streaming.decoders import UnknownDecoder
    from feature_assets.streaming.events import QueryNotStreamable
    from feature_assets.streaming.job import NotStreamable, routes_for
    from feature_assets.streaming.schemas import SchemaNotFound

    try:
        return routes_for(group_by, store)
    except (NotStreamable, SchemaNotFound, QueryNotStreamable, UnknownDecoder, TopicSpecError, CompileError) as error:
        raise UsageError(str(error)) from None


def _prepare_topics(args: argparse.Namespace, kafka, routes) -> None:
    """On the embedded broker, create the topics (and dead-letter topics) that do not exist yet."""
    if not getattr(args, "embedded_kafka", False):
        return
    names = set(routes) | {route.spec.dead_letter_topic for group in routes.values() for route in group}
    kafka.ensure_topics(sorted(names), partitions=DEFAULT_LOCAL_PARTITIONS)


def cmd_streaming(args: argparse.Namespace) -> int:
    from feature_assets.online.store import DEFAULT_DATABASE, MongoKVStore
    from feature_assets.streaming.job import JobSettings, StreamingJob
    from feature_assets.streaming.status import consumer_group_id

    group_by = _streamed_group_by(args.conf)
    if not group_by.online:
        raise UsageError(f"{group_by.name} is not online (online=True): fetches would never read what it streams")
    store = MongoKVStore.from_uri(
        os.environ[MONGO_URI_ENV], os.environ.get("FEATURE_ASSETS_MONGO_DATABASE", DEFAULT_DATABASE)
    )
    routes = _routes(group_by, store)
    kafka = kafka_settings()
    _prepare_topics(args, kafka, routes)
    settings = JobSettings(batch_size=args.batch_size)
    job = StreamingJob(
        group_by,
        store,
        kafka.consumer_config(consumer_group_id(group_by)),
        kafka.producer_config(),
        routes=routes,
        settings=settings,
    )
    try:
        job.run(from_beginning=args.from_beginning, max_events=args.max_events, max_seconds=args.max_seconds)
    finally:
        store.close()
    return 0


def cmd_local_streaming(args: argparse.Namespace) -> int:
    from feature_assets.online.store import DEFAULT_DATABASE, MongoKVStore
    from feature_assets.streaming.job import local_streaming

    group_by = _streamed_group_by(args.conf)
    # The store only lends the recorded schemas; without one the warehouse has them.
    uri = os.environ.get(MONGO_URI_ENV)
    store = (
        MongoKVStore.from_uri(uri, os.environ.get("FEATURE_ASSETS_MONGO_DATABASE", DEFAULT_DATABASE)) if uri else None
    )
    try:
        routes = _routes(group_by, store)
    finally:
        if store is not None:
            store.close()
    kafka = kafka_settings()
    _prepare_topics(args, kafka, routes)
    local_streaming(
        group_by,
        routes,
        kafka.consumer_config("local-streaming"),
        from_beginning=args.from_beginning,
        max_events=args.max_events,
        max_seconds=args.max_seconds,
    )
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from feature_assets.model.topics import TOPIC_NAME

    if not TOPIC_NAME.match(args.topic):
        raise UsageError(f"--topic {args.topic!r} is not a valid Kafka topic name")
    kafka = kafka_settings()
    if getattr(args, "embedded_kafka", False):
        kafka.ensure_topics([args.topic], partitions=args.partitions)
        started_here = any(s.name == "kafka" for s in getattr(args.local_services, "started", []))
        if started_here:
            print(
                "note: no other command uses the embedded broker, and it keeps no data once it stops (at the end of "
                "this command): start `feature-assets streaming` or `local-streaming` first in another terminal",
                file=sys.stderr,
            )
    producer = kafka.producer()
    failures: list[str] = []

    def delivered(error, _message) -> None:
        if error is not None:
            failures.append(str(error))

    sent = 0
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if not line:
            continue
        producer.produce(args.topic, value=line.encode(), on_delivery=delivered)
        producer.poll(0)
        sent += 1
    remaining = producer.flush(30)
    if remaining or failures:
        print(
            f"feature-assets produce: {remaining + len(failures)} of {sent} message(s) not delivered: "
            f"{'; '.join(failures[:3]) or 'timed out'}",
            file=sys.stderr,
        )
        return 1
    print(f"sent {sent} message(s) to {args.topic}", file=sys.stderr)
    return 0


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than 0")
    return number


def _count(value: str) -> int:
    number = _positive(value)
    if not float(number).is_integer():
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number")
    return int(number)


def add_streaming_commands(commands) -> None:
    conf_help = "a compiled group-by with a topic, e.g. production/group_bys/quickstart/returns.v1"
    stop_help = ("stop after N messages", "stop after T seconds")

    streaming = commands.add_parser(
        "streaming", help="the streaming job: a group-by's topic events into its online streaming dataset"
    )
    streaming.add_argument("--conf", required=True, help=conf_help)
    streaming.add_argument(
        "--from-beginning",
        action="store_true",
        help="re-read the topics from their first offset (writes are idempotent)",
    )
    streaming.add_argument("--max-events", type=_count, metavar="N", help=stop_help[0])
    streaming.add_argument("--max-seconds", type=_positive, metavar="T", help=stop_help[1])
    streaming.add_argument("--batch-size", type=_count, default=1000, help="messages per write and commit")
    streaming.set_defaults(func=cmd_streaming)

    local = commands.add_parser(
        "local-streaming",
        help="debug mode of the streaming job: print each event (keys, values, Avro bytes), write nothing",
    )
    local.add_argument("--conf", required=True, help=conf_help)
    local.add_argument("--from-beginning", action="store_true", help="read from the first offset, not the latest")
    local.add_argument("--max-events", type=_count, metavar="N", help=stop_help[0])
    local.add_argument("--max-seconds", type=_positive, metavar="T", help=stop_help[1])
    local.set_defaults(func=cmd_local_streaming)

    produce = commands.add_parser("produce", help="send each line of stdin as one message to a topic")
    produce.add_argument("--topic", required=True, help="e.g. events.returns")
    produce.add_argument(
        "--partitions",
        type=_count,
        default=DEFAULT_LOCAL_PARTITIONS,
        help="partitions of a topic created on the embedded broker",
    )
    produce.set_defaults(func=cmd_produce)
