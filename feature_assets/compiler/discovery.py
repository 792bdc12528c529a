"""Loading a feature repo's Python files and finding the objects they define."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feature_assets.api import GroupBy, Join, StagingQuery
from feature_assets.api.naming import KIND_FOLDERS, resolve_name
from feature_assets.compiler.errors import CompileError

KIND_OF_TYPE = {GroupBy: "group_bys", Join: "joins", StagingQuery: "staging_queries"}


def _purge_repo_modules() -> None:
    # Feature repos share top-level package names (group_bys, joins, ...); forget the previous repo's.
    for module_name in list(sys.modules):
        if module_name.split(".")[0] in KIND_FOLDERS:
            del sys.modules[module_name]


@contextmanager
def repo_on_path(repo: Path) -> Iterator[None]:
    _purge_repo_modules()
    importlib.invalidate_caches()  # config files may have been created or edited since the last compile
    # Writing bytecode next to the configs could serve a stale .pyc after an edit of the same size
    # within the same second (pyc validation uses whole-second mtimes), so compile from source only.
    dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        sys.path.remove(str(repo))
        sys.dont_write_bytecode = dont_write_bytecode
        _purge_repo_modules()


def module_name_of(repo: Path, file: Path) -> str:
    relative = file.resolve().relative_to(repo.resolve()).with_suffix("")
    if relative.parts[0] not in KIND_FOLDERS:
        raise CompileError(
            str(relative) + ".py", None, None, f"config files live under one of {', '.join(KIND_FOLDERS)}/"
        )
    return ".".join(relative.parts)


def load_module(repo: Path, file: Path):
    name = module_name_of(repo, file)
    try:
        return importlib.import_module(name)
    except CompileError:
        raise
    except Exception as error:  # a user's config failing to import: name the file and the cause
        raise CompileError(
            str(file.resolve().relative_to(repo.resolve())),
            None,
            None,
            f"failed to import: {type(error).__name__}: {error}",
        ) from error


def objects_defined_in(module) -> list[tuple[str, Any]]:
    """(name, object) for the API objects that this module itself defines, in definition order."""
    found = []
    for variable, value in vars(module).items():
        if type(value) in KIND_OF_TYPE and getattr(value, "_module_globals", None) is vars(module):
            name = resolve_name(value)
            if name is not None and name.endswith("." + variable):
                found.append((name, value))
    return found


def config_files(repo: Path) -> list[Path]:
    files = []
    for kind in KIND_FOLDERS:
        folder = repo / kind
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*.py") if p.name != "__init__.py")
    return files


def source_file_of(repo: Path, obj: Any) -> str:
    file = (getattr(obj, "_module_globals", None) or {}).get("__file__")
    if not file:
        return "<unknown>"
    try:
        return str(Path(file).resolve().relative_to(repo.resolve()))
    except ValueError:
        return str(file)
