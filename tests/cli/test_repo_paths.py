"""A feature repo's settings may place its warehouse, Dagster home and servers; the CLI fills the variables."""

from __future__ import annotations

import argparse
import os

from feature_assets.cli import PATH_SETTINGS, apply_repo_paths


def test_paths_from_the_settings_of_the_conf_repo(tmp_path, monkeypatch):
    for variable in PATH_SETTINGS.values():
        monkeypatch.delenv(variable, raising=False)
    repo = tmp_path / "project" / "repo"
    (repo / "production" / "joins" / "t").mkdir(parents=True)
    (repo / "feature_repo.yaml").write_text("warehouse: ../data/warehouse\nservices_dir: ../.services\n")
    monkeypatch.chdir(tmp_path)
    apply_repo_paths(argparse.Namespace(conf=str(repo / "production" / "joins" / "t" / "x.v1")))
    assert os.environ["FEATURE_ASSETS_WAREHOUSE"] == str(tmp_path / "project" / "data" / "warehouse")
    assert os.environ["FEATURE_ASSETS_SERVICES_DIR"] == str(tmp_path / "project" / ".services")
    assert "DAGSTER_HOME" not in os.environ


def test_set_variables_win_and_no_settings_change_nothing(tmp_path, monkeypatch):
    for variable in PATH_SETTINGS.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("FEATURE_ASSETS_WAREHOUSE", "/elsewhere")
    (tmp_path / "feature_repo.yaml").write_text("warehouse: data\ndagster_home: home\n")
    monkeypatch.chdir(tmp_path)
    apply_repo_paths(argparse.Namespace(name="t/x.v1"))  # fetch: the repo is the current folder
    assert os.environ["FEATURE_ASSETS_WAREHOUSE"] == "/elsewhere"
    assert os.environ["DAGSTER_HOME"] == str(tmp_path / "home")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path.parent)
    apply_repo_paths(argparse.Namespace())
    assert "DAGSTER_HOME" not in os.environ
