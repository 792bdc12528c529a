"""Streaming in the asset graph: Kafka topics, the streaming datasets they feed, and a sensor observing both.

For every online group-by with a topic (an `EventSource.topic` or an `EntitySource.mutation_topic`):
- `kafka/{topic}` (group `streaming`): the topic, written by the producers outside this platform (services,
  `feature-assets produce` locally); its dead-letter topic holds the messages the streaming job could not use;
- `online/{GROUP_BY}_STREAMING` (the group-by's team group, beside `_BATCH`): the events the streaming job
  (`feature-assets streaming --conf ...`, a long-running process beside Dagster, not a run) wrote to MongoDB.
  It depends on its topics, and on the batch load, because fetches merge the two and retention removes the
  streaming documents older than the newest loaded batch's end (less a grace period).

Both are external assets: continuous streams, unpartitioned while everything else is daily-partitioned, never
materialized by Dagster. The sensor `streaming_observations` records on them, every 30 s, numeric observations
the UI plots: on a topic its consumer lag and dead-letter topic size (from the broker), on a streaming dataset
the job's counters (from its status document in the online store, see `streaming.status`) and its lag.

The sensor runs by default when both servers are configured: a server that does not answer makes a tick skip,
naming it, and what the other server answered is still recorded (the lag keeps growing while the store is
down, which is when it matters). Worst case a tick waits for the MongoDB client's server selection timeout
plus `KAFKA_TIMEOUT_S`. Without a configured address (plain `dagster dev` without the variables) every tick
would fail on the missing setting, so the sensor then starts stopped.
"""

# No `from __future__ import annotations`: Dagster reads the sensor's annotations as resource types.
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    AssetSpec,
    DefaultSensorStatus,
    EnvVar,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from pymongo.errors import PyMongoError

from feature_assets.compiler.compile import compiled_path
from feature_assets.definitions.online_assets import load_asset_key, online_group_bys
from feature_assets.model import GROUP_BYS, GroupBy
from feature_assets.model.configs import CompiledRepo
from feature_assets.model.topics import TopicSpec, parse_topic
from feature_assets.online.store import KVStore, MongoKVStore, StoreUnavailable
from feature_assets.resources.kafka import KafkaResource
from feature_assets.resources.mongo import MongoResource
from feature_assets.streaming import monitor, status

STREAMING_GROUP = "streaming"
SENSOR_NAME = "streaming_observations"
SENSOR_INTERVAL_S = 30
# The broker's share of a tick (Dagster gives a sensor 60 s): every Kafka query of the tick shares it.
KAFKA_TIMEOUT_S = 10.0
CONTINUOUS_NOTE = (
    "A continuous stream: unpartitioned (every other asset here is daily-partitioned) and never materialized "
    f"by Dagster; the sensor `{SENSOR_NAME}` records its numbers every {SENSOR_INTERVAL_S} s as observations."
)


def streaming_group_bys(compiled: CompiledRepo) -> dict[str, GroupBy]:
    """Online group-bys with at least one topic, by name."""
    return {name: group_by for name, group_by in online_group_bys(compiled).items() if group_by.topics}


def topic_specs(group_by: GroupBy) -> list[TopicSpec]:
    return [parse_topic(topic) for topic in group_by.topics]


def topic_asset_key(topic: str) -> AssetKey:
    return AssetKey(["kafka", topic])


def streaming_asset_key(group_by: GroupBy) -> AssetKey:
    return AssetKey(["online", group_by.streaming_dataset])


def streaming_command(group_by: GroupBy) -> str:
    return f"feature-assets streaming --conf {compiled_path(Path(), GROUP_BYS, group_by.name)}"


@dataclass
class _Topic:
    """A topic and what reads it: one asset, however many group-bys stream from it."""

    name: str
    dead_letter_topics: list[str] = field(default_factory=list)
    readers: list[GroupBy] = field(default_factory=list)


def _topics(group_bys: Mapping[str, GroupBy]) -> dict[str, _Topic]:
    topics: dict[str, _Topic] = {}
    for group_by in group_bys.values():
        for spec in topic_specs(group_by):
            topic = topics.setdefault(spec.name, _Topic(spec.name))
            if spec.dead_letter_topic not in topic.dead_letter_topics:
                topic.dead_letter_topics.append(spec.dead_letter_topic)
            if group_by not in topic.readers:
                topic.readers.append(group_by)
    return dict(sorted(topics.items()))


def streaming_assets(compiled: CompiledRepo) -> list[AssetSpec]:
    group_bys = streaming_group_bys(compiled)
    specs = [_topic_asset(topic) for topic in _topics(group_bys).values()]
    return specs + [_streaming_dataset_asset(group_by) for group_by in group_bys.values()]


def _topic_asset(topic: _Topic) -> AssetSpec:
    dead_letters = topic.dead_letter_topics
    readers = ", ".join(f"`{g.name}` (into `{g.streaming_dataset}`)" for g in topic.readers)
    return AssetSpec(
        key=topic_asset_key(topic.name),
        group_name=STREAMING_GROUP,
        kinds={"kafka"},
        description=(
            f"Kafka topic `{topic.name}`, written by the event producers outside this platform (locally: "
            f"`feature-assets produce --topic {topic.name}`). Streamed by {readers}; messages that fail to "
            f"decode or break the schema go to the dead-letter topic {', '.join(f'`{d}`' for d in dead_letters)}. "
            f"{CONTINUOUS_NOTE} Observed: `consumer_lag` (events its streaming jobs have not applied yet, the "
            "largest over its readers) and `dead_lettered` (messages in the dead-letter topic)."
        ),
        metadata={
            "topic": topic.name,
            "dead_letter_topics": dead_letters,
            "read_by": [group_by.name for group_by in topic.readers],
        },
    )


def _streaming_dataset_asset(group_by: GroupBy) -> AssetSpec:
    topics = [spec.name for spec in topic_specs(group_by)]
    return AssetSpec(
        key=streaming_asset_key(group_by),
        deps=[topic_asset_key(topic) for topic in topics] + [load_asset_key(group_by)],
        group_name=group_by.team,
        kinds={"mongodb"},
        description=(
            f"The events of {', '.join(f'`{t}`' for t in topics)} that group-by `{group_by.name}` selects, "
            f"written to the MongoDB dataset `{group_by.streaming_dataset}` by `{streaming_command(group_by)}` "
            "(a long-running process beside Dagster, not a run). Fetches merge them with the batch dataset "
            f"`{group_by.batch_dataset}`; retention removes documents older than the newest loaded batch's end "
            "(less a grace period). "
            f"{CONTINUOUS_NOTE} Observed: `events_applied`, `dead_lettered`, `filtered` and "
            "`retention_removed` (cumulative counters of the job), `consumer_lag` (events of its topics not "
            "applied yet) and `last_event_ts` (event time of the newest applied event, epoch ms)."
        ),
        metadata={
            "dataset": group_by.streaming_dataset,
            "config": group_by.name,
            "topics": topics,
            "consumer_group": status.consumer_group_id(group_by),
            "command": streaming_command(group_by),
        },
    )


# --------------------------------------------------------------------------- the sensor


@dataclass
class Observed:
    """One tick's observations, and the servers that did not answer."""

    events: list[AssetObservation] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    def result(self) -> SensorResult:
        skip = "; ".join(self.unanswered) or None
        return SensorResult(asset_events=self.events, skip_reason=skip)


def observe(
    group_bys: Mapping[str, GroupBy], store: KVStore, kafka: KafkaResource, kafka_timeout: float | None = None
) -> Observed:
    """The observations of every streaming group-by's topics and dataset; never raises for a server that does
    not answer (it is named in `unanswered`, and what the other server answered is still observed). The
    broker's queries share `kafka_timeout` seconds (default `KAFKA_TIMEOUT_S`)."""
    kafka_timeout = KAFKA_TIMEOUT_S if kafka_timeout is None else kafka_timeout
    observed = Observed()
    topics = _topics(group_bys)
    try:
        statuses = {name: status.read(store, group_by) for name, group_by in group_bys.items()}
    except (StoreUnavailable, PyMongoError) as error:
        observed.unanswered.append(f"MongoDB (the online store) did not answer: {_one_line(error)}")
        statuses = {}
    try:
        lags, dead_letters = _read_broker(group_bys, topics, kafka, kafka_timeout)
    except monitor.MonitorError as error:
        observed.unanswered.append(_one_line(error))  # "Kafka at <bootstrap> ..."
        lags, dead_letters = {}, {}

    for topic in topics.values():
        if topic.name in dead_letters:
            lag = max(lags[group_by.name][topic.name] for group_by in topic.readers)
            metadata = {"consumer_lag": lag, "dead_lettered": dead_letters[topic.name]}
            observed.events.append(AssetObservation(topic_asset_key(topic.name), metadata=metadata))
    for name, group_by in group_bys.items():
        metadata = _status_metadata(statuses[name]) if name in statuses else {}
        if name in lags:
            metadata["consumer_lag"] = sum(lags[name].values())
        if metadata:
            observed.events.append(AssetObservation(streaming_asset_key(group_by), metadata=metadata))
    return observed


def _read_broker(
    group_bys: Mapping[str, GroupBy], topics: Mapping[str, _Topic], kafka: KafkaResource, timeout: float
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """({group-by: {topic: consumer lag}}, {topic: messages in its dead-letter topics}), all queries within
    `timeout` seconds."""
    client_config = kafka.client_config()
    end = time.monotonic() + timeout

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            bootstrap = client_config.get("bootstrap.servers")
            raise monitor.BrokerUnavailable(f"Kafka at {bootstrap} did not answer every query within {timeout:g} s")
        return remaining

    lags = {
        name: monitor.consumer_lag(
            client_config,
            kafka.group_name(status.consumer_group_id(group_by)),
            [spec.name for spec in topic_specs(group_by)],
            left(),
        )
        for name, group_by in group_bys.items()
    }
    dead_letters = {
        topic.name: sum(monitor.dead_letter_count(client_config, dlq, left()) for dlq in topic.dead_letter_topics)
        for topic in topics.values()
    }
    return lags, dead_letters


def _status_metadata(doc: Mapping[str, Any]) -> dict[str, int]:
    metadata = {
        "events_applied": int(doc["applied"]),
        "dead_lettered": int(doc["dead_lettered"]),
        "filtered": int(doc["filtered"]),
        "retention_removed": int(doc["retention_removed"]),
    }
    if doc.get("last_event_ts") is not None:
        metadata["last_event_ts"] = int(doc["last_event_ts"])
    return metadata


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def servers_configured(resources: Mapping[str, Any]) -> bool:
    """Whether the store's URI and the broker's address are given (as values, or as set variables): without
    them every tick would fail before the sensor runs, so the sensor starts stopped."""
    required = (("mongo", "uri"), ("kafka", "bootstrap_servers"))
    for key, setting in required:
        value = getattr(resources.get(key), setting, None)
        if isinstance(value, EnvVar):
            value = os.environ.get(value.env_var_name)
        if not value:
            return False
    return True


def streaming_sensors(compiled: CompiledRepo, resources: Mapping[str, Any]) -> list[SensorDefinition]:
    """The observation sensor, when some online group-by streams (none otherwise); running by default when
    `resources` name both servers."""
    group_bys = streaming_group_bys(compiled)
    if not group_bys:
        return []
    configured = servers_configured(resources)

    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING if configured else DefaultSensorStatus.STOPPED,
        description=(
            "Records consumer lag, events applied, filtered and dead-lettered of every streaming group-by as "
            "numeric observations of its topic and streaming dataset assets. A tick whose broker or store does "
            "not answer skips, naming it, and still records what the other one answered. Running by default "
            "when the code location loads with both servers configured (FEATURE_ASSETS_MONGO_URI and "
            "FEATURE_ASSETS_KAFKA_BOOTSTRAP), stopped otherwise."
        ),
    )
    def streaming_observations(context: SensorEvaluationContext, mongo: MongoResource, kafka: KafkaResource):
        return observe(group_bys, MongoKVStore.from_resource(mongo), kafka).result()

    return [streaming_observations]
