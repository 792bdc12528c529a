"""Purchases: the production features (the seed's V1_FEATURES), daily batch values (SNAPSHOT accuracy)."""

from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select

source = EventSource(
    table="data.purchases",
    query=Query(selects=select("user_id", "purchase_price"), time_column="ts"),
)

v1 = GroupBy(
    sources=[source],
    keys=["user_id"],
    online=True,
    aggregations=[
        Aggregation(
            input_column="purchase_price",
            operation=Operation.SUM,
            windows=[Window(length=3, time_unit=TimeUnit.DAYS), Window(length=7, time_unit=TimeUnit.DAYS)],
        ),
        Aggregation(
            input_column="purchase_price",
            operation=Operation.COUNT,
            windows=[Window(length=7, time_unit=TimeUnit.DAYS)],
        ),
    ],
)
