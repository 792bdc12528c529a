"""Returns: refund amounts per user; the Kafka topic makes these features TEMPORAL (fresh to the event)."""
from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select

source = EventSource(
    table="data.returns",
    # Chronon's topic spec: the CSV fields of a message in order (the seed's producer lines); host and port are
    # defaults that FEATURE_ASSETS_KAFKA_BOOTSTRAP overrides.
    topic="events.returns/fields=ts,return_id,user_id,product_id,refund_amt/host=kafka/port=9092",
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
