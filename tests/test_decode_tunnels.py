"""Tunnels are decoded through to the inner packet: network/transport columns describe it, outer_l3_off points at
the outermost IP header, encap says which tunnel."""

from __future__ import annotations

import pytest
from scapy.all import GRE, IP, UDP, Ether, IPv6, Raw

import capbuild as cb
from diagnose.packet import ENC_GRE, ENC_GTP, ENC_IPIP, ENC_TEREDO, ENC_VXLAN

TUNNEL_ENCAP = {
    "gre": ENC_GRE, "gre_options": ENC_GRE, "gre_teb": ENC_GRE, "gre_over_ipv6": ENC_GRE, "vxlan": ENC_VXLAN,
    "ipip": ENC_IPIP, "ipv6_in_ipv4": ENC_IPIP, "ipv4_in_ipv6": ENC_IPIP, "ipv6_in_ipv6": ENC_IPIP,
    "teredo": ENC_TEREDO, "teredo_origin": ENC_TEREDO,
}


def _variants():
    out = []
    for label, inner in (("v4", cb.tcp_syn()), ("v6", cb.tcp6_data())):
        for name, frame in cb.tunnel_variants(inner).items():
            out.append(pytest.param(name, frame, inner, id=f"{label}-{name}"))
    return out


@pytest.mark.parametrize("name,frame,inner", _variants())
def test_tunnel_decoded_to_inner_packet(name, frame, inner):
    _, table = cb.decode([frame])
    r = table[0]
    cb.check_ip_tcp(r, frame, inner)
    assert r["encap"] == TUNNEL_ENCAP[name]
    assert r["outer_l3_off"] == 14  # the outer IP header right after Ethernet
    assert r["eth_src"] == int(cb.MAC_A.replace(":", ""), 16)  # link columns: the outer frame's


def test_gtp_u_with_sequence_number_and_extension_header():
    inner = cb.tcp_syn()
    gtp = bytes([0x36, 0xFF]) + len(bytes(inner)).to_bytes(2, "big") + (0x1234).to_bytes(4, "big")  # E and S set
    gtp += b"\x00\x07" + b"\x00" + b"\x85"  # sequence, N-PDU, next extension: PDU session container
    gtp += b"\x01\x00\x01\x00"  # extension of 4 bytes, ending with 'no more extensions'
    frame = cb.frame(Ether(src=cb.MAC_A, dst=cb.MAC_B) / IP(src="10.1.1.1", dst="10.1.1.2")
                     / UDP(sport=2152, dport=2152) / Raw(gtp) / inner)
    _, table = cb.decode([frame])
    cb.check_ip_tcp(table[0], frame, inner)
    assert table[0]["encap"] == ENC_GTP


def test_gtp_signalling_is_plain_udp():
    frame = cb.frame(Ether() / IP() / UDP(sport=2152, dport=2152) / Raw(bytes([0x32, 0x01, 0, 4, 0, 0, 0, 0])
                                                                        + b"\x00\x01\x00\x00"))
    _, table = cb.decode([frame])
    assert table[0]["encap"] == 0 and table[0]["ip_proto"] == 17 and table[0]["outer_l3_off"] == -1


def test_udp_to_teredo_port_without_ipv6_stays_udp():
    frame = cb.frame(Ether() / IP() / UDP(sport=3544, dport=5000) / Raw(b"\x45" + b"\x00" * 60))
    _, table = cb.decode([frame])
    assert table[0]["encap"] == 0 and table[0]["ipv"] == 4 and table[0]["sport"] == 3544


def test_tunnel_inside_tunnel():
    inner = cb.tcp6_data()
    frame = cb.frame(Ether(src=cb.MAC_A, dst=cb.MAC_B) / IP(src="1.1.1.1", dst="2.2.2.2") / GRE(proto=0x0800)
                     / IP(src="3.3.3.3", dst="4.4.4.4") / inner)
    _, table = cb.decode([frame])
    cb.check_ip_tcp(table[0], frame, inner)
    assert table[0]["encap"] == ENC_GRE | ENC_IPIP
    assert table[0]["outer_l3_off"] == 14


def test_inner_packet_that_is_not_tcp_clears_outer_transport():
    """A VXLAN tunnel (outer UDP) around ICMP: no outer UDP ports may leak into the inner packet's row."""
    from scapy.all import ICMP, VXLAN

    frame = cb.frame(Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=1234, dport=4789) / VXLAN()
                     / Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=5, seq=6))
    _, table = cb.decode([frame])
    r = table[0]
    assert r["ip_proto"] == 1 and (r["sport"], r["dport"]) == (0, 0) and r["udp_len"] == 0
    assert (r["icmp_type"], r["icmp_id"], r["icmp_seq"]) == (8, 5, 6)
    assert r["src_lo"] == 0x0A000001


def test_gre_with_routing_or_version_1_is_not_followed():
    pptp = cb.frame(Ether() / IP() / GRE(version=1, proto=0x880B, key_present=1) / Raw(b"\xff\x03\x00\x21" + b"E"))
    _, table = cb.decode([pptp])
    r = table[0]
    assert r["ip_proto"] == 47 and r["encap"] == 0 and r["outer_l3_off"] == -1 and r["l4_off"] == 34


def test_erspan_type_2_and_3_lead_to_the_mirrored_frame():
    inner = cb.tcp_syn()
    mirrored = Ether(src=cb.MAC_C, dst=cb.MAC_D) / inner
    outer = Ether(src=cb.MAC_A, dst=cb.MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2")
    type2 = cb.frame(outer / GRE(proto=0x88BE, seqnum_present=1, sequence_number=1)
                     / Raw(bytes.fromhex("1001000a00000000")) / mirrored)
    type3 = cb.frame(outer / GRE(proto=0x22EB, seqnum_present=1, sequence_number=1)
                     / Raw(bytes.fromhex("2001000a0000000000000000")) / mirrored)
    type3_subheader = cb.frame(outer / GRE(proto=0x22EB, seqnum_present=1, sequence_number=1)
                               / Raw(bytes.fromhex("2001000a0000000000000001") + b"\0" * 8) / mirrored)
    _, table = cb.decode([type2, type3, type3_subheader])
    for frame, r in zip((type2, type3, type3_subheader), table):
        cb.check_ip_tcp(r, frame, inner)
        assert r["encap"] == ENC_GRE and r["outer_l3_off"] == 14
