"""Write a report in one of the formats; every format is rendered from the same Report model (diagnose.findings).

    write_report(report, "html", "report.html")

text      rich, for a terminal (colour only when the output is a terminal)
markdown  reports/markdown.md.j2
html      reports/report.html.j2: one self-contained page with inline SVG charts
json      the versioned schema of docs/report-schema.md
ndjson    one finding per line, then a summary line (written while the diagnosis runs: see render_ndjson)
junit     one test case per rule, for CI
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from diagnose.errors import UsageError
from diagnose.findings import Report

FORMATS = ("text", "markdown", "html", "json", "ndjson", "junit")


@contextmanager
def _output(out: str | None):
    if out in (None, "-"):
        yield sys.stdout
        return
    try:
        stream = open(out, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def render_report(report: Report, fmt: str, *, color: bool = False, width: int | None = None, extras=None) -> str:
    """The report as text in `fmt` (no colour unless asked)."""
    if fmt == "text":
        from diagnose.report.render_text import render_text
        return render_text(report, color=color, width=width)
    if fmt == "markdown":
        from diagnose.report.render_markdown import render_markdown
        return render_markdown(report)
    if fmt == "html":
        from diagnose.report.render_html import render_html
        return render_html(report, extras)
    if fmt == "json":
        from diagnose.report.render_json import render_json
        return render_json(report)
    if fmt == "ndjson":
        from diagnose.report.render_ndjson import render_ndjson
        return render_ndjson(report)
    if fmt == "junit":
        from diagnose.report.render_junit import render_junit
        return render_junit(report)
    raise UsageError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")


def write_report(report: Report, fmt: str, out: str | None = None, *, color: bool | None = None,
                 extras=None) -> None:
    """Write the report to `out` (a path, or None/'-' for standard output). Colour defaults to 'stdout is a
    terminal' for text on standard output, never in a file.

    The cyclic collector waits while the report is written: its objects are alive until then, and a collection
    meanwhile traversed every object of a big run (collector.py)."""
    from diagnose.collector import collector_paused

    with collector_paused(), _output(out) as stream:
        if fmt == "text":
            use_color = color if color is not None else (out in (None, "-") and stream.isatty())
            from diagnose.report.render_text import write_text
            write_text(report, stream, color=bool(use_color))
            return
        if fmt == "json":  # written as it is encoded: no string of the whole report
            from diagnose.report.render_json import write_json
            write_json(report, stream)
            return
        stream.write(render_report(report, fmt, extras=extras))
