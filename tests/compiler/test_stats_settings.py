"""A join's stats settings (sample share, drift reference, drift thresholds) and consistency thresholds: kept in the compiled JSON, read
by the model with their defaults, and refused with the field named when invalid. Pure Python."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.repo import write_repo

from feature_assets.compiler import CompileError, compile_configs
from feature_assets.model import Join
from feature_assets.model.configs import DEFAULT_STATS_SAMPLE_PERCENT
from feature_assets.statistics import DriftThresholds

GROUP_BY = """
from feature_assets.api import *
source = EventSource(table="data.purchases", query=Query(selects=select("user_id", "price"), time_column="ts"))
v1 = GroupBy(
    sources=[source],
    keys=["user_id"],
    aggregations=[Aggregation(input_column="price", operation=Operation.SUM, windows=[Window(3, TimeUnit.DAYS)])],
)
"""
JOIN = """
from feature_assets.api import *
from group_bys.team.x import v1 as x_v1
left = EventSource(table="data.checkouts", query=Query(selects=select("user_id", "request_id"), time_column="ts"))
v1 = Join(left=left, right_parts=[JoinPart(group_by=x_v1)], row_ids=["request_id"]{extra})
"""


def _compile(repo: Path, extra: str) -> dict:
    write_repo(repo, {"group_bys/team/x.py": GROUP_BY, "joins/team/y.py": JOIN.format(extra=extra)})
    return compile_configs(repo, "joins/team/y.py").compiled["joins", "team.y.v1"]


def test_defaults_add_nothing_to_the_json(tmp_path):
    compiled = _compile(tmp_path, "")
    assert not {"statsSamplePercent", "driftReference", "driftThresholds"} & set(compiled["metaData"])
    join = Join.from_json(compiled)
    assert join.stats_sample_percent == DEFAULT_STATS_SAMPLE_PERCENT == 10.0
    assert join.drift_reference == ("previous_day", None, None)
    assert join.drift_thresholds == DriftThresholds()
    assert join.daily_stats_upload_table == "default.team_y_v1_daily_stats_upload"
    assert join.logged_daily_stats_upload_table == "default.team_y_v1_logged_daily_stats_upload"


def test_settings_are_kept_and_read(tmp_path):
    compiled = _compile(
        tmp_path,
        ", stats_sample_percent=25, drift_reference={'start_ds': '2023-11-01', 'end_ds': '2023-11-07'}, "
        "drift_thresholds={'psi_warn': 0.3, 'psi_fail': 0.6}",
    )
    meta = compiled["metaData"]
    assert meta["statsSamplePercent"] == 25
    assert meta["driftReference"] == {"start_ds": "2023-11-01", "end_ds": "2023-11-07"}
    join = Join.from_json(compiled)
    assert join.stats_sample_percent == 25.0
    assert join.drift_reference == ("pinned", "2023-11-01", "2023-11-07")
    assert join.drift_thresholds == DriftThresholds(psi_warn=0.3, psi_fail=0.6)
    trailing = Join.from_json(_compile(tmp_path, ", drift_reference='trailing_7_days'"))
    assert trailing.drift_reference == ("trailing_7_days", None, None)


def test_consistency_thresholds_are_kept_and_read_over_the_defaults(tmp_path):
    from feature_assets.quality.consistency import ConsistencyThresholds
    from feature_assets.quality.consistency_tables import consistency_thresholds

    assert "consistencyThresholds" not in _compile(tmp_path, "")["metaData"]
    assert consistency_thresholds(Join.from_json(_compile(tmp_path, ""))) == ConsistencyThresholds()
    compiled = _compile(tmp_path, ", consistency_thresholds={'mismatch_rate_warn': 0.02, 'mismatch_rate_fail': 0.05}")
    assert compiled["metaData"]["consistencyThresholds"] == {"mismatch_rate_warn": 0.02, "mismatch_rate_fail": 0.05}
    thresholds = consistency_thresholds(Join.from_json(compiled))
    assert thresholds == ConsistencyThresholds(mismatch_rate_warn=0.02, mismatch_rate_fail=0.05)
    assert (thresholds.smape_warn, thresholds.smape_fail) == (0.001, 0.01)


@pytest.mark.parametrize(
    "extra, field, message",
    [
        (", stats_sample_percent=0", "stats_sample_percent", "(0, 100]"),
        (", stats_sample_percent='all'", "stats_sample_percent", "must be a number"),
        (", drift_reference='last_week'", "drift_reference", "previous_day, trailing_7_days"),
        (", drift_reference={'start_ds': '2023-11-01'}", "drift_reference", "pinned window"),
        (", drift_reference={'start_ds': '2023-11-09', 'end_ds': '2023-11-01'}", "drift_reference", "is after"),
        (", drift_thresholds={'js_warn': 0.1}", "drift_thresholds", "unknown threshold"),
        (", drift_thresholds={'psi_warn': 'high'}", "drift_thresholds.psi_warn", "must be a number"),
        (", drift_thresholds={'psi_warn': 0.5, 'psi_fail': 0.2}", "drift_thresholds", "warn (0.5) <= fail (0.2)"),
        (", consistency_thresholds={'mismatch_warn': 0.1}", "consistency_thresholds", "unknown threshold"),
        (", consistency_thresholds={'smape_fail': '1%'}", "consistency_thresholds.smape_fail", "must be a number"),
        (", consistency_thresholds={'smape_fail': -1}", "consistency_thresholds.smape_fail", "must be a number >= 0"),
        (", consistency_thresholds={'mismatch_rate_warn': 0.05}", "consistency_thresholds", "above fail level 0.01"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(tmp_path, extra, field, message):
    with pytest.raises(CompileError) as info:
        _compile(tmp_path, extra)
    assert (info.value.file, info.value.obj, info.value.field) == ("joins/team/y.py", "team.y.v1", field)
    assert message in info.value.message
