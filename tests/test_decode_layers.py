"""IPv4, IPv6 extension headers, TCP options, UDP, ICMP/ICMPv6 and ARP columns; truncated and malformed headers."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPOption_RR, IPv6, Raw

import capbuild as cb
from diagnose.packet import (OPT_MALFORMED, OPT_MSS, OPT_SACK, OPT_TS, ST_ICMP_ERROR, ST_IP_FRAGMENT,
                             ST_MALFORMED, ST_NOT_IP, ST_TRUNCATED)

ETH = Ether(src=cb.MAC_A, dst=cb.MAC_B)


def one(pkt, **kw):
    """Decode one Ethernet frame; returns its row."""
    _, table = cb.decode([cb.frame(ETH / pkt, **kw)])
    return table[0]


def one_ipv4_bytes(raw: bytes):
    """Decode hand-edited IPv4 bytes behind an Ethernet header."""
    return _decode_one(bytes(Ether(src=cb.MAC_A, dst=cb.MAC_B, type=0x0800)) + bytes(raw))


def _decode_one(data: bytes):
    _, table = cb.decode([cb.Frame(data=data, linktype=1, wirelen=len(data), ts=cb.BASE_TS)])
    return table[0]


def v4(addr: str) -> int:
    return int(ipaddress.ip_address(addr))


# ---- IPv4 --------------------------------------------------------------------------------------------------------

def test_ipv4_fields_with_options():
    pkt = IP(src="10.1.2.3", dst="10.4.5.6", tos=0xB8, ttl=17, id=0xBEEF, flags="DF",
             options=[IPOption_RR(routers=["1.1.1.1", "2.2.2.2"])]) / UDP(sport=1, dport=2) / b"abc"
    pkt = IP(bytes(pkt))
    r = one(pkt)
    assert r["status"] == 0
    assert (r["ip_hl"], r["ip_tos"], r["ip_ttl"], r["ip_id"]) == (pkt.ihl * 4, 0xB8, 17, 0xBEEF)
    assert r["ip_hl"] > 20 and r["ip_flags"] == 0x2 and r["frag_off"] == 0
    assert r["ip_csum"] == pkt.chksum
    assert r["l4_off"] == 14 + pkt.ihl * 4
    assert (r["sport"], r["dport"], r["udp_len"], r["payload_len"]) == (1, 2, 11, 3)


def test_ipv4_fragment_fields_and_no_transport():
    first = IP(src="10.0.0.1", dst="10.0.0.2", id=99, flags="MF", frag=0, proto=17) / Raw(b"u" * 16)
    later = IP(src="10.0.0.1", dst="10.0.0.2", id=99, flags=0, frag=2, proto=17) / Raw(b"v" * 8)
    _, table = cb.decode([cb.frame(ETH / first), cb.frame(ETH / later)])
    for r in table:
        assert r["status"] == ST_IP_FRAGMENT
        assert r["l4_off"] == -1 and r["sport"] == 0 and r["payload_len"] == 0 and r["ip_proto"] == 17
    assert (table["ip_flags"].tolist(), table["frag_off"].tolist()) == ([1, 0], [0, 2])


def test_ipv4_total_length_zero_means_segmentation_offload():
    pkt = IP(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A") / (b"d" * 3000)))
    raw = bytearray(bytes(pkt))
    raw[2:4] = b"\0\0"
    r = one_ipv4_bytes(raw)
    assert r["ip_len"] == len(raw) and r["payload_len"] == 3000 and r["status"] == 0


def test_ipv4_bad_header_length_is_malformed():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP()))
    raw[0] = 0x44  # IHL 4: 16 bytes
    r = one_ipv4_bytes(raw)
    assert r["status"] == ST_MALFORMED and r["ipv"] == 0 and r["l4_off"] == -1


def test_ipv4_total_length_shorter_than_header_is_malformed():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP()))
    raw[2:4] = (10).to_bytes(2, "big")
    r = one_ipv4_bytes(raw)
    assert r["status"] & ST_MALFORMED and r["ipv"] == 4 and r["src_lo"] == v4("10.0.0.1") and r["l4_off"] == -1


def test_ipv4_length_beyond_the_wire_is_bounded_by_the_frame():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A") / (b"x" * 10)))
    raw[2:4] = (1000).to_bytes(2, "big")
    r = one_ipv4_bytes(raw)
    assert r["status"] & ST_MALFORMED
    assert r["ip_len"] == 1000 and r["payload_len"] == 10  # like tshark: the segment ends where the frame ends


def test_ethernet_padding_is_not_payload():
    """A 54-byte frame padded to the 60-byte minimum: the 6 padding bytes are not TCP payload."""
    data = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A")) + b"\0" * 6
    r = _decode_one(data)
    assert r["status"] == 0 and r["payload_len"] == 0 and r["payload_off"] == -1 and r["l4_len"] == 20


# ---- IPv6 --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hbh", "routing", "dest", "hbh_dest_routing", "ah", "atomic_fragment"])
def test_ipv6_extension_headers_lead_to_the_upper_layer(name):
    upper = UDP(sport=1111, dport=2222) / b"payload"
    pkt = IPv6(bytes(cb.ipv6_extension_chains(upper)[name]))
    r = one(pkt)
    ext_len = len(pkt) - 40 - len(upper)
    assert r["status"] == 0
    assert r["ipv"] == 6 and r["ip_proto"] == 17 and r["ip_ttl"] == 9
    assert r["ip_hl"] == 40 + ext_len
    assert r["l4_off"] == 14 + 40 + ext_len
    assert (r["sport"], r["dport"], r["payload_len"]) == (1111, 2222, 7)
    if name == "atomic_fragment":
        assert r["ip_id"] == 0xABCDEF and r["frag_off"] == 0 and r["ip_flags"] == 0


def test_ipv6_fragment_header():
    from scapy.all import IPv6ExtHdrFragment

    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=7, offset=3, m=1, nh=6) / (b"z" * 16)
    r = one(pkt)
    assert r["status"] == ST_IP_FRAGMENT
    assert (r["ip_id"], r["frag_off"], r["ip_flags"], r["ip_proto"], r["ip_hl"]) == (7, 3, 1, 6, 48)
    assert r["l4_off"] == -1


def test_ipv6_traffic_class_and_payload_length():
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0x2E, hlim=3) / UDP() / b"12345"
    r = one(pkt)
    assert (r["ip_tos"], r["ip_len"], r["ip_ttl"]) == (0x2E, 40 + 8 + 5, 3)


# ---- TCP ---------------------------------------------------------------------------------------------------------

def test_tcp_all_fields_and_sack_blocks():
    blocks = [(1000, 2000), (3000, 4000), (5000, 6000)]
    tcp = TCP(sport=443, dport=50000, seq=0xFFFFFFF0, ack=0x80000001, flags="AE", window=0, urgptr=7,
              options=[("NOP", None), ("NOP", None), ("SAck", tuple(x for b in blocks for x in b)),
                       ("NOP", None), ("NOP", None), ("Timestamp", (0xDEADBEEF, 0xCAFEBABE))])
    pkt = IP(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / tcp / b"data"))
    r = one(pkt)
    assert r["status"] == 0
    assert (r["tcp_seq"], r["tcp_ack"], r["tcp_win"], r["tcp_urp"]) == (0xFFFFFFF0, 0x80000001, 0, 7)
    assert r["tcp_flags"] == 0x50  # ACK + ECE
    assert r["tcp_csum"] == pkt[TCP].chksum
    assert r["tcp_opts"] == OPT_SACK | OPT_TS
    assert r["sack_count"] == 3
    assert list(zip(r["sack_left"][:3], r["sack_right"][:3])) == blocks
    assert (r["opt_ts_val"], r["opt_ts_ecr"]) == (0xDEADBEEF, 0xCAFEBABE)
    assert r["payload_len"] == 4 and r["payload_off"] == r["l4_off"] + r["tcp_hlen"]


def test_tcp_ns_and_cwr_flags():
    r = one(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="NCS"))
    assert r["tcp_flags"] == 0x100 | 0x80 | 0x02


@pytest.mark.parametrize("opts,expect_flags", [
    (b"\x02\x03\x05\xb4", OPT_MALFORMED),  # MSS with length 3
    (b"\x02\x04\x05\xb4\x08\x01\x00\x00", OPT_MSS | OPT_MALFORMED),  # length < 2 stops the walk
    (b"\x02\x04\x05\xb4\x08\x20\x00\x00", OPT_MSS | OPT_MALFORMED),  # length runs past the header
    (b"\x05\x06\x00\x00\x00\x01\x00\x00", OPT_MALFORMED),  # SACK of 6 bytes
    (b"\x02\x04\x05\xb4\x00\x08\x0a\x00", OPT_MSS),  # end of option list: the rest is ignored
])
def test_malformed_tcp_options_are_flagged_not_fatal(opts, expect_flags):
    pkt = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="S", options=[]) / b""
    raw = bytearray(bytes(pkt))
    raw[32] = ((20 + len(opts)) // 4) << 4
    raw[2:4] = (40 + len(opts)).to_bytes(2, "big")
    raw += opts
    r = one_ipv4_bytes(raw)
    assert r["tcp_opts"] == expect_flags
    assert r["status"] == 0 and (r["sport"], r["dport"]) == (1, 2) and r["tcp_flags"] == 2
    assert r["payload_len"] == 0


def test_tcp_data_offset_below_20_is_malformed():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=6) / b"abc"))
    raw[32] = 0x40  # data offset 16 bytes
    r = one_ipv4_bytes(raw)
    assert r["status"] == ST_MALFORMED
    assert (r["sport"], r["dport"], r["tcp_hlen"], r["payload_len"], r["payload_off"]) == (5, 6, 16, 0, -1)


def test_tcp_len_by_ip_length_when_cut_by_snaplen():
    """tcp.len = ip.len - ip.hdr_len - tcp.hdr_len, like Wireshark, whatever the snaplen left."""
    pkt = cb.tcp_data(payload=b"p" * 1000)
    r = one(pkt, snaplen=14 + 20 + 32 + 10)
    assert r["status"] == 0
    assert r["payload_len"] == 1000 and r["l4_len"] == 1032 and r["payload_off"] == 14 + 20 + 32


# ---- truncation at every point -----------------------------------------------------------------------------------

def test_truncated_inside_tcp_options_keeps_the_fixed_header():
    syn = cb.tcp_syn()
    r = one(syn, snaplen=14 + 20 + 20 + 6)  # MSS and 2 bytes of the next option
    assert r["status"] == ST_TRUNCATED
    assert (r["sport"], r["tcp_flags"], r["tcp_hlen"]) == (40000, 2, 40)
    assert r["tcp_opts"] & OPT_MSS and r["opt_mss"] == 1460


def test_truncated_inside_the_tcp_header_keeps_ports_and_sequence():
    r = one(cb.tcp_syn(seq=424242), snaplen=14 + 20 + 9)
    assert r["status"] == ST_TRUNCATED
    assert (r["sport"], r["dport"], r["tcp_seq"], r["tcp_hlen"]) == (40000, 80, 424242, 0)


def test_truncated_inside_the_ip_header():
    r = one(cb.tcp_syn(), snaplen=14 + 12)
    assert r["status"] == ST_TRUNCATED and r["ipv"] == 0 and r["eth_type"] == 0x0800 and r["l3_off"] == -1


def test_truncated_every_length_never_raises_and_keeps_link_columns():
    frame = cb.link_variants(cb.tcp_syn())["vlan"]
    frames = [cb.Frame(frame.data[:n], frame.linktype, frame.wirelen, frame.ts) for n in range(len(frame.data) + 1)]
    _, table = cb.decode(frames)
    full = table[-1]
    assert full["status"] == 0
    for n, r in enumerate(table[:-1]):
        assert r["status"] & ST_TRUNCATED, n
        if n >= 18:
            assert r["vlan_id"] == 42
        if n >= 14 + 4 + 20:
            assert r["ipv"] == 4 and r["src_lo"] == full["src_lo"]
        if n >= 14 + 4 + 20 + 4:
            assert r["dport"] == 80


# ---- UDP, ICMP, ARP ----------------------------------------------------------------------------------------------

def test_udp_length_longer_than_ip_payload_is_malformed_and_bounded():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=8) / b"12345"))
    raw[24:26] = (200).to_bytes(2, "big")
    r = one_ipv4_bytes(raw)
    assert r["status"] == ST_MALFORMED and r["udp_len"] == 200 and r["payload_len"] == 5


def test_udp_length_below_header_is_malformed():
    raw = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=8) / b"12345"))
    raw[24:26] = (4).to_bytes(2, "big")
    r = one_ipv4_bytes(raw)
    assert r["status"] == ST_MALFORMED and r["payload_len"] == 0 and (r["sport"], r["dport"]) == (7, 8)


@pytest.mark.parametrize("name", ["echo_request", "echo_reply", "v6_echo"])
def test_icmp_echo(name):
    frame = cb.echo_frames()[name]
    _, table = cb.decode([frame])
    r = table[0]
    pkt = frame.pkt
    layer = pkt.payload.payload
    assert r["status"] == 0
    assert (r["icmp_type"], r["icmp_code"]) == (layer.type, layer.code)
    assert (r["icmp_id"], r["icmp_seq"]) == (layer.id, layer.seq)
    assert r["payload_len"] == len(layer) - 8 and r["payload_off"] == r["l4_off"] + 8


@pytest.mark.parametrize("name", ["unreachable", "time_exceeded", "v6_unreachable", "v6_time_exceeded"])
def test_icmp_errors_decode_the_quoted_header(name):
    frame, quoted = cb.icmp_errors()[name]
    _, table = cb.decode([frame])
    r = table[0]
    q = type(quoted)(bytes(quoted))
    assert r["status"] == ST_ICMP_ERROR
    assert r["q_ipv"] == (6 if isinstance(q, IPv6) else 4)
    q_src, q_dst = int(ipaddress.ip_address(q.src)), int(ipaddress.ip_address(q.dst))
    assert (int(r["q_src_hi"]) << 64 | int(r["q_src_lo"])) == q_src
    assert (int(r["q_dst_hi"]) << 64 | int(r["q_dst_lo"])) == q_dst
    transport = q.payload
    assert r["q_proto"] == (6 if isinstance(transport, TCP) else 17)
    assert (r["q_sport"], r["q_dport"]) == (transport.sport, transport.dport)
    assert r["q_tcp_seq"] == (transport.seq if isinstance(transport, TCP) else 0)
    # the error's own header stays in the main columns
    assert r["sport"] == 0 and r["icmp_type"] in (3, 11, 1)


def test_icmp_error_with_a_cut_quote_is_not_an_error_row():
    r = one(IP(src="10.0.0.254", dst="10.0.0.1") / ICMP(type=3, code=1) / (b"\x45" + b"\0" * 10))
    assert r["status"] == 0 and r["q_ipv"] == 0 and r["icmp_type"] == 3


@pytest.mark.parametrize("name", ["request", "reply"])
def test_arp(name):
    frame = cb.arp_frames()[name]
    _, table = cb.decode([frame])
    r = table[0]
    arp = frame.pkt.payload
    assert r["status"] == ST_NOT_IP and r["eth_type"] == 0x0806 and r["ipv"] == 0
    assert (r["arp_op"], r["arp_spa"], r["arp_tpa"]) == (arp.op, v4(arp.psrc), v4(arp.pdst))
    assert r["l3_off"] == 14 and r["l4_off"] == -1


def test_other_ethertype_is_not_ip():
    r = _decode_one(bytes(Ether(src=cb.MAC_A, dst=cb.MAC_B, type=0x88CC) / Raw(b"lldp-ish" * 8)))
    assert r["status"] == ST_NOT_IP and r["ipv"] == 0 and r["l3_off"] == -1


def test_reused_table_shows_no_values_of_the_previous_chunk():
    from diagnose.decode import decode_chunk

    buf, table = cb.layout([cb.frame(ETH / cb.tcp_syn())])
    decode_chunk(buf, table)
    assert table[0]["sport"] == 40000
    buf2, table2 = cb.layout([cb.arp_frames()["request"]])
    table[0]["caplen"], table[0]["wirelen"], table[0]["data"] = table2[0]["caplen"], table2[0]["wirelen"], \
        table2[0]["data"]
    decode_chunk(buf2, table)
    r = table[0]
    assert r["sport"] == 0 and r["ipv"] == 0 and r["tcp_opts"] == 0 and r["l4_off"] == -1 and r["arp_op"] == 1


def test_reader_lies_about_caplen_never_read_past_the_buffer():
    from diagnose.decode import decode_chunk

    buf, table = cb.layout([cb.frame(ETH / cb.tcp_syn())])
    table[0]["caplen"] = 10_000
    decode_chunk(buf, table)
    assert table[0]["sport"] == 40000  # still decoded from what the buffer holds
    table[0]["data"] = len(buf) + 100
    decode_chunk(buf, table)
    assert table[0]["status"] & ST_TRUNCATED and table[0]["ipv"] == 0
