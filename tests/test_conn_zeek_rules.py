"""Zeek's conn_state and history rules on small captures built with scapy: letters and their repetition rules (once
per direction, repeat on a new sequence number, logarithmic), role flips ('^'), the conn_state table, and how Zeek's
timers and port reuse split what is one conversation for Wireshark."""

from __future__ import annotations

import pytest
from scapy.all import IP, TCP, UDP, Ether, PcapWriter, Raw

from diagnose.conn.ports import likely_server_ports
from diagnose.conn.zeek import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT, K_TCP, K_UDP,
                                ConnStates, ZeekConnections, conn_state)
from diagnose.pipeline import open_pass

C, S = "10.0.0.1", "10.0.0.2"
CP, SP = 40000, 7000  # neither is a likely server port


class Trace:
    """A two-host TCP/UDP exchange; packets get increasing times."""

    def __init__(self, sport=CP, dport=SP, t0=1_700_000_000.0):
        self.pkts = []
        self.t = t0
        self.sport, self.dport = sport, dport

    def tcp(self, from_client, flags, seq, ack=0, data=b"", win=1000, dt=0.01):
        self.t += dt
        src, dst = (C, S) if from_client else (S, C)
        sp, dp = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        p = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=win)
        if data:
            p = p / Raw(data)
        p.time = self.t
        self.pkts.append(p)
        return self

    def udp(self, from_client, data=b"x", dt=0.01):
        self.t += dt
        src, dst = (C, S) if from_client else (S, C)
        sp, dp = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        p = Ether() / IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / Raw(data)
        p.time = self.t
        self.pkts.append(p)
        return self

    def handshake(self, cseq=100, sseq=500):
        return self.tcp(True, "S", cseq).tcp(False, "SA", sseq, cseq + 1).tcp(True, "A", cseq + 1, sseq + 1)

    def run(self, tmp_path):
        path = tmp_path / "t.pcap"
        with PcapWriter(str(path), linktype=1) as w:
            for p in self.pkts:
                w.write(p)
        zeek = ZeekConnections()
        states = ConnStates()
        run = open_pass(str(path))
        with run.capture:
            for chunk in run.chunks():
                zeek.update(chunk.buf, chunk.table)
                states.update(chunk.buf, chunk.table, run.flows.count)
        per_conv = [states.record(i) for i in range(run.flows.count)]
        return zeek.records(), per_conv


def only(records):
    assert len(records) == 1, records
    return records[0]


def test_normal_session_letters_once_per_direction(tmp_path):
    t = Trace().handshake()
    t.tcp(True, "PA", 101, 501, b"GET").tcp(True, "PA", 104, 501, b"MORE")
    t.tcp(False, "A", 501, 108).tcp(False, "PA", 501, 108, b"200 OK").tcp(True, "A", 108, 507)
    t.tcp(True, "FA", 108, 507).tcp(False, "FA", 507, 109).tcp(True, "A", 109, 508)
    zeek, conv = t.run(tmp_path)
    z = only(zeek)
    assert (z["conn_state"], z["history"]) == ("SF", "ShADadFf")
    assert (z["orig_bytes"], z["resp_bytes"]) == (7, 6)
    assert (z["orig_h"], z["orig_p"], z["resp_p"]) == (C, CP, SP)
    assert (only(conv)["conn_state"], only(conv)["history"]) == ("SF", "ShADadFf")


def test_syn_repeats_only_with_a_new_sequence_number(tmp_path):
    zeek, _ = Trace().tcp(True, "S", 100).tcp(True, "S", 100, dt=1).tcp(True, "S", 900, dt=1).run(tmp_path)
    # the third SYN has a new ISN on a still-open attempt: Zeek treats it as a new connection (port reuse)
    assert [(z["conn_state"], z["history"]) for z in zeek] == [("S0", "S"), ("S0", "S")]
    assert zeek[0]["orig_pkts"] == 2


def test_rst_letters_repeat_on_new_sequence_numbers(tmp_path):
    t = Trace().handshake()
    t.tcp(True, "R", 101).tcp(True, "R", 101).tcp(True, "R", 150)
    zeek, _ = t.run(tmp_path)
    z = only(zeek)
    assert (z["conn_state"], z["history"]) == ("RSTO", "ShARR")


def test_retransmission_letters_are_logarithmic(tmp_path):
    t = Trace().handshake()
    t.tcp(True, "PA", 101, 501, b"x" * 10)
    for _ in range(10):
        t.tcp(True, "PA", 101, 501, b"x" * 10)  # the same segment again: retransmissions 1..10
    t.tcp(False, "A", 501, 111)
    z = only(t.run(tmp_path)[0])
    assert z["history"] == "ShADTTa"  # 1st and 10th retransmission


def test_zero_window_letters_are_logarithmic(tmp_path):
    t = Trace().handshake()
    t.tcp(True, "PA", 101, 501, b"data")
    for k in range(10):
        t.tcp(False, "A", 501, 105, win=0)
    z = only(t.run(tmp_path)[0])
    assert z["history"] == "ShADaww"  # the pure ACK's letter comes before its zero window; then the 10th


def test_fin_rst_is_inconsistent_and_syn_fin_is_multiflag(tmp_path):
    t = Trace().handshake().tcp(True, "FR", 101, 501)
    assert "I" in only(t.run(tmp_path)[0])["history"]
    t = Trace().tcp(True, "SF", 100)
    assert only(t.run(tmp_path)[0])["history"] == "Q"


def test_first_packet_from_a_likely_server_port_flips_roles(tmp_path):
    t = Trace(sport=CP, dport=80)
    t.tcp(False, "SA", 500, 101).tcp(True, "A", 101, 501).tcp(False, "PA", 501, 101, b"hello")
    z = only(t.run(tmp_path)[0])
    assert (z["orig_h"], z["orig_p"], z["resp_p"]) == (C, CP, 80)
    assert z["history"] == "^hAd" and z["conn_state"] == "S1"


def test_synack_then_productive_traffic_flips_roles(tmp_path):
    # no likely server port: Zeek keeps the SYN-ACK sender as originator until an ACK or data shows otherwise
    t = Trace()
    t.tcp(False, "SA", 500, 101).tcp(True, "A", 101, 501)
    z = only(t.run(tmp_path)[0])
    assert z["history"] == "^hA" and z["orig_h"] == C


def test_udp_states(tmp_path):
    assert only(Trace().udp(True).udp(True).run(tmp_path)[0])["conn_state"] == "S0"
    z = only(Trace().udp(True).udp(False).run(tmp_path)[0])
    assert (z["conn_state"], z["history"], z["orig_bytes"], z["resp_bytes"]) == ("SF", "Dd", 1, 1)
    z = only(Trace(sport=40000, dport=53).udp(False).run(tmp_path)[0])  # only the DNS server spoke
    assert (z["conn_state"], z["history"], z["orig_p"], z["resp_p"]) == ("SHR", "^d", 40000, 53)


def test_content_gap_letter_and_missed_bytes(tmp_path):
    t = Trace().handshake()
    t.tcp(True, "PA", 101, 501, b"a" * 100)
    t.tcp(True, "PA", 301, 501, b"c" * 100)  # bytes 201..300 never seen
    t.tcp(False, "A", 501, 401)  # ...but acknowledged
    z = only(t.run(tmp_path)[0])
    assert z["history"] == "ShADaG" and z["missed_bytes"] == 100  # the ACK's letter, then the gap it reveals


def test_zeek_timers_split_what_wireshark_keeps_together(tmp_path):
    # Linux SYN retries at 0..5 s and 7 s: Zeek gives up an unanswered SYN after 5 s (tcp_attempt_delay)
    t = Trace()
    for dt in (0, 1, 1, 1, 1, 1.02, 2):
        t.tcp(True, "S", 100, dt=dt or 0.01)
    zeek, conv = t.run(tmp_path)
    assert [(z["conn_state"], z["orig_pkts"]) for z in zeek] == [("S0", 5), ("S0", 2)]
    assert only(conv)["conn_state"] == "S0" and only(conv)["orig_pkts"] == 7

    # UDP: 60 s of silence ends a Zeek connection
    zeek, conv = Trace().udp(True).udp(False).udp(True, dt=61).udp(False).run(tmp_path)
    assert [z["conn_state"] for z in zeek] == ["SF", "SF"] and only(conv)["orig_pkts"] == 2


def test_tcp_inactivity_timeout_after_five_minutes(tmp_path):
    t = Trace().handshake().tcp(True, "PA", 101, 501, b"x").tcp(False, "A", 501, 102)
    t.tcp(True, "PA", 102, 501, b"y", dt=301).tcp(False, "R", 501)
    zeek, conv = t.run(tmp_path)
    assert [(z["conn_state"], z["history"]) for z in zeek] == [("S1", "ShADa"), ("RSTRH", "Dr")]
    assert (only(conv)["conn_state"], only(conv)["history"]) == ("RSTR", "ShADar")

    # under five minutes after the handshake the connection goes on (60 s applied only during the handshake)
    t = Trace().handshake().tcp(True, "PA", 101, 501, b"x").tcp(False, "A", 501, 102)
    t.tcp(True, "PA", 102, 501, b"y", dt=200).tcp(False, "R", 501)
    zeek, conv = t.run(tmp_path)
    assert [(z["conn_state"], z["history"]) for z in zeek] == [("RSTR", "ShADar")]


def test_new_syn_after_close_is_a_new_connection(tmp_path):
    t = Trace().handshake().tcp(True, "FA", 101, 501).tcp(False, "FA", 501, 102).tcp(True, "A", 102, 502)
    t.tcp(True, "S", 100, dt=1).tcp(False, "RA", 0, 101)
    zeek, _ = t.run(tmp_path)
    assert [(z["conn_state"], z["history"]) for z in zeek] == [("SF", "ShAFf"), ("REJ", "Sr")]


@pytest.mark.parametrize("orig,resp,history,expected", [
    (SYN_SENT, INACTIVE, "S", "S0"),
    (ESTABLISHED, ESTABLISHED, "ShAD", "S1"),
    (CLOSED, CLOSED, "ShAFf", "SF"),
    (SYN_SENT, RESET, "Sr", "REJ"),
    (RESET, RESET, "Sr", "REJ"),  # both reset, no bytes either way
    (CLOSED, ESTABLISHED, "ShAF", "S2"),
    (ESTABLISHED, CLOSED, "ShAf", "S3"),
    (RESET, ESTABLISHED, "ShAR", "RSTO"),
    (ESTABLISHED, RESET, "ShAr", "RSTR"),
    (RESET, INACTIVE, "SR", "RSTOS0"),
    (RESET, INACTIVE, "^SR", "RSTOS0"),
    (RESET, INACTIVE, "SaR", "RSTOS0"),  # lower-case letters do not break the pattern
    (RESET, INACTIVE, "SAR", "OTH"),
    (INACTIVE, RESET, "^r", "RSTRH"),
    (PARTIAL, RESET, "Dr", "RSTRH"),
    (CLOSED, INACTIVE, "SF", "SH"),
    (PARTIAL, CLOSED, "^fA", "SHR"),
    (INACTIVE, SYN_ACK_SENT, "^h", "OTH"),
    (PARTIAL, PARTIAL, "Dd", "OTH"),
])
def test_conn_state_table(orig, resp, history, expected):
    assert conn_state(K_TCP, orig, resp, 0, 0, history) == expected


def test_conn_state_udp_table():
    assert [conn_state(K_UDP, o, r, 0, 0, "") for o, r in ((1, 1), (1, 0), (0, 1), (0, 0))] == \
        ["SF", "S0", "SHR", "OTH"]


def test_bare_mode_has_no_protocol_server_ports():
    ports = likely_server_ports([])
    assert not ports[0, 80] and ports[1, 3544]  # tunnel ports stay: Zeek always loads its packet protocols
    default = likely_server_ports()
    assert default[0, 80] and default[0, 22] and default[1, 53] and default[2, 53]


@pytest.mark.parametrize("bad, letters", [(9, "C"), (10, "CC"), (99, "CC"), (100, "CCC")])
def test_udp_bad_checksum_letter_is_logarithmic(tmp_path, bad, letters):
    """A 'C' at the 1st, 10th, 100th ... bad UDP checksum of a side, like TCP's logarithmic letters."""
    path = tmp_path / "t.pcap"
    with PcapWriter(str(path), linktype=1) as w:
        for i in range(bad):
            p = Ether() / IP(src=C, dst=S) / UDP(sport=CP, dport=SP, chksum=0x1234) / Raw(b"x")
            p.time = 1_700_000_000.0 + i * 0.01
            w.write(p)
    zeek, states = ZeekConnections(verify_checksums=True), ConnStates(verify_checksums=True)
    run = open_pass(str(path))
    with run.capture:
        for chunk in run.chunks():
            zeek.update(chunk.buf, chunk.table)
            states.update(chunk.buf, chunk.table, run.flows.count)
    z = only(zeek.records())
    assert (z["history"], z["orig_pkts"]) == (letters, bad)
    assert states.record(0)["history"] == letters
