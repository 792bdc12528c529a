"""The consistency commands' usage errors, in-process on a new repo holding the quickstart's v2 join: each is
one short message naming the join, argument or table at fault. What the commands print when they run (the
failing check, the load, the buckets per feature) is tested end to end in
tests/streaming/test_consistency_end_to_end.py."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
from support.paths import QUICKSTART_PRODUCTION

from feature_assets.cli.arguments import UsageError
from feature_assets.cli.consistency import add_consistency_commands, load_consistency_table

CONF = "production/joins/quickstart/training_set.v2"
FILES = [
    "group_bys/quickstart/purchases.v1",
    "group_bys/quickstart/returns.v1",
    "group_bys/quickstart/schema.v1",
    "joins/quickstart/training_set.v2",
]
FIRST_DAY, DAY = "2023-11-01", "2023-11-04"
UPLOAD = "default.quickstart_training_set_v2_consistency_upload"


def _repo(root, check: bool = True) -> None:
    for name in FILES:
        target = root / "production" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(QUICKSTART_PRODUCTION / name, target)
    path = root / CONF
    config = json.loads(path.read_text())
    config["metaData"].update({"consistencyCheck": check, "consistencySamplePercent": 100})
    path.write_text(json.dumps(config, indent=2))
    (root / "feature_repo.yaml").write_text(f'start_date: "{FIRST_DAY}"\nend_date: "{DAY}"\n')


def _parse(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_consistency_commands(parser.add_subparsers())
    return parser.parse_args(arguments)


def test_usage_errors(tmp_path, monkeypatch):
    _repo(tmp_path, check=False)
    monkeypatch.chdir(tmp_path)
    args = _parse(["consistency-metrics-compute", "--conf", CONF, "--ds", DAY])
    with pytest.raises(UsageError, match="is not checked for consistency: set check_consistency=True"):
        args.func(args)
    args = _parse(["consistency-metrics-compute", "--conf", CONF, "--sample-percent", "0"])
    with pytest.raises(UsageError, match="--sample-percent 0: expected a share in"):
        args.func(args)
    _repo(tmp_path, check=True)
    args = _parse(["consistency-metrics-compute", "--conf", CONF, "--ds", DAY, "--end-ds", DAY])
    with pytest.raises(UsageError, match="not both"):
        args.func(args)
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", str(tmp_path / "empty"))
    args = _parse(["consistency-metrics-compute", "--conf", CONF])
    with pytest.raises(UsageError, match="no partition of default.quickstart_training_set_v2_logged"):
        args.func(args)
    load = argparse.Namespace(ds=None, start_ds=None, end_ds=None, warehouse=str(tmp_path / "empty"), verbose=False)
    with pytest.raises(UsageError, match=f"no partition of {UPLOAD}"):
        load_consistency_table(load, UPLOAD)
