"""Writing a small feature repo (configs as dedented source text) into a temporary directory."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_repo(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
