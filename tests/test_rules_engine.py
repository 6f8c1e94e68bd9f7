"""Rule engine: aggregates, packet groups, evidence, parameters, explains, grouping, ranking and `explain`, checked
on real lab captures against tshark's stored answers (tests/data/fixtures) or against facts stated in
tests/data/lab/EXPECTED.md — never against our own output."""

from __future__ import annotations

import textwrap
from collections import Counter

import pytest

from diagnose.playbook import load_rule_set
from diagnose.rules.run import diagnose_capture
from oracles.fixtures import data_path, field_occurrences, load_tshark, packet_columns

LAB = data_path("lab")


def rules(tmp_path, body: str, name: str = "t"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"playbook: {name}\ntitle: test rules\n" + textwrap.dedent(body))
    return load_rule_set([str(path)])


def run(rule_set, capture: str):
    return diagnose_capture(str(LAB / capture), rule_set)


def findings(diagnosis, rule_id: str):
    return [f for top in (*diagnosis.report.capture_quality, *diagnosis.report.findings) for f in top.walk()
            if f.rule_id == rule_id]


def test_capture_aggregates_match_tshark(tmp_path):
    rs = rules(tmp_path, """\
        rules:
          - id: t.aggregates
            title: every aggregate function over the whole capture
            severity: info
            scope: capture
            aggregate:
              retrans: count(tcp.analysis.retransmission)
              share: percent(tcp.analysis.retransmission, tcp.len > 0)
              sources: distinct(ip.src)
              biggest: max(tcp.len)
              bytes: sum(frame.len)
              first_src: first(ip.src)
              dup_peak: peak(tcp.analysis.duplicate_ack, 10ms)
              per_second: rate(frame)
            when: agg.retrans > 0
            evidence: tcp.analysis.retransmission
            evidence_limit: 5
            message: "{{ agg.retrans }}"
        """)
    fixture = load_tshark("lab", "retransmissions.pcap")
    cols = packet_columns(fixture)
    expected_retrans = fixture["frame_sets"]["tcp.analysis.retransmission"]
    (f,) = findings(run(rs, "retransmissions.pcap"), "t.aggregates")
    v = f.values
    assert v["agg.retrans"] == len(expected_retrans)
    data_frames = sum(1 for x in cols["tcp.len"] if x and int(x) > 0)
    assert v["agg.share"] == pytest.approx(len(expected_retrans) / data_frames)
    assert v["agg.sources"] == len({x for x in cols["ip.src"] if x})
    assert v["agg.biggest"] == max(int(x) for x in cols["tcp.len"] if x)
    assert v["agg.bytes"] == sum(int(x) for x in cols["frame.len"])
    assert v["agg.first_src"] == next(x for x in cols["ip.src"] if x)
    times = [float(t) for t in cols["frame.time_epoch"]]
    dups = fixture["frame_sets"]["tcp.analysis.duplicate_ack"]
    windows = Counter(int((times[frame - 1] - times[0]) / 0.010) for frame in dups)
    assert v["agg.dup_peak"] == max(windows.values())
    assert v["agg.per_second"] == pytest.approx(len(times) / (times[-1] - times[0]), rel=1e-6)
    # evidence: bounded, the first frames tshark flags, and the total
    assert f.evidence == sorted(expected_retrans)[:5]
    assert f.evidence_total == len(expected_retrans)
    assert f.evidence_filter() == "frame.number in {" + ",".join(map(str, sorted(expected_retrans)[:5])) + "}" \
        or ".." in f.evidence_filter()


def test_packet_rule_groups_and_having(tmp_path):
    rs = rules(tmp_path, """\
        rules:
          - id: t.by-port
            title: resets per destination port
            severity: warning
            scope: packet
            when: tcp.flags.syn == 1 && tcp.flags.ack == 0
            group_by: [tcp.dstport]
            aggregate:
              first_frame: min(frame.number)
            having: agg.count >= param.min
            params:
              min: 2
            message: "port {{ key['tcp.dstport'] }}: {{ agg.count }} SYNs from frame {{ agg.first_frame }}"
        """)
    cols = packet_columns(load_tshark("lab", "syn_drop.pcap"))
    syn_frames = [i + 1 for i, flags in enumerate(cols["tcp.flags"]) if flags and int(flags, 16) & 0x12 == 0x02]
    (f,) = findings(run(rs, "syn_drop.pcap"), "t.by-port")
    assert f.key == {"tcp.dstport": 8081}
    assert f.values["agg.count"] == len(syn_frames) == 7
    assert f.values["agg.first_frame"] == syn_frames[0]
    assert f.evidence == syn_frames
    assert f.message == f"port 8081: 7 SYNs from frame {syn_frames[0]}"
    # the threshold is a parameter: above the SYN count, no finding
    rs.set_params(["t.by-port.min=8"])
    assert findings(run(rs, "syn_drop.pcap"), "t.by-port") == []


def test_packet_rule_default_groups_are_flows(tmp_path):
    rs = rules(tmp_path, """\
        rules:
          - id: t.resets
            title: resets per flow
            severity: info
            scope: packet
            when: tcp.flags.reset == 1
            message: "{{ agg.count }} RST on {{ flow.client }} -> {{ flow.server }}"
        """)
    found = findings(run(rs, "recurring_idle_rst_350s.pcap"), "t.resets")
    # EXPECTED.md: three connections, each reset once (frames 28-33 hold the three request/RST pairs)
    assert len(found) == 3
    assert {f.flows[0].stream for f in found} == {0, 1, 2}
    assert all(f.values["agg.count"] == 1 and len(f.evidence) == 1 for f in found)


def test_flow_aggregates_per_flow(tmp_path):
    rs = rules(tmp_path, """\
        rules:
          - id: t.flow-counts
            title: per-flow packet counts
            severity: info
            scope: flow
            aggregate:
              packets: count(frame)
              resets: count(tcp.flags.reset == 1)
            when: flow.proto == "tcp" && agg.resets == 1
            message: "{{ agg.packets }} {{ flow.packets }}"
        """)
    fixture = load_tshark("lab", "recurring_idle_rst_350s.pcap")
    streams = Counter(int(s) for s in packet_columns(fixture)["tcp.stream"] if s)
    found = findings(run(rs, "recurring_idle_rst_350s.pcap"), "t.flow-counts")
    assert sorted((f.flows[0].stream, f.values["agg.packets"]) for f in found) == sorted(streams.items())


def test_parameters_move_thresholds(tmp_path):
    body = """\
        rules:
          - id: t.idle
            title: long silence before a reset
            severity: error
            scope: flow
            params:
              min_idle: 5s
            when: flow.rst_idle_before >= param.min_idle
            message: "{{ flow.rst_idle_before | seconds }} > {{ param.min_idle | seconds }}"
        """
    rs = rules(tmp_path, body)
    (f,) = findings(run(rs, "idle_timeout_rst.pcap"), "t.idle")
    assert f.message == "9.00 s > 5.00 s"  # EXPECTED.md: 9.0 s of silence
    assert f.values["param.min_idle"] == "5.0 s"
    rs.set_params({"t.idle.min_idle": "10s"})
    assert findings(run(rs, "idle_timeout_rst.pcap"), "t.idle") == []


EXPLAINS = """\
    rules:
      - id: t.cause
        title: the cause
        severity: warning
        scope: capture
        when: capture.packets > 0
        explains:
          rules: [t.effect]
          match: capture
          action: {action}
        message: cause
      - id: t.effect
        title: the effect
        severity: error
        scope: capture
        when: capture.packets > 0
        message: effect
    """


@pytest.mark.parametrize("action", ["attach", "downgrade", "withdraw"])
def test_explains_actions(tmp_path, action):
    rs = rules(tmp_path, EXPLAINS.format(action=action))
    report = run(rs, "healthy_http.pcap").report
    top = {f.rule_id: f for f in report.findings}
    if action == "attach":
        assert list(top) == ["t.cause"]
        assert [s.rule_id for s in top["t.cause"].symptoms] == ["t.effect"]
        assert report.exit_code("error") == 1  # an attached error still counts for --fail-on
    elif action == "downgrade":
        assert top["t.effect"].severity == "info" and top["t.effect"].original_severity == "error"
        assert top["t.effect"].explained_by["rule_id"] == "t.cause"
        assert report.exit_code("error") == 0
    else:
        assert list(top) == ["t.cause"]
        assert [w.rule_id for w in report.withdrawn] == ["t.effect"]
        assert report.withdrawn[0].explained_by == {"rule_id": "t.cause", "message": "cause", "action": "withdraw"}
        assert report.exit_code("error") == 0 and report.exit_code("warning") == 1


def test_grouping_by_time_clusters(tmp_path):
    """The three connections of recurring_idle_rst_350s started 0, 41.3 and 122.7 s apart (EXPECTED.md): with a
    tolerance of ±25 s on the start time the first two merge and the third stays alone."""
    rs = rules(tmp_path, """\
        rules:
          - id: t.resets
            title: idle resets
            severity: error
            scope: flow
            when: flow.rst_phase == "after_idle"
            group:
              by: [flow.resp_h]
              near: flow.ts
              tolerance: 25s
              message: "{{ group.count }} flows, spread {{ '%.1f' % (group.max - group.min) }} s"
            message: single
        """)
    found = findings(run(rs, "recurring_idle_rst_350s.pcap"), "t.resets")
    assert sorted(f.message for f in found) == ["2 flows, spread 41.3 s", "single"]
    merged = next(f for f in found if f.group)
    assert len(merged.flows) == 2 and merged.group["count"] == 2


def test_ranking_root_causes_first(tmp_path):
    rs = rules(tmp_path, """\
        rules:
          - id: t.note
            title: note
            severity: info
            scope: capture
            when: capture.packets > 0
            message: note
          - id: t.warn
            title: warning
            severity: warning
            scope: capture
            when: capture.packets > 0
            message: warn
          - id: t.error
            title: error
            severity: error
            scope: capture
            when: capture.packets > 0
            message: err
          - id: t.root
            title: warning root cause
            severity: warning
            scope: capture
            when: capture.packets > 0
            explains: {rules: [t.note], match: capture}
            message: root
        """)
    report = run(rs, "healthy_http.pcap").report
    assert [f.rule_id for f in report.findings] == ["t.error", "t.root", "t.warn"]


def test_broken_template_does_not_stop_the_run(tmp_path):
    rs = rules(tmp_path, """\
        rules:
          - id: t.bad
            title: template divides by zero on this capture
            severity: info
            scope: capture
            when: capture.packets > 0
            message: "{{ capture.packets / (capture.packets - capture.packets) }}"
          - id: t.good
            title: fine
            severity: info
            scope: capture
            when: capture.packets > 0
            message: "{{ capture.packets }} packets"
        """)
    d = run(rs, "healthy_http.pcap")
    assert findings(d, "t.good")[0].message == "16 packets"
    assert "t.bad: the message template failed" in findings(d, "t.bad")[0].message


def test_explain_says_which_condition_failed(tmp_path):
    from diagnose.rules.explain import why

    rs = load_rule_set(["tcp"])
    d = diagnose_capture(str(LAB / "reject_icmp.pcap"), rs)
    text = why(rs.rule("tcp.syn-unanswered"), d)
    assert "did not fire" in text
    assert "✗ flow.syn_count >= param.min_syns    (flow.syn_count = 1, param.min_syns = 2)" in text
    assert "✓ flow.synack_seen == false" in text
    fired = why(rs.rule("tcp.rejected-by-icmp"), d)
    assert fired.startswith("tcp.rejected-by-icmp fired 1 time(s)")


def test_icmp_reject_explains_unanswered_syns(tmp_path):
    """A missing SYN-ACK explained by an ICMP reject: with the threshold at one SYN, syn-unanswered fires on
    reject_icmp too, and is attached to the reject as its symptom."""
    rs = load_rule_set(["tcp"], ["tcp.syn-unanswered.min_syns=1"])
    report = diagnose_capture(str(LAB / "reject_icmp.pcap"), rs).report
    assert [f.rule_id for f in report.findings] == ["tcp.rejected-by-icmp"]
    assert [s.rule_id for s in report.findings[0].symptoms] == ["tcp.syn-unanswered"]


def test_zero_window_explains_retransmissions():
    report = diagnose_capture(str(LAB / "zero_window.pcap"), load_rule_set(["tcp"])).report
    assert [f.rule_id for f in report.findings] == ["tcp.zero-window"]
    assert "tcp.retransmissions" in [s.rule_id for s in report.findings[0].symptoms]
    # EXPECTED.md: client window 0 repeatedly; 17 window updates every 0.5 s
    assert "dropped to 0 17 times" in report.findings[0].message


def test_duplicates_withdraw_loss():
    """Capture quality first: the copies in dup_frames_bulk make Wireshark flag retransmissions; with the capture
    playbook they are withdrawn as an artefact instead of reported as loss."""
    capture = str(data_path("playbooks", "dup_frames_bulk.pcap"))
    alone = diagnose_capture(capture, load_rule_set(["tcp"])).report
    assert [f.rule_id for f in alone.findings] == ["tcp.retransmissions"]
    both = diagnose_capture(capture, load_rule_set(["capture", "tcp"])).report
    assert [f.rule_id for f in both.findings] == []
    assert [f.rule_id for f in both.withdrawn] == ["tcp.retransmissions"]
    assert both.withdrawn[0].explained_by["rule_id"] == "capture.retransmissions-are-copies"
    assert [f.rule_id for f in both.capture_quality] == ["capture.duplicate-frames"]


def test_dns_nxdomain_matches_tshark():
    """The evidence of the NXDOMAIN finding (taken from the DNS scanner's facts) is the frames tshark shows with
    rcode 3, and the message names the name tshark shows in them."""
    fixture = load_tshark("lab", "dns_nxdomain.pcap")
    names = field_occurrences(fixture, "dns.qry.name")
    rcode3 = fixture["frame_sets"]["dns.flags.rcode == 3"]
    report = diagnose_capture(str(LAB / "dns_nxdomain.pcap"), load_rule_set(["dns"])).report
    (f,) = report.findings
    assert f.evidence == sorted(rcode3)
    assert f"name {names[rcode3[0] - 1][0]} does not exist: {len(rcode3)} answers" in f.message
