"""The report model: findings and the report every renderer (text, markdown, HTML, JSON, NDJSON, JUnit) reads.

A finding says what is wrong (rule, severity, message with the decisive numbers), about what (flows or the
capture), when (time span), and which packets prove it (evidence frames, bounded, with the total). Root causes
carry the findings they explain as `symptoms`; findings withdrawn because a capture artefact explains them are kept
in `withdrawn` with the reason, never silently dropped.

The JSON form (`Report.to_dict`) is versioned by SCHEMA_VERSION and documented in docs/report-schema.md; fields are
only ever added within a major version.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0"
SEVERITIES = ("info", "warning", "error")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(slots=True)  # one per flagged flow (thousands): no __dict__ each
class FlowRef:
    """One conversation a finding is about."""

    conv: int
    stream: int | None
    proto: str
    client: str
    server: str
    first_frame: int | None = None
    last_frame: int | None = None
    client_host: str | None = None
    server_host: str | None = None

    def label(self) -> str:
        stream = f" (stream {self.stream})" if self.stream is not None else ""
        return f"{self.proto} {self.client} → {self.server}{stream}"

    def to_dict(self) -> dict:
        return {"stream": self.stream, "proto": self.proto, "client": self.client, "server": self.server,
                "first_frame": self.first_frame, "last_frame": self.last_frame}


def frame_set(frames: list[int]) -> str:
    """Frame numbers as a display-filter set with ranges: [1, 2, 3, 7] -> '{1..3,7}'."""
    items = sorted(set(map(int, frames)))
    if not items:
        return "{}"
    parts: list[str] = []
    first = last = items[0]
    for frame in items[1:]:
        if frame != last + 1:
            parts.append(str(first) if first == last else f"{first}..{last}")
            first = frame
        last = frame
    parts.append(str(first) if first == last else f"{first}..{last}")
    return "{" + ",".join(parts) + "}"


@dataclass(slots=True)  # thousands on a busy capture: no __dict__ each
class Finding:
    rule_id: str
    playbook: str
    title: str
    severity: str
    scope: str
    message: str
    explanation: str = ""
    advice: str = ""
    references: list[str] = field(default_factory=list)
    flows: list[FlowRef] = field(default_factory=list)
    start: float | None = None  # epoch seconds
    end: float | None = None
    evidence: list[int] = field(default_factory=list)
    evidence_total: int = 0
    values: dict[str, Any] = field(default_factory=dict)  # the decisive numbers (aggregates, facts, parameters)
    key: dict[str, Any] | None = None  # packet rules: the group_by values
    group: dict[str, Any] | None = None  # findings of several flows merged into one
    symptoms: list[Finding] = field(default_factory=list)
    status: str = "active"  # active | downgraded | withdrawn
    original_severity: str | None = None
    explained_by: dict[str, str] | None = None  # {"rule_id", "message", "action"}
    impact: float = 0.0
    capture_quality: bool = False
    # what the rule engine keeps to render the message later (diagnose.rules.engine.finalize); not reported
    _parts: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def severity_rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def evidence_filter(self) -> str | None:
        return f"frame.number in {frame_set(self.evidence)}" if self.evidence else None

    def list_command(self, capture: str) -> str | None:
        """The command that lists this finding's evidence packets."""
        return _list_command(capture, self.evidence_filter())

    def about(self) -> str:
        """What the finding is about, in a few words: a flow, N flows, a key, or the capture."""
        if self.key:
            return ", ".join(f"{k} {v}" for k, v in self.key.items())
        if len(self.flows) == 1:
            return self.flows[0].label()
        if self.flows:
            return f"{len(self.flows)} flows"
        return "capture"

    def walk(self):
        yield self
        for s in self.symptoms:
            yield from s.walk()

    def to_dict(self, capture: str | None = None) -> dict:
        evidence_filter = self.evidence_filter()
        out = {
            "rule": self.rule_id,
            "playbook": self.playbook,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "scope": self.scope,
            "message": self.message,
            "about": self.about(),
            "flows": [f.to_dict() for f in self.flows],
            "start": self.start,
            "end": self.end,
            "evidence": {"frames": list(self.evidence), "total": self.evidence_total,
                         "filter": evidence_filter,
                         "command": _list_command(capture, evidence_filter) if capture else None},
            "values": self.values,
            "key": self.key,
            "group": self.group,
            "explanation": self.explanation,
            "advice": self.advice,
            "references": list(self.references),
            "symptoms": [s.to_dict(capture) for s in self.symptoms],
            "impact": self.impact,
        }
        if self.original_severity is not None:
            out["original_severity"] = self.original_severity
        if self.explained_by is not None:
            out["explained_by"] = dict(self.explained_by)
        return out


def _list_command(capture: str, evidence_filter: str | None) -> str | None:
    if evidence_filter is None:
        return None
    return f"diagnose list {shlex.quote(capture)} -Y {shlex.quote(evidence_filter)}"


@dataclass
class RuleResult:
    """What one rule did in a run (JUnit: one test case per rule)."""

    id: str
    title: str
    severity: str
    playbook: str
    findings: int = 0  # active findings at top level or as symptoms
    withdrawn: int = 0
    error: str | None = None  # a rule that failed to evaluate


@dataclass
class Report:
    capture: dict[str, Any]
    playbooks: list[str]
    params: dict[str, str]
    findings: list[Finding] = field(default_factory=list)  # ranked: root causes first
    capture_quality: list[Finding] = field(default_factory=list)
    withdrawn: list[Finding] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float | None = None
    tool_version: str = ""

    def all_findings(self):
        """Every active or downgraded finding (capture quality, findings and their symptoms)."""
        for top in (*self.capture_quality, *self.findings):
            yield from top.walk()

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in SEVERITIES}
        for f in self.all_findings():
            counts[f.severity] += 1
        return counts

    def worst(self) -> str | None:
        ranks = [f.severity_rank for f in self.all_findings()]
        return SEVERITIES[max(ranks)] if ranks else None

    def exit_code(self, fail_on: str | None) -> int:
        """1 when a finding is at or above `fail_on` (info | warning | error; None/never: always 0)."""
        if fail_on in (None, "never", "none"):
            return 0
        threshold = SEVERITY_RANK[fail_on]
        return 1 if any(f.severity_rank >= threshold for f in self.all_findings()) else 0

    def to_dict(self, finding_lists: bool = True, finding=None) -> dict:
        """The JSON report; without `finding_lists`, everything but capture_quality, findings and withdrawn (the
        NDJSON summary line, whose findings went out on lines of their own). `finding(f)` makes each item of the
        finding lists (default: f.to_dict(capture file)); the JSON writer keeps the findings themselves and encodes
        them as it writes, instead of holding a dict tree of the whole report."""
        path = self.capture.get("file")
        out = {
            "schema": "diagnose.report",
            "schema_version": SCHEMA_VERSION,
            "tool_version": self.tool_version,
            "capture": self.capture,
            "playbooks": list(self.playbooks),
            "params": dict(self.params),
            "summary": {"findings": sum(1 for _ in self.all_findings()), "by_severity": self.counts(),
                        "worst": self.worst(), "withdrawn": len(self.withdrawn)},
            "capture_quality": None,
            "findings": None,
            "withdrawn": None,
            "rules": [vars(r).copy() for r in self.rules],
            "warnings": list(self.warnings),
            "elapsed_s": self.elapsed_s,
        }
        if finding_lists:
            if finding is None:
                def finding(f):
                    return f.to_dict(path)
            out["capture_quality"] = [finding(f) for f in self.capture_quality]
            out["findings"] = [finding(f) for f in self.findings]
            out["withdrawn"] = [finding(f) for f in self.withdrawn]
        else:
            for key in ("capture_quality", "findings", "withdrawn"):
                del out[key]
        return out
