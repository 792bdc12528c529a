"""Configs checked against the source tables that already exist in the warehouse: columns and key types.

Compile runs without Spark, so a table's schema comes from the footer of one of its parquet files
(pyarrow), in the layout of the offline warehouse: `<root>/<namespace>/<table>/ds=YYYY-MM-DD/*.parquet`,
with `ds` in the folder names. A warehouse that is not there, a remote one, or a table it does not
hold (yet) is not checked: the backfill's source checks report those.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from feature_assets.compiler.errors import CompileError
from feature_assets.compiler.validate import referenced_columns
from feature_assets.model import EntitySource, EventSource, GroupBy, Join, Query
from feature_assets.naming import qualified

WAREHOUSE_ENV = "FEATURE_ASSETS_WAREHOUSE"
PARTITION_COLUMN = "ds"
PLAIN_COLUMN = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s*$")
# Spark SQL functions called without parentheses: never columns.
BARE_FUNCTIONS = {"current_date", "current_timestamp", "current_timezone", "current_user", "now"}

Columns = dict[str, pa.DataType]
TableSource = EventSource | EntitySource


def default_warehouse() -> Path:
    """The warehouse the other commands use: `$FEATURE_ASSETS_WAREHOUSE`, else `./data/warehouse`."""
    return Path(os.environ.get(WAREHOUSE_ENV) or Path.cwd() / "data" / "warehouse")


def _plain_type(data_type: pa.DataType) -> pa.DataType:
    """Types that differ only in their arrow encoding compare equal (Spark reads both the same)."""
    if pa.types.is_dictionary(data_type):
        return _plain_type(data_type.value_type)
    if pa.types.is_large_string(data_type):
        return pa.string()
    if pa.types.is_large_binary(data_type):
        return pa.binary()
    return data_type


class WarehouseSchemas:
    """The column names and types of the warehouse's tables, read once per table."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self._cache: dict[str, Columns | None] = {}

    def columns(self, table: str) -> Columns | None:
        """A table's columns (with `ds`), or None when the warehouse holds no readable file of it."""
        table = qualified(table)
        if table not in self._cache:
            self._cache[table] = self._read(table)
        return self._cache[table]

    def folder(self, table: str) -> Path:
        return Path(self.root.removeprefix("file://")).resolve().joinpath(*qualified(table).split(".", 1))

    def _read(self, table: str) -> Columns | None:
        if "://" in self.root and not self.root.startswith("file://"):
            return None  # a remote warehouse: checked by the backfill instead
        data_file = _latest_data_file(self.folder(table))
        if data_file is None:
            return None
        try:
            schema = pq.read_schema(data_file)
        except (OSError, pa.ArrowException):
            return None  # a file being written or not parquet: no check rather than a wrong one
        columns = {field.name: _plain_type(field.type) for field in schema}
        columns.setdefault(PARTITION_COLUMN, pa.string())
        return columns


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))
    except OSError:
        return []


def _latest_data_file(folder: Path) -> Path | None:
    """A parquet file of the newest partition (its schema is the one the next backfill reads)."""
    entries = _visible(folder)
    partitions = [p for p in entries if p.is_dir() and p.name.startswith(f"{PARTITION_COLUMN}=")]
    for candidate in [*reversed(partitions), folder]:
        files = [p for p in _visible(candidate) if p.is_file()]
        if files:
            return files[0]
    return None


class TableCheck:
    """Checks of one config's queries against the tables they read; every failure names file, object, field."""

    def __init__(self, schemas: WarehouseSchemas, file: str, obj: str) -> None:
        self.schemas, self.file, self.obj = schemas, file, obj

    def fail(self, field: str, message: str) -> None:
        raise CompileError(self.file, self.obj, field, message)

    def require(self, field: str, table: str, columns: Columns, names: set[str], what: str) -> None:
        # Spark resolves column names case-insensitively (spark.sql.caseSensitive is off by default).
        known = {column.lower() for column in columns} | BARE_FUNCTIONS
        missing = sorted(n for n in names if n.lower() not in known)
        if not missing:
            return
        close = [match for name in missing for match in difflib.get_close_matches(name, columns, 1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        self.fail(
            field,
            f"{what} reads {', '.join(map(repr, missing))}, which {table} does not have{hint}; "
            f"its columns: {', '.join(columns)} (schema of {self.schemas.folder(table)})",
        )

    def query(self, field: str, table: str, query: Query, columns: Columns) -> None:
        """Selects, wheres and the time column read the table's raw columns (`ds` included)."""
        for name, expression in (query.selects or {}).items():
            self.require(f"{field}.query.selects.{name}", table, columns, referenced_columns(expression), "select")
        if query.time_column:
            self.require(
                f"{field}.query.time_column", table, columns, referenced_columns(query.time_column), "time_column"
            )
        for index, condition in enumerate(query.wheres):
            self.require(f"{field}.query.wheres[{index}]", table, columns, referenced_columns(condition), "where")

    def unselected(self, query: Query, table: str, columns: Columns, needed: list[tuple[str, str]]) -> None:
        """Without selects every table column is read as is: the columns the config names must be there."""
        if query.selects is not None:
            return  # validated against the selects, whose expressions were checked above
        for field, column in needed:
            self.require(field, table, columns, {column}, "the config (no selects)")

    def mutations(self, field: str, source: EntitySource) -> None:
        """The mutation table goes through the same query, plus its mutation time and reversal columns."""
        table = qualified(source.mutation_table or "")
        columns = self.schemas.columns(table) if source.mutation_table else None
        if columns is None:
            return
        query = source.query
        self.query(field, table, query.without_time(), columns)
        for name, column in (
            ("mutation_time_column", query.mutation_time_column or "mutation_ts"),
            ("reversal_column", query.reversal_column or "is_before"),
        ):
            self.require(f"{field}.query.{name}", table, columns, referenced_columns(column), name)

    def column_type(self, source: TableSource, column: str) -> pa.DataType | None:
        """The type a source gives an output column when it selects a plain table column (else unknown)."""
        columns = self.schemas.columns(source.read_table)
        selects = source.query.selects
        expression = column if selects is None else selects.get(column)
        plain = PLAIN_COLUMN.match(expression or "")
        if columns is None or plain is None:
            return None
        by_name = {name.lower(): data_type for name, data_type in columns.items()}
        return by_name.get(plain.group(1).lower())


def check_group_by(compiled: dict, file: str, schemas: WarehouseSchemas) -> None:
    """A compiled group-by against the tables its sources read."""
    group_by = GroupBy.from_json(compiled)
    check = TableCheck(schemas, file, group_by.name)
    needed = [("keys", key) for key in group_by.key_columns]
    for index, aggregation in enumerate(group_by.aggregations):
        needed.append((f"aggregations[{index}].input_column", aggregation.input_column))
        needed += [(f"aggregations[{index}].buckets", bucket) for bucket in aggregation.buckets]
    for index, source in enumerate(group_by.sources):
        if not isinstance(source, (EventSource, EntitySource)):
            continue  # a join's output: written by this platform, checked by its own schema check
        columns = schemas.columns(source.read_table)
        if columns is not None:
            check.query(f"sources[{index}]", source.read_table, source.query, columns)
            check.unselected(source.query, source.read_table, columns, needed)
        if isinstance(source, EntitySource):
            check.mutations(f"sources[{index}]", source)


def check_join(compiled: dict, file: str, schemas: WarehouseSchemas) -> None:
    """A compiled join against its left table and bootstrap tables; its keys against its group-bys' tables."""
    join = Join.from_json(compiled)
    check = TableCheck(schemas, file, join.name)
    left = join.left
    if isinstance(left, (EventSource, EntitySource)):
        columns = schemas.columns(left.read_table)
        if columns is not None:
            needed = [(f"row_ids[{index}]", row_id) for index, row_id in enumerate(join.row_ids)]
            needed += [
                (f"right_parts[{index}].key_mapping", left_key)
                for index, part in enumerate(join.join_parts)
                for left_key in part.left_keys
            ]
            check.query("left", left.read_table, left.query, columns)
            check.unselected(left.query, left.read_table, columns, needed)
        _check_key_types(check, join, left)
    for index, part in enumerate(join.bootstrap_parts):
        columns = schemas.columns(part.table)
        if columns is not None:
            check.query(f"bootstrap_parts[{index}]", part.table, part.query, columns)
            # Key columns the selects leave out are read from the table as they are.
            keys = {k for k in part.key_columns or join.row_ids if k not in (part.query.selects or {})}
            check.require(f"bootstrap_parts[{index}].key_columns", part.table, columns, keys, "the bootstrap keys")


def _check_key_types(check: TableCheck, join: Join, left: TableSource) -> None:
    """A join key must have one type on both sides: Spark would otherwise compare them after an implicit cast
    (or not at all), and the online store encodes keys by type."""
    for index, part in enumerate(join.join_parts):
        for left_key, key in part.key_pairs:
            left_type = check.column_type(left, left_key)
            for source in part.group_by.sources:
                if left_type is None or not isinstance(source, (EventSource, EntitySource)):
                    continue
                right_type = check.column_type(source, key)
                if right_type is not None and right_type != left_type:
                    check.fail(
                        f"right_parts[{index}].key_mapping",
                        f"join key {left_key!r} is {left_type} in {left.read_table} but key {key!r} of group-by "
                        f"{part.group_by.name!r} is {right_type} in {source.read_table}; cast one side in its "
                        f"selects (e.g. CAST({key} AS STRING)) so both have one type",
                    )
