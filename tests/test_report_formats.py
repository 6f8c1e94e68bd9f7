"""Reports: every format from the same model; packet-derived strings escaped in each; exit codes; the evidence
command; JSON schema version; NDJSON line types; JUnit one test case per rule."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from diagnose.findings import SCHEMA_VERSION
from diagnose.playbook import load_rule_set
from diagnose.report.render import FORMATS, render_report
from diagnose.rules.run import diagnose_capture, run_diagnosis
from oracles.fixtures import data_path

LAB = data_path("lab")
EVIL = "<script>alert(1)</script>"


def _evil_capture(path):
    """An HTTP request whose URI carries a script tag and a terminal escape, answered 404, and a TLS ClientHello
    whose SNI carries the script tag, answered by a fatal alert: strings that reach finding messages."""
    from scapy.all import IP, TCP, Ether, Raw, wrpcap
    from scapy.layers.tls.all import TLS, ServerName, TLS_Ext_ServerName, TLSAlert, TLSClientHello

    packets = []
    clock = [1_700_000_000.0]

    def conversation(client, server, sport, dport, exchanges):
        cs, ss = 1000, 5000
        e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        er = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")

        def add(p):
            p.time = clock[0]
            clock[0] += 0.001
            packets.append(p)
        add(e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=cs))
        add(er / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="SA", seq=ss, ack=cs + 1))
        cs, ss = cs + 1, ss + 1
        add(e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=cs, ack=ss))
        for who, data in exchanges:
            if who == "c":
                add(e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="PA", seq=cs, ack=ss) / Raw(data))
                cs += len(data)
                add(er / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="A", seq=ss, ack=cs))
            else:
                add(er / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="PA", seq=ss, ack=cs) / Raw(data))
                ss += len(data)
                add(e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=cs, ack=ss))
        add(e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="FA", seq=cs, ack=ss))
        add(er / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="FA", seq=ss, ack=cs + 1))
        add(e / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=cs + 1, ack=ss + 1))

    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    conversation("10.0.0.1", "10.0.0.2", 40000, 80, [
        ("c", f"GET /{EVIL} HTTP/1.1\r\nHost: x\r\n\r\n".encode()), ("s", not_found),
        ("c", b"GET /\x1b[2Jwiped HTTP/1.1\r\nHost: x\r\n\r\n"), ("s", not_found)])
    hello = TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(
        servername=f"{EVIL}.example".encode())])])])
    conversation("10.0.0.1", "10.0.0.3", 40001, 443, [("c", bytes(hello)),
                                                      ("s", bytes(TLS(type=21, msg=[TLSAlert(level=2, descr=40)])))])
    wrpcap(str(path), packets)
    return path


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    capture = _evil_capture(tmp_path_factory.mktemp("evil") / "evil.pcap")
    report = diagnose_capture(str(capture), load_rule_set(["all"])).report
    messages = [f.message for f in report.all_findings()]
    # the strings really reach the findings (else the escaping tests below would prove nothing)
    assert any(EVIL in m for m in messages if "GET /" in m), messages
    assert any(f"SNI {EVIL}.example" in m for m in messages), messages
    assert any("\x1b[2J" in m for m in messages), messages
    return report


def test_html_escapes_packet_strings(evil_report):
    html = render_report(evil_report, "html")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x1b" not in html


def test_markdown_escapes_packet_strings(evil_report):
    md = render_report(evil_report, "markdown")
    assert "<script" not in md.lower()
    assert "&lt;script&gt;" in md
    assert "\x1b" not in md


def test_text_shows_control_characters_visibly(evil_report):
    for color in (False, True):
        text = render_report(evil_report, "text", color=color)
        assert "\x1b[2J" not in text  # the capture's escape sequence never reaches the terminal
        assert "\\x1b[2Jwiped" in text
    assert "\x1b[" not in render_report(evil_report, "text", color=False)  # no colour off a terminal
    assert "\x1b[" in render_report(evil_report, "text", color=True)


def test_json_and_ndjson_keep_exact_strings(evil_report):
    data = json.loads(render_report(evil_report, "json"))
    assert data["schema"] == "diagnose.report" and data["schema_version"] == SCHEMA_VERSION
    texts = json.dumps(data)
    assert json.dumps(EVIL)[1:-1] in texts
    lines = [json.loads(line) for line in render_report(evil_report, "ndjson").splitlines()]
    assert lines[-1]["type"] == "summary"
    assert {line["type"] for line in lines[:-1]} <= {"finding", "withdrawn"}
    assert len([line for line in lines if line["type"] == "finding"]) == len(data["findings"]) + len(
        data["capture_quality"])


def test_junit_is_valid_xml_one_case_per_rule(evil_report):
    xml = render_report(evil_report, "junit")
    root = ET.fromstring(xml)
    cases = root.findall(".//testcase")
    assert len(cases) == len(evil_report.rules)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    worst = {f.rule_id for f in evil_report.all_findings() if f.severity in ("warning", "error")}
    assert failed == worst
    assert int(root.get("failures")) == len(failed)
    assert any(EVIL in (c.find("failure").get("message") or "") for c in cases if c.find("failure") is not None)


def test_every_format_renders_a_clean_capture():
    report = diagnose_capture(str(LAB / "healthy_http.pcap"), load_rule_set(["all"])).report
    assert not report.findings and report.exit_code("info") == 0
    for fmt in FORMATS:
        assert render_report(report, fmt)
    assert "No problems found" in render_report(report, "text")


def test_json_report_fields(tmp_path):
    out = tmp_path / "r.json"
    code = run_diagnosis(str(LAB / "syn_drop.pcap"), ["tcp"], None, "json", str(out), "error")
    assert code == 1
    data = json.loads(out.read_text())
    (f,) = data["findings"]
    assert f["rule"] == "tcp.syn-unanswered" and f["severity"] == "error"
    assert f["flows"][0]["client"].startswith("10.99.1.2:") and f["flows"][0]["server"] == "10.99.2.2:8081"
    # EXPECTED.md: frame 1 SYN, frames 2-7 its retransmissions
    assert f["evidence"]["frames"] == [1, 2, 3, 4, 5, 6, 7]
    assert f["evidence"]["filter"] == "frame.number in {1..7}"
    assert f["evidence"]["command"] == f"diagnose list {LAB / 'syn_drop.pcap'} -Y 'frame.number in {{1..7}}'"
    assert f["values"]["flow.syn_count"] == 7
    assert data["summary"]["by_severity"]["error"] == 1


def test_evidence_command_lists_exactly_the_evidence(tmp_path):
    """The printed command works: the display filter selects the evidence frames (and only them)."""
    from diagnose.filters import compile_display_filter
    from diagnose.fields import iter_contexts
    from diagnose.pipeline import open_pass

    report = diagnose_capture(str(LAB / "retransmissions.pcap"), load_rule_set(["tcp"])).report
    (f,) = report.findings
    flt = compile_display_filter(f.evidence_filter())
    run = open_pass(str(LAB / "retransmissions.pcap"))
    chosen = []
    with run.capture:
        for ctx in iter_contexts(run.chunks()):
            chosen.extend(ctx.table["frame"][flt.evaluate(ctx)].tolist())
    assert chosen == f.evidence


@pytest.mark.parametrize("fail_on,expected", [("error", 1), ("warning", 1), ("info", 1), ("never", 0)])
def test_exit_codes(tmp_path, fail_on, expected):
    assert run_diagnosis(str(LAB / "syn_drop.pcap"), ["tcp"], None, "json", str(tmp_path / "o.json"),
                         fail_on) == expected


def test_exit_code_below_threshold(tmp_path):
    # zero_window yields a warning only: --fail-on error passes, --fail-on warning fails
    capture = str(LAB / "zero_window.pcap")
    assert run_diagnosis(capture, ["tcp"], None, "json", str(tmp_path / "a.json"), "error") == 0
    assert run_diagnosis(capture, ["tcp"], None, "json", str(tmp_path / "b.json"), "warning") == 1


def test_errors_exit_2_before_reading(tmp_path):
    from diagnose.errors import DiagnoseError, UsageError

    with pytest.raises(UsageError):
        run_diagnosis(str(LAB / "syn_drop.pcap"), ["tcp"], None, "yaml")
    with pytest.raises(UsageError):
        run_diagnosis(str(LAB / "syn_drop.pcap"), ["tcp"], ["tcp.nothing=1"])
    with pytest.raises(DiagnoseError) as caught:
        run_diagnosis(str(tmp_path / "missing.pcap"), ["tcp"])
    assert caught.value.exit_code == 2


def test_ndjson_streams_to_file(tmp_path):
    out = tmp_path / "r.ndjson"
    code = run_diagnosis(str(LAB / "recurring_idle_rst_350s.pcap"), ["tcp"], None, "ndjson", str(out), "error")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1
    assert [line["type"] for line in lines] == ["finding", "summary"]
    assert lines[0]["group"]["count"] == 3 and len(lines[0]["flows"]) == 3
