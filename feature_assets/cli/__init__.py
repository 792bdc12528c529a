"""`feature-assets`: compile configs, generate the quickstart data, backfill through Dagster, show tables,
and the online commands (upload, load, metadata-upload, fetch, serve).

The CLI is the top layer: nothing imports it. Its commands import the layers below when they run, so
`feature-assets fetch` loads neither Spark nor Dagster.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from feature_assets.cli.arguments import USAGE_ERROR, OneLineParser, UsageError
from feature_assets.cli.consistency import add_consistency_commands
from feature_assets.cli.logging import NEEDS_LOG_STORE, add_logging_commands
from feature_assets.cli.offline import add_offline_commands
from feature_assets.cli.online import NEEDS_MONGO, add_online_commands, end_quickly, run_with_services
from feature_assets.cli.quality import add_quality_commands
from feature_assets.cli.streaming import NEEDS_KAFKA, NEEDS_KAFKA_AND_MONGO, add_streaming_commands


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="feature-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_offline_commands(commands)
    add_online_commands(commands)
    add_streaming_commands(commands)
    add_logging_commands(commands)
    add_quality_commands(commands)
    add_consistency_commands(commands)
    return parser


REPO_SETTINGS = "feature_repo.yaml"
# Folders a feature repo's settings may place (relative to the settings file), and the variables they fill.
# The quickstart keeps its tables, Dagster home and servers in the project folder, so the seed's commands run
# from inside quickstart/ see the data command A made.
PATH_SETTINGS = {
    "warehouse": "FEATURE_ASSETS_WAREHOUSE",
    "dagster_home": "DAGSTER_HOME",
    "services_dir": "FEATURE_ASSETS_SERVICES_DIR",
}


def apply_repo_paths(args: argparse.Namespace) -> None:
    """Fill unset path variables from the feature repo's settings: the repo holding --conf, else the current
    folder. Without settings the defaults are folders of the current directory."""
    conf = getattr(args, "conf", None)
    repo = next((p.parent for p in Path(conf).resolve().parents if p.name == "production"), None) if conf else None
    settings_file = (repo or Path.cwd()) / REPO_SETTINGS
    if not settings_file.is_file():
        return
    settings = yaml.safe_load(settings_file.read_text()) or {}
    for key, variable in PATH_SETTINGS.items():
        if settings.get(key) and not os.environ.get(variable):
            os.environ[variable] = str((settings_file.parent / str(settings[key])).resolve())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_repo_paths(args)
    try:
        code = _run(args)
    except UsageError as error:
        print(f"feature-assets {args.command}: {error}", file=sys.stderr)
        return USAGE_ERROR
    if argv is None:  # the command is the whole process
        end_quickly(args, code)
    return code


def _run(args: argparse.Namespace) -> int:
    # Without FEATURE_ASSETS_MONGO_URI / FEATURE_ASSETS_KAFKA_BOOTSTRAP: the embedded servers of the services
    # folder, shared with running commands.
    mongo = args.command in NEEDS_MONGO or args.command in NEEDS_KAFKA_AND_MONGO or args.command in NEEDS_LOG_STORE
    kafka = args.command in NEEDS_KAFKA or args.command in NEEDS_KAFKA_AND_MONGO
    kafka = kafka or (args.command in NEEDS_LOG_STORE and args.source == "kafka")
    if mongo or kafka:
        return run_with_services(args, mongo=mongo, kafka=kafka)
    return args.func(args)
