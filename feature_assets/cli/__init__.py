"""`feature-assets`: compile configs, generate the quickstart data, backfill through Dagster, show tables,
and the online commands (upload, load, metadata-upload, fetch, serve).

The CLI is the top layer: nothing imports it. Its commands import the layers below when they run, so
`feature-assets fetch` loads neither Spark nor Dagster.
"""

from __future__ import annotations

import argparse
import sys

from feature_assets.cli.arguments import USAGE_ERROR, OneLineParser, UsageError
from feature_assets.cli.offline import add_offline_commands
from feature_assets.cli.online import NEEDS_MONGO, add_online_commands, end_quickly, run_with_store


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="feature-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_offline_commands(commands)
    add_online_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
    except UsageError as error:
        print(f"feature-assets {args.command}: {error}", file=sys.stderr)
        return USAGE_ERROR
    if argv is None:  # the command is the whole process
        end_quickly(args, code)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.command in NEEDS_MONGO:
        # Without FEATURE_ASSETS_MONGO_URI: the embedded server of ./.services, shared with running commands.
        return run_with_store(args)
    return args.func(args)
