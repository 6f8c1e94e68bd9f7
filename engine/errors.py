"""One error hierarchy. Every error knows where it happened, so the CLI prints one line and exits with code 2.

Locations: a capture file and byte offset, a playbook path:line:col, or a column inside a filter expression.
"""

from __future__ import annotations


class DiagnoseError(Exception):
    """Base of all user-facing errors: printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def one_line(self) -> str:
        return f"{self.where}: error: {self.message}" if self.where else f"error: {self.message}"


class CaptureError(DiagnoseError):
    """The capture cannot be read: missing, not a capture, corrupt (with the byte offset)."""

    def __init__(self, path: str, message: str, *, offset: int | None = None):
        where = path if offset is None else f"{path}: byte {offset}"
        super().__init__(message, where=where)
        self.path = path
        self.offset = offset


class FilterError(DiagnoseError):
    """A filter expression is wrong; `column` is 0-based into `expression`."""

    def __init__(self, expression: str, column: int, message: str, *, language: str = "filter"):
        super().__init__(message, where=language)
        self.expression = expression
        self.column = column

    def one_line(self) -> str:
        return f"{self.where}:{self.column + 1}: error: {self.message}"

    def caret(self) -> str:
        """The expression and a caret under the bad column (two extra lines for a terminal)."""
        return f"  {self.expression}\n  {' ' * self.column}^"


class UsageError(DiagnoseError):
    """The command line asks for something impossible (unknown option value, conflicting flags)."""
