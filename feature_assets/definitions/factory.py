"""Compiled feature repo -> Dagster Definitions: assets, checks, jobs and resources."""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from dagster import (AssetSelection, DailyPartitionsDefinition, Definitions, define_asset_job, in_process_executor)

from feature_assets.compiler import load_compiled
from feature_assets.compiler.columns import clean_name
from feature_assets.definitions.assets import asset_key, build_asset, snapshot_table_name
from feature_assets.definitions.graph import GROUP_BY, JOIN, STAGING_QUERY, build_graph
from feature_assets.definitions.online_assets import online_assets
from feature_assets.resources import resources_for_environment

REPO_SETTINGS = "feature_repo.yaml"


def repo_settings(repo: Path) -> dict:
    path = Path(repo) / REPO_SETTINGS
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


def partitions_for(repo: Path, start_date: str | None = None) -> DailyPartitionsDefinition:
    settings = repo_settings(repo)
    start = start_date or os.environ.get("FEATURE_ASSETS_START_DATE") or settings.get("start_date")
    if not start:
        raise ValueError(f"set start_date in {Path(repo) / REPO_SETTINGS} or FEATURE_ASSETS_START_DATE")
    return DailyPartitionsDefinition(start_date=str(start), end_date=settings.get("end_date"), timezone="UTC")


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
        jobs.append(define_asset_job(ONLINE_UPLOAD_JOB, selection=AssetSelection.assets(*partitioned),
                                     description="Upload every online group-by's day and load it into MongoDB"))
    if unpartitioned:
        jobs.append(define_asset_job(METADATA_UPLOAD_JOB, selection=AssetSelection.assets(*unpartitioned),
                                     description="Store the compiled online configs in the metadata store"))
    return jobs


def build_definitions(repo: str | Path, start_date: str | None = None, resources: dict | None = None) -> Definitions:
    repo = Path(repo)
    compiled = load_compiled(repo)
    graph = build_graph(compiled)
    partitions_def = partitions_for(repo, start_date)
    assets = [build_asset(node, partitions_def, snapshot_table_name) for node in graph.values()]
    online = online_assets(compiled, partitions_def) if resources is None or "mongo" in resources else []
    assets += online
    jobs = online_jobs(online)
    kinds = {GROUP_BY: "group_by", JOIN: "join", STAGING_QUERY: "staging_query"}
    for node in graph.values():
        if node.kind in kinds:
            selection = AssetSelection.assets(asset_key(node.table)).upstream()
            jobs.append(define_asset_job(job_name(kinds[node.kind], node.name), selection=selection,
                                         description=f"Backfill {node.table} and everything it needs"))
    return Definitions(assets=assets, jobs=jobs, executor=in_process_executor,
                       resources=resources if resources is not None else resources_for_environment())
