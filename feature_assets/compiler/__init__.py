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

__all__ = [
    "CompileError",
    "compile_configs",
    "compiled_kind",
    "compiled_path",
    "load_compiled",
    "load_compiled_file",
    "to_json",
    "write_compiled",
]
