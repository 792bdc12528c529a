"""Offline commands: compile, generate-data, backfill, show, quickstart (Chronon's compile.py and run.py modes).

Each command imports the layers it needs when it runs, so a command never pays for what it does not use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _repo_of(conf: Path) -> Path:
    """The feature repo holding a compiled file: the parent of its `production/` folder."""
    for parent in conf.resolve().parents:
        if parent.name == "production":
            return parent.parent
    raise SystemExit(f"{conf} is not inside a feature repo's production/ folder")


def cmd_compile(args) -> int:
    from feature_assets.compiler import CompileError, compile_configs, write_compiled

    repo = Path(args.repo or ".").resolve()
    try:
        written = write_compiled(compile_configs(repo, args.conf), force=args.force)
    except CompileError as error:
        print(f"compile error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path.relative_to(repo))
    return 0


def cmd_generate_data(args) -> int:
    from feature_assets.dev.datagen.quickstart import generate_quickstart_data

    counts = generate_quickstart_data(
        args.warehouse, args.start_ds, args.end_ds, n_users=args.users, zipf_s=args.zipf_s, seed=args.seed
    )
    print(json.dumps(counts, indent=2))
    return 0


def cmd_backfill(args) -> int:
    from feature_assets.compiler import load_compiled_file
    from feature_assets.definitions import build_definitions
    from feature_assets.definitions.runs import quiet_dagster_warnings, run_backfill

    quiet_dagster_warnings()
    conf = Path(args.conf)
    config = load_compiled_file(conf)
    # The partitions start at --start-ds: the command alone is the contract, with or without repo settings.
    defs = build_definitions(_repo_of(conf), start_date=args.start_ds)
    result = run_backfill(defs, config.kind, config.name, args.start_ds, args.end_ds)
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        rows = materialization.metadata.get("dagster/row_count")
        print(
            f"materialized {materialization.asset_key.to_user_string()} [{materialization.partition}]"
            f" rows={rows.value if rows else '?'}"
        )
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for evaluation in failed_checks:
        print(f"check failed: {evaluation.asset_key.to_user_string()} {evaluation.check_name}", file=sys.stderr)
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.step_failure_data:
                print(event.step_failure_data.error.to_string(), file=sys.stderr)
        return 1
    return 1 if failed_checks else 0


def cmd_show(args) -> int:
    from feature_assets.resources.spark import SparkResource
    from feature_assets.storage import Warehouse

    store = Warehouse(SparkResource().get_session(), args.warehouse)
    frame = store.read(args.table, args.ds, args.ds)
    if args.where:
        frame = frame.where(args.where)
    frame.show(args.limit, truncate=args.truncate)
    return 0


def cmd_quickstart(args) -> int:
    from feature_assets.definitions.runs import quiet_dagster_warnings
    from feature_assets.dev.quickstart import run

    quiet_dagster_warnings()
    return run(regenerate=args.regenerate)


def add_offline_commands(commands) -> None:

    compile_ = commands.add_parser("compile", help="compile configs to production/ JSON")
    compile_.add_argument("--conf", help="a config file such as joins/quickstart/training_set.py (default: all)")
    compile_.add_argument("--repo", help="the feature repo (default: the current folder)")
    compile_.add_argument("--force", action="store_true", help="overwrite changed online configs")
    compile_.set_defaults(func=cmd_compile)

    generate = commands.add_parser("generate-data", help="write the quickstart source tables")
    generate.add_argument("--warehouse")
    generate.add_argument("--start-ds", default="2023-11-01")
    generate.add_argument("--end-ds", default="2023-11-30")
    generate.add_argument("--users", type=int, default=100)
    generate.add_argument("--zipf-s", type=float)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate_data)

    backfill = commands.add_parser("backfill", help="materialize a compiled config and its upstream assets")
    backfill.add_argument("--conf", required=True, help="e.g. production/joins/quickstart/training_set.v1")
    backfill.add_argument("--start-ds", required=True)
    backfill.add_argument("--end-ds", required=True)
    backfill.set_defaults(func=cmd_backfill)

    quickstart = commands.add_parser("quickstart", help="run the quickstart end to end on embedded defaults")
    quickstart.add_argument("--regenerate", action="store_true", help="rewrite the quickstart source tables")
    quickstart.set_defaults(func=cmd_quickstart)

    show = commands.add_parser("show", help="print rows of a table partition")
    show.add_argument("--table", required=True)
    show.add_argument("--ds", required=True)
    show.add_argument("--where")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--truncate", type=int, default=40)
    show.add_argument("--warehouse")
    show.set_defaults(func=cmd_show)
