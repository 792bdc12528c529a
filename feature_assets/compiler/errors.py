from __future__ import annotations


class CompileError(ValueError):
    """A config error that names the file, the object and the field at fault."""

    def __init__(self, file: str | None, obj: str | None, field: str | None, message: str):
        self.file, self.obj, self.field, self.message = file, obj, field, message
        where = ": ".join(part for part in (file, obj, field) if part)
        super().__init__(f"{where}: {message}" if where else message)
