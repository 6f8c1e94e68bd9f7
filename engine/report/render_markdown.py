"""The markdown report (reports/markdown.md.j2)."""

from __future__ import annotations

import re

from diagnose.findings import Report
from diagnose.report.templating import report_environment


def render_markdown(report: Report) -> str:
    text = report_environment().get_template("markdown.md.j2").render(report=report)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
