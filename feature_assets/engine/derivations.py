"""Derivations: Spark SQL expressions over a group-by's or a join's columns; `*` keeps the base columns."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def apply_derivations(frame: DataFrame, derivations: list[dict], base_columns: list[str], keep: list[str],
                      keep_base: bool = False) -> DataFrame:
    """`keep` columns, then the base columns (when `*` is derived or `keep_base`), then derived columns."""
    if not derivations:
        return frame
    derived = [(d["name"], d["expression"]) for d in derivations if d["name"] != "*"]
    names = {name for name, _ in derived}
    star = any(d["name"] == "*" for d in derivations)
    base = [c for c in base_columns if (star or keep_base) and c not in names]
    return frame.select(*[F.col(c) for c in keep], *[F.col(c) for c in base],
                        *[F.expr(expression).alias(name) for name, expression in derived])
