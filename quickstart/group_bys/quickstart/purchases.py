"""Purchases: how much and how often a user bought, over several windows."""
from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select

source = EventSource(
    table="data.purchases",  # the batch log of purchases, one partition per day
    topic=None,  # no streaming source: values refresh with the daily batch upload (SNAPSHOT accuracy)
    query=Query(
        selects=select("user_id", "purchase_price"),
        time_column="ts",
    ),
)

window_sizes = [Window(length=day, time_unit=TimeUnit.DAYS) for day in [3, 14, 30]]

v1 = GroupBy(
    sources=[source],
    keys=["user_id"],
    online=True,
    aggregations=[
        Aggregation(input_column="purchase_price", operation=Operation.SUM, windows=window_sizes),
        Aggregation(input_column="purchase_price", operation=Operation.COUNT, windows=window_sizes),
        Aggregation(input_column="purchase_price", operation=Operation.AVERAGE, windows=window_sizes),
        Aggregation(input_column="purchase_price", operation=Operation.LAST_K(10)),
    ],
)
