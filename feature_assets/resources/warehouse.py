"""The warehouse root as a Dagster resource: local folder by default, any Spark-writable URI in production."""
from __future__ import annotations

from typing import Optional

from dagster import ConfigurableResource

from feature_assets.storage import Warehouse, default_root


class WarehouseResource(ConfigurableResource):
    """Where tables live; unset means `$FEATURE_ASSETS_WAREHOUSE`, else the project's `data/warehouse`."""

    root: Optional[str] = None

    def get(self, spark) -> Warehouse:
        return Warehouse(spark, self.root or default_root())
