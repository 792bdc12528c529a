from feature_assets.naming import qualified
from feature_assets.storage.warehouse import (
    PARTITION_COLUMN,
    TableNotFound,
    Warehouse,
    date_range,
    default_root,
    local_path,
    shift_ds,
)

__all__ = [
    "PARTITION_COLUMN",
    "TableNotFound",
    "Warehouse",
    "date_range",
    "default_root",
    "local_path",
    "qualified",
    "shift_ds",
]
