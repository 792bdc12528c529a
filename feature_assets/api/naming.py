"""Object names from their place in the feature repo.

Chronon names an object after the file and variable that define it: variable `v1` in
`group_bys/quickstart/purchases.py` is `quickstart.purchases.v1`. Each API object records the
globals of the module that created it, so its name can be resolved even while that module is
still executing (the seed calls `get_join_output_table_name(v1)` in the same file as `v1`).
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from feature_assets.naming import clean_name

KIND_FOLDERS = ("group_bys", "joins", "staging_queries")


def creation_module_globals(depth: int = 2) -> dict:
    """Globals of the first frame outside feature_assets.api that is creating an object."""
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("feature_assets.api"):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def module_relative_name(module_name: str) -> str | None:
    """`joins.quickstart.training_set` -> `quickstart.training_set` (strip up to the kind folder)."""
    parts = module_name.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in KIND_FOLDERS:
            rest = parts[index + 1 :]
            return ".".join(rest) if rest else None
    return None


def resolve_name(obj: Any) -> str | None:
    """The object's explicit name, else `{module path below the kind folder}.{variable}`."""
    if getattr(obj, "name", None):
        return obj.name
    module_globals = getattr(obj, "_module_globals", None) or {}
    variable = next(
        (var for var, value in list(module_globals.items()) if value is obj and not var.startswith("_")), None
    )
    base = module_relative_name(module_globals.get("__name__", ""))
    if variable is None or base is None:
        return None
    return f"{base}.{variable}"


def output_table_name(obj: Any, full_name: bool = True) -> str:
    name = resolve_name(obj)
    if name is None:
        raise ValueError(
            f"cannot name {type(obj).__name__}: assign it to a module-level variable in a file under "
            f"one of {KIND_FOLDERS}, or pass name=..."
        )
    table = clean_name(name)
    namespace = getattr(obj, "output_namespace", None) or "default"
    return f"{namespace}.{table}" if full_name else table
