"""`diagnose CAPTURE --playbook all` on the benchmark generator's capture reports the planted problems with the right
counts, and nothing on the normal flows.

The expected counts come from the generator itself (benchmarks/gen_big.py, its own code, unchanged, fixed seed),
run at a small packet target with its flow builder wrapped to record what it really planted per flow: the kind,
whether a mid-stream RST was actually sent (a cut drawn at the last segment leaves the flow to end with FIN), and
how many segments it lost and retransmitted.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

from diagnose.playbook import load_rule_set
from diagnose.rules.run import diagnose_capture

GENERATOR = Path(__file__).parent.parent / "benchmarks" / "gen_big.py"
TARGET_PACKETS = 60_000


def run_generator(out: Path, target: int) -> list[dict]:
    """Run gen_big.py writing `out`; returns one dict per planted TCP flow (kind, client port, RST sent, data and
    retransmitted server segments)."""
    source = GENERATOR.read_text()
    head, tail = source.split("\nT0 = ", 1)
    planted: list[dict] = []
    namespace = {"__name__": "gen_big"}
    argv = sys.argv
    sys.argv = [str(GENERATOR), str(out), str(target)]
    try:
        exec(compile(head, str(GENERATOR), "exec"), namespace)
        build = namespace["tcp_flow"]
        pkts = namespace["pkts"]

        def recording_tcp_flow(t0, kind):
            before = len(pkts)
            build(t0, kind)
            mine = [p for _, p in pkts[before:]]
            flags = [p[47] for p in mine]
            server = [p for p in mine if p[0:6] == bytes.fromhex("020000000001")]  # frames to the client's MAC
            data = [p for p in server if len(p) > 14 + 20 + 32]
            seqs = collections.Counter(p[38:42] for p in data)
            client = ".".join(str(b) for b in mine[0][26:30])
            planted.append({"kind": kind, "port": f"{client}:{int.from_bytes(mine[0][34:36], 'big')}",
                            "rst": any(f & 0x04 for f in flags),
                            "data": len(data), "retrans": sum(n - 1 for n in seqs.values())})

        namespace["tcp_flow"] = recording_tcp_flow
        exec(compile("T0 = " + tail, str(GENERATOR), "exec"), namespace)
    finally:
        sys.argv = argv
    return planted


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "mix.pcap"
    planted = run_generator(out, TARGET_PACKETS)
    report = diagnose_capture(str(out), load_rule_set(["all"])).report
    return planted, report


def flows_of(report, rule_id: str) -> list[str]:
    """Client endpoints (address:port) of the flows in `rule_id`'s findings, wherever they sit (top level or as a
    symptom)."""
    ports = []
    for f in report.all_findings():
        if f.rule_id == rule_id:
            ports.extend(ref.client for ref in f.flows)
    return sorted(ports)


def ports(planted, predicate) -> list[str]:
    return sorted(p["port"] for p in planted if predicate(p))


def test_unanswered_syns(diagnosed):
    planted, report = diagnosed
    assert flows_of(report, "tcp.syn-unanswered") == ports(planted, lambda p: p["kind"] == "syn_noanswer")


def test_refused(diagnosed):
    planted, report = diagnosed
    assert flows_of(report, "tcp.connection-refused") == ports(planted, lambda p: p["kind"] == "syn_rst")


def test_resets_after_idle_grouped(diagnosed):
    planted, report = diagnosed
    expected = ports(planted, lambda p: p["kind"] == "idle_rst")
    assert flows_of(report, "tcp.rst-after-idle") == expected
    groups = [f for f in report.findings if f.rule_id == "tcp.rst-after-idle"]
    # idle 900-905 s (uniform): clusters within ±1 s merge; far fewer findings than flows
    assert len(groups) < len(expected)
    assert all(f.group and 900 <= f.group["min"] <= f.group["max"] <= 905.1 for f in groups if f.group)


def test_mid_transfer_resets(diagnosed):
    planted, report = diagnosed
    expected = ports(planted, lambda p: p["kind"] == "rst_mid" and p["rst"])
    # HTTP flows are reported as truncated responses (the RST attached), the others as TCP resets
    assert sorted(flows_of(report, "http.truncated-response") + [
        ref.client for f in report.findings if f.rule_id == "tcp.rst-mid-transfer" for ref in f.flows]) == expected


def test_zero_window(diagnosed):
    planted, report = diagnosed
    assert flows_of(report, "tcp.zero-window") == ports(planted, lambda p: p["kind"] == "zero_window")


def test_losses(diagnosed):
    planted, report = diagnosed
    # the rule's defaults: at least 2 retransmissions and more than 1 % of the server's data segments
    expected = ports(planted, lambda p: p["retrans"] >= 2 and p["retrans"] / p["data"] > 0.01)
    assert flows_of(report, "tcp.retransmissions") == expected


def test_normal_flows_are_clean(diagnosed):
    planted, report = diagnosed
    normal = set(ports(planted, lambda p: p["kind"] == "normal"))
    flagged = {ref.client for f in report.all_findings() for ref in f.flows if ref.proto == "tcp"}
    assert not (normal & flagged), sorted(normal & flagged)[:10]
