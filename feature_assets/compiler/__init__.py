from feature_assets.compiler.compile import (
    compile_configs,
    compiled_kind,
    compiled_path,
    load_compiled,
    load_compiled_file,
    to_json,
    write_compiled,
)
from feature_assets.compiler.errors import CompileError
from feature_assets.compiler.warehouse_check import default_warehouse

__all__ = [
    "CompileError",
    "compile_configs",
    "compiled_kind",
    "compiled_path",
    "default_warehouse",
    "load_compiled",
    "load_compiled_file",
    "to_json",
    "write_compiled",
]
