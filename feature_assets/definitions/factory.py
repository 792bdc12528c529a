"""Compiled feature repo -> Dagster Definitions: assets, checks, jobs and resources."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml
from dagster import (
    AssetSelection,
    DailyPartitionsDefinition,
    Definitions,
    EnvVar,
    define_asset_job,
    in_process_executor,
)

from feature_assets.compiler import load_compiled
from feature_assets.definitions.assets import _Partitioning, asset_key, build_asset, snapshot_table_name
from feature_assets.definitions.automation import (
    automation_sensors,
    freshness,
    log_dump_schedules,
    offline_schedules,
    source_partition_sensor,
    with_eager_automation,
)
from feature_assets.definitions.consistency_assets import consistency_assets, consistency_jobs
from feature_assets.definitions.graph import (
    GROUP_BY,
    JOIN,
    LOG_TABLE,
    LOGGED,
    SOURCE,
    STAGING_QUERY,
    Node,
    build_graph,
    source_tables,
)
from feature_assets.definitions.log_assets import DUMP_JOB, build_log_asset, log_jobs
from feature_assets.definitions.online_assets import online_assets
from feature_assets.definitions.stats_assets import stats_assets, stats_jobs
from feature_assets.definitions.streaming_assets import streaming_assets, streaming_sensors
from feature_assets.model.configs import GroupBy
from feature_assets.model.logs import is_schema_group_by
from feature_assets.naming import clean_name, qualified
from feature_assets.resources import WarehouseResource, resources_for_environment
from feature_assets.storage import PARTITION_COLUMN, default_root

REPO_SETTINGS = "feature_repo.yaml"
START_DATE_ENV = "FEATURE_ASSETS_START_DATE"
HOW_TO_CHANGE_START = f"set start_date in {REPO_SETTINGS} or {START_DATE_ENV}"


def repo_settings(repo: Path) -> dict:
    path = Path(repo) / REPO_SETTINGS
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


@dataclass(frozen=True)
class StartDate:
    """The first day of every daily-partitioned asset, and where it was found."""

    ds: str
    origin: str

    @property
    def note(self) -> str:
        return f"{self.ds}, from {self.origin}; to change it, {HOW_TO_CHANGE_START}"


def resolve_start_date(
    repo: Path, graph: dict[str, Node], warehouse_root: str | None, start_date: str | None = None
) -> StartDate:
    """The requested start, else the repo's settings, else the earliest source partition, else today."""
    if start_date:
        return StartDate(start_date, "the requested range")
    if os.environ.get(START_DATE_ENV):
        return StartDate(os.environ[START_DATE_ENV], START_DATE_ENV)
    configured = repo_settings(repo).get("start_date")
    if configured:
        return StartDate(str(configured), f"start_date in {Path(repo) / REPO_SETTINGS}")
    root = warehouse_root or default_root()
    earliest = earliest_partition(root, source_tables(graph))
    if earliest:
        return StartDate(earliest, f"the earliest source partition in {root}")
    return StartDate(date.today().isoformat(), "today (no source partition found)")


def earliest_partition(root: str, tables: list[str]) -> str | None:
    """The first `ds` partition folder of any of the tables under a local warehouse root (no Spark needed).

    A remote root (`s3a://`, `hdfs://`) is not listed here: the caller falls back to another start.
    """
    if not is_local_root(root):
        return None
    local = LocalWarehouse(root)
    return min((ds for table in tables for ds in local.partitions(table)), default=None)


def is_local_root(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


class LocalWarehouse:
    """A local warehouse's tables and partitions, read from its folders: answers in milliseconds, no Spark.

    The layout is the warehouse's (`<root>/<namespace>/<table>/ds=YYYY-MM-DD/`); reading and writing rows
    stays with `storage.Warehouse`.
    """

    def __init__(self, root: str) -> None:
        self.root = root.removeprefix("file://").rstrip("/")

    def table_path(self, table: str) -> str:
        return str(Path(self.root).joinpath(*qualified(table).split(".", 1)))

    def exists(self, table: str) -> bool:
        return Path(self.table_path(table)).is_dir()

    def partitions(self, table: str) -> list[str]:
        """The `ds` values that have a partition folder, sorted."""
        prefix = f"{PARTITION_COLUMN}="
        folders = _entries(Path(self.table_path(table)))
        return sorted(e.name[len(prefix) :] for e in folders if e.is_dir() and e.name.startswith(prefix))

    def tables(self) -> list[str]:
        """Every `ns.t` under the root that has at least one partition."""
        found = [
            f"{namespace.name}.{table.name}"
            for namespace in _entries(Path(self.root))
            if namespace.is_dir()
            for table in _entries(Path(namespace.path))
            if table.is_dir()
        ]
        return sorted(table for table in found if self.partitions(table))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:  # not there (yet), or not readable: no partitions
        return []


def partitions_for(
    repo: Path, start_date: str | None = None, warehouse_root: str | None = None
) -> DailyPartitionsDefinition:
    """The daily partitions of a repo's assets (see `resolve_start_date` for the first day)."""
    graph = build_graph(load_compiled(repo))
    return _daily_partitions(repo, resolve_start_date(repo, graph, warehouse_root, start_date))


def _daily_partitions(repo: Path, start: StartDate) -> DailyPartitionsDefinition:
    # The settings' end_date is the last day with a partition; Dagster's end_date is the first day without.
    end = repo_settings(repo).get("end_date")
    after = (date.fromisoformat(str(end)) + timedelta(days=1)).isoformat() if end else None
    return DailyPartitionsDefinition(start_date=start.ds, end_date=after, timezone="UTC")


def job_name(kind: str, name: str) -> str:
    return f"backfill_{kind}_{clean_name(name)}"


ONLINE_UPLOAD_JOB = "upload_online"
METADATA_UPLOAD_JOB = "upload_metadata"


def online_jobs(online: list) -> list:
    """Refreshing the online store: the daily upload+load of every online group-by, and the metadata."""
    partitioned = [key for a in online if a.partitions_def is not None for key in a.keys]
    unpartitioned = [key for a in online if a.partitions_def is None for key in a.keys]
    jobs = []
    if partitioned:
        jobs.append(
            define_asset_job(
                ONLINE_UPLOAD_JOB,
                selection=AssetSelection.assets(*partitioned),
                description="Upload every online group-by's day and load it into MongoDB",
            )
        )
    if unpartitioned:
        jobs.append(
            define_asset_job(
                METADATA_UPLOAD_JOB,
                selection=AssetSelection.assets(*unpartitioned),
                description="Store the compiled online configs in the metadata store",
            )
        )
    return jobs


def is_log_side(node: Node) -> bool:
    """The raw log table, a join's flattened log, and the schema group-by over the raw log: tables of fetches,
    which happen now, so their daily partitions run through today (see `build_definitions`)."""
    if node.kind in (LOG_TABLE, LOGGED):
        return True
    return node.kind == GROUP_BY and isinstance(node.config, GroupBy) and is_schema_group_by(node.config)


BACKFILL_KINDS = {GROUP_BY: "group_by", JOIN: "join", STAGING_QUERY: "staging_query"}


def backfill_jobs(graph: dict[str, Node]) -> list:
    """One job per group-by, join and staging query: its table and everything upstream of it."""
    kinds = BACKFILL_KINDS
    # The log dump reads the live log store: a backfill reads the log table as it is, like a source. The other
    # log-side tables have their own partitions (through today): a feature backfill reads them as they are too.
    log_dumps = AssetSelection.assets(*[asset_key(n.table) for n in graph.values() if n.kind == LOG_TABLE])
    log_side = AssetSelection.assets(*[asset_key(n.table) for n in graph.values() if is_log_side(n)])
    return [
        define_asset_job(
            job_name(kinds[node.kind], node.name),
            selection=AssetSelection.assets(asset_key(node.table)).upstream()
            - (log_dumps if is_log_side(node) else log_side),
            description=f"Backfill {node.table} and everything it needs",
        )
        for node in graph.values()
        if node.kind in kinds
    ]


def _warehouse_root(resources: dict | None) -> str | None:
    """A warehouse root given as a value (an `EnvVar` is resolved only at run time: `default_root` reads it)."""
    warehouse = (resources or {}).get("warehouse")
    root = warehouse.root if isinstance(warehouse, WarehouseResource) else None
    return root if isinstance(root, str) and not isinstance(root, EnvVar) else None


def build_definitions(repo: str | Path, start_date: str | None = None, resources: dict | None = None) -> Definitions:
    """Definitions of a compiled feature repo; `start_date` (a CLI backfill's first day) overrides the settings."""
    repo = Path(repo)
    compiled = load_compiled(repo)
    graph = build_graph(compiled)
    start = resolve_start_date(repo, graph, _warehouse_root(resources), start_date)
    partitions_def = _daily_partitions(repo, start)
    with_online = resources is None or "mongo" in resources
    # Fetches are logged now: the log-side tables' days run through today (today's partial day can be dumped,
    # and dumped again later), whatever the repo's end_date.
    log_partitions_def = DailyPartitionsDefinition(start_date=start.ds, timezone="UTC", end_offset=1)
    assets = [
        build_log_asset(node, _Partitioning(log_partitions_def, start.note), with_online)
        if node.kind in (LOG_TABLE, LOGGED)
        else build_asset(
            node, log_partitions_def if is_log_side(node) else partitions_def, snapshot_table_name, start.note
        )
        for node in graph.values()
    ]
    stats = stats_assets(graph, partitions_def, log_partitions_def)
    consistency = consistency_assets(graph, log_partitions_def)
    online = online_assets(compiled, partitions_def) if with_online else []
    streaming = streaming_assets(compiled) if with_online else []
    resources = resources if resources is not None else resources_for_environment()
    sensors = streaming_sensors(compiled, resources) if with_online and "kafka" in resources else []
    # Source tables and the log dump read what lies outside the graph: sensors and schedules start them.
    outside = {asset_key(n.table) for n in graph.values() if n.kind in (SOURCE, LOG_TABLE)}
    materializable = with_eager_automation(assets + stats + consistency + online, outside)
    jobs = online_jobs(online) + backfill_jobs(graph) + log_jobs(graph, with_online) + stats_jobs(graph)
    jobs += consistency_jobs(graph)
    local = _warehouse_root(resources) or default_root()
    lister = LocalWarehouse(local).partitions if is_local_root(local) else None
    feature_side = {table: node for table, node in graph.items() if not is_log_side(node)}
    schedules = offline_schedules(
        feature_side, jobs, lambda n: job_name(BACKFILL_KINDS[n.kind], n.name), partitions_def
    )
    schedules += log_dump_schedules(next((j for j in jobs if j.name == DUMP_JOB), None))
    sensors += source_partition_sensor(graph, lister) + automation_sensors(materializable)
    fresh = [key for a in online for key in a.keys if a.partitions_def is not None and key.path[0] == "online"]
    fresh += [asset_key(n.table) for n in graph.values() if n.kind == LOG_TABLE and with_online]
    freshness_checks, freshness_sensors = freshness(fresh)
    sensors += freshness_sensors
    return Definitions(
        assets=[*materializable, *streaming],
        sensors=sensors,
        schedules=schedules,
        asset_checks=freshness_checks,
        jobs=jobs,
        executor=in_process_executor,
        resources=resources,
        metadata={"partitions_start": start.note},
    )
