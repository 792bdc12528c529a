"""Headless Chromium for UI tests: the distribution's browser (installed with apt-get when missing), driven by
Playwright without downloading a browser of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.paths import PROJECT_ROOT

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS_ENV = "FEATURE_ASSETS_TEST_ARTIFACTS"


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_or_skip() -> str:
    """The system Chromium; installed from the distribution's packages when missing (root with apt-get only)."""
    found = find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("no chromium on PATH, and it cannot be installed here (needs apt-get as root)")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, timeout=900)
    found = find_chromium()
    if not found:
        pytest.skip(f"apt-get install chromium failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return found


def artifacts_dir(name: str) -> Path:
    """`$FEATURE_ASSETS_TEST_ARTIFACTS/<name>`, else `test-artifacts/<name>` at the project root (git-ignored)."""
    root = Path(os.environ.get(ARTIFACTS_ENV) or PROJECT_ROOT / "test-artifacts")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
