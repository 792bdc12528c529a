"""Name rules shared by every layer (Chronon's): clean names, table names, online dataset names."""

from __future__ import annotations

import re

DEFAULT_NAMESPACE = "default"


def clean_name(name: str) -> str:
    """Chronon's sanitize: every character outside [A-Za-z0-9_] becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def table_of(namespace: str | None, name: str) -> str:
    """`quickstart.training_set.v1` in namespace `default` -> `default.quickstart_training_set_v1`."""
    return f"{namespace or DEFAULT_NAMESPACE}.{clean_name(name)}"


def qualified(table: str) -> str:
    """Tables named without a namespace live in `default` (Chronon's default database)."""
    return table if "." in table else f"{DEFAULT_NAMESPACE}.{table}"


def dataset_name(group_by_name: str) -> str:
    """The online dataset prefix of a group-by: `quickstart.purchases.v1` -> `QUICKSTART_PURCHASES_V1`."""
    return clean_name(group_by_name.replace("/", ".")).upper()


def normalize_name(name: str) -> str:
    """A config name as users type it (`quickstart/purchases.v1`) -> `quickstart.purchases.v1`."""
    return name.strip().replace("/", ".")
