"""Argument checks shared by the commands: each bad argument is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import NoReturn

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (`feature-assets backfill: --start-ds: ...`) without the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


class UsageError(ValueError):
    """A bad argument found after parsing (a file that is missing, a range in the wrong order)."""


def ds(value: str) -> str:
    """An argparse type: a day as YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(value).isoformat() if len(value) == 10 else _bad_ds(value)
    except ValueError:
        _bad_ds(value)


def _bad_ds(value: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"{value!r} is not a day in the form YYYY-MM-DD (e.g. 2023-12-01)")


def check_range(start_ds: str, end_ds: str) -> None:
    if end_ds < start_ds:
        raise UsageError(f"--end-ds {end_ds} is before --start-ds {start_ds}")


def day_arguments(args: argparse.Namespace, open_ended: bool = False) -> tuple[str | None, str | None]:
    """The days of --ds, or --start-ds/--end-ds: (start, end), None where not given. A bound given alone is
    that one day, or with `open_ended` the range's open side (a load of "everything from --start-ds on")."""
    if args.ds and (args.start_ds or args.end_ds):
        raise UsageError("give --ds or --start-ds/--end-ds, not both")
    if open_ended:
        start, end = args.ds or args.start_ds, args.ds or args.end_ds
    else:
        start = args.ds or args.start_ds or args.end_ds
        end = args.ds or args.end_ds or args.start_ds
    if start and end:
        check_range(start, end)
    return start, end


def table_days(table: str, first_step: str) -> tuple[str, str]:
    """The first and last day of a table of the local warehouse (a command's default range); refused naming
    `first_step`, what makes the table, when it has none."""
    from feature_assets.definitions.factory import LocalWarehouse, is_local_root
    from feature_assets.storage import default_root

    root = default_root()
    days = LocalWarehouse(root).partitions(table) if is_local_root(root) else []
    if not days:
        raise UsageError(f"no partition of {table} in {root}: {first_step}, or give --start-ds/--end-ds")
    return days[0], days[-1]


def compiled_conf(value: str) -> Path:
    """A compiled config file under a feature repo's `production/` folder."""
    path = Path(value)
    if path.suffix == ".py":
        raise UsageError(
            f"{value} is a config source, not a compiled config: run `feature-assets compile --conf "
            f"{value}` in the feature repo, then pass production/<kind>/<team>/<name> (e.g. "
            "production/joins/quickstart/training_set.v1)"
        )
    if not path.exists():
        hint = "" if "production" in path.parts else " (compiled configs live under production/; run compile first)"
        raise UsageError(f"{value}: no such compiled config{hint}")
    if path.is_dir():
        raise UsageError(f"{value} is a folder; pass one compiled config file, e.g. production/joins/<team>/<name>")
    if "production" not in path.resolve().parts:
        raise UsageError(f"{value} is not inside a feature repo's production/ folder")
    return path
