"""Compile Python feature configs to deterministic, key-sorted JSON under `production/`.

`compile_configs(repo, conf)` compiles every object a config file defines plus the group-bys and joins
they use; `load_compiled(repo)` reads the compiled configs back for the asset factory and the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feature_assets.api import GroupBy, Join, StagingQuery
from feature_assets.api.naming import resolve_name
from feature_assets.api.sources import EntitySource, EventSource, JoinSource, unwrap_source
from feature_assets.compiler import discovery, serialize, validate
from feature_assets.compiler.errors import CompileError
from feature_assets.compiler.warehouse_check import WarehouseSchemas, check_group_by, check_join
from feature_assets.model import GROUP_BYS, JOINS, KINDS, STAGING_QUERIES, CompiledRepo, Config, config_from_json

PRODUCTION = "production"


def to_json(compiled: dict) -> str:
    return json.dumps(compiled, indent=2, sort_keys=True) + "\n"


def compiled_path(repo: Path, kind: str, name: str) -> Path:
    team, _, rest = name.partition(".")
    return repo / PRODUCTION / kind / team / rest


@dataclass
class Compilation:
    repo: Path
    compiled: dict[tuple[str, str], dict] = field(default_factory=dict)  # (kind, name) -> JSON dict
    tables: WarehouseSchemas | None = None  # the warehouse whose existing source tables configs must match

    def name_of(self, obj: Any, expected: type) -> str:
        if not isinstance(obj, expected):
            raise CompileError(
                discovery.source_file_of(self.repo, obj),
                None,
                None,
                f"expected a {expected.__name__}, got {type(obj).__name__}",
            )
        name = resolve_name(obj)
        if name is None:
            raise CompileError(
                discovery.source_file_of(self.repo, obj),
                None,
                None,
                f"this {expected.__name__} is not bound to a module-level variable in a config "
                "file, so it has no name (or pass name=...)",
            )
        return name

    def add_group_by(self, group_by: GroupBy) -> dict:
        name = self.name_of(group_by, GroupBy)
        key = ("group_bys", name)
        if key not in self.compiled:
            file = discovery.source_file_of(self.repo, group_by)
            for index, source in enumerate(group_by.sources):
                inner = unwrap_source(source)
                check_source_type(inner, file, name, f"sources[{index}]")
                if isinstance(inner, JoinSource):
                    self.add_join(inner.join)
            compiled = serialize.group_by_dict(group_by, name, file, self.join_reference)
            refuse_unsupported(group_by, file, name)
            validate.validate_group_by(compiled, file)
            if self.tables is not None:
                check_group_by(compiled, file, self.tables)
            self.compiled[key] = compiled
        return self.compiled[key]

    def join_reference(self, join: Join) -> dict:
        return self.add_join(join)

    def add_join(self, join: Join) -> dict:
        name = self.name_of(join, Join)
        key = ("joins", name)
        if key not in self.compiled:
            file = discovery.source_file_of(self.repo, join)
            refuse_unsupported(join, file, name)
            check_source_type(unwrap_source(join.left), file, name, "left")
            compiled = serialize.join_dict(join, name, file, self.add_group_by, self.join_reference)
            validate.validate_join(compiled, file)
            if self.tables is not None:
                check_join(compiled, file, self.tables)
            self.compiled[key] = compiled
        return self.compiled[key]

    def add_staging_query(self, staging_query: StagingQuery) -> dict:
        name = self.name_of(staging_query, StagingQuery)
        key = ("staging_queries", name)
        if key not in self.compiled:
            file = discovery.source_file_of(self.repo, staging_query)
            compiled = serialize.staging_query_dict(staging_query, name, file)
            validate.validate_staging_query(compiled, file)
            self.compiled[key] = compiled
        return self.compiled[key]

    def add(self, obj: Any) -> dict:
        if isinstance(obj, GroupBy):
            return self.add_group_by(obj)
        if isinstance(obj, Join):
            return self.add_join(obj)
        return self.add_staging_query(obj)


# Chronon arguments this platform does not honor: refused when set, so nobody believes they took effect.
UNSUPPORTED_ARGUMENTS: dict[type, list[tuple[str, Any, str]]] = {
    GroupBy: [
        ("env", {}, "per-mode environments are not supported; configure Spark through the Spark resource"),
        ("lag", 0, "lagged uploads are not supported; online values are those of the latest loaded day"),
    ],
    Join: [
        ("env", {}, "per-mode environments are not supported; configure Spark through the Spark resource"),
        ("additional_env", [], "per-mode environments are not supported"),
        ("additional_args", [], "extra job arguments are not supported"),
        ("lag", 0, "lagged uploads are not supported"),
        ("skew_keys", {}, "skew keys are not needed: hot keys are split automatically (feature_assets.skew.*)"),
        ("historical_backfill", None, "backfills always cover the requested range; use --start-ds/--end-ds"),
        ("label_part", None, "label joins are not supported"),
    ],
}


def refuse_unsupported_queries(obj: Any, file: str, name: str) -> None:
    """Source arguments the engine does not honor: partitions are always `ds`; cumulative event tables (each
    partition holding all history) would be double counted by windowed reads."""
    if isinstance(obj, GroupBy):
        sources = [(f"sources[{i}]", unwrap_source(s)) for i, s in enumerate(obj.sources)]
    else:
        sources = [("left", unwrap_source(obj.left))]
        sources += [(f"bootstrap_parts[{i}]", part) for i, part in enumerate(obj.bootstrap_parts)]
    for field_name, source in sources:
        partition_column = getattr(getattr(source, "query", None), "partition_column", None)
        if partition_column not in (None, "ds"):
            raise CompileError(
                file,
                name,
                f"{field_name}.query.partition_column",
                f"partition_column={partition_column!r} is not supported: tables are partitioned by ds",
            )
        if getattr(source, "is_cumulative", False):
            raise CompileError(
                file,
                name,
                f"{field_name}.is_cumulative",
                "cumulative event tables are not supported: each ds partition must hold that day's events",
            )


def refuse_unsupported(obj: Any, file: str, name: str) -> None:
    """Unknown keyword arguments and Chronon arguments that would be silently ignored fail here."""
    refuse_unsupported_queries(obj, file, name)
    if obj.unknown_arguments:
        raise CompileError(file, name, sorted(obj.unknown_arguments)[0], f"unknown {type(obj).__name__} argument")
    for field_name, default, reason in UNSUPPORTED_ARGUMENTS[type(obj)]:
        value = getattr(obj, field_name, None)
        if value is not None and value != default:
            raise CompileError(file, name, field_name, f"{field_name}={value!r} is not supported: {reason}")


def check_source_type(source: Any, file: str, name: str, field: str) -> None:
    if not isinstance(source, (EventSource, EntitySource, JoinSource)):
        raise CompileError(
            file,
            name,
            field,
            f"unsupported source {type(source).__name__}: use an EventSource, an EntitySource or a JoinSource",
        )


def compile_configs(
    repo: str | Path, conf: str | Path | None = None, warehouse: str | Path | None = None
) -> Compilation:
    """Compile one config file (or, without `conf`, every config file of the repo).

    With `warehouse`, configs are also checked against the source tables it holds (columns, key types);
    `feature-assets compile` passes the warehouse the other commands use.
    """
    repo = Path(repo).resolve()
    compilation = Compilation(repo, tables=WarehouseSchemas(warehouse) if warehouse is not None else None)
    with discovery.repo_on_path(repo):
        files = [resolve_conf(repo, conf)] if conf else discovery.config_files(repo)
        for file in files:
            module = discovery.load_module(repo, file)
            objects = discovery.objects_defined_in(module)
            if conf and not objects:
                raise CompileError(str(file.relative_to(repo)), None, None, "defines no GroupBy, Join or StagingQuery")
            for _, obj in objects:
                compilation.add(obj)
    return compilation


def resolve_conf(repo: Path, conf: str | Path) -> Path:
    path = Path(conf)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, repo / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise CompileError(str(conf), None, None, f"no such config file (looked in {repo})")


def was_online(text: str) -> bool:
    """Whether an existing compiled file is an online config (turning it offline changes it too)."""
    try:
        return bool(json.loads(text)["metaData"].get("online"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def write_compiled(compilation: Compilation, force: bool = False) -> list[Path]:
    """Write every compiled object; changing an online config that exists already needs `force`."""
    planned = []
    for (kind, name), compiled in sorted(compilation.compiled.items()):
        path = compiled_path(compilation.repo, kind, name)
        text = to_json(compiled)
        existing = path.read_text() if path.exists() and not force else None
        if existing is not None and existing != text and (compiled["metaData"].get("online") or was_online(existing)):
            raise CompileError(
                compiled["metaData"]["sourceFile"],
                name,
                "online",
                f"{path.relative_to(compilation.repo)} is an online config that would change; "
                "re-run with --force to overwrite it",
            )
        planned.append((path, text))
    written = []
    for path, text in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def load_compiled(repo: str | Path) -> CompiledRepo:
    """Every compiled config under `production/`, as models by kind and name."""
    root = Path(repo) / PRODUCTION
    loaded: dict[str, dict] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            config = config_from_json(kind, json.loads(path.read_text()))
            loaded[kind][config.name] = config
    return CompiledRepo(loaded[GROUP_BYS], loaded[JOINS], loaded[STAGING_QUERIES])


def compiled_kind(path: str | Path) -> str:
    """`group_bys`, `joins` or `staging_queries`: the folder of `production/` a compiled file is in."""
    parts = Path(path).resolve().parts
    kind = next((p for p in reversed(parts) if p in KINDS), None)
    if kind is None:
        raise CompileError(str(path), None, None, "not inside production/{group_bys,joins,staging_queries}/")
    return kind


def load_compiled_file(path: str | Path) -> Config:
    """The model of one compiled file, e.g. production/joins/quickstart/training_set.v1."""
    kind = compiled_kind(path)
    return config_from_json(kind, json.loads(Path(path).read_text()))
