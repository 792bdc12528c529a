"""The warehouse root as a Dagster resource: local folder by default, any Spark-writable URI in production."""

from __future__ import annotations

from dagster import ConfigurableResource

from feature_assets.storage import Warehouse, default_root


class WarehouseResource(ConfigurableResource):
    """Where tables live; unset means `$FEATURE_ASSETS_WAREHOUSE`, else `data/warehouse` in the current folder."""

    root: str | None = None

    def get(self, spark) -> Warehouse:
        return Warehouse(spark, self.root or default_root())
