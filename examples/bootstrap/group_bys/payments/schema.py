"""Schemas of the fetch log: the latest schema JSON of each schema hash, from the log table's schema records.

The log flattener decodes a logged row's key and value bytes with the schema its hash names, so that v1's
logged fetches become rows of `payments_model_v1_logged`, the lowest-priority bootstrap part of v1 and v2.
"""

from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query

source = EventSource(
    table="default.chronon_log_table",
    query=Query(
        selects=dict(
            schema_hash="decode(unbase64(key_base64), 'utf-8')",
            schema_value="decode(unbase64(value_base64), 'utf-8')",
        ),
        wheres=["name = 'SCHEMA_PUBLISH_EVENT'"],
        time_column="ts_millis",
    ),
)

v1 = GroupBy(
    keys=["schema_hash"],
    sources=[source],
    aggregations=[Aggregation(input_column="schema_value", operation=Operation.LAST)],
    online=False,
)
