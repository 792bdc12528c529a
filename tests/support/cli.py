"""Running the real `feature-assets` command in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def feature_assets_command() -> list[str]:
    """The installed `feature-assets` script of this interpreter (else the module it runs)."""
    script = Path(sys.executable).parent / "feature-assets"
    return [str(script)] if script.exists() else [sys.executable, "-m", "feature_assets.cli"]


def run_cli(arguments: list[str], repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        feature_assets_command() + arguments, cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
