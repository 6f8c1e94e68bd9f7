"""The report as JSON: the versioned schema of docs/report-schema.md (Report.to_dict)."""

from __future__ import annotations

import json

from diagnose.findings import Report


def _default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=_default) + "\n"
