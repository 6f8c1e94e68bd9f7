"""Link layers of the tcpdump-style listing: Ethernet (VLAN, MPLS, PPPoE), Linux cooked v1/v2, BSD loopback, raw IP,
802.11 (with radiotap) data frames, and ARP.

Like `tcpdump -n` without -e, link headers are not shown, except where tcpdump shows them too: MPLS labels, the PPPoE
session, the interface and direction of Linux cooked v2, and the addresses of a frame whose type is unknown.
"""

from __future__ import annotations

import socket
import struct

from diagnose.listing import ip as listing_ip
from diagnose.listing.common import Context, Truncated, hex_ascii_lines, ipv4_text, mac_text, need

LT_NULL, LT_ETHERNET, LT_RAW_BSD12, LT_RAW_BSD14, LT_RAW, LT_IEEE802_11, LT_LOOP = 0, 1, 12, 14, 101, 105, 108
LT_LINUX_SLL, LT_RADIOTAP, LT_IPV4, LT_IPV6, LT_LINUX_SLL2 = 113, 127, 228, 229, 276

ETH_IPV4, ETH_ARP, ETH_RARP, ETH_IPV6 = 0x0800, 0x0806, 0x8035, 0x86DD
ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
ETH_MPLS = (0x8847, 0x8848)
ETH_PPPOE_SESSION, ETH_TEB = 0x8864, 0x6558

# ethertypes we name but do not decode
ETHERTYPE_NAMES = {0x88CC: "LLDP", 0x888E: "EAPOL", 0x8863: "PPPoE D", 0x88E5: "MACsec", 0x8809: "Slow Protocols",
                   0x88F7: "PTP", 0x9000: "Loopback", 0x8137: "IPX", 0x880B: "PPP", 0x8906: "FCoE", 0x8914: "FIP",
                   0x22F0: "AVTP", 0x88B8: "GOOSE", 0x88BA: "SV", 0x8892: "PROFINET", 0x88A4: "EtherCAT",
                   0x0842: "Wake-on-LAN", 0x22F3: "TRILL", 0x893A: "IEEE1905", 0x88E1: "HomePlug AV",
                   0x8902: "CFM", 0x8808: "MAC control"}
_HW_NAMES = {1: "Ethernet", 6: "TokenRing", 7: "ArcNet", 15: "Frame Relay", 16: "ATM", 19: "ATM", 20: "Strip",
             24: "IEEE 1394", 32: "InfiniBand"}
_PROTO_NAMES = {ETH_IPV4: "IPv4", ETH_IPV6: "IPv6", ETH_ARP: "ARP"}
_SLL_DIRECTIONS = ("In", "B", "M", "P", "Out")


def print_link(out: list[str], pkt: bytes, wirelen: int, linktype: int, ctx: Context) -> int | None:
    """Print one frame; returns the link header length (where the -X dump starts), None for an undecoded link type."""
    if linktype == LT_ETHERNET:
        return print_ethernet(out, pkt, 0, wirelen, ctx)
    if linktype in (LT_RAW, LT_RAW_BSD12, LT_RAW_BSD14, LT_IPV4, LT_IPV6):
        ctx.link_hdr = 0
        listing_ip.print_ip_by_version(out, pkt, 0, wirelen, ctx)
        return 0
    if linktype in (LT_NULL, LT_LOOP):
        return _loopback(out, pkt, wirelen, linktype, ctx)
    if linktype == LT_LINUX_SLL:
        need(pkt, 0, 16, "sll")
        ctx.link_hdr = 16
        print_ethertype(out, pkt, 16, wirelen - 16, ctx, struct.unpack_from(">H", pkt, 14)[0])
        return 16
    if linktype == LT_LINUX_SLL2:
        return _sll2(out, pkt, wirelen, ctx)
    if linktype == LT_RADIOTAP:
        need(pkt, 0, 4, "radiotap")
        rt_len = struct.unpack_from("<H", pkt, 2)[0]
        return _ieee802_11(out, pkt, rt_len, wirelen, ctx)
    if linktype == LT_IEEE802_11:
        return _ieee802_11(out, pkt, 0, wirelen, ctx)
    return None


def print_ethernet(out: list[str], pkt: bytes, off: int, length: int, ctx: Context) -> int:
    """Returns the header length: 14 plus 4 per VLAN tag (plus LLC/SNAP)."""
    start = off
    if off + 14 > len(pkt):
        raise Truncated("ether")
    etype = struct.unpack_from(">H", pkt, off + 12)[0]
    off += 14
    while etype in ETH_VLAN_TAGS:
        need(pkt, off, 4, "vlan")
        etype = struct.unpack_from(">H", pkt, off + 2)[0]
        off += 4
    if etype < 0x0600:  # 802.3 length field: LLC follows
        need(pkt, off, 3, "llc")
        dsap, ssap, ctrl = pkt[off], pkt[off + 1], pkt[off + 2]
        if dsap == ssap == 0xAA and ctrl == 3:
            need(pkt, off, 8, "snap")
            etype = struct.unpack_from(">H", pkt, off + 6)[0]
            off += 8
        else:
            what = "STP" if dsap == ssap == 0x42 else f"LLC, dsap 0x{dsap:02x}, ssap 0x{ssap:02x}"
            out.append(f"{what}, length {length - (off - start)}")
            if ctx.link_hdr is None:
                ctx.link_hdr = off - start
            return off - start
    header = off - start
    if ctx.link_hdr is None:
        ctx.link_hdr = header
    if not print_ethertype(out, pkt, off, length - header, ctx, etype):
        out.append(f"{mac_text(pkt, start + 6)} > {mac_text(pkt, start)}, ethertype Unknown (0x{etype:04x}), "
                   f"length {length}: ")
        if not ctx.hex_ascii:
            out.append("\n" + "\n".join(hex_ascii_lines(pkt[off : start + length])))
    return header


def print_ethertype(out: list[str], pkt: bytes, off: int, length: int, ctx: Context, etype: int) -> bool:
    """The network layer named by an ethertype; False when the type is unknown (nothing printed)."""
    if etype == ETH_IPV4:
        listing_ip.print_ipv4(out, pkt, off, length, ctx)
    elif etype == ETH_IPV6:
        listing_ip.print_ipv6(out, pkt, off, length, ctx)
    elif etype in (ETH_ARP, ETH_RARP):
        print_arp(out, pkt, off, length)
    elif etype in ETH_MPLS:
        _mpls(out, pkt, off, length, ctx)
    elif etype == ETH_PPPOE_SESSION:
        _pppoe_session(out, pkt, off, length, ctx)
    elif etype == ETH_TEB:
        print_ethernet(out, pkt, off, length, ctx)
    elif etype in ETHERTYPE_NAMES:
        out.append(f"{ETHERTYPE_NAMES[etype]}, length {length}")
    else:
        return False
    return True


def print_arp(out: list[str], pkt: bytes, off: int, length: int) -> None:
    out.append("ARP, ")
    need(pkt, off, 8, "arp")
    hrd, pro, hln, pln, op = struct.unpack_from(">HHBBH", pkt, off)
    if pro != ETH_IPV4 or pln != 4 or hln == 0:
        out.append(f"{_HW_NAMES.get(hrd, f'Unknown Hardware ({hrd})')} (len {hln}), "
                   f"{_PROTO_NAMES.get(pro, f'Unknown Protocol (0x{pro:04x})')} (len {pln}), length {length}")
        return
    need(pkt, off, 8 + 2 * (hln + 4), "arp")
    sha = off + 8
    spa = sha + hln
    tha = spa + 4
    tpa = tha + hln

    def hw(at: int) -> str:
        return ":".join(f"{b:02x}" for b in pkt[at : at + hln])

    if op == 1:
        target_hw = f" ({hw(tha)})" if any(pkt[tha : tha + hln]) else ""
        text = f"Request who-has {ipv4_text(pkt, tpa)}{target_hw} tell {ipv4_text(pkt, spa)}"
    elif op == 2:
        text = f"Reply {ipv4_text(pkt, spa)} is-at {hw(sha)}"
    elif op == 3:
        text = f"Reverse Request who-is {hw(tha)} tell {hw(sha)}"
    elif op == 4:
        text = f"Reverse Reply {hw(tha)} at {ipv4_text(pkt, tpa)}"
    elif op == 8:
        text = f"Inverse Request who-is {hw(tha)} tell {hw(sha)}"
    elif op == 9:
        text = f"Inverse Reply {hw(sha)} at {ipv4_text(pkt, spa)}"
    else:
        text = f"Unknown ({op})"
    out.append(f"{text}, length {length}")


def _mpls(out: list[str], pkt: bytes, off: int, length: int, ctx: Context) -> None:
    out.append("MPLS")
    end = off + length
    while True:
        need(pkt, off, 4, "mpls")
        entry = struct.unpack_from(">I", pkt, off)[0]
        bottom = bool(entry & 0x100)
        out.append(f" (label {entry >> 12}, tc {(entry >> 9) & 7}, {'[S], ' if bottom else ''}ttl {entry & 0xFF})")
        off += 4
        if bottom:
            break
    out.append(" ")
    listing_ip.print_ip_by_version(out, pkt, off, end - off, ctx)


def _pppoe_session(out: list[str], pkt: bytes, off: int, length: int, ctx: Context) -> None:
    need(pkt, off, 8, "pppoe")
    session, size, ppp = struct.unpack_from(">HHH", pkt, off + 2)
    out.append(f"PPPoE  [ses 0x{session:x}] ")
    body = off + 8
    inner = min(size - 2, length - 8)
    if ppp == 0x0021:
        listing_ip.print_ipv4(out, pkt, body, inner, ctx)
    elif ppp == 0x0057:
        listing_ip.print_ipv6(out, pkt, body, inner, ctx)
    else:
        out.append(f"PPP protocol 0x{ppp:04x}, length {inner}")


def _loopback(out: list[str], pkt: bytes, wirelen: int, linktype: int, ctx: Context) -> int:
    need(pkt, 0, 4, "null")
    if linktype == LT_LOOP:
        family = struct.unpack_from(">I", pkt, 0)[0]
    else:  # host byte order of the capturing machine: either
        family = struct.unpack_from("<I", pkt, 0)[0]
        if family & 0xFFFF0000:
            family = struct.unpack_from(">I", pkt, 0)[0]
    ctx.link_hdr = 4
    if family == 2:
        listing_ip.print_ipv4(out, pkt, 4, wirelen - 4, ctx)
    elif family in (10, 24, 28, 30):
        listing_ip.print_ipv6(out, pkt, 4, wirelen - 4, ctx)
    else:
        out.append(f"AF {family}, length {wirelen}")
    return 4


def _sll2(out: list[str], pkt: bytes, wirelen: int, ctx: Context) -> int:
    need(pkt, 0, 20, "sll2")
    proto, _reserved, ifindex, _hatype, pkttype = struct.unpack_from(">HHIHB", pkt, 0)
    ifname = interface_name(ifindex)
    ctx.link_hdr = 20
    direction = _SLL_DIRECTIONS[pkttype] if pkttype < len(_SLL_DIRECTIONS) else str(pkttype)
    out.append(f"{ifname:<5} {direction:<3} ")
    print_ethertype(out, pkt, 20, wirelen - 20, ctx, proto) or out.append(f"ethertype 0x{proto:04x}, length {wirelen}")
    return 20


def interface_name(ifindex: int) -> str:
    """Like tcpdump: the name this machine gives the interface index (the capture does not record names), or '?'."""
    try:
        return socket.if_indextoname(ifindex)
    except (OSError, OverflowError):
        return "?"


def _ieee802_11(out: list[str], pkt: bytes, off: int, wirelen: int, ctx: Context) -> int:
    need(pkt, off, 2, "802.11")
    fc = pkt[off]
    ftype, subtype = (fc >> 2) & 3, fc >> 4
    if ftype != 2:
        kind = {0: "management", 1: "control"}.get(ftype, "reserved")
        out.append(f"802.11 {kind} frame (subtype {subtype}), length {wirelen - off}")
        return off
    flags = pkt[off + 1]
    header = 30 if flags & 3 == 3 else 24
    if subtype & 0x8:  # QoS data
        header += 2
    if subtype & 0x4:  # null data: no payload
        out.append(f"802.11 null data frame, length {wirelen - off}")
        return off
    llc = off + header
    need(pkt, llc, 8, "llc")
    if pkt[llc] == pkt[llc + 1] == 0xAA and pkt[llc + 2] == 3:
        etype = struct.unpack_from(">H", pkt, llc + 6)[0]
        ctx.link_hdr = llc + 8
        if print_ethertype(out, pkt, llc + 8, wirelen - llc - 8, ctx, etype):
            return llc + 8
    out.append(f"802.11 data frame, length {wirelen - off}")
    return off
