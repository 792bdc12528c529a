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
