"""verify_checksums: IPv4 header and TCP/UDP/ICMP/ICMPv6 checksums, checked only when asked for."""

from __future__ import annotations

import pytest
from scapy.all import GRE, ICMP, IP, TCP, UDP, Ether, IPv6, ICMPv6EchoRequest

import capbuild as cb
from diagnose.decode import CK_IP_BAD, CK_L4_BAD, CK_L4_UNVERIFIED, verify_checksums

ETH = Ether(src=cb.MAC_A, dst=cb.MAC_B)
V4 = dict(src="192.0.2.1", dst="198.51.100.7")
V6 = dict(src="2001:db8::1", dst="2001:db8:1::99")

GOOD = {
    "tcp": IP(**V4) / TCP(sport=1, dport=2, flags="PA") / b"odd-length!",
    "udp": IP(**V4) / UDP(sport=3, dport=4) / b"even",
    "icmp": IP(**V4) / ICMP(type=8, id=1, seq=2) / b"ping",
    "tcp6": IPv6(**V6) / TCP(sport=5, dport=6) / (b"x" * 101),
    "udp6": IPv6(**V6) / UDP(sport=7, dport=8) / b"y",
    "icmp6": IPv6(**V6) / ICMPv6EchoRequest(id=3, seq=4) / b"z",
    "gre": IP(**V4) / GRE() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=9, dport=10) / b"inner",
}


def verdicts(frames):
    buf, table = cb.decode(frames)
    return verify_checksums(buf, table).tolist()


def corrupt(pkt, offset_from_end: int) -> cb.Frame:
    """The frame with one byte flipped, offset_from_end bytes before its end (so inside the innermost header)."""
    data = bytearray(bytes(ETH / pkt))
    data[len(data) - offset_from_end] ^= 0x01
    return cb.Frame(bytes(data), 1, len(data), cb.BASE_TS)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_correct_checksums_verify(name):
    assert verdicts([cb.frame(ETH / GOOD[name])]) == [0]


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_flipped_payload_byte_breaks_the_transport_checksum(name):
    assert verdicts([corrupt(GOOD[name], 1)]) == [CK_L4_BAD]


def test_bad_ipv4_header_checksum():
    assert verdicts([cb.frame(ETH / IP(chksum=0x1234, **V4) / UDP() / b"a")]) == [CK_IP_BAD]


def test_bad_outer_header_checksum_of_a_tunnel():
    pkt = IP(chksum=0x4321, **V4) / GRE() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"a"
    assert verdicts([cb.frame(ETH / pkt)]) == [CK_IP_BAD]


def test_udp_without_checksum():
    assert verdicts([cb.frame(ETH / IP(**V4) / UDP(chksum=0) / b"a")]) == [0]
    assert verdicts([cb.frame(ETH / IPv6(**V6) / UDP(chksum=0) / b"a")]) == [CK_L4_BAD]  # mandatory in IPv6


def test_cut_by_snaplen_or_fragment_is_unverified():
    cut = cb.frame(ETH / GOOD["tcp"], snaplen=14 + 20 + 20 + 2)
    frag = cb.frame(ETH / IP(flags="MF", **V4, proto=6) / (b"f" * 16))
    assert verdicts([cut, frag]) == [CK_L4_UNVERIFIED, CK_L4_UNVERIFIED]


def test_not_ip_has_no_verdict():
    assert verdicts([cb.arp_frames()["request"]]) == [0]
