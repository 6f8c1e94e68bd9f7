"""Capture filters on hand-built frames: libpcap semantics, checked three ways at once.

Each case runs the vectorised evaluator over a chunk, our classic-BPF program through the test interpreter, and
states the expected frames (what libpcap does; the parity tests compare with tcpdump itself on real captures).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, IPv6ExtHdrFragment, Raw

from bpf_interpreter import run
from chunkbuild import chunk
from diagnose.errors import FilterError
from diagnose.filters import BpfFilter, ChunkContext, compile_bpf

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _frames() -> list[bytes]:
    return [
        bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="S")),
        bytes(Ether(src=B, dst=A) / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=40000, flags="SA")),
        bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.3") / UDP(sport=5353, dport=53) / Raw(b"q" * 8)),
        bytes(Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.2")),
        bytes(Ether(src=A, dst=B) / Dot1Q(vlan=100) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80)),
        bytes(Ether(src=A, dst=B) / Dot1Q(vlan=100) / Dot1Q(vlan=200) / IP(src="10.0.0.5", dst="10.0.0.2") /
              UDP(dport=53)),
        bytes(Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=443)),
        bytes(Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(m=1) /
              UDP(dport=53)),
        bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", proto=17) / UDP(dport=53) /
              Raw(b"a" * 16)),
        bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2", frag=3, proto=17) / Raw(b"b" * 16)),
        bytes(Ether(src=B, dst=A) / IP(src="10.0.0.9", dst="10.0.0.1") / ICMP(type=3, code=3) /
              IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53)),
    ]


def _check(text: str, expected: list[int], frames: list[bytes] | None = None, *, linktype: int = 1,
           caplens: dict[int, int] | None = None) -> None:
    frames = frames if frames is not None else _frames()
    captured = [f[: caplens[i + 1]] if caplens and i + 1 in caplens else f for i, f in enumerate(frames)]
    buf, table = chunk(captured, linktype=linktype)
    for i, f in enumerate(frames):
        table[i]["wirelen"] = len(f)
    flt = BpfFilter(text)
    got = [int(x) for x in table["frame"][flt.evaluate(ChunkContext(buf, table))]]
    assert got == expected, f"evaluator: {text}"
    program = [(i.code, i.jt, i.jf, i.k) for i in flt.program(linktype).bytecode()]
    by_bytecode = [n + 1 for n, f in enumerate(captured) if run(program, f, len(frames[n]))]
    assert by_bytecode == expected, f"bytecode: {text}"


@pytest.mark.parametrize("text,expected", [
    ("tcp", [1, 2, 7]),
    ("udp", [3, 8, 9, 10]),  # every IPv4 fragment of a UDP datagram, and IPv6 behind one fragment header
    ("ip6 and udp", [8]),
    ("arp", [4]),
    ("icmp", [11]),
    ("vlan", [5, 6]),
    ("vlan and tcp", [5]),
    ("vlan 100 and vlan 200", [6]),
    ("vlan 200", []),
    ("vlan and vlan and udp port 53", [6]),
    ("port 53", [3, 9]),  # first fragment only; the quoted UDP inside the ICMP error does not count
    ("udp port 53 or ip6", [3, 7, 8, 9]),
    ("host 10.0.0.2", [1, 2, 4, 9, 10]),  # ARP target too; not inside VLANs
    ("src host 10.0.0.1 and dst port 80", [1]),
    ("host 10.0.0.1 and 10.0.0.3", [3]),  # carry-over: host 10.0.0.1 and host 10.0.0.3
    ("host 10.0.0.1 and not 10.0.0.2", [3, 11]),
    ("net 10.0.0.0/30", [1, 2, 3, 4, 9, 10, 11]),
    ("tcp or udp and port 53", [3, 9]),  # (tcp or udp) and port 53: equal precedence
    ("tcp or (udp and port 53)", [1, 2, 3, 7, 9]),
    ("tcp[tcpflags] & tcp-syn != 0", [1, 2]),
    ("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", [1]),
    ("tcp[13] != 2", [2]),  # the protocol check stays positive: UDP packets do not match
    ("not tcp[13] = 2", [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    ("ip[6:2] & 0x1fff = 0", [1, 2, 3, 9, 11]),
    ("icmp[icmptype] = icmp-unreach", [11]),
    ("ether broadcast", [4]),
    ("ether multicast", [4]),
    ("ether src 02:00:00:00:00:02", [2, 11]),
    ("ip6 net 2001:db8::/32", [7, 8]),
])
def test_libpcap_semantics(text, expected):
    _check(text, expected)


def test_less_and_greater_are_inclusive():
    frames = _frames()
    size = len(frames[0])
    exact = [n + 1 for n, f in enumerate(frames) if len(f) == size]
    _check(f"less {size}", [n + 1 for n, f in enumerate(frames) if len(f) <= size])
    _check(f"greater {size}", [n + 1 for n, f in enumerate(frames) if len(f) >= size])
    _check(f"len = {size}", exact)


def test_a_load_past_the_captured_bytes_rejects_the_packet_whatever_surrounds_it():
    caplens = {1: 40, 3: 40}  # TCP SYN cut inside its header; the UDP datagram cut too
    # tcp[100] runs off the end of frames 1 and 2: reject them, even though "or udp" would ...
    _check("tcp[100] = 1 or udp", [3, 8, 9, 10], caplens=caplens)
    _check("udp or tcp[100] = 1", [3, 8, 9, 10], caplens=caplens)
    # ... and even under `not`; packets that are not IPv4 TCP never load it
    _check("not tcp[100] = 1", [3, 4, 5, 6, 7, 8, 9, 10, 11], caplens=caplens)
    _check("len > 0", list(range(1, 12)), caplens=caplens)


def test_null_link_type_reads_the_family_in_the_writers_byte_order():
    ip4 = bytes(IP(src="127.0.0.1", dst="127.0.0.1") / TCP())
    ip6 = bytes(IPv6(src="::1", dst="::1") / UDP())
    little = [struct.pack("<I", 2) + ip4, struct.pack("<I", 30) + ip6, struct.pack("<I", 10) + ip6]
    big = [struct.pack(">I", 2) + ip4, struct.pack(">I", 24) + ip6]
    buf, table = chunk(little, linktype=0)
    ctx = ChunkContext(buf, table)
    assert compile_bpf("ip", 0).evaluate(buf, table).tolist() == [True, False, False]
    assert compile_bpf("ip6", 0).evaluate(buf, table).tolist() == [False, True, False]  # Linux's AF_INET6 (10): no
    assert BpfFilter("tcp").evaluate(ctx).tolist() == [True, False, False]
    buf, table = chunk(big, linktype=0)
    assert compile_bpf("ip or ip6", 0, big_endian=True).evaluate(buf, table).tolist() == [True, True]
    assert compile_bpf("ip or ip6", 0, big_endian=False).evaluate(buf, table).tolist() == [False, False]


def test_raw_and_cooked_link_types():
    ip4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53))
    ip6 = bytes(IPv6() / TCP())
    buf, table = chunk([ip4, ip6], linktype=101)
    assert compile_bpf("udp port 53", 101).evaluate(buf, table).tolist() == [True, False]
    assert compile_bpf("ip6 and tcp", 101).evaluate(buf, table).tolist() == [False, True]
    sll = struct.pack(">HHH8sH", 0, 1, 6, bytes(8), 0x0800) + ip4
    sll_out = struct.pack(">HHH8sH", 4, 1, 6, bytes(8), 0x0800) + ip4
    buf, table = chunk([sll, sll_out], linktype=113)
    assert compile_bpf("host 10.0.0.2 and udp", 113).evaluate(buf, table).tolist() == [True, True]
    assert compile_bpf("outbound", 113).evaluate(buf, table).tolist() == [False, True]
    assert compile_bpf("inbound", 113).evaluate(buf, table).tolist() == [True, False]


def test_chunks_with_several_link_types_use_one_program_each():
    ip4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53))
    eth = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53))
    buf, table = chunk([ip4, eth, ip4])
    table["linktype"] = [101, 1, 101]
    flt = BpfFilter("udp port 53")
    assert flt.evaluate(ChunkContext(buf, table)).tolist() == [True, True, True]
    assert sorted(flt._programs) == [1, 101]


def test_empty_filter_accepts_everything():
    _check("", list(range(1, 12)))


def test_an_unsupported_link_type_fails_only_for_link_dependent_primitives():
    frames = [b"\x00" * 30]
    buf, table = chunk(frames, linktype=160)
    assert compile_bpf("len > 10", 160).evaluate(buf, table).tolist() == [True]
    with pytest.raises(FilterError, match="DLT 160"):
        compile_bpf("ip", 160)


def test_dump_looks_like_tcpdump_d():
    text = compile_bpf("tcp[13] & 2 != 0", 1, snaplen=65535).dump("d").splitlines()
    assert text[0] == "(000) ldh      [12]"
    assert text[1] == "(001) jeq      #0x800           jt 2\tjf 10"
    assert "(006) ldxb     4*([14]&0xf)" in text
    assert text[-2:] == ["(009) ret      #65535", "(010) ret      #0"]
    assert compile_bpf("ip", 1).dump("ddd").splitlines()[0] == "4"
    assert compile_bpf("ip", 1).dump("dd").splitlines()[0] == "{ 0x28, 0, 0, 0x0000000c },"


def test_evaluator_is_vectorised_over_the_chunk():
    frames = _frames() * 500
    buf, table = chunk(frames)
    mask = compile_bpf("tcp[tcpflags] & tcp-syn != 0").evaluate(buf, table)
    assert mask.dtype == np.bool_ and mask.sum() == 1000
