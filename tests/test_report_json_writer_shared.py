"""The JSON writer's shortcuts for what findings share (a rule's references list, its explanation and advice texts,
flow references, frame lists of plain ints) write exactly what the generic encoder writes, at every nesting level
and for values of other types."""

from __future__ import annotations

import io

import numpy as np

from diagnose.findings import Finding, FlowRef, Report
from diagnose.report.render_json import dumps_indented, write_json


def _same_text(report: Report) -> None:
    out = io.StringIO()
    write_json(report, out)
    assert out.getvalue() == dumps_indented(report.to_dict()) + "\n"


def _finding(rule: str, references: list, explanation: str, flows: list, evidence: list, symptoms=()) -> Finding:
    return Finding(rule, "tcp", f"Title of {rule}", "warning", "flow", f"message of {rule}", explanation=explanation,
                   advice="advice \"shared\"\n", references=references, flows=flows, evidence=evidence,
                   evidence_total=len(evidence), symptoms=list(symptoms), start=1.5, end=None)


def test_shared_lists_and_texts_at_every_level():
    references = ["RFC 793", "RFC 9293 §3.10.7.3"]  # one list object shared by findings at three levels
    why = "the same explanation — repeated\t"
    plain = FlowRef(1, 7, "tcp", "10.0.0.1:1", "10.0.0.2:80", 3, 9)
    unknown = FlowRef(2, None, "udp", "[2001:db8::1]:53", "[2001:db8::2]:53", None, None)
    odd = FlowRef(3, np.int64(8), "tcp", "a", "b", True, np.int32(4))  # not plain ints: the generic encoder
    leaf = _finding("r.leaf", references, why, [plain, odd], [np.int64(5), 6])
    middle = _finding("r.mid", references, why, [plain, unknown], [1, 2, 3], [leaf])
    top = _finding("r.top", references, why, [unknown], [], [middle])
    again = _finding("r.top", references, why, [plain], [4, 5, 6, 10])
    references.append("changed before writing")  # what is written is the list as it is then
    report = Report(capture={"file": "x.pcap"}, playbooks=["tcp"], params={}, findings=[top, again, middle],
                    capture_quality=[leaf], withdrawn=[_finding("r.gone", references, why, [odd], [True, 2])])
    _same_text(report)


def test_references_changed_between_reports_are_written_as_they_are():
    references = ["RFC 1"]
    finding = _finding("r.one", references, "why", [], [1])
    _same_text(Report(capture={"file": None}, playbooks=[], params={}, findings=[finding]))
    references[0] = "RFC 2"
    _same_text(Report(capture={"file": None}, playbooks=[], params={}, findings=[finding, finding]))
