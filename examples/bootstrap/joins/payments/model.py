"""The seed's bootstrap walk: a production join `v1` stitched from its own fetch log, an offline experiment
`v2_dev` on a downsample of v1's rows reusing v1's features, and `v2`, the next production join, reusing both.

Bootstrap matches rows by `row_ids` within a day; the first bootstrap part has the highest priority and the
join's own log (`bootstrap_from_log=True`) the lowest. Rows a part covers are not computed again; the others
are computed ("automatic hole filling").
"""

from group_bys.payments import purchases, returns
from staging_queries.payments import payments_driver

from feature_assets.api import (
    BootstrapPart,
    ContextualSource,
    DataType,
    EventSource,
    ExternalPart,
    Join,
    JoinPart,
    Query,
    get_join_output_table_name,
    get_staging_query_output_table_name,
    select,
)

ENTITY_KEYS = ["user_id"]
V1_FEATURES = [JoinPart(group_by=purchases.v1)]
# The request id, sent with the keys of every fetch, is logged with the served values: the log joins back to rows.
V1_EXT_FEATURES = [ExternalPart(ContextualSource(fields=[("request_id", DataType.STRING)]))]
V2_FEATURES = [JoinPart(group_by=returns.v1)]
ROW_IDS = ["request_id"]

v1_source = EventSource(
    table=get_staging_query_output_table_name(payments_driver.v1, full_name=True),
    query=Query(
        selects=select("request_id", "label", rng="rng", **{pk: pk for pk in ENTITY_KEYS}),
        time_column="ts",
    ),
)

v1 = Join(
    online=True,
    left=v1_source,
    right_parts=V1_FEATURES,
    online_external_parts=V1_EXT_FEATURES,
    bootstrap_from_log=True,
    row_ids=ROW_IDS,
    sample_percent=100,  # every fetch is logged
)

# v1's rows with a label, downsampled: every positive and about 5% of the rest.
v2_dev_source = EventSource(
    table=get_join_output_table_name(v1),
    query=Query(
        selects=select("request_id", "user_id", "rng", "label"),
        wheres=["label = 1 OR rng < 0.05"],
        time_column="ts",
    ),
)

# Offline only: v1's features come from v1's output, the new returns features are computed for the sample.
v2_dev = Join(
    online=False,
    left=v2_dev_source,
    right_parts=V1_FEATURES + V2_FEATURES,
    row_ids=ROW_IDS,
    bootstrap_parts=[BootstrapPart(table=get_join_output_table_name(v1, full_name=True))],
)

v2_source = EventSource(
    table=get_staging_query_output_table_name(payments_driver.v2, full_name=True),
    query=Query(
        selects=select("request_id", "label", rng="rng", **{pk: pk for pk in ENTITY_KEYS}),
        time_column="ts",
    ),
)

# Production again: v1's output, then v2_dev's, then v2's own log once it is served; what none covers is computed.
v2 = Join(
    online=True,
    left=v2_source,
    right_parts=V1_FEATURES + V2_FEATURES,
    online_external_parts=V1_EXT_FEATURES,
    bootstrap_from_log=True,
    row_ids=ROW_IDS,
    sample_percent=100,
    bootstrap_parts=[
        BootstrapPart(table=get_join_output_table_name(v1, full_name=True)),
        BootstrapPart(table=get_join_output_table_name(v2_dev, full_name=True)),
    ],
)
