"""Dagster entry point: Definitions built from a compiled feature repo (default: the quickstart beside this file).

The daily partitions start at the repo's `start_date` (feature_repo.yaml; `$FEATURE_ASSETS_START_DATE` overrides
it), else at the earliest source partition in the warehouse; the UI shows where the first day came from.
"""

import os
from pathlib import Path

from feature_assets.definitions import build_definitions

FEATURE_REPO = Path(os.environ.get("FEATURE_ASSETS_REPO", Path(__file__).parent / "quickstart"))

defs = build_definitions(FEATURE_REPO)
