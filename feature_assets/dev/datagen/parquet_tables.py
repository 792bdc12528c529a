"""Pandas/pyarrow helpers for the offline storage contract.

Contract: a table ``ns.t`` is a parquet dataset partitioned by ``ds`` (string
``YYYY-MM-DD``, UTC) stored at ``<warehouse>/ns/t/ds=YYYY-MM-DD/`` with one or
more parquet files inside.  The ``ds`` column is *not* stored inside the files;
it is the hive partition directory.  Writing a partition replaces that
partition only.  The warehouse root is ``$FEATURE_ASSETS_WAREHOUSE`` and
defaults to ``data/warehouse`` in the current folder.

All I/O goes through :mod:`pyarrow.fs` so non-local roots (``s3://...``,
``gs://...``, ``file://...``) work as well as plain local paths.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

WAREHOUSE_ENV = "FEATURE_ASSETS_WAREHOUSE"
DEFAULT_WAREHOUSE = Path("data") / "warehouse"  # under the current folder
PART_FILE = "part-00000.parquet"

__all__ = [
    "DEFAULT_WAREHOUSE",
    "WAREHOUSE_ENV",
    "default_warehouse",
    "resolve_warehouse",
    "table_location",
    "partition_location",
    "list_partitions",
    "write_partition",
    "write_partitioned",
    "read_table",
]


def default_warehouse() -> str:
    """``$FEATURE_ASSETS_WAREHOUSE`` or ``data/warehouse`` in the current folder."""
    return os.environ.get(WAREHOUSE_ENV) or str(Path.cwd() / DEFAULT_WAREHOUSE)


def resolve_warehouse(warehouse: str | os.PathLike | None = None) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, base_path)`` for a warehouse root (URI or local path)."""
    root = str(warehouse) if warehouse is not None else default_warehouse()
    if "://" in root:
        fs, path = pafs.FileSystem.from_uri(root)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root))


def _split_table(table: str) -> tuple[str, str]:
    ns, sep, name = table.partition(".")
    if not sep or not ns or not name or "/" in table:
        raise ValueError(f"table must look like 'namespace.table', got {table!r}")
    return ns, name


def table_location(warehouse: str | os.PathLike | None, table: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` of ``<warehouse>/<ns>/<t>``."""
    fs, base = resolve_warehouse(warehouse)
    ns, name = _split_table(table)
    return fs, f"{base}/{ns}/{name}"


def partition_location(
    warehouse: str | os.PathLike | None, table: str, ds: str, partition_column: str = "ds"
) -> tuple[pafs.FileSystem, str]:
    fs, path = table_location(warehouse, table)
    return fs, f"{path}/{partition_column}={ds}"


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("_")


def list_partitions(warehouse: str | os.PathLike | None, table: str, partition_column: str = "ds") -> list[str]:
    """Sorted partition values present for ``table`` (empty list if the table is absent)."""
    fs, path = table_location(warehouse, table)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        return []
    prefix = f"{partition_column}="
    out = []
    for child in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        if child.type == pafs.FileType.Directory and child.base_name.startswith(prefix):
            out.append(child.base_name[len(prefix) :])
    return sorted(out)


def _data_files(fs: pafs.FileSystem, part_path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(part_path, recursive=False, allow_not_found=True))
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File and not _is_hidden(i.base_name) and not i.base_name.endswith(".crc")
    )


def write_partition(
    table_data: pa.Table,
    warehouse: str | os.PathLike | None,
    table: str,
    ds: str,
    partition_column: str = "ds",
) -> str:
    """Write one arrow table as partition ``ds`` of ``table``, replacing that partition.

    ``table_data`` must not contain the partition column.  The new file is first
    written under a hidden temporary name, then every other file of the partition
    is removed and the temporary file is moved into place, so readers never see
    a mix of old and new rows on filesystems with atomic rename.
    Returns the path of the written file.
    """
    if partition_column in table_data.column_names:
        raise ValueError(f"arrow table must not contain the partition column {partition_column!r}")
    fs, part_path = partition_location(warehouse, table, ds, partition_column)
    fs.create_dir(part_path, recursive=True)
    tmp_path = f"{part_path}/.{PART_FILE}.{uuid.uuid4().hex}.tmp"
    final_path = f"{part_path}/{PART_FILE}"
    pq.write_table(table_data, tmp_path, filesystem=fs)
    try:
        for info in fs.get_file_info(pafs.FileSelector(part_path, recursive=False)):
            if info.path == tmp_path:
                continue
            if info.type == pafs.FileType.Directory:
                fs.delete_dir(info.path)
            else:
                fs.delete_file(info.path)
        fs.move(tmp_path, final_path)
    except BaseException:
        try:
            fs.delete_file(tmp_path)
        except OSError:
            pass
        raise
    return final_path


def _arrow_from_pandas(df: pd.DataFrame, schema: pa.Schema | None) -> pa.Table:
    if schema is not None:
        return pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    tbl = pa.Table.from_pandas(df, preserve_index=False)
    # All-null object columns come out as the ``null`` type; store them as strings.
    for i, field in enumerate(tbl.schema):
        if pa.types.is_null(field.type):
            tbl = tbl.set_column(i, pa.field(field.name, pa.string()), tbl.column(i).cast(pa.string()))
    return tbl


def write_partitioned(
    df: pd.DataFrame,
    warehouse: str | os.PathLike | None,
    table: str,
    partition_column: str = "ds",
    *,
    schema: pa.Schema | None = None,
    partitions: Iterable[str] | None = None,
) -> list[str]:
    """Write ``df`` as ``<warehouse>/<ns>/<t>/<partition_column>=<value>/part-00000.parquet``.

    Each group of ``df[partition_column]`` replaces its partition; partitions not
    present in ``df`` are left untouched.  The partition column is not stored in
    the files.  ``schema`` (without the partition column) forces the arrow types;
    ``partitions`` lists extra partition values to write as empty partitions when
    ``df`` has no rows for them (e.g. a day that landed with no events).
    Returns the sorted list of partitions written.
    """
    if partition_column not in df.columns:
        raise ValueError(f"dataframe has no partition column {partition_column!r}")
    keys = df[partition_column]
    if keys.isna().any():
        raise ValueError(f"null values in partition column {partition_column!r}")
    data = df.drop(columns=[partition_column])
    tbl = _arrow_from_pandas(data, schema)
    groups = pd.Series(range(len(df))).groupby(keys.astype(str).to_numpy(), sort=True).indices
    written: list[str] = []
    for ds in sorted({str(key) for key in groups} | set(partitions or ())):
        idx = groups.get(ds)
        part = tbl.take(pa.array(idx, pa.int64())) if idx is not None else tbl.slice(0, 0)
        write_partition(part, warehouse, table, ds, partition_column)
        written.append(ds)
    return written


def read_table(
    warehouse: str | os.PathLike | None,
    table: str,
    start_ds: str | None = None,
    end_ds: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    partition_column: str = "ds",
) -> pd.DataFrame:
    """Read partitions ``start_ds <= ds <= end_ds`` (bounds optional, inclusive).

    The partition value is added back as a string column ``ds`` (last column).
    Returns an empty frame (with the stored columns when any partition exists)
    when nothing matches.
    """
    fs, _ = table_location(warehouse, table)
    all_parts = list_partitions(warehouse, table, partition_column)
    parts = [p for p in all_parts if (start_ds is None or p >= start_ds) and (end_ds is None or p <= end_ds)]
    file_cols = [c for c in columns if c != partition_column] if columns is not None else None
    tables: list[pa.Table] = []
    for ds in parts:
        _, part_path = partition_location(warehouse, table, ds, partition_column)
        for path in _data_files(fs, part_path):
            t = pq.read_table(path, filesystem=fs, columns=file_cols)
            tables.append(t.append_column(partition_column, pa.repeat(pa.scalar(ds, pa.string()), t.num_rows)))
    if not tables:
        schema = None
        for ds in all_parts:  # borrow the schema of any existing partition
            _, part_path = partition_location(warehouse, table, ds, partition_column)
            files = _data_files(fs, part_path)
            if files:
                schema = pq.read_schema(files[0], filesystem=fs)
                break
        if schema is None:
            return pd.DataFrame({partition_column: pd.Series([], dtype=object)})
        empty = schema.empty_table()
        if file_cols is not None:
            empty = empty.select(file_cols)
        tables = [empty.append_column(partition_column, pa.array([], pa.string()))]
    result = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    df = result.to_pandas()
    if columns is not None:
        df = df[list(columns)]
    return df
