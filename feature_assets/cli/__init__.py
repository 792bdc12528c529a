"""`feature-assets`: compile configs, generate the quickstart data, backfill through Dagster, show tables,
and the online commands (upload, load, metadata-upload, fetch, serve).

The CLI is the top layer: nothing imports it. Its commands import the layers below when they run, so
`feature-assets fetch` loads neither Spark nor Dagster.
"""

from __future__ import annotations

import argparse
import os
import sys

from feature_assets.cli.arguments import USAGE_ERROR, OneLineParser, UsageError
from feature_assets.cli.offline import add_offline_commands
from feature_assets.cli.online import MONGO_URI_ENV, NEEDS_MONGO, add_online_commands


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="feature-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_offline_commands(commands)
    add_online_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as error:
        print(f"feature-assets {args.command}: {error}", file=sys.stderr)
        return USAGE_ERROR


def _run(args: argparse.Namespace) -> int:
    if args.command in NEEDS_MONGO and not os.environ.get(MONGO_URI_ENV):
        # Embedded default: the local MongoDB-protocol server (state in ./.services), on the data the
        # quickstart loaded.
        from feature_assets.dev.services.local import default_state_dir, local_services

        with local_services(default_state_dir(), mongo=True, kafka=False):
            return args.func(args)
    return args.func(args)
