"""Users: attributes from the daily users snapshot, no aggregation."""
from feature_assets.api import EntitySource, GroupBy, Query, select

source = EntitySource(
    snapshot_table="data.users",
    query=Query(selects=select("user_id", "account_created_ds", "email_verified")),
)

v1 = GroupBy(
    sources=[source],
    keys=["user_id"],
    aggregations=None,
    online=True,
)
