"""NDJSON: one JSON object per line — each finding as soon as it is final, then one summary line.

Lines: {"type": "finding", ...Finding.to_dict()} for capture-quality findings and ranked findings (symptoms inside
their root cause), {"type": "withdrawn", ...} for findings a capture artefact explains, and last
{"type": "summary", ...} with everything of the JSON report except the finding lists.
"""

from __future__ import annotations

import io
import json

from diagnose.findings import Finding, Report
from diagnose.report.render_json import _default


class NdjsonWriter:
    def __init__(self, stream, capture: str):
        self.stream = stream
        self.capture = capture

    def _line(self, obj: dict) -> None:
        self.stream.write(json.dumps(obj, ensure_ascii=False, default=_default) + "\n")
        self.stream.flush()

    def finding(self, finding: Finding) -> None:
        self._line({"type": "finding", **finding.to_dict(self.capture)})

    def summary(self, report: Report) -> None:
        for finding in report.withdrawn:
            self._line({"type": "withdrawn", **finding.to_dict(self.capture)})
        self._line({"type": "summary", **report.to_dict(finding_lists=False)})


def render_ndjson(report: Report) -> str:
    out = io.StringIO()
    writer = NdjsonWriter(out, report.capture.get("file") or "")
    for finding in (*report.capture_quality, *report.findings):
        writer.finding(finding)
    writer.summary(report)
    return out.getvalue()
