"""DNS: messages built by hand (every record type we decode, EDNS, compression, damage) and the matching rules."""

from __future__ import annotations

import struct

import pytest
from scapy.all import DNS, DNSQR, DNSRR, IP, UDP, Ether, wrpcap

from diagnose.pipeline import open_pass
from diagnose.protocols.app import AppLayer
from diagnose.protocols.dns import DnsTracker, looks_like_dns, parse_message
from diagnose.protocols.fields import frame_values


def name(text: str) -> bytes:
    if text == "":
        return b"\0"
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".")) + b"\0"


def header(ident=0x1234, flags=0x8180, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack(">6H", ident, flags, qd, an, ns, ar)


def rr(owner: bytes, rtype: int, rdata: bytes, ttl=300, cls=1) -> bytes:
    return owner + struct.pack(">HHIH", rtype, cls, ttl, len(rdata)) + rdata


QUESTION = name("www.example.com") + struct.pack(">HH", 1, 1)
POINTER = b"\xc0\x0c"  # the question name


def test_query():
    m = parse_message(header(flags=0x0100) + QUESTION)
    assert not m.response and m.malformed is None
    assert m.questions == [("www.example.com", 1, 1)] and m.qname == "www.example.com" and m.opcode == 0


def test_answers_of_every_decoded_type():
    records = [
        rr(POINTER, 1, bytes([93, 184, 216, 34])),
        rr(POINTER, 28, bytes.fromhex("20010db8000000000000000000000001")),
        rr(POINTER, 5, name("alias.example.net")),
        rr(POINTER, 2, name("ns1.example.com")),
        rr(POINTER, 15, struct.pack(">H", 10) + name("mail.example.com")),
        rr(POINTER, 16, b"\x05hello\x05world"),
        rr(POINTER, 6, name("ns1.example.com") + name("hostmaster.example.com") + struct.pack(">5I", 7, 1, 2, 3, 4)),
        rr(POINTER, 33, struct.pack(">HHH", 1, 2, 443) + name("svc.example.com")),
        rr(POINTER, 12, name("host.example.com")),
        rr(POINTER, 65, struct.pack(">H", 1) + name("") + struct.pack(">HH", 1, 3) + b"\x02h2"),
        rr(POINTER, 256, struct.pack(">HH", 10, 1) + b"ftp://x"),
        rr(POINTER, 99, b"\x03spf"),
        rr(POINTER, 48, b"\x01\x02\x03"),  # DNSKEY: kept raw
    ]
    m = parse_message(header(an=len(records)) + QUESTION + b"".join(records))
    assert m.malformed is None
    data = {r.type: r.data for r in m.records}
    assert data[1] == "93.184.216.34" and data[28] == "2001:db8::1" and data[5] == "alias.example.net"
    assert data[2] == "ns1.example.com" and data[15] == (10, "mail.example.com") and data[16] == ["hello", "world"]
    assert data[6] == ("ns1.example.com", "hostmaster.example.com", 7, 1, 2, 3, 4)
    assert data[33] == (1, 2, 443, "svc.example.com") and data[12] == "host.example.com"
    assert data[65] == (1, "<Root>", [(1, b"\x02h2")]) and data[256] == (10, 1, "ftp://x")
    assert data[99] == ["spf"] and data[48] == b"\x01\x02\x03"
    assert {r.name for r in m.records} == {"www.example.com"}


def test_edns_and_client_subnet():
    ecs = struct.pack(">HHHBB", 8, 7, 1, 24, 0) + bytes([192, 0, 2])
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, (1 << 24) | 0x8000, len(ecs)) + ecs
    m = parse_message(header(flags=0x8183, ar=1) + QUESTION + opt)
    assert m.opt.udp_payload_size == 1232 and m.opt.do and m.opt.ext_rcode == 1
    assert m.rcode == 3 | (1 << 4)  # the full rcode: EDNS extends the header's 4 bits
    assert m.opt.options == [(8, (1, 24, 0, "192.0.2.0"))]


@pytest.mark.parametrize("damage,reason", [
    (lambda m: m[:8], "header"),
    (lambda m: m[:20], "runs past the end"),
    (lambda m: m[:-2], "record data"),
    (lambda m: m[:12] + b"\xc0\x0c" + m[14:], "loop"),
    (lambda m: m[:12] + b"\x80abc" + m[16:], "label type"),
])
def test_damaged_messages_are_malformed_and_keep_what_was_read(damage, reason):
    good = header(an=1) + QUESTION + rr(POINTER, 1, bytes(4))
    m = parse_message(damage(good))
    assert m.malformed and reason in m.malformed
    if reason == "record data":
        assert m.questions == [("www.example.com", 1, 1)]


def test_names_as_wireshark_shows_them():
    m = parse_message(header(flags=0) + name("") + struct.pack(">HH", 2, 1))
    assert m.qname == "<Root>"
    odd = header(flags=0) + b"\x03a\x00b" + b"\x00" + struct.pack(">HH", 1, 1)
    assert parse_message(odd).qname == "a\\x00b"


def test_structure_test_for_other_ports():
    assert looks_like_dns(header(flags=0x0100) + QUESTION)
    assert not looks_like_dns(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not looks_like_dns(header(flags=0x0100, qd=2) + QUESTION)
    assert not looks_like_dns(bytes(64))


def test_tracker_matching_rules():
    t = DnsTracker()
    q = parse_message(header(ident=7, flags=0x0100) + QUESTION)
    q2 = parse_message(header(ident=7, flags=0x0100) + QUESTION)
    r = parse_message(header(ident=7, flags=0x8180) + QUESTION)
    r2 = parse_message(header(ident=7, flags=0x8180) + QUESTION)
    stray = parse_message(header(ident=9, flags=0x8180) + QUESTION)
    t.track(q, 1, 1_000)
    t.track(q2, 2, 2_000_000_000)  # same id and name within 5 s: a retransmission
    t.track(r, 3, 2_500_000_000)
    t.track(r2, 4, 2_600_000_000)
    t.track(stray, 5, 2_700_000_000)
    assert q2.retransmission and q2.retransmit_of == 1
    assert r.time_ns == 2_500_000_000 - 1_000 and r.response_to == 1  # timed from the first copy
    assert r2.retransmission and r2.retransmit_of == 3 and r2.time_ns is None
    assert stray.unsolicited
    late = DnsTracker()
    late.track(parse_message(header(ident=7, flags=0x0100) + QUESTION), 1, 0)
    again = parse_message(header(ident=7, flags=0x0100) + QUESTION)
    late.track(again, 2, 6_000_000_000)  # after 5 s: a new transaction
    answer = parse_message(header(ident=7, flags=0x8180) + QUESTION)
    late.track(answer, 3, 6_100_000_000)
    assert not again.retransmission and answer.response_to == 2 and answer.time_ns == 100_000_000
    assert late.unanswered() == []


def _udp(ts, src, dst, sport, dport, msg):
    p = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / msg
    p.time = ts
    return p


def test_udp_kernel_and_tcp_tracker_agree(tmp_path):
    """UDP DNS is matched by the DNS kernel; the same exchange over TCP by DnsTracker: same answers."""
    q = DNS(id=5, rd=1, qd=DNSQR(qname="a.example", qtype="A"))
    r = DNS(id=5, qr=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname="a.example", qtype="A"))
    lost = DNS(id=6, rd=1, qd=DNSQR(qname="b.example", qtype="AAAA"))
    packets = [_udp(100.0, "10.0.0.1", "10.0.0.53", 3333, 53, q), _udp(100.5, "10.0.0.1", "10.0.0.53", 3333, 53, q),
               _udp(100.75, "10.0.0.53", "10.0.0.1", 53, 3333, r), _udp(100.8, "10.0.0.53", "10.0.0.1", 53, 3333, r),
               _udp(101.0, "10.0.0.1", "10.0.0.53", 4444, 53, lost)]
    path = tmp_path / "dns.pcap"
    wrpcap(str(path), packets)
    app = AppLayer(use_system_store=False)
    run = open_pass(str(path))
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            by_frame = {int(chunk.table["frame"][row]): m for row, m in out.items["dns"]}
            times = {int(chunk.table["frame"][row]): v for row, v in frame_values(out, "dns.time").items()}
            retrans = {int(chunk.table["frame"][row]) for row in frame_values(out, "dns.retransmission")}
    summary = app.finish()
    assert times == {3: [750_000_000]}  # from the first query
    assert by_frame[3].response_to == 1 and by_frame[3].rcode == 3 and by_frame[3].qname == "a.example"
    assert retrans == {2, 4}
    facts = {f.conv: f for f in summary.dns.values()}
    assert sum(f.queries for f in facts.values()) == 3 and sum(f.retransmissions for f in facts.values()) == 1
    unanswered = [u for f in facts.values() for u in f.unanswered]
    assert unanswered == [(5, "b.example")]
    errors = [e for f in facts.values() for e in f.errors_seen]
    assert errors == [(3, "a.example", 3), (4, "a.example", 3)]
    assert max(f.time_max_ns for f in facts.values()) == 750_000_000


def test_dns_over_tcp_length_prefixed(tmp_path):
    from scapy.all import TCP
    q = bytes(DNS(id=9, rd=1, qd=DNSQR(qname="t.example")))
    r = bytes(DNS(id=9, qr=1, qd=DNSQR(qname="t.example"), an=DNSRR(rrname="t.example", rdata="192.0.2.9")))
    c, s = ("10.0.0.1", 5555), ("10.0.0.53", 53)

    def seg(src, dst, sp, dp, seq, ack, flags, payload, ts):
        p = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags) / payload
        p.time = ts
        return p
    framed_q = struct.pack(">H", len(q)) + q
    framed_r = struct.pack(">H", len(r)) + r
    packets = [seg(c[0], s[0], c[1], s[1], 100, 0, "S", b"", 1.0), seg(s[0], c[0], s[1], c[1], 900, 101, "SA", b"", 1.1),
               seg(c[0], s[0], c[1], s[1], 101, 901, "PA", framed_q, 1.2),
               seg(s[0], c[0], s[1], c[1], 901, 101 + len(framed_q), "PA", framed_r[:7], 1.3),
               seg(s[0], c[0], s[1], c[1], 908, 101 + len(framed_q), "PA", framed_r[7:], 1.4)]
    path = tmp_path / "dnstcp.pcap"
    wrpcap(str(path), packets)
    app = AppLayer(use_system_store=False)
    run = open_pass(str(path))
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            got = {int(chunk.table["frame"][row]): m for row, m in out.items["dns"]}
    assert sorted(got) == [3, 5]  # the response belongs to the segment that completes it
    assert got[5].answers(1)[0].data == "192.0.2.9" and got[5].response_to == 3
    assert got[5].transport == "tcp" and abs(got[5].time_ns - 200_000_000) < 1000


def test_truncated_answer_and_fallback_to_tcp(tmp_path):
    from scapy.all import TCP
    q = DNS(id=11, rd=1, qd=DNSQR(qname="big.example", qtype="TXT"))
    tc = DNS(id=11, qr=1, tc=1, rd=1, ra=1, qd=DNSQR(qname="big.example", qtype="TXT"))
    packets = [_udp(10.0, "10.0.0.1", "10.0.0.53", 3333, 53, q), _udp(10.1, "10.0.0.53", "10.0.0.1", 53, 3333, tc)]
    framed = struct.pack(">H", len(bytes(q))) + bytes(q)
    for i, (flags, seq, payload) in enumerate([("S", 100, b""), ("PA", 101, framed)]):
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / TCP(sport=5000, dport=53, flags=flags, seq=seq) / payload
        p.time = 10.2 + i / 100
        packets.append(p)
    wrpcap(str(tmp_path / "tc.pcap"), packets)
    app = AppLayer(use_system_store=False)
    run = open_pass(str(tmp_path / "tc.pcap"))
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            flags = {int(chunk.table["frame"][row]): v for row, v in frame_values(out, "dns.flags.truncated").items()}
    summary = app.finish()
    assert flags == {1: [False], 2: [True], 4: [False]}
    (udp,) = summary.dns.values()
    assert udp.truncated == 1 and udp.tcp_fallback
