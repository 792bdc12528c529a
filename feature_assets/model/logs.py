"""Names shared by the fetch log's writers and readers: the raw log table, its schema records, the flattened
tables' bookkeeping column, and how a repo's schema group-by is recognized.

The raw log table holds one row per logged fetch (and per published schema) as the online logger wrote it:
`schema_hash, key_base64, value_base64, ts_millis, name, ds`. The schema group-by (the quickstart's
`group_bys/quickstart/schema.py`) keeps the latest schema JSON of every hash from its schema records; the
flattener decodes a join's rows with those schemas into `{join}_logged`.
"""

from __future__ import annotations

from feature_assets.model.configs import CompiledRepo, EventSource, GroupBy
from feature_assets.naming import qualified

RAW_LOG_TABLE = "default.chronon_log_table"
RAW_LOG_COLUMNS = ("schema_hash", "key_base64", "value_base64", "ts_millis", "name", "ds")
SCHEMA_PUBLISH_EVENT = "SCHEMA_PUBLISH_EVENT"
LOG_COLLECTION = "fetch_log"
LOG_TOPIC = "fetch_log"
SCHEMA_HASH_COLUMN = "schema_hash"
SCHEMA_VALUE_COLUMN = "schema_value_last"
# A `_logged` row's fields that its schema version did not have: holes for bootstrap to fill, not logged nulls.
ABSENT_FIELDS_COLUMN = "_absent_fields"


def is_schema_group_by(group_by: GroupBy) -> bool:
    """A group-by keyed by schema hash over the raw log table, with the latest schema value per hash."""
    reads_log = any(
        isinstance(source, EventSource) and qualified(source.table) == RAW_LOG_TABLE for source in group_by.sources
    )
    return reads_log and tuple(group_by.key_columns) == (SCHEMA_HASH_COLUMN,)


def schema_group_by(compiled: CompiledRepo) -> GroupBy | None:
    """The repo's schema group-by (the first by name when there are several), if it has one."""
    found = sorted((g for g in compiled.group_bys.values() if is_schema_group_by(g)), key=lambda g: g.name)
    return found[0] if found else None
