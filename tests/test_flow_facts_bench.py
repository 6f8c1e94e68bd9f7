"""The benchmark capture's planted mix is recovered: the exact number of unanswered-SYN (S0), refused (REJ),
RST-after-idle and zero-window flows that benchmarks/gen_big.py plants with its fixed seed.

The expected counts come from the generator itself: it is run (its own code, unchanged) with its flow builder
wrapped to record the kind of every flow it plants, at a small packet target so the test stays fast.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

from diagnose.conn.record import collect_flow_records

GENERATOR = Path(__file__).parent.parent / "benchmarks" / "gen_big.py"
TARGET_PACKETS = 40_000


def run_generator(out: Path, target: int) -> collections.Counter:
    """Run gen_big.py as a script writing `out`; returns how many flows of each kind it planted."""
    source = GENERATOR.read_text()
    head, tail = source.split("\nT0 = ", 1)  # definitions, then the main loop that uses them
    kinds: collections.Counter = collections.Counter()
    namespace = {"__name__": "gen_big"}
    argv = sys.argv
    sys.argv = [str(GENERATOR), str(out), str(target)]
    try:
        exec(compile(head, str(GENERATOR), "exec"), namespace)
        build = namespace["tcp_flow"]

        def recording_tcp_flow(t0, kind):
            kinds[kind] += 1
            return build(t0, kind)

        namespace["tcp_flow"] = recording_tcp_flow
        exec(compile("T0 = " + tail, str(GENERATOR), "exec"), namespace)
    finally:
        sys.argv = argv
    return kinds


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "mix.pcap"
    kinds = run_generator(out, TARGET_PACKETS)
    records, _ = collect_flow_records(str(out))
    return kinds, [r for r in records if r["proto"] == "tcp"]


def test_generator_planted_every_kind(planted):
    kinds, _ = planted
    for kind in ("syn_noanswer", "syn_rst", "idle_rst", "zero_window", "rst_mid", "retrans"):
        assert kinds[kind] > 0, kinds


def test_flow_count_matches(planted):
    kinds, flows = planted
    assert len(flows) == sum(kinds.values())


def test_s0_flows(planted):
    kinds, flows = planted
    s0 = [f for f in flows if f["conn_state"] == "S0"]
    assert len(s0) == kinds["syn_noanswer"]
    for f in s0:  # the generator's SYN retries: +1, +3, +7 s
        assert f["syn_count"] == 4 and f["syn_times"] == pytest.approx([0, 1, 3, 7], abs=1e-3)
        assert f["handshake"] == "no_answer"


def test_rej_flows(planted):
    kinds, flows = planted
    rej = [f for f in flows if f["conn_state"] == "REJ"]
    assert len(rej) == kinds["syn_rst"]
    assert all(f["handshake"] == "refused" and f["rst_sender"] == "server" for f in rej)


def test_rst_after_idle_flows(planted):
    kinds, flows = planted
    idle = [f for f in flows if f["rst_phase"] == "after_idle"]
    assert len(idle) == kinds["idle_rst"]
    for f in idle:  # 900-905 s of silence, then the client's request and the server's RST
        assert 900 <= f["rst_idle_before"] <= 905.1 and f["rst_sender"] == "server"
        assert f["conn_state"] == "RSTR"


def test_zero_window_flows(planted):
    kinds, flows = planted
    zw = [f for f in flows if f["zero_window_episodes_client"]]
    assert len(zw) == kinds["zero_window"]
    assert all(f["zero_window_episodes_client"] == 1 and f["zero_window_episodes_server"] == 0 for f in zw)
    assert all(f["zero_window_time_client"] > 1.0 for f in zw)  # probes at +0.2, +0.4, +0.8 s, then 0.3 s


def test_mid_transfer_rsts_are_not_idle(planted):
    kinds, flows = planted
    mid = [f for f in flows if f["rst_phase"] == "mid_transfer"]
    assert 0 < len(mid) <= kinds["rst_mid"]  # a cut drawn at the last segment leaves the flow to end with FIN
    assert all(f["rst_sender"] == "server" and f["rst_bytes_server"] > 0 for f in mid)
