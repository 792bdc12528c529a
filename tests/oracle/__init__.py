"""Independent, deliberately naive reference implementation ("oracle") of the
feature backfill semantics, in plain pandas/python.

It is written apart from the Spark engine and must never import it; tests use
it to check the engine on random data.
"""

from .naive import (  # noqa: F401
    naive_join_part,
    naive_snapshot_backfill,
    naive_value,
    output_column_names,
)
