"""TCP analysis on built captures that exercise what the lab and corpus captures never show: zero-window probes and
their ACKs, keep-alive ACKs, port reuse (SYN and SYN-ACK), retransmitted SYNs after a RST, SACK in bytes in
flight, window-scale negotiation outcomes, sequence wrap-around, ICMP errors quoting TCP, time running backwards,
TCP Fast Open, a bogus header length, fragmented segments, a host talking to itself.

The captures are built here with scapy (deterministic bytes) and stored in tests/data/tcp_analysis/ together with
tshark 4.0.17's answers, made by running this file as a script (developer tool; the tests never run tshark):

    PYTHONPATH=/work/devpath python tests/test_tcp_analysis_edgecases.py     # rebuild captures + tshark answers

The answers use the same tshark command lines and default preferences as tests/oracles/make_fixtures.py.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pcapbuild import pcap  # noqa: E402
from test_tcp_analysis import compare_with_tshark  # noqa: E402

DATA = HERE / "data" / "tcp_analysis"
T0 = 1_700_000_000 * 10**9  # ns

ORACLE_FIELDS = [
    "frame.number", "tcp.stream", "tcp.seq", "tcp.ack", "tcp.nxtseq", "tcp.len", "tcp.window_size",
    "tcp.window_size_scalefactor", "tcp.time_delta", "tcp.time_relative", "tcp.completeness",
    "tcp.analysis.acks_frame", "tcp.analysis.ack_rtt", "tcp.analysis.initial_rtt", "tcp.analysis.bytes_in_flight",
    "tcp.analysis.duplicate_ack_num", "tcp.analysis.duplicate_ack_frame",
]


# ---- packet helpers (scapy only here: building test captures) -----------------------------------------------------

def _scapy():
    from scapy.all import ICMP, IP, TCP, Ether, IPv6, Raw, fragment, raw  # noqa: F401
    from scapy.layers.inet6 import ICMPv6DestUnreach
    return locals()


class Endpoints:
    """One TCP connection's addresses; `c(...)` builds a client->server frame, `s(...)` the reverse."""

    def __init__(self, client, server, cport, sport, v6=False):
        self.client, self.server, self.cport, self.sport, self.v6 = client, server, cport, sport, v6

    def _frame(self, src, dst, sp, dp, seq, ack, flags, win, payload, options, dataofs=None, ip_kw=None):
        s = _scapy()
        ip = s["IPv6"](src=src, dst=dst) if self.v6 else s["IP"](src=src, dst=dst, **(ip_kw or {}))
        tcp = s["TCP"](sport=sp, dport=dp, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags, window=win,
                       options=options or [])
        if dataofs is not None:
            tcp.dataofs = dataofs
        pkt = s["Ether"](src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / tcp
        if payload:
            pkt = pkt / s["Raw"](payload)
        return pkt

    def c(self, seq, ack, flags, win=1000, n=0, options=None, **kw):
        return self._frame(self.client, self.server, self.cport, self.sport, seq, ack, flags, win, b"c" * n,
                           options, **kw)

    def s(self, seq, ack, flags, win=1000, n=0, options=None, **kw):
        return self._frame(self.server, self.client, self.sport, self.cport, seq, ack, flags, win, b"s" * n,
                           options, **kw)


class Timeline:
    """Frames with explicit times (ns after T0)."""

    def __init__(self):
        self.frames = []

    def at(self, ms, pkt):
        self.frames.append((T0 + int(round(ms * 1_000_000)), bytes(pkt) if not isinstance(pkt, bytes) else pkt))

    def pcap_bytes(self) -> bytes:
        return pcap([(t // 10**9, t % 10**9, data) for t, data in self.frames], nanoseconds=True)


SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]


def zero_window() -> Timeline:
    """Zero window, probes, probe ACKs, window update, the probe byte accepted, keep-alives and their ACKs."""
    tl, e = Timeline(), Endpoints("10.0.0.1", "10.0.0.2", 40000, 80)
    tl.at(0, e.c(1000, 0, "S", 64240, options=SYN_OPTS))
    tl.at(10, e.s(5000, 1001, "SA", 65160, options=SYN_OPTS))
    tl.at(11, e.c(1001, 5001, "A", 502))
    tl.at(12, e.c(1001, 5001, "PA", 502, n=100))
    tl.at(22, e.s(5001, 1101, "A", 0))  # zero window
    tl.at(222, e.c(1101, 5001, "A", 502, n=1))  # zero-window probe
    tl.at(232, e.s(5001, 1101, "A", 0))  # probe ACK
    tl.at(632, e.c(1101, 5001, "A", 502, n=1))  # probe again
    tl.at(642, e.s(5001, 1101, "A", 0))
    tl.at(700, e.s(5001, 1101, "A", 200))  # window update
    tl.at(701, e.c(1101, 5001, "PA", 502, n=500))
    tl.at(711, e.s(5001, 1601, "A", 0))  # zero again
    tl.at(911, e.c(1601, 5001, "A", 502, n=1))  # probe, and this time the byte is taken
    tl.at(921, e.s(5001, 1602, "A", 10))
    tl.at(922, e.c(1601, 5001, "PA", 502, n=300))  # starts one byte before nextseq: not a retransmission
    tl.at(932, e.s(5001, 1901, "A", 300))
    tl.at(10932, e.c(1900, 5001, "A", 502))  # keep-alive (len 0)
    tl.at(10942, e.s(5001, 1901, "A", 300))  # keep-alive ACK
    tl.at(20942, e.c(1900, 5001, "A", 502, n=1))  # keep-alive with one byte
    tl.at(20952, e.s(5001, 1901, "A", 300))
    tl.at(20960, e.s(5001, 1901, "A", 300))  # duplicate ACK
    tl.at(21000, e.c(1901, 5001, "FA", 502))
    tl.at(21010, e.s(5001, 1902, "FA", 300))
    tl.at(21011, e.c(1902, 5002, "A", 502))
    return tl


def port_reuse() -> Timeline:
    """A retransmitted SYN, a RST then a SYN with the same ISN, a SYN with a new ISN on the same ports (new stream),
    a second SYN-ACK with another ISN; SYN with WS answered without it (scaling off)."""
    tl, e = Timeline(), Endpoints("10.0.0.1", "10.0.0.2", 40001, 443)
    tl.at(0, e.c(7000, 0, "S", 64240, options=SYN_OPTS))
    tl.at(1000, e.c(7000, 0, "S", 64240, options=SYN_OPTS))  # retransmitted SYN
    tl.at(1010, e.s(9000, 7001, "SA", 29200, options=[("MSS", 1460)]))  # no WS: scaling off both ways
    tl.at(1011, e.c(7001, 9001, "A", 229))
    tl.at(1012, e.c(7001, 9001, "PA", 229, n=200))
    tl.at(1030, e.s(9001, 7201, "PA", 29200, n=1460))
    tl.at(1031, e.s(10461, 7201, "PA", 29200, n=1460))
    tl.at(1032, e.c(7201, 11921, "A", 229))
    tl.at(1040, e.c(7201, 11921, "R", 0))
    tl.at(1500, e.c(7000, 0, "S", 64240, options=SYN_OPTS))  # same ISN after the RST
    tl.at(3000, e.c(123456, 0, "S", 64240, options=SYN_OPTS))  # new ISN: port reuse, new stream
    tl.at(3010, e.s(555, 123457, "SA", 65160, options=SYN_OPTS))
    tl.at(3011, e.s(777, 123457, "SA", 65160, options=SYN_OPTS))  # another ISN from the server
    tl.at(3012, e.c(123457, 778, "A", 502))
    tl.at(3013, e.c(123457, 778, "PA", 502, n=10))
    tl.at(3023, e.s(778, 123467, "A", 509))
    return tl


def sack_and_loss() -> Timeline:
    """Loss with SACKed duplicate ACKs, fast retransmission, out-of-order, spurious retransmission, retransmission
    after an RTO, ACKed unseen segment, window full with scaling, bytes in flight less SACKed bytes."""
    tl, e = Timeline(), Endpoints("10.0.0.3", "10.0.0.4", 50000, 8080)
    opts_c = [("MSS", 1000), ("SAckOK", b""), ("WScale", 2)]
    opts_s = [("MSS", 1000), ("SAckOK", b""), ("WScale", 1)]
    tl.at(0, e.c(100, 0, "S", 65535, options=opts_c))
    tl.at(30, e.s(20000, 101, "SA", 65535, options=opts_s))
    tl.at(60, e.c(101, 20001, "A", 1500))  # window 1500 << 2 = 6000 bytes
    tl.at(61, e.c(101, 20001, "PA", 1500, n=50))
    base = 20001
    t = 90.0
    for k in range(6):  # segment 2 (k == 2) is never captured
        if k != 2:
            tl.at(t, e.s(base + 1000 * k, 151, "A", 1000, n=1000))
        t += 0.1
    # client: ACK up to segment 2, then dup ACKs SACKing 3..5
    tl.at(120, e.c(151, base + 2000, "A", 1500))
    sack = base + 3000
    tl.at(120.1, e.c(151, base + 2000, "A", 1500, options=[("SAck", (sack, sack + 1000))]))
    tl.at(120.2, e.c(151, base + 2000, "A", 1500, options=[("SAck", (sack, sack + 2000))]))
    tl.at(120.3, e.c(151, base + 2000, "A", 1500, options=[("SAck", (sack, sack + 3000))]))
    tl.at(125, e.s(base + 2000, 151, "A", 1000, n=1000))  # fast retransmission
    tl.at(150, e.c(151, base + 6000, "A", 1500))
    tl.at(151, e.s(base + 7000, 151, "A", 1000, n=1000))  # gap: 6000..7000 comes later
    tl.at(151.5, e.s(base + 6000, 151, "A", 1000, n=1000))  # out of order (within the iRTT)
    tl.at(152, e.s(base + 8000, 151, "PA", 1000, n=1000))
    tl.at(152.2, e.s(base + 9000, 151, "PA", 1000, n=1000))  # window full: 151+... check below
    tl.at(180, e.c(151, base + 10000, "A", 1500))
    tl.at(400, e.s(base + 9000, 151, "PA", 1000, n=1000))  # already ACKed: spurious
    tl.at(401, e.s(base + 10000, 151, "PA", 1000, n=500))
    tl.at(1400, e.s(base + 10000, 151, "PA", 1000, n=500))  # RTO retransmission
    tl.at(1430, e.c(151, base + 12500, "A", 1500))  # ACKs 2000 bytes never seen
    tl.at(1431, e.c(151, base + 12500, "A", 1500))
    tl.at(1432, e.c(151, base + 12500, "A", 1500))
    tl.at(1450, e.s(base + 12500, 151, "FPA", 1000, n=10))
    tl.at(1451, e.c(151, base + 12511, "FA", 1500))
    tl.at(1460, e.s(base + 12511, 152, "A", 1000))
    return tl


def wraparound_and_midstream() -> Timeline:
    """Sequence numbers crossing 2**32; a connection seen from the middle (window scale unknown); SYN-ACK with WS
    whose SYN was not captured."""
    tl = Timeline()
    e = Endpoints("10.0.1.1", "10.0.1.2", 41000, 9000)
    tl.at(0, e.c(0xFFFFFF00, 0, "S", 64240, options=SYN_OPTS))
    tl.at(5, e.s(0xFFFFFFF0, 0xFFFFFF01, "SA", 65160, options=SYN_OPTS))
    tl.at(6, e.c(0xFFFFFF01, 0xFFFFFFF1, "A", 502))
    tl.at(7, e.c(0xFFFFFF01, 0xFFFFFFF1, "PA", 502, n=1000))  # crosses 2**32
    tl.at(8, e.s(0xFFFFFFF1, 0xFFFFFF01 + 1000, "PA", 509, n=100))  # crosses too
    tl.at(9, e.c(0xFFFFFF01 + 1000, 0x51, "A", 502))
    tl.at(10, e.c(0xFFFFFF01 + 1000, 0x51, "PA", 502, n=1000))
    tl.at(11, e.c(0xFFFFFF01 + 1000, 0x51, "PA", 502, n=1000))  # retransmission across the wrap
    m = Endpoints("10.0.1.3", "10.0.1.4", 41001, 22)
    tl.at(20, m.s(3_000_000, 88_000, "PA", 300, n=64))  # mid-stream: scaling unknown
    tl.at(21, m.c(88_000, 3_000_064, "A", 1200))
    tl.at(22, m.c(88_000, 3_000_064, "PA", 1200, n=32))
    tl.at(23, m.s(3_000_064, 88_032, "A", 300))
    h = Endpoints("10.0.1.5", "10.0.1.6", 41002, 25)
    tl.at(30, h.s(4000, 601, "SA", 65160, options=SYN_OPTS))  # SYN not captured
    tl.at(31, h.c(601, 4001, "A", 502))
    tl.at(32, h.s(4001, 601, "PA", 509, n=20))
    tl.at(33, h.c(601, 4021, "A", 502))
    return tl


def icmp_errors() -> Timeline:
    """ICMP errors quoting a TCP SYN (full header with options, and only 8 bytes), ICMPv6 quoting one; a SYN
    retransmitted after the error; a reply that sets the initial RTT after a quoted ACK."""
    s = _scapy()
    tl = Timeline()
    e = Endpoints("10.0.2.1", "10.0.2.2", 42000, 25)
    syn = e.c(1111, 0, "S", 64240, options=SYN_OPTS)
    tl.at(0, syn)
    quoted = bytes(syn[s["IP"]])
    err = s["Ether"](src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / s["IP"](src="10.0.2.254", dst="10.0.2.1") \
        / s["ICMP"](type=3, code=3) / s["Raw"](quoted)
    tl.at(1, err)
    tl.at(1000, e.c(1111, 0, "S", 64240, options=SYN_OPTS))
    short = s["Ether"](src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / s["IP"](src="10.0.2.254", dst="10.0.2.1") \
        / s["ICMP"](type=3, code=13) / s["Raw"](quoted[:28])
    tl.at(1001, short)
    tl.at(3000, e.c(1111, 0, "S", 64240, options=SYN_OPTS))
    tl.at(3010, e.s(2222, 1112, "SA", 65160, options=SYN_OPTS))
    tl.at(3011, e.c(1112, 2223, "A", 502))
    ack_quoted = bytes(e.c(1112, 2223, "PA", 502, n=40)[s["IP"]])
    tl.at(3012, s["Ether"](src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
          / s["IP"](src="10.0.2.254", dst="10.0.2.1") / s["ICMP"](type=11, code=0) / s["Raw"](ack_quoted))
    tl.at(3020, e.s(2223, 1112, "PA", 509, n=30))
    v6 = Endpoints("fd00::1", "fd00::2", 42001, 80, v6=True)
    syn6 = v6.c(3333, 0, "S", 64240, options=SYN_OPTS)
    tl.at(4000, syn6)
    tl.at(4001, s["Ether"](src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
          / s["IPv6"](src="fd00::fe", dst="fd00::1") / s["ICMPv6DestUnreach"](code=4) / s["Raw"](bytes(syn6[s["IPv6"]])))
    tl.at(5000, v6.c(3333, 0, "S", 64240, options=SYN_OPTS))
    tl.at(5010, v6.s(4444, 3334, "SA", 65160, options=SYN_OPTS))
    tl.at(5011, v6.c(3334, 4445, "A", 502))
    return tl


def odd_segments() -> Timeline:
    """Time running backwards, TCP Fast Open data on the SYN, a bogus header length, a fragmented segment, a host
    talking to itself, RST with data, FIN retransmitted, SYN-ACK before the SYN."""
    s = _scapy()
    tl = Timeline()
    e = Endpoints("10.0.3.1", "10.0.3.2", 43000, 443)
    tl.at(0, e.c(500, 0, "S", 64240, n=20, options=[("MSS", 1460), ("TFO", b"\x01\x02\x03\x04\x05\x06\x07\x08")]))
    tl.at(10, e.s(800, 521, "SA", 65160, options=[("MSS", 1460)]))
    tl.at(11, e.c(521, 801, "A", 502))
    tl.at(12, e.c(521, 801, "PA", 502, n=100))
    tl.at(8, e.s(801, 621, "PA", 509, n=50))  # earlier than the previous frame
    tl.at(13, e.c(621, 851, "A", 502))
    tl.at(14, e.c(621, 851, "PA", 502, dataofs=4))  # bogus data offset 16 bytes
    tl.at(15, e.c(621, 851, "PA", 502, n=40))
    big = e.s(851, 661, "PA", 509, n=3000, ip_kw={"id": 4242})
    for k, frag in enumerate(s["fragment"](big[s["IP"]], fragsize=1480)):
        tl.at(20 + k, s["Ether"](src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / frag)
    tl.at(25, e.c(661, 3851, "A", 502))
    tl.at(30, e.c(661, 3851, "FA", 502))
    tl.at(230, e.c(661, 3851, "FA", 502))  # FIN retransmitted
    tl.at(240, e.s(3851, 662, "RA", 0, n=12))  # RST with data
    me = Endpoints("127.0.0.1", "127.0.0.1", 5555, 5555)
    tl.at(300, me.c(10, 0, "S", 1000))
    tl.at(301, me.c(10, 11, "SA", 1000))
    tl.at(302, me.c(11, 11, "A", 1000))
    tl.at(303, me.c(11, 11, "PA", 1000, n=5))
    tl.at(304, me.c(16, 16, "A", 1000))
    o = Endpoints("10.0.3.5", "10.0.3.6", 43001, 80)
    tl.at(400, o.s(9000, 301, "SA", 65160, options=SYN_OPTS))  # the SYN-ACK is captured first
    tl.at(400.5, o.c(300, 0, "S", 64240, options=SYN_OPTS))
    tl.at(401, o.c(301, 9001, "A", 502))
    tl.at(402, o.c(301, 9001, "PA", 502, n=10))
    tl.at(403, o.s(9001, 311, "A", 509))
    return tl


SCENARIOS = {
    "zero_window.pcap": zero_window,
    "port_reuse.pcap": port_reuse,
    "sack_and_loss.pcap": sack_and_loss,
    "wraparound_and_midstream.pcap": wraparound_and_midstream,
    "icmp_errors.pcap": icmp_errors,
    "odd_segments.pcap": odd_segments,
}

# Remaining differences from tshark on these captures: (capture, field or flag) -> ({frames}, reason).
# Keep in step with docs/tcp-analysis-differences.md.
EXPECTED_DIFFERENCES: dict[tuple[str, str], tuple[set[int], str]] = {}


def _oracle(name: str) -> dict:
    return json.loads((DATA / f"{name}.tshark.json").read_text())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_built_capture_is_what_the_oracle_saw(name):
    """The stored capture is exactly what the builder makes, so the builder documents it."""
    built = SCENARIOS[name]().pcap_bytes()
    stored = (DATA / name).read_bytes()
    assert hashlib.sha256(built).hexdigest() == _oracle(name)["sha256"]
    assert built == stored


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_edge_case_analysis_matches_tshark(name):
    oracle = _oracle(name)
    differences = compare_with_tshark(DATA / name, oracle)
    expected = {key[1]: frames for key, (frames, _) in EXPECTED_DIFFERENCES.items() if key[0] == name}
    assert differences == expected


def test_every_flag_is_exercised():
    """The built captures between them show every tcp.analysis flag at least once (so each is really compared)."""
    from diagnose.tcp.analysis import FLAG_FILTERS
    seen = set()
    for name in SCENARIOS:
        seen |= {flag for flag, frames in _oracle(name)["frame_sets"].items() if frames}
    assert seen == set(FLAG_FILTERS)


def _regenerate() -> None:
    from oracles.make_fixtures import Tools, frame_sets, packet_table
    import oracles.make_fixtures as mf

    DATA.mkdir(parents=True, exist_ok=True)
    tools = Tools()
    mf.PACKET_FIELDS[:] = ORACLE_FIELDS  # the TCP fields only
    mf.FRAME_SET_FILTERS[:] = [f for f in mf.FRAME_SET_FILTERS if f.startswith("tcp.analysis.")]
    for name, build in SCENARIOS.items():
        data = build().pcap_bytes()
        (DATA / name).write_bytes(data)
        capture = f"tcp_analysis/{name}"
        packets, error = packet_table(tools, capture, [])
        sets, _ = frame_sets(tools, capture, [], error)
        oracle = {"capture": capture, "sha256": hashlib.sha256(data).hexdigest(),
                  "tshark_version": tools.tshark_version, "error": error, "packets": packets, "frame_sets": sets}
        (DATA / f"{name}.tshark.json").write_text(json.dumps(oracle, indent=None, sort_keys=True) + "\n")
        print(name, len(packets["rows"]), "frames", {k: v for k, v in sets.items() if v})


if __name__ == "__main__":
    _regenerate()
