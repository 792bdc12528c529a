"""The bootstrap rules computed independently in pandas, and the comparison of join outputs against them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def by_priority(
    left: pd.DataFrame,
    computed: pd.DataFrame,
    sources: list[pd.DataFrame],
    parts: dict[str, list[str]],
    extra_columns: list[str],
) -> pd.DataFrame:
    """The seed's rule, row by row: first non-null bootstrap value; covered parts keep bootstrap values."""
    indexed = [s.set_index("request_id") for s in sources]
    rows = []
    for index, row in left.iterrows():
        matched = [s.loc[row["request_id"]] for s in indexed if row["request_id"] in s.index]
        provided = [set(m.index) for m in matched]
        result = {"request_id": row["request_id"]}
        for part_columns in parts.values():
            covered = all(any(c in p for p in provided) for c in part_columns)
            for column in part_columns:
                values = [m[column] for m in matched if column in m.index and not pd.isna(m[column])]
                if values:
                    result[column] = values[0]
                elif covered:
                    result[column] = None
                else:
                    result[column] = computed.loc[index, column]
        for column in extra_columns:
            values = [m[column] for m in matched if column in m.index and not pd.isna(m[column])]
            result[column] = values[0] if values else None
        rows.append(result)
    return pd.DataFrame(rows).set_index("request_id")


def assert_frames_equal(actual: pd.DataFrame, expected: pd.DataFrame, columns: list[str]) -> None:
    actual = actual.set_index("request_id").loc[expected.index]
    for column in columns:
        for request_id, want in expected[column].items():
            got = actual.loc[request_id, column]
            if want is None or (isinstance(want, float) and np.isnan(want)):
                assert got is None or pd.isna(got), (column, request_id, got)
            else:
                assert got == pytest.approx(want), (column, request_id, got, want)
