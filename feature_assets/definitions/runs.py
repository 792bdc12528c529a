"""Launching asset backfills in-process through Dagster: the CLI's path, the same code as the UI's."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster
from dagster import DagsterInstance, Definitions

from feature_assets.definitions.factory import job_name

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
KIND_OF_FOLDER = {"joins": "join", "group_bys": "group_by", "staging_queries": "staging_query"}
DAGSTER_HOME_ENV = "DAGSTER_HOME"
DEFAULT_DAGSTER_HOME = ".dagster_home"


def quiet_dagster_warnings() -> None:
    """Dagster's beta/preview notices about the APIs the asset factories use are noise on a terminal."""
    for category in (dagster.BetaWarning, dagster.PreviewWarning, dagster.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def default_instance() -> DagsterInstance:
    """The persistent instance the UI reads: `$DAGSTER_HOME`, else `.dagster_home` in the current folder."""
    home = Path(os.environ.setdefault(DAGSTER_HOME_ENV, str(Path.cwd() / DEFAULT_DAGSTER_HOME))).resolve()
    os.environ[DAGSTER_HOME_ENV] = str(home)  # Dagster wants an absolute path
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()  # an empty instance file: local storage under DAGSTER_HOME
    return DagsterInstance.get()


def run_backfill(
    defs: Definitions,
    folder_kind: str,
    name: str,
    start_ds: str,
    end_ds: str,
    instance: DagsterInstance | None = None,
    log_level: str = "WARNING",
):
    """Materialize `name` and everything upstream of it for [start_ds, end_ds] as one run."""
    job = defs.resolve_job_def(job_name(KIND_OF_FOLDER[folder_kind], name))
    result = job.execute_in_process(
        instance=instance or default_instance(),
        tags={RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    return result


def run_job(
    defs: Definitions,
    name: str,
    start_ds: str | None = None,
    end_ds: str | None = None,
    instance: DagsterInstance | None = None,
    log_level: str = "WARNING",
):
    """Run one job of the Definitions (for a partition range when given) in-process."""
    tags = {RANGE_START_TAG: start_ds, RANGE_END_TAG: end_ds or start_ds} if start_ds else {}
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance or default_instance(),
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
