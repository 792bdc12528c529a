"""Returns: the experimental features (the seed's V2_FEATURES), first backfilled for a sample in v2_dev."""

from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select

source = EventSource(
    table="data.returns",
    query=Query(selects=select("user_id", "refund_amt"), time_column="ts"),
)

v1 = GroupBy(
    sources=[source],
    keys=["user_id"],
    online=True,
    aggregations=[
        Aggregation(
            input_column="refund_amt",
            operation=Operation.SUM,
            windows=[Window(length=7, time_unit=TimeUnit.DAYS)],
        ),
        Aggregation(
            input_column="refund_amt",
            operation=Operation.COUNT,
            windows=[Window(length=7, time_unit=TimeUnit.DAYS)],
        ),
    ],
)
