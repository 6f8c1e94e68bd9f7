"""Builders of test captures with scapy: frames for every link type and tunnel the decoder handles, written with
scapy's own pcap/pcapng writers (so tests do not depend on our reader to produce their input), or laid out in a
buffer + packet table directly (to drive the decoder without any reader).

Each Frame keeps the scapy packet it was built from: tests take expected values from it, an oracle independent of
the decoder.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scapy.all import (ARP, GRE, TCP, Dot3, ICMP, IP, TCP, UDP, VXLAN, Dot1AD, Dot1Q, Dot11, Dot11QoS, Ether, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, LLC, PPP,
                       PPPoE, SNAP, CookedLinux, CookedLinuxV2, ICMPv6DestUnreach, ICMPv6EchoRequest,
                       ICMPv6TimeExceeded, Packet, PcapNgWriter, PcapWriter, RadioTap, Raw, conf)
from scapy.contrib.mpls import MPLS
from scapy.layers.ipsec import AH

from diagnose.packet import new_table

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12
LINKTYPE_RAW_DLT14 = 14
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_USER0 = 147  # nothing we decode
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
MAC_C = "02:00:00:00:00:0c"
MAC_D = "02:00:00:00:00:0d"
BASE_TS = 1_700_000_000.0


@dataclass
class Frame:
    data: bytes  # captured bytes (possibly cut by a snaplen)
    linktype: int
    wirelen: int
    ts: float
    pkt: Packet | None = None  # the scapy packet the bytes came from (the oracle)


def frame(pkt, linktype: int | None = None, *, snaplen: int | None = None, ts: float = BASE_TS,
          prefix: bytes = b"") -> Frame:
    """One frame from a scapy packet; `prefix` puts raw link bytes in front (for headers scapy has no layer for)."""
    raw = prefix + bytes(pkt)
    if linktype is None:
        linktype = conf.l2types.layer2num[type(pkt)]
    data = raw if snaplen is None else raw[:snaplen]
    return Frame(data=data, linktype=linktype, wirelen=len(raw), ts=ts, pkt=pkt)


def write_pcap(path: Path, frames: list[Frame], *, nano: bool = False) -> Path:
    """A classic pcap (one link type: that of the first frame) written by scapy."""
    writer = PcapWriter(str(path), linktype=frames[0].linktype, nano=nano, sync=True)
    writer.linktype = frames[0].linktype  # scapy ignores linktype=0 (falsy)
    for f in frames:
        assert f.linktype == frames[0].linktype, "pcap holds one link type"
        sec = int(f.ts)
        frac = round((f.ts - sec) * (1e9 if nano else 1e6))
        writer.write_header(f.data) if not writer.header_present else None
        writer._write_packet(f.data, linktype=f.linktype, sec=sec, usec=frac, caplen=len(f.data),
                             wirelen=f.wirelen)
    writer.close()
    return path


def write_pcapng(path: Path, frames: list[Frame]) -> Path:
    """A pcapng written by scapy, one interface per link type (in order of first use)."""
    writer = PcapNgWriter(str(path))
    writer.linktype = frames[0].linktype
    writer.write_header(frames[0].data)
    names: dict[int, bytes | None] = {frames[0].linktype: None}  # interface 0 already has the first link type
    for f in frames:
        if f.linktype not in names:
            names[f.linktype] = f"if{len(names)}".encode()
        writer._write_packet(f.data, linktype=f.linktype, sec=f.ts, caplen=len(f.data), wirelen=f.wirelen,
                             ifname=names[f.linktype])
    writer.close()
    return path


def layout(frames: list[Frame], *, gap: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Frames laid out in one buffer (with filler bytes between them, so a misread offset shows) and a packet
    table with its frame columns filled, the way a capture reader hands a chunk to the decoder."""
    table = new_table(len(frames))
    parts, pos = [], 0
    for i, f in enumerate(frames):
        parts.append(b"\xee" * gap)
        pos += gap
        table[i]["frame"] = i + 1
        table[i]["ts"] = int(round(f.ts * 1e9))
        table[i]["caplen"] = len(f.data)
        table[i]["wirelen"] = f.wirelen
        table[i]["linktype"] = f.linktype
        table[i]["data"] = pos
        parts.append(f.data)
        pos += len(f.data)
    parts.append(b"\xee" * gap)
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), table


# ---- packets --------------------------------------------------------------------------------------------------

def tcp_syn(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=80, seq=1000, **ip_fields):
    """A SYN with MSS, SACK-permitted, timestamps and window scale, like a Linux client's."""
    return IP(src=src, dst=dst, ttl=63, id=0x1234, **ip_fields) / TCP(
        sport=sport, dport=dport, seq=seq, flags="S", window=64240,
        options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (111, 0)), ("NOP", None), ("WScale", 7)])


def tcp_data(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=80, seq=1001, ack=5001, payload=b"x" * 100):
    return IP(src=src, dst=dst, ttl=64, id=7) / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags="PA",
                                                    window=502, options=[("NOP", None), ("NOP", None),
                                                                         ("Timestamp", (222, 111))]) / payload


def tcp6_data(src="2001:db8::1", dst="2001:db8::2", sport=40000, dport=443, payload=b"y" * 50):
    return IPv6(src=src, dst=dst, hlim=55) / TCP(sport=sport, dport=dport, seq=77, ack=88, flags="A",
                                                  window=1000) / payload


def udp4(src="192.0.2.1", dst="192.0.2.53", sport=5353, dport=53, payload=b"q" * 20):
    return IP(src=src, dst=dst, ttl=5) / UDP(sport=sport, dport=dport) / payload


# ---- every link type around one IP packet ---------------------------------------------------------------------

def _null(af: int, order: str) -> bytes:
    return struct.pack(order + "I", af)


def link_variants(ip_pkt) -> dict[str, Frame]:
    """The same IPv4 or IPv6 packet behind every link layer the decoder handles."""
    v6 = isinstance(ip_pkt, IPv6)
    etype = 0x86DD if v6 else 0x0800
    eth = Ether(src=MAC_A, dst=MAC_B)
    out = {
        "ethernet": frame(eth / ip_pkt),
        "vlan": frame(eth / Dot1Q(vlan=42) / ip_pkt),
        "qinq_88a8": frame(eth / Dot1AD(vlan=100) / Dot1Q(vlan=42) / ip_pkt),
        "qinq_9100": frame(Ether(src=MAC_A, dst=MAC_B, type=0x9100) / Dot1Q(vlan=300) / Dot1Q(vlan=42) / ip_pkt),
        "mpls": frame(eth / MPLS(label=1000, s=0, ttl=64) / MPLS(label=2000, s=1, ttl=64) / ip_pkt),
        "pppoe": frame(Ether(src=MAC_A, dst=MAC_B, type=0x8864) / PPPoE(sessionid=7)
                       / PPP(proto=0x0057 if v6 else 0x0021) / ip_pkt),
        "llc_snap": frame(Dot3(src=MAC_A, dst=MAC_B) / LLC() / SNAP(code=etype) / ip_pkt, LINKTYPE_ETHERNET),
        "sll": frame(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=bytes.fromhex("02000000000a") + b"\0\0",
                                 proto=etype) / ip_pkt),
        "sll2": frame(CookedLinuxV2(proto=etype, ifindex=3, lladdrtype=1, pkttype=4, lladdrlen=6,
                                    src=bytes.fromhex("02000000000a") + b"\0\0") / ip_pkt),
        "raw": frame(ip_pkt, LINKTYPE_RAW),
        "raw_dlt12": frame(ip_pkt, LINKTYPE_RAW_DLT12),
        "raw_dlt14": frame(ip_pkt, LINKTYPE_RAW_DLT14),
        "ipv6_link" if v6 else "ipv4_link": frame(ip_pkt, LINKTYPE_IPV6 if v6 else LINKTYPE_IPV4),
        "loop": frame(ip_pkt, LINKTYPE_LOOP, prefix=_null(24 if v6 else 2, ">")),
        "wlan_radiotap": frame(RadioTap() / Dot11(type=2, subtype=0, FCfield=1, addr1=MAC_C, addr2=MAC_A,
                                                  addr3=MAC_B) / LLC() / SNAP(code=etype) / ip_pkt),
        "wlan_qos": frame(RadioTap() / Dot11(type=2, subtype=8, FCfield=2, addr1=MAC_B, addr2=MAC_C,
                                             addr3=MAC_A) / Dot11QoS(TID=5) / LLC() / SNAP(code=etype) / ip_pkt),
        "wlan_4addr": frame(Dot11(type=2, subtype=8, FCfield=3, addr1=MAC_C, addr2=MAC_D,
                                  addr3=MAC_B, addr4=MAC_A) / Dot11QoS() / LLC() / SNAP(code=etype) / ip_pkt,
                            LINKTYPE_IEEE802_11),
        "wlan_no_radiotap": frame(Dot11(type=2, subtype=0, FCfield=0, addr1=MAC_B, addr2=MAC_A, addr3=MAC_C)
                                  / LLC() / SNAP(code=etype) / ip_pkt, LINKTYPE_IEEE802_11),
    }
    afs = (10, 24, 28, 30) if v6 else (2,)
    for af in afs:
        out[f"null_le_af{af}"] = frame(ip_pkt, LINKTYPE_NULL, prefix=_null(af, "<"))
        out[f"null_be_af{af}"] = frame(ip_pkt, LINKTYPE_NULL, prefix=_null(af, ">"))
    return out


def tunnel_variants(inner) -> dict[str, Frame]:
    """An inner IP packet carried by every tunnel the decoder handles (Ethernet/IPv4 or IPv6 outside)."""
    eth = Ether(src=MAC_A, dst=MAC_B)
    v6 = isinstance(inner, IPv6)
    gre_proto = 0x86DD if v6 else 0x0800
    outer4 = IP(src="198.51.100.1", dst="198.51.100.2", ttl=200)
    outer6 = IPv6(src="2001:db8:ff::1", dst="2001:db8:ff::2", hlim=200)
    inner_eth = Ether(src=MAC_C, dst=MAC_D) / inner
    out = {
        "gre": frame(eth / outer4 / GRE(proto=gre_proto) / inner),
        "gre_options": frame(eth / outer4 / GRE(proto=gre_proto, chksum_present=1, key_present=1, key=99,
                                                seqnum_present=1, sequence_number=5) / inner),
        "gre_teb": frame(eth / outer4 / GRE(proto=0x6558) / inner_eth),
        "gre_over_ipv6": frame(eth / outer6 / GRE(proto=gre_proto) / inner),
        "vxlan": frame(eth / outer4 / UDP(sport=51000, dport=4789) / VXLAN(vni=77) / inner_eth),
        "ipip" if not v6 else "ipv6_in_ipv4": frame(eth / outer4 / inner),
        "ipv4_in_ipv6" if not v6 else "ipv6_in_ipv6": frame(eth / outer6 / inner),
    }
    if v6:
        out["teredo"] = frame(eth / outer4 / UDP(sport=3544, dport=40000) / inner)
        out["teredo_origin"] = frame(eth / outer4 / UDP(sport=3544, dport=40000)
                                     / Raw(b"\x00\x00" + b"\xab" * 6) / inner)
    return out


def ipv6_extension_chains(upper, upper_proto: int = 17) -> dict[str, Packet]:
    """IPv6 packets whose upper layer (of IP protocol upper_proto) sits behind extension headers."""
    base = IPv6(src="2001:db8::a", dst="2001:db8::b", hlim=9)
    return {
        "hbh": base / IPv6ExtHdrHopByHop() / upper,
        "routing": base / IPv6ExtHdrRouting(addresses=["2001:db8::c"]) / upper,
        "dest": base / IPv6ExtHdrDestOpt() / upper,
        "hbh_dest_routing": base / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / upper,
        # scapy leaves AH's next header and length to the caller: 12 fixed bytes + 12 of ICV = (4 + 2) * 4
        "ah": base / AH(nh=upper_proto, payloadlen=4, spi=1, icv=b"\0" * 12) / upper,
        "atomic_fragment": base / IPv6ExtHdrFragment(id=0xABCDEF, offset=0, m=0) / upper,
    }


def icmp_errors():
    """ICMP/ICMPv6 errors quoting a TCP or UDP packet: (frame, quoted scapy packet)."""
    eth = Ether(src=MAC_A, dst=MAC_B)
    q4 = IP(src="10.0.0.1", dst="10.9.9.9", ttl=1) / TCP(sport=40001, dport=443, seq=123456789, flags="S")
    q4u = IP(src="10.0.0.1", dst="10.9.9.9") / UDP(sport=33434, dport=33435)
    q6 = IPv6(src="2001:db8::1", dst="2001:db8::99") / TCP(sport=40002, dport=22, seq=987654321, flags="S")
    return {
        "unreachable": (frame(eth / IP(src="10.0.0.254", dst="10.0.0.1") / ICMP(type=3, code=3)
                              / bytes(q4)[:28]), q4),
        "time_exceeded": (frame(eth / IP(src="10.0.0.254", dst="10.0.0.1") / ICMP(type=11, code=0) / q4u), q4u),
        "v6_unreachable": (frame(eth / IPv6(src="2001:db8::fe", dst="2001:db8::1") / ICMPv6DestUnreach(code=1)
                                 / q6), q6),
        "v6_time_exceeded": (frame(eth / IPv6(src="2001:db8::fe", dst="2001:db8::1") / ICMPv6TimeExceeded()
                                   / q6), q6),
    }


def echo_frames():
    eth = Ether(src=MAC_A, dst=MAC_B)
    return {
        "echo_request": frame(eth / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=0x4242, seq=7) / b"ping"),
        "echo_reply": frame(eth / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=0x4242, seq=7) / b"ping"),
        "v6_echo": frame(eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=9, seq=3)
                         / b"hello"),
    }


def arp_frames():
    return {
        "request": frame(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1",
                                                                        pdst="10.0.0.2")),
        "reply": frame(Ether(src=MAC_B, dst=MAC_A) / ARP(op=2, hwsrc=MAC_B, psrc="10.0.0.2", hwdst=MAC_A,
                                                        pdst="10.0.0.1")),
    }


def decode(frames: list[Frame], reassembler=None) -> tuple[np.ndarray, np.ndarray]:
    """Lay the frames out and run the decoder over them, as one chunk; returns (buffer to use, table)."""
    from diagnose.decode import decode_chunk

    buf, table = layout(frames)
    buf = decode_chunk(buf, table, reassembler)
    return buf, table


def read_and_decode(path: Path, reassembler=None) -> np.ndarray:
    """Read a capture with the product's reader and decode every chunk; returns all rows (copied)."""
    from diagnose.capture import open_capture
    from diagnose.decode import decode_chunk

    rows = []
    with open_capture(str(path)) as cap:
        for chunk in cap.chunks():
            decode_chunk(chunk.buf, chunk.table, reassembler)
            rows.append(chunk.table.copy())
    return np.concatenate(rows) if rows else new_table(0)


# ---- checks shared by the decode tests ------------------------------------------------------------------------

def _addr(pkt_addr: str) -> tuple[int, int]:
    v = int(ipaddress.ip_address(pkt_addr))
    return v >> 64, v & (2**64 - 1)


def check_ip_tcp(r, frame: Frame, ip_pkt) -> None:
    """Network and transport columns of row r against the scapy packet that ends the frame."""
    ip_pkt = type(ip_pkt)(bytes(ip_pkt))  # dissected again: lengths and checksums filled in
    tcp = ip_pkt[TCP]
    v6 = isinstance(ip_pkt, IPv6)
    assert r["status"] == 0
    assert r["ipv"] == (6 if v6 else 4)
    assert r["eth_type"] == (0x86DD if v6 else 0x0800)
    assert r["l3_off"] == len(frame.data) - len(ip_pkt)
    assert (r["src_hi"], r["src_lo"]) == _addr(ip_pkt.src)
    assert (r["dst_hi"], r["dst_lo"]) == _addr(ip_pkt.dst)
    assert r["ip_ttl"] == (ip_pkt.hlim if v6 else ip_pkt.ttl)
    assert r["ip_proto"] == 6
    assert r["ip_len"] == len(ip_pkt)
    assert r["ip_hl"] == (40 if v6 else ip_pkt.ihl * 4)
    if not v6:
        assert r["ip_id"] == ip_pkt.id
    assert r["l4_off"] == r["l3_off"] + r["ip_hl"]
    assert r["l4_len"] == len(tcp)
    assert (r["sport"], r["dport"]) == (tcp.sport, tcp.dport)
    assert (r["tcp_seq"], r["tcp_ack"]) == (tcp.seq, tcp.ack)
    assert r["tcp_flags"] == int(tcp.flags)
    assert r["tcp_win"] == tcp.window
    assert r["tcp_hlen"] == tcp.dataofs * 4
    assert r["payload_len"] == len(tcp.payload)
    assert r["payload_off"] == (r["l4_off"] + r["tcp_hlen"] if len(tcp.payload) else -1)
