"""Dagster entry point: Definitions built from a compiled feature repo (default: the quickstart)."""
import os
from pathlib import Path

from feature_assets.definitions import build_definitions

FEATURE_REPO = Path(os.environ.get("FEATURE_ASSETS_REPO", Path(__file__).parent / "quickstart"))

defs = build_definitions(FEATURE_REPO)
