"""The column types of a streamed source: the source table's declared schema, never guessed from values.

Where they come from, first found wins:

1. the online store's metadata, `schema/table/<namespace.table>`: `{columns: [[name, type], ...], recorded_at_ms}`,
   written by metadata-upload from the warehouse (so a streaming process needs no access to the warehouse);
2. the offline warehouse itself (the footer of the table's newest parquet file), for a local run before any
   metadata upload.

Types are those of `feature_assets.sql.types`; a column whose type streamed rows cannot carry is left out (a
query that reads it is refused when the job starts, naming the column).
"""

from __future__ import annotations

import time
from pathlib import Path

from feature_assets.compiler.warehouse_check import PARTITION_COLUMN, WarehouseSchemas, default_warehouse
from feature_assets.model import GroupBy
from feature_assets.naming import qualified
from feature_assets.online.store import KVStore
from feature_assets.sql.types import UnsupportedType, from_arrow

Schema = dict[str, str]


class SchemaNotFound(LookupError):
    pass


def schema_key(table: str) -> str:
    return f"schema/table/{qualified(table)}"


def warehouse_schema(table: str, warehouse_root: str | Path | None = None) -> Schema | None:
    """The table's streamable columns as the warehouse holds them (without `ds`), or None without a readable file."""
    columns = WarehouseSchemas(warehouse_root or default_warehouse()).columns(table)
    if columns is None:
        return None
    schema: Schema = {}
    for name, data_type in columns.items():
        if name == PARTITION_COLUMN:
            continue
        try:
            schema[name] = from_arrow(data_type)
        except UnsupportedType:
            continue
    return schema


def record_source_schemas(store: KVStore, group_by: GroupBy, warehouse_root: str | Path | None = None) -> list[str]:
    """Store the schemas of a group-by's streamed source tables that the warehouse holds; returns the keys written."""
    written = []
    for source in group_by.sources:
        if not source.topic:
            continue
        schema = warehouse_schema(source.read_table, warehouse_root)
        if schema is None:
            continue
        key = schema_key(source.read_table)
        store.put_metadata(key, {"columns": [[c, t] for c, t in schema.items()], "recorded_at_ms": _now_ms()})
        written.append(key)
    return written


def source_schema(store: KVStore | None, table: str, warehouse_root: str | Path | None = None) -> Schema:
    """The column types of a source table (metadata store first, then the warehouse); raises SchemaNotFound."""
    if store is not None:
        doc = store.get_metadata(schema_key(table))
        if doc and doc.get("columns"):
            return {str(c): str(t) for c, t in doc["columns"]}
    schema = warehouse_schema(table, warehouse_root)
    if schema is not None:
        return schema
    root = warehouse_root or default_warehouse()
    raise SchemaNotFound(
        f"no schema for {qualified(table)}: the online store has none (run metadata-upload once the table exists) "
        f"and the warehouse at {root} holds no file of it"
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
