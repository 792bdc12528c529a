"""Sources: where a group-by or a join's left side reads its rows."""

from __future__ import annotations

from typing import Any

from feature_assets.api.query import Query


class EventSource:
    """Immutable events: a partitioned log table, optionally mirrored by a Kafka topic."""

    def __init__(
        self,
        table: str | None = None,
        query: Query | None = None,
        topic: str | None = None,
        is_cumulative: bool = False,
        **camel,
    ):
        self.table = table
        self.query = query if query is not None else Query()
        self.topic = topic
        self.is_cumulative = bool(is_cumulative or camel.pop("isCumulative", False))
        if camel:
            raise TypeError(f"EventSource got unexpected arguments: {sorted(camel)}")


class EntitySource:
    """A daily snapshot table of entities, optionally with a mutation log and topic."""

    def __init__(
        self,
        snapshot_table: str | None = None,
        query: Query | None = None,
        mutation_table: str | None = None,
        mutation_topic: str | None = None,
        **camel,
    ):
        self.snapshot_table = snapshot_table or camel.pop("snapshotTable", None)
        self.query = query if query is not None else Query()
        self.mutation_table = mutation_table or camel.pop("mutationTable", None)
        self.mutation_topic = mutation_topic or camel.pop("mutationTopic", None)
        if camel:
            raise TypeError(f"EntitySource got unexpected arguments: {sorted(camel)}")


class JoinSource:
    """The output of another join used as events: chained joins."""

    def __init__(self, join: Any = None, query: Query | None = None):
        self.join = join
        self.query = query if query is not None else Query()


class Source:
    """Chronon's union wrapper: exactly one of events, entities or joinSource."""

    def __init__(
        self,
        events: EventSource | None = None,
        entities: EntitySource | None = None,
        joinSource: JoinSource | None = None,
        join_source: JoinSource | None = None,
    ):
        chosen = [s for s in (events, entities, joinSource or join_source) if s is not None]
        if len(chosen) != 1:
            raise TypeError("Source takes exactly one of events=, entities=, joinSource=")
        self.inner = chosen[0]


def unwrap_source(source: Any) -> Any:
    return source.inner if isinstance(source, Source) else source


def topic_of(source: Any) -> str | None:
    source = unwrap_source(source)
    if isinstance(source, EventSource):
        return source.topic
    if isinstance(source, EntitySource):
        return source.mutation_topic
    return None
