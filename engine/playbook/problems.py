"""Playbook mistakes: each one knows its file, line and column and prints like a compiler error with a caret.

The loader collects every mistake of every playbook before giving up, so one run shows them all; the exception
carrying them is a DiagnoseError, so the CLI prints them and exits 2 before any packet is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnose.errors import DiagnoseError


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    col: int
    message: str
    source_line: str = ""
    severity: str = "error"

    def header(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message}"

    def render(self) -> str:
        """The header, the offending source line and a caret under the column."""
        if not self.source_line:
            return self.header()
        shown = self.source_line.expandtabs(1)
        return f"{self.header()}\n  {shown}\n  {' ' * (self.col - 1)}^"


class PlaybookError(DiagnoseError):
    """One or more playbook mistakes. `one_line()` is the whole list (one header + caret per mistake)."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.path, p.line, p.col))
        first = self.problems[0] if self.problems else None
        super().__init__(first.message if first else "invalid playbook",
                         where=f"{first.path}:{first.line}:{first.col}" if first else None)

    def one_line(self) -> str:
        text = "\n".join(p.render() for p in self.problems)
        count = len(self.problems)
        if count > 1:
            text += f"\n{count} errors"
        return text
