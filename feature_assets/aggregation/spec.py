"""AggSpec: one output column of a group-by, the unit the offline kernel and the online IRs compute."""

from __future__ import annotations

from dataclasses import dataclass

from feature_assets.aggregation.registry import OPERATIONS, OperationDef


@dataclass(frozen=True)
class AggSpec:
    """An operation over one input column, one window (None: unwindowed) and maybe one bucket column."""

    column_name: str
    input_column: str
    operation: str
    arg_map: tuple[tuple[str, str], ...]  # sorted (key, value) pairs, hashable
    window_millis: int | None
    bucket: str | None = None

    @property
    def args(self) -> dict[str, str]:
        return dict(self.arg_map)

    @property
    def k(self) -> int:
        return int(self.args.get("k", 8))

    @property
    def definition(self) -> OperationDef:
        return OPERATIONS[self.operation]

    @property
    def empty_value(self) -> int | None:
        """The value of an empty window: 0 for counts, else None; a bucketed column is None (no buckets)."""
        return None if self.bucket else self.definition.empty
