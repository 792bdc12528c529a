"""The logging commands' usage errors, in-process on an empty warehouse: the fault named is the argument's."""

from __future__ import annotations

import argparse

import pytest

from feature_assets.cli.arguments import UsageError
from feature_assets.cli.logging import add_logging_commands


def _parse(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_logging_commands(parser.add_subparsers())
    return parser.parse_args(arguments)


def test_a_missing_conf_is_named_before_the_empty_log_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", str(tmp_path / "empty"))
    args = _parse(["log-flattener", "--conf", "production/joins/quickstart/nothing.v1"])
    with pytest.raises(UsageError, match="production/joins/quickstart/nothing.v1: no such compiled config"):
        args.func(args)
    args = _parse(["log-flattener", "--conf", "joins/quickstart/training_set.py"])
    with pytest.raises(UsageError, match="is a config source, not a compiled config"):
        args.func(args)
