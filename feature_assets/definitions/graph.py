"""The asset graph of a compiled feature repo, as plain data (no Dagster, no Spark here).

Every table the configs read or write becomes a node: user-provided source tables, staging query
outputs, group-by daily tables, join parts and join outputs. A repo with online joins or a schema group-by
(one over the raw fetch log keyed by schema hash) has the raw log table as the log dump's node; with a schema
group-by every online or log-bootstrapped join gets its flattened log `_logged`:
log table -> schema table -> `_logged` -> `_bootstrap`.
Edges carry a day offset range so that Dagster's partition mappings can say which upstream days a day depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from feature_assets.model.configs import (
    CompiledRepo,
    Config,
    EntitySource,
    EventSource,
    GroupBy,
    Join,
    JoinPart,
    JoinSource,
    Source,
    StagingQuery,
)
from feature_assets.model.logs import RAW_LOG_TABLE, schema_group_by
from feature_assets.naming import qualified

SOURCE, STAGING_QUERY, GROUP_BY, BOOTSTRAP, JOIN_PART, JOIN = (
    "source",
    "staging_query",
    "group_by",
    "bootstrap",
    "join_part",
    "join",
)
# The fetch log: the raw log table (dumped from the log store) and a join's flattened log.
LOG_TABLE, LOGGED = "log_table", "logged"
# An unwindowed aggregation reads all history; its edges show the last days of it.
ALL_HISTORY_SHOWN_DAYS = 30

TableSource = EventSource | EntitySource


@dataclass(frozen=True)
class Edge:
    table: str
    start_offset: int = 0  # upstream days relative to the downstream day (<= 0)
    end_offset: int = 0
    description: str = ""


@dataclass
class Node:
    table: str
    kind: str
    team: str
    config: Config | None = None  # the config that writes the table (a join part: its group-by)
    join: Join | None = None
    part: JoinPart | None = None
    upstream: list[Edge] = field(default_factory=list)
    # (config name, its event or entity source) of every config reading a source table
    reads: list[tuple[str, TableSource]] = field(default_factory=list)
    optional: bool = False  # may not exist yet (a join's log table before any fetch is logged)

    @property
    def name(self) -> str:
        return self.config.name if self.config is not None else self.table

    @property
    def readers(self) -> list[TableSource]:
        return [source for _, source in self.reads]

    @property
    def group(self) -> str:
        """The asset group: a join's bootstrap step, parts and output share one named after the join, so two
        joins' parts over the same group-by (whose table names share a long prefix) are told apart."""
        if self.kind in (BOOTSTRAP, JOIN_PART, JOIN, LOGGED) and self.join is not None:
            return self.join.table_name
        return self.team


def source_edges(group_by: GroupBy, extra_offset: int = 0) -> list[Edge]:
    """The source tables a group-by reads for a day, with the days its longest window reaches back."""
    days = group_by.lookback_days
    edges = []
    for source in group_by.sources:
        if isinstance(source, EntitySource):
            edges.append(Edge(source.read_table, extra_offset, extra_offset, "daily snapshot"))
            if source.mutation_table:
                edges.append(Edge(qualified(source.mutation_table), extra_offset, extra_offset, "mutations"))
        else:
            reach = days if days is not None else ALL_HISTORY_SHOWN_DAYS
            edges.append(
                Edge(
                    source.read_table,
                    -reach + extra_offset,
                    0,
                    f"events, {reach}-day lookback" if days is not None else "events, all history (unwindowed)",
                )
            )
    return edges


class _GraphBuilder:
    """Walks the configs (and the joins their sources name) once, adding a node per table written."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        # (table, the config reading it, its reader: a source, "bootstrap" or "log")
        self.source_reads: list[tuple[str, str, Source | str]] = []

    def add_staging_query(self, staging_query: StagingQuery) -> None:
        upstream = [Edge(qualified(t), 0, 0, "read by SQL") for t in staging_query.referenced_tables]
        table = staging_query.output_table
        self.nodes[table] = Node(table, STAGING_QUERY, staging_query.team, staging_query, upstream=upstream)

    def add_group_by(self, group_by: GroupBy) -> str:
        table = group_by.output_table
        if table not in self.nodes:
            self.nodes[table] = Node(table, GROUP_BY, group_by.team, group_by, upstream=source_edges(group_by))
            for source in group_by.sources:
                self.source_reads.append((source.read_table, group_by.name, source))
                if isinstance(source, JoinSource):
                    self.add_join(source.join)
        return table

    def add_join(self, join: Join) -> str:
        table = join.output_table
        if table in self.nodes:
            return table
        left_table = join.left.read_table
        self.source_reads.append((left_table, join.name, join.left))
        if isinstance(join.left, JoinSource):
            self.add_join(join.left.join)
        bootstrap_table, bootstrap_edges = self._add_bootstrap(join, left_table)
        part_edges = []
        for part in join.join_parts:
            part_table = join.part_table(part)
            upstream = [Edge(bootstrap_table, 0, 0, "left rows not covered by bootstrap")]
            upstream += self._part_inputs(join, part)
            self.nodes[part_table] = Node(
                part_table, JOIN_PART, join.team, part.group_by, join, part, upstream=upstream
            )
            part_edges.append(Edge(part_table, 0, 0, "join part"))
        self.nodes[table] = Node(
            table,
            JOIN,
            join.team,
            join,
            join,
            # The bootstrap values are read where the output is assembled: the bootstrap table holds only the
            # left rows and coverage flags.
            upstream=[Edge(bootstrap_table, 0, 0, "left rows and coverage flags")]
            + [Edge(e.table, 0, 0, e.description.replace("priority", "values, priority")) for e in bootstrap_edges]
            + part_edges,
        )
        return table

    def _add_bootstrap(self, join: Join, left_table: str) -> tuple[str, list[Edge]]:
        """The bootstrap step: the left rows flagged by what the bootstrap tables cover, in priority order (the
        log lowest). Returns the step's table and its edges from the bootstrap tables."""
        sources = join.bootstrap_sources
        edges = [
            Edge(
                qualified(s.table),
                0,
                0,
                f"bootstrap priority {s.priority}" + (" (the join's own log, always lowest)" if s.is_log else ""),
            )
            for s in sources
        ]
        self.nodes[join.bootstrap_table] = Node(
            join.bootstrap_table,
            BOOTSTRAP,
            join.team,
            join,
            join,
            upstream=[Edge(left_table, 0, 0, "left rows")] + edges,
        )
        self.source_reads += [(qualified(s.table), join.name, "log" if s.is_log else "bootstrap") for s in sources]
        return join.bootstrap_table, edges

    def _part_inputs(self, join: Join, part: JoinPart) -> list[Edge]:
        """What a join part reads besides the left rows: a daily table, entity mutations or raw events."""
        group_by_table = self.add_group_by(part.group_by)
        if join.uses_snapshot_table(part):
            offset = join.snapshot_offset
            return [
                Edge(
                    group_by_table,
                    offset,
                    offset,
                    "group-by daily values of the previous day" if offset else "group-by daily values of the same day",
                )
            ]
        entity = part.group_by.source
        if join.uses_mutations(part) and isinstance(entity, EntitySource) and entity.mutation_table:
            return [
                Edge(entity.read_table, -1, -1, "snapshot of the previous day"),
                Edge(qualified(entity.mutation_table), 0, 0, "mutations of the day"),
            ]
        return source_edges(part.group_by)

    def add_log_tables(self, schema_table: str | None) -> None:
        """The log dump's node, and with a schema table a flattened log for every online or log-bootstrapped join."""
        joins = [n.join for n in self.nodes.values() if n.kind == JOIN and n.join is not None]
        if schema_table is None and not any(join.online for join in joins):
            return
        self.nodes[RAW_LOG_TABLE] = Node(RAW_LOG_TABLE, LOG_TABLE, "logs", optional=True)
        if schema_table is None:
            return
        upstream = [Edge(RAW_LOG_TABLE, 0, 0, "logged fetches"), Edge(schema_table, 0, 0, "schemas by hash")]
        for node in list(self.nodes.values()):
            join = node.join
            if node.kind == JOIN and join is not None and (join.online or join.bootstrap_from_log):
                table = qualified(join.logged_table)
                self.nodes[table] = Node(table, LOGGED, join.team, join, join, upstream=list(upstream), optional=True)

    def finish(self) -> dict[str, Node]:
        for node in list(self.nodes.values()):
            for edge in node.upstream:
                if edge.table not in self.nodes:
                    self.nodes[edge.table] = Node(edge.table, SOURCE, "sources")
        for table, config_name, reader in self.source_reads:
            node = self.nodes[table]
            if node.kind != SOURCE:
                continue
            if isinstance(reader, (EventSource, EntitySource)):
                node.reads.append((config_name, reader))
            if reader == "log":
                node.optional = True
        return dict(sorted(self.nodes.items()))


def build_graph(compiled: CompiledRepo) -> dict[str, Node]:
    builder = _GraphBuilder()
    for staging_query in compiled.staging_queries.values():
        builder.add_staging_query(staging_query)
    for group_by in compiled.group_bys.values():
        builder.add_group_by(group_by)
    for join in compiled.joins.values():
        builder.add_join(join)
    schemas = schema_group_by(compiled)
    builder.add_log_tables(schemas.output_table if schemas is not None else None)
    return builder.finish()


def source_tables(graph: dict[str, Node]) -> list[str]:
    """The tables no config writes: what users bring (and the logs fetches write)."""
    return [node.table for node in graph.values() if node.kind == SOURCE]
