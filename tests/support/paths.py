"""Where the tests find the project: every path is derived here, from this file's location."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PROJECT_ROOT = TESTS.parent
QUICKSTART = PROJECT_ROOT / "quickstart"
QUICKSTART_PRODUCTION = QUICKSTART / "production"
SNAPSHOTS = TESTS / "snapshots"
