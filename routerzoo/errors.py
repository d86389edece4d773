"""User-facing errors.

Anything a user can cause (a bad file, an unknown model, a bad flag) raises a subclass of
:class:`UserError`; the CLI prints its message and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; the message alone must tell the user what to fix."""


class DataError(UserError):
    """Bad input data, located as precisely as we can: file, row (1-based) and field.

    Args:
        message: what is wrong, e.g. ``"quality 1.7 is outside [0, 1]"``.
        file: the file the problem is in.
        row: 1-based record number within the file (line number for line-based formats).
        field: the column or JSON field.
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None, field: str | None = None):
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ConfigError(UserError):
    """A bad configuration value or command-line option."""
