"""The asset graph of a compiled feature repo, as plain data (no Dagster here).

Every table the configs read or write becomes a node: user-provided source tables, staging query
outputs, group-by daily tables, join parts and join outputs. Edges carry a day offset range so that
Dagster's partition mappings can say which upstream days a day depends on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from feature_assets.compiler.columns import source_of, table_of
from feature_assets.engine.bootstrap import bootstrap_sources
from feature_assets.engine.join import part_name, snapshot_offset, uses_snapshot_table
from feature_assets.engine.mutations import uses_mutations
from feature_assets.engine.sources import MILLIS_PER_DAY, source_table
from feature_assets.engine.staging_query import referenced_tables
from feature_assets.engine.specs import agg_specs, max_window_millis
from feature_assets.storage import qualified

SOURCE, STAGING_QUERY, GROUP_BY, BOOTSTRAP, JOIN_PART, JOIN = (
    "source", "staging_query", "group_by", "bootstrap", "join_part", "join")


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
    config: Optional[dict] = None
    join: Optional[dict] = None
    part: Optional[dict] = None
    upstream: list[Edge] = field(default_factory=list)
    readers: list[tuple[str, dict]] = field(default_factory=list)  # (source kind, payload) reading a source table
    optional: bool = False  # a source that may not exist yet (a join's log table before any fetch is logged)

    @property
    def name(self) -> str:
        return (self.config or {}).get("metaData", {}).get("name", self.table)


def lookback_days(group_by: dict) -> Optional[int]:
    window = max_window_millis(agg_specs(group_by)) if group_by.get("aggregations") else 0
    return None if window is None else -(-window // MILLIS_PER_DAY)


def _source_edges(group_by: dict, extra_offset: int = 0) -> list[Edge]:
    days = lookback_days(group_by)
    edges = []
    for source in group_by["sources"]:
        kind, payload = next(iter(source.items()))
        table = qualified(source_table(kind, payload))
        if kind == "entities":
            edges.append(Edge(table, extra_offset, extra_offset, "daily snapshot"))
            if payload.get("mutationTable"):
                edges.append(Edge(qualified(payload["mutationTable"]), extra_offset, extra_offset, "mutations"))
        else:
            # An unwindowed aggregation reads all history; the mapping shows the last 30 days of it.
            reach = days if days is not None else 30
            edges.append(Edge(table, -reach + extra_offset, 0, f"events, {reach}-day lookback"
                              if days is not None else "events, all history (unwindowed)"))
    return edges


def build_graph(compiled: dict[str, dict[str, dict]]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    source_reads: list[tuple[str, str, dict, str]] = []

    for name, staging_query in compiled.get("staging_queries", {}).items():
        table = table_of(staging_query["metaData"]["outputNamespace"], name)
        upstream = [Edge(qualified(t), 0, 0, "read by SQL") for t in referenced_tables(staging_query["query"])]
        nodes[table] = Node(table, STAGING_QUERY, staging_query["metaData"]["team"], staging_query, upstream=upstream)

    def add_group_by(group_by: dict) -> str:
        table = table_of(group_by["metaData"]["outputNamespace"], group_by["metaData"]["name"])
        if table not in nodes:
            nodes[table] = Node(table, GROUP_BY, group_by["metaData"]["team"], group_by, upstream=_source_edges(group_by))
            for source in group_by["sources"]:
                kind, payload = next(iter(source.items()))
                source_reads.append((qualified(source_table(kind, payload)), kind, payload, table))
                if kind == "joinSource":
                    add_join(payload["join"])
        return table

    def add_join(join: dict) -> str:
        table = table_of(join["metaData"]["outputNamespace"], join["metaData"]["name"])
        if table in nodes:
            return table
        left_kind, left_payload = next(iter(join["left"].items()))
        left_table = qualified(source_table(left_kind, left_payload))
        source_reads.append((left_table, left_kind, left_payload, table))
        if left_kind == "joinSource":
            add_join(left_payload["join"])
        namespace = join["metaData"]["outputNamespace"]
        # The bootstrap step: left rows enriched by bootstrap tables, in priority order (the log lowest).
        bootstrap_table = f"{table}_bootstrap"
        bootstrap_edges = [Edge(qualified(s.table), 0, 0, f"bootstrap priority {s.priority}"
                                + (" (the join's own log, always lowest)" if s.query is None else ""))
                           for s in bootstrap_sources(join)]
        nodes[bootstrap_table] = Node(bootstrap_table, BOOTSTRAP, join["metaData"]["team"], join, join,
                                      upstream=[Edge(left_table, 0, 0, "left rows")] + bootstrap_edges)
        for source in bootstrap_sources(join):
            source_reads.append((qualified(source.table), "log" if source.query is None else "bootstrap",
                                 {}, bootstrap_table))
        part_edges = []
        for part in join["joinParts"]:
            gb_table = add_group_by(part["groupBy"])
            part_table = f"{namespace}.{part_name(join, part)}"
            upstream = [Edge(bootstrap_table, 0, 0, "left rows not covered by bootstrap")]
            if uses_snapshot_table(join, part):
                offset = snapshot_offset(join)
                upstream.append(Edge(gb_table, offset, offset, "group-by daily values of the previous day"
                                     if offset else "group-by daily values of the same day"))
            elif uses_mutations(part):
                _, entity = source_of(part["groupBy"])
                upstream += [Edge(qualified(entity["snapshotTable"]), -1, -1, "snapshot of the previous day"),
                             Edge(qualified(entity["mutationTable"]), 0, 0, "mutations of the day")]
            else:
                upstream += _source_edges(part["groupBy"])
            nodes[part_table] = Node(part_table, JOIN_PART, join["metaData"]["team"], part["groupBy"], join, part,
                                     upstream=upstream)
            part_edges.append(Edge(part_table, 0, 0, "join part"))
        nodes[table] = Node(table, JOIN, join["metaData"]["team"], join, join,
                            upstream=[Edge(bootstrap_table, 0, 0, "left rows with bootstrap values")] + part_edges)
        return table

    for group_by in compiled.get("group_bys", {}).values():
        add_group_by(group_by)
    for join in compiled.get("joins", {}).values():
        add_join(join)
    for node in list(nodes.values()):
        for edge in node.upstream:
            if edge.table not in nodes:
                nodes[edge.table] = Node(edge.table, SOURCE, "sources")
    for table, kind, payload, _ in source_reads:
        if nodes[table].kind == SOURCE and kind in ("events", "entities"):
            nodes[table].readers.append((kind, payload))
        if nodes[table].kind == SOURCE and kind == "log":
            nodes[table].optional = True
    return dict(sorted(nodes.items()))
