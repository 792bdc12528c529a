"""Comparing engine output cell by cell: one definition of "a plain python value"."""

from __future__ import annotations

import math

import pandas as pd


def norm(v):
    """A plain python value from a pandas cell (NaN/NA -> None, numpy scalars unwrapped)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict)):
        return v.item()
    return v


def plain(value):
    """A served or collected value as plain python, recursively (NaN/NA -> None)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def close(a, b) -> bool:
    """Equal, floats within 1e-9 (relative or absolute), recursively through lists and dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b
