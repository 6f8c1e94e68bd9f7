"""The JSON report writer (render_json.write_json) encodes findings as it goes; its text must stay exactly that of
the generic encoder over Report.to_dict() (json.dumps(indent=2) text, see test_report_json_text.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from diagnose.findings import Finding, FlowRef, Report, RuleResult
from diagnose.playbook import load_rule_set
from diagnose.report import render_json
from diagnose.report.render_json import dumps_indented, write_json
from diagnose.rules.run import diagnose_capture
from oracles.fixtures import data_path

LAB = data_path("lab")


def _generic(report: Report) -> str:
    return dumps_indented(report.to_dict()) + "\n"


def _written(report: Report) -> str:
    out = io.StringIO()
    write_json(report, out)
    return out.getvalue()


@pytest.mark.parametrize("capture", ["recurring_idle_rst_350s", "mid_stream_rst", "retransmissions", "syn_drop",
                                     "http_404_and_500", "tls_expired_cert", "healthy_http"])
def test_lab_reports_same_text_as_the_generic_encoder(capture):
    report = diagnose_capture(str(LAB / f"{capture}.pcap"), load_rule_set(["all"])).report
    assert report.findings or capture == "healthy_http"
    assert _written(report) == _generic(report)
    assert render_json.render_json(report) == _generic(report)


def _odd_report(capture_file) -> Report:
    """Every optional key, values of numpy types, symptoms two levels deep, findings without flows or evidence."""
    ref = FlowRef(3, np.int64(7), "tcp", "10.0.0.1:1", "10.0.0.2:80", first_frame=np.int64(1), last_frame=9)
    leaf = Finding("b.leaf", "tcp", "Leaf", "info", "flow", "leaf \"quoted\" \u2028", flows=[ref],
                   start=np.float64(1.5), end=2.0, evidence=[np.int64(4), 5, 6, 9], evidence_total=np.int64(4),
                   values={"flow.x": np.float32(0.25), "flow.set": {1}}, status="downgraded",
                   original_severity="warning", explained_by={"rule_id": "a.root", "message": "m", "action": "downgrade"})
    middle = Finding("b.mid", "tcp", "Mid", "error", "flow", "mid", flows=[ref, ref], evidence=[2], evidence_total=1,
                     symptoms=[leaf], key={"ip.src": "10.0.0.1", 3: None}, references=["RFC 1"], impact=np.float64(2))
    top = Finding("a.root", "capture", "Root", "error", "capture", "root", explanation="why", advice="what",
                  symptoms=[middle], group={"count": 2, "members": ["x", "y"], "values": [], "near": None},
                  start=None, end=None, impact=float("inf"))
    withdrawn = Finding("c.gone", "tls", "Gone", "warning", "capture", "", status="withdrawn", evidence=[1, 2, 3],
                        explained_by={"rule_id": "a.root", "message": "root", "action": "withdraw"})
    return Report(capture={"file": capture_file, "packets": np.int64(10), "link_types": ["EN10MB"]},
                  playbooks=["all"], params={"p": "1"}, findings=[top, middle], capture_quality=[leaf],
                  withdrawn=[withdrawn], rules=[RuleResult("a.root", "Root", "error", "capture", 1)],
                  warnings=["w"], elapsed_s=0.5, tool_version="x")


@pytest.mark.parametrize("capture_file", ["plain.pcap", "my capture's file.pcap", "", None])
def test_every_key_and_odd_values_same_text(capture_file):
    report = _odd_report(capture_file)
    assert _written(report) == _generic(report)


def test_written_in_pieces(monkeypatch):
    """The text reaches the stream in several writes whose concatenation is the report."""
    monkeypatch.setattr(render_json, "_FLUSH_PIECES", 10)
    writes = []

    class Stream:
        def write(self, text):
            writes.append(text)

    report = _odd_report("x.pcap")
    write_json(report, Stream())
    assert len(writes) > 3
    assert "".join(writes) == _generic(report)
