"""Returns: refund amounts per user; the Kafka topic makes these features TEMPORAL (fresh to the event)."""
from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select

source = EventSource(
    table="data.returns",
    topic="events.returns",
    query=Query(
        selects=select("user_id", "refund_amt"),
        time_column="ts",
    ),
)

window_sizes = [Window(length=day, time_unit=TimeUnit.DAYS) for day in [3, 14, 30]]

v1 = GroupBy(
    sources=[source],
    keys=["user_id"],
    online=True,
    aggregations=[
        Aggregation(input_column="refund_amt", operation=Operation.SUM, windows=window_sizes),
        Aggregation(input_column="refund_amt", operation=Operation.COUNT, windows=window_sizes),
        Aggregation(input_column="refund_amt", operation=Operation.AVERAGE, windows=window_sizes),
        Aggregation(input_column="refund_amt", operation=Operation.LAST_K(2)),
    ],
)
