"""Training sets: checkouts (the model's prediction events) enriched with user features as of each checkout."""
from feature_assets.api import ContextualSource, DataType, EventSource, ExternalPart, Join, JoinPart, Query, select
from group_bys.quickstart.purchases import v1 as purchases_v1
from group_bys.quickstart.returns import v1 as returns_v1
from group_bys.quickstart.users import v1 as users

source = EventSource(
    table="data.checkouts",
    query=Query(
        selects=select("user_id", "request_id"),
        time_column="ts",
    ),
)

v1 = Join(
    left=source,
    right_parts=[JoinPart(group_by=group_by) for group_by in [purchases_v1, returns_v1, users]],
    row_ids=["request_id"],
)

v2 = Join(
    left=source,
    right_parts=[JoinPart(group_by=group_by) for group_by in [purchases_v1, returns_v1]],
    row_ids=["request_id"],
    online=True,
    # Every fetch is logged, with the caller's request id (passed among the keys) to stitch logs to rows.
    sample_percent=100,
    online_external_parts=[ExternalPart(ContextualSource(fields=[("request_id", DataType.STRING)]))],
    # 100 checkouts a day: the daily stats summarize all of them (the default 10% would keep about 10).
    stats_sample_percent=100,
    # Every logged request is recomputed offline and compared with what was served (the default samples 5%).
    check_consistency=True,
    consistency_sample_percent=100,
)
