"""The package's imports point one way: no cycles, no hidden function-level imports, lower layers never
import higher ones, and the HTTP fetch service loads neither PySpark nor Dagster.

Pure Python (reads the sources with `ast`); only one check starts a subprocess.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from support.paths import PROJECT_ROOT as ROOT
from support.paths import TESTS as TESTS_DIR

PACKAGE = "feature_assets"
PACKAGE_DIR = ROOT / PACKAGE

# The layer order, lowest first: a module may import its own layer or a lower one, never a higher one.
# Keys are the first component under feature_assets (a subpackage or a top-level module).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("naming", "aggregation", "sql", "statistics")),
    ("model", ("model",)),
    ("authoring", ("api", "compiler")),
    ("storage", ("storage",)),
    ("online", ("online",)),
    ("offline", ("offline",)),
    ("streaming", ("streaming", "quality")),
    ("orchestration", ("definitions", "checks", "resources")),
    # Demo and development tools (quickstart runner, data generators, embedded servers): apart from the
    # library, used by the CLI only.
    ("dev", ("dev",)),
    ("cli", ("cli",)),
]
# The package's own __init__ sits at the bottom: everything may import `feature_assets`.
ROOT_LAYER = "base"

# Heavy runtime dependencies and the parts of the package that must run without them (a serving
# container has no JVM and no Dagster). Checked on module-level imports, following feature_assets imports.
FORBIDDEN_RUNTIME: dict[str, tuple[str, ...]] = {
    "pyspark": ("naming", "aggregation", "sql", "model", "api", "compiler", "online"),
    "dagster": ("naming", "aggregation", "sql", "model", "api", "compiler", "storage", "online", "offline"),
}

# Function-level imports of feature_assets modules that are deliberate, each with the reason. Keep it
# short: an import inside a function usually hides a cycle or a layering problem.
# Entries are importing modules: the CLI is the top layer (nothing imports it, so it closes no cycle); each
# command imports its layers when it runs, so `feature-assets fetch` does not load Spark and Dagster.
FUNCTION_IMPORT_ALLOWED: tuple[str, ...] = ("feature_assets.cli",)

SERVICE_MODULE = "feature_assets.online.fetch.service"
HEAVY_PREFIXES = ("pyspark", "dagster")


@dataclass
class Import:
    target: str  # a feature_assets module, or the top-level name of a third-party package
    line: int
    type_checking: bool = False


@dataclass
class ModuleImports:
    module_level: list[Import] = field(default_factory=list)
    function_level: list[Import] = field(default_factory=list)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def is_package(module: str) -> bool:
    return package_modules()[module].name == "__init__.py"


def resolve_relative(module: str, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written inside `module`."""
    base = module.split(".")
    # A package's own __init__ counts as one level deeper than a plain module of the same name.
    drop = level - 1 if is_package(module) else level
    base = base[: len(base) - drop] if drop else base
    return ".".join(base + ([name] if name else []))


def import_targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Modules an import statement loads: `from x import y` counts as x.y when y is a module, else x."""
    modules = package_modules()
    if isinstance(node, ast.Import):
        return [alias.name if alias.name.split(".")[0] == PACKAGE else alias.name.split(".")[0] for alias in node.names]
    source = resolve_relative(module, node.level, node.module) if node.level else (node.module or "")
    if source.split(".")[0] != PACKAGE:
        return [source.split(".")[0]]
    targets = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        targets.append(submodule if submodule in modules else source)
    return list(dict.fromkeys(targets))


def is_type_checking_guard(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def collect(module: str, tree: ast.AST) -> ModuleImports:
    found = ModuleImports()

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                bucket = found.function_level if in_function else found.module_level
                bucket.extend(Import(target, child.lineno, type_checking) for target in import_targets(module, child))
            inner_function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            guarded = type_checking or (isinstance(child, ast.If) and is_type_checking_guard(child))
            visit(child, inner_function, guarded)

    visit(tree, False, False)
    return found


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@cache
def imports_of(module: str) -> ModuleImports:
    return collect(module, parsed(package_modules()[module]))


def runtime_graph() -> dict[str, list[str]]:
    """feature_assets module -> feature_assets modules it loads when imported (TYPE_CHECKING excluded)."""
    modules = package_modules()
    return {
        module: sorted(
            {
                i.target
                for i in imports_of(module).module_level
                if i.target in modules and not i.type_checking and i.target != module
            }
        )
        for module in modules
    }


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [cycle_within(graph, set(component)) for component in components]


def cycle_within(graph: dict[str, list[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth-first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in graph[node]:
                if target not in component:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle found in component {sorted(component)}")


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_LAYER
    for layer, members in LAYERS:
        if parts[1] in members:
            return layer
    return None


LAYER_RANK = {layer: rank for rank, (layer, _) in enumerate(LAYERS)}


def short(module: str) -> str:
    return module.removeprefix(f"{PACKAGE}.")


# --------------------------------------------------------------------------- the checks


def test_every_module_has_a_layer():
    missing = sorted(
        {
            module.split(".")[1]
            for module in package_modules()
            if "." in module and not any(module.split(".")[1] in members for _, members in LAYERS)
        }
    )
    assert not missing, f"add these to LAYERS in {Path(__file__).name}: {missing}"


def test_package_imports_resolve():
    """Every imported feature_assets name is a module of the package (or a name its __init__ defines)."""
    modules = package_modules()
    missing = sorted(
        {
            f"  {short(module)}:{imported.line} imports {imported.target}"
            for module in modules
            for imported in imports_of(module).module_level + imports_of(module).function_level
            if imported.target.split(".")[0] == PACKAGE and imported.target not in modules
        }
    )
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_no_import_cycles():
    cycles = find_cycles(runtime_graph())
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        "  " + " -> ".join(short(m) for m in cycle) for cycle in cycles
    )


def test_no_function_level_imports_of_the_package():
    found = []
    for module in package_modules():
        for imported in imports_of(module).function_level:
            if imported.target.split(".")[0] == PACKAGE and not module.startswith(FUNCTION_IMPORT_ALLOWED):
                found.append(f"  {short(module)}:{imported.line} imports {short(imported.target)} inside a function")
    assert not found, "function-level imports of feature_assets modules (move them to the top):\n" + "\n".join(found)


def test_imports_respect_the_layer_order():
    violations = []
    for module in package_modules():
        own = layer_of(module)
        for imported in imports_of(module).module_level + imports_of(module).function_level:
            if imported.target.split(".")[0] != PACKAGE:
                continue
            target_layer = layer_of(imported.target)
            if own is None or target_layer is None:
                continue  # reported by test_every_module_has_a_layer / test_package_imports_resolve
            if LAYER_RANK[target_layer] > LAYER_RANK[own]:
                violations.append(
                    f"  {short(module)} imports {short(imported.target)} (layer {own} -> higher layer {target_layer})"
                )
    assert not violations, "imports against the layer order:\n" + "\n".join(sorted(set(violations)))


def heavy_path(module: str, dependency: str, graph: dict[str, list[str]]) -> list[str] | None:
    """A chain of module-level imports from `module` to the third-party `dependency`, if any (breadth-first)."""
    parents: dict[str, str | None] = {module: None}
    frontier = [module]
    while frontier:
        following = []
        for node in frontier:
            if any(i.target == dependency and not i.type_checking for i in imports_of(node).module_level):
                path = [node]
                while (parent := parents[path[-1]]) is not None:
                    path.append(parent)
                return [*reversed(path), dependency]
            for target in graph[node]:
                if target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    return None


def test_spark_and_dagster_stay_out_of_the_lower_layers():
    graph = runtime_graph()
    violations = []
    for dependency, packages in FORBIDDEN_RUNTIME.items():
        for module in package_modules():
            if "." in module and module.split(".")[1] in packages:
                path = heavy_path(module, dependency, graph)
                if path:
                    violations.append(f"  {short(module)} loads {dependency}: " + " -> ".join(map(short, path)))
    assert not violations, "heavy dependencies reached at import time:\n" + "\n".join(violations)


def test_fetch_service_loads_neither_spark_nor_dagster():
    code = (
        f"import json, sys; import {SERVICE_MODULE}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY_PREFIXES!r}))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing {SERVICE_MODULE} failed:\n{result.stderr[-3000:]}"
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    roots = sorted({name.split(".")[0] for name in loaded})
    assert not loaded, f"importing {SERVICE_MODULE} loads {roots} ({len(loaded)} modules)"


def test_no_test_module_imports_another():
    found = []
    for path in sorted(TESTS_DIR.rglob("*.py")):
        for node in ast.walk(parsed(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
            for name in names:
                if any(part.startswith("test_") for part in name.split(".")):
                    found.append(f"  {path.relative_to(ROOT)}:{node.lineno} imports {name}")
                    break
    assert not found, "test modules importing test modules (move shared helpers elsewhere):\n" + "\n".join(found)


def levels_up(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> int:
    """How many directories an expression built on `__file__` climbs (`.parent`, `.parents[i]`, dirname)."""
    climbed = 0
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Attribute) and parent.attr == "parent":
            climbed += 1
        elif isinstance(parent, ast.Attribute) and parent.attr == "parents":
            grand = parents.get(parent)
            index = grand.slice if isinstance(grand, ast.Subscript) else None
            climbed += (index.value + 1) if isinstance(index, ast.Constant) and isinstance(index.value, int) else 2
        elif (
            isinstance(parent, ast.Call)
            and isinstance(parent.func, (ast.Attribute, ast.Name))
            and (getattr(parent.func, "attr", None) == "dirname" or getattr(parent.func, "id", None) == "dirname")
        ):
            climbed += 1
        elif not isinstance(parent, (ast.Call, ast.Attribute, ast.Subscript)):
            break
        node = parent
    return climbed


def test_no_default_path_from_the_package_location():
    """Installed as a wheel, the package sits in site-packages: paths above it are not the user's project.
    One level up (a data file beside the module) is fine."""
    found = []
    for module, path in package_modules().items():
        tree = parsed(path)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "__file__" and levels_up(node, parents) > 1:
                line = path.read_text().splitlines()[node.lineno - 1].strip()
                found.append(f"  {short(module)}:{node.lineno}: {line}")
    assert not found, "paths derived from the package's own location:\n" + "\n".join(found)
