"""Deterministic synthetic data for the quickstart, benchmarks and correctness tests.

* :mod:`feature_assets.dev.datagen.parquet_tables` -- ``write_partitioned`` / ``read_table``
  for the ds-partitioned parquet storage contract.
* :mod:`feature_assets.dev.datagen.quickstart` -- the Chronon quickstart source tables
  (``python -m feature_assets.dev.datagen.quickstart``).
* :mod:`feature_assets.dev.datagen.random_events` -- random point-in-time test cases.

Submodules are imported lazily so ``python -m feature_assets.dev.datagen.quickstart``
does not import the module twice.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "default_warehouse": "parquet_tables",
    "list_partitions": "parquet_tables",
    "read_table": "parquet_tables",
    "write_partition": "parquet_tables",
    "write_partitioned": "parquet_tables",
    "generate_quickstart_data": "quickstart",
    "quickstart_frames": "quickstart",
    "RandomCase": "random_events",
    "random_event_case": "random_events",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
