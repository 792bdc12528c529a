"""Launching asset backfills in-process through Dagster: the CLI's path, the same code as the UI's."""
from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance, Definitions

from feature_assets.definitions.factory import job_name
from feature_assets.storage.warehouse import PROJECT_ROOT

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
KIND_OF_FOLDER = {"joins": "join", "group_bys": "group_by", "staging_queries": "staging_query"}


def default_instance() -> DagsterInstance:
    """The persistent instance the UI reads (`$DAGSTER_HOME`, default: the project's `.dagster_home`)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()  # an empty instance file: local storage under DAGSTER_HOME
    return DagsterInstance.get()


def run_backfill(defs: Definitions, folder_kind: str, name: str, start_ds: str, end_ds: str,
                 instance: DagsterInstance | None = None, log_level: str = "WARNING"):
    """Materialize `name` and everything upstream of it for [start_ds, end_ds] as one run."""
    job = defs.resolve_job_def(job_name(KIND_OF_FOLDER[folder_kind], name))
    result = job.execute_in_process(instance=instance or default_instance(),
                                    tags={RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds},
                                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                                    raise_on_error=False)
    return result


def run_job(defs: Definitions, name: str, start_ds: str | None = None, end_ds: str | None = None,
            instance: DagsterInstance | None = None, log_level: str = "WARNING"):
    """Run one job of the Definitions (for a partition range when given) in-process."""
    tags = {RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds} if start_ds else {}
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance or default_instance(), tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}}, raise_on_error=False)
