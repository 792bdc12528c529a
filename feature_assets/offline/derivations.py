"""Derivations: Spark SQL expressions over a group-by's or a join's columns; `*` keeps the base columns."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feature_assets.model.configs import Derivation


def apply_derivations(
    frame: DataFrame,
    derivations: Sequence[Derivation],
    base_columns: list[str],
    keep: list[str],
    keep_base: bool = False,
) -> DataFrame:
    """`keep` columns, then the base columns (when `*` is derived or `keep_base`), then derived columns."""
    if not derivations:
        return frame
    derived = [d for d in derivations if not d.is_star]
    names = {d.name for d in derived}
    star = any(d.is_star for d in derivations)
    base = [c for c in base_columns if (star or keep_base) and c not in names]
    return frame.select(
        *[F.col(c) for c in keep], *[F.col(c) for c in base], *[F.expr(d.expression).alias(d.name) for d in derived]
    )
