"""IPv4 and IPv6 in a tcpdump-style line, and what they carry (TCP, UDP, ICMP, tunnels, IGMP, ESP).

Like tcpdump (and unlike the decoder) this shows each IP fragment as it is: the first one with its transport header,
the others as `ip-proto-N` (IPv4) or `frag (offset|size)` (IPv6). Ethernet padding is ignored by using the IP length;
an IP length beyond the frame is reported as `truncated-ip - N bytes missing!`.
"""

from __future__ import annotations

import struct

from diagnose.listing import icmp as listing_icmp
from diagnose.listing import tcp as listing_tcp
from diagnose.listing import udp as listing_udp
from diagnose.listing.common import Context, Truncated, be16, ipv4_text, ipv6_text, need

P_ICMP, P_IGMP, P_IPIP, P_TCP, P_UDP, P_IPV6, P_GRE, P_ESP, P_ICMP6, P_NONE = 1, 2, 4, 6, 17, 41, 47, 50, 58, 59
P_SCTP = 132
_IPV6_EXT = {0: "HBH", 60: "DSTOPT", 43: "RT6", 44: "frag"}


def print_ip_by_version(out: list[str], pkt: bytes, off: int, length: int, ctx: Context) -> None:
    """Raw IP link types and MPLS payloads: the version nibble says IPv4 or IPv6."""
    if off >= len(pkt):
        out.append("IP ")
        raise Truncated("ip")
    version = pkt[off] >> 4
    if version == 6:
        print_ipv6(out, pkt, off, length, ctx)
    elif version == 4:
        print_ipv4(out, pkt, off, length, ctx)
    else:
        out.append(f"IP{version} (invalid)")


def print_ipv4(out: list[str], pkt: bytes, off: int, length: int, ctx: Context) -> None:
    out.append("IP ")
    if off + 20 > len(pkt):
        raise Truncated("ip")
    vhl, _tos, total, _ident, frag, _ttl, proto = struct.unpack_from(">BBHHHBB", pkt, off)
    if vhl >> 4 != 4:
        out[-1] = f"IP{vhl >> 4} (invalid)"
        return
    hlen = (vhl & 0x0F) * 4
    if hlen < 20:
        out.append(f"bad-hlen {hlen}")
        return
    if total < hlen:
        out.append(f"bad-len {total}")
        return
    if length < total:
        out.append(f"truncated-ip - {total - length} bytes missing! ")
    length = total  # the header's length counts, even when the frame was shorter
    need(pkt, off, hlen, "ip")
    src, dst = ipv4_text(pkt, off + 12), ipv4_text(pkt, off + 16)
    if frag & 0x1FFF:
        out.append(f"{src} > {dst}: ip-proto-{proto}")  # a later fragment: no transport header here
        return
    body, size = off + hlen, length - hlen
    if proto == P_TCP:
        conv = (4, pkt[off + 12 : off + 16], pkt[off + 16 : off + 20])
        listing_tcp.print_tcp(out, pkt, body, size, ctx, src, dst, conv)
    elif proto == P_UDP:
        listing_udp.print_udp(out, pkt, body, size, ctx, src, dst, fragmented=bool(frag & 0x2000))
    elif proto == P_SCTP:
        _sctp(out, pkt, body, size, src, dst)
    else:
        out.append(f"{src} > {dst}: ")
        _other_protocol(out, pkt, body, size, ctx, proto)


def print_ipv6(out: list[str], pkt: bytes, off: int, length: int, ctx: Context) -> None:
    out.append("IP6 ")
    if off + 40 > len(pkt):
        raise Truncated("ip6")
    payload_len, nh = struct.unpack_from(">HB", pkt, off + 4)
    total = 40 + payload_len
    if length < total:
        out.append(f"truncated-ip6 - {total - length} bytes missing!")
    length = total
    src, dst = ipv6_text(pkt, off + 8), ipv6_text(pkt, off + 24)
    pos, size = off + 40, length - 40
    extended = fragmented = False
    while nh in _IPV6_EXT:
        if not extended:
            out.append(f"{src} > {dst}: ")
            extended = True
        need(pkt, pos, 2, "ip6")
        next_nh = pkt[pos]
        if nh == 44:
            need(pkt, pos, 8, "frag")
            offset = be16(pkt, pos + 2, "frag") & 0xFFF8
            out.append(f"frag ({offset}|{size - 8})")
            if offset:
                return  # a later fragment: nothing more to decode
            out.append(" ")
            hlen = 8
            fragmented = True
        else:
            hlen = (pkt[pos + 1] + 1) * 8
            if nh == 43:
                out.append(_routing_header(pkt, pos, hlen) + " ")
            else:
                out.append(_IPV6_EXT[nh] + " ")
        nh, pos, size = next_nh, pos + hlen, size - hlen
    if nh in (P_TCP, P_UDP, P_SCTP):
        addr = (None, None) if extended else (src, dst)
        if nh == P_TCP:
            conv = (6, pkt[off + 8 : off + 24], pkt[off + 24 : off + 40])
            listing_tcp.print_tcp(out, pkt, pos, size, ctx, *addr, conv)
        elif nh == P_UDP:
            listing_udp.print_udp(out, pkt, pos, size, ctx, *addr, fragmented=fragmented)
        else:
            _sctp(out, pkt, pos, size, *addr)
        return
    if not extended:
        out.append(f"{src} > {dst}: ")
    if nh == P_NONE:
        out.append("no next header")
        return
    _other_protocol(out, pkt, pos, size, ctx, nh)


def _routing_header(pkt: bytes, pos: int, hlen: int) -> str:
    need(pkt, pos, 4, "rt6")
    rtype, segleft = pkt[pos + 2], pkt[pos + 3]
    length = pkt[pos + 1]
    if rtype == 0:
        addrs = ""
        for i, a in enumerate(range(pos + 8, pos + hlen, 16)):
            need(pkt, a, 16, "rt6")
            addrs += f", [{i}]{ipv6_text(pkt, a)}"
        return f"RT6 (len={length}, type=0 [Deprecated], segleft={segleft}{addrs})"
    return f"RT6 (len={length}, type={rtype}, segleft={segleft})"


def _other_protocol(out: list[str], pkt: bytes, off: int, size: int, ctx: Context, proto: int) -> None:
    """Protocols above IP other than TCP/UDP; the addresses are already printed."""
    if proto == P_ICMP:
        listing_icmp.print_icmp(out, pkt, off, size)
    elif proto == P_ICMP6:
        listing_icmp.print_icmp6(out, pkt, off, size)
    elif proto == P_IPIP:
        print_ipv4(out, pkt, off, size, ctx)
    elif proto == P_IPV6:
        print_ipv6(out, pkt, off, size, ctx)
    elif proto == P_GRE:
        _gre(out, pkt, off, size, ctx)
    elif proto == P_ESP:
        need(pkt, off, 8, "esp")
        spi, seq = struct.unpack_from(">II", pkt, off)
        out.append(f"ESP(spi=0x{spi:08x},seq=0x{seq:x}), length {size}")
    elif proto == P_IGMP:
        _igmp(out, pkt, off, size)
    else:
        out.append(f" ip-proto-{proto} {size}")


_SCTP_CHUNKS = {0: "DATA", 1: "INIT", 2: "INIT ACK", 3: "SACK", 4: "HB REQ", 5: "HB ACK", 6: "ABORT",
                7: "SHUTDOWN", 8: "SHUTDOWN ACK", 9: "OP ERR", 10: "COOKIE ECHO", 11: "COOKIE ACK", 12: "ECN ECHO",
                13: "ECN CWR", 14: "SHUTDOWN COMPLETE", 15: "AUTH", 0x80: "ASCONF ACK", 0xC0: "FOR CUM TSN",
                0xC1: "ASCONF"}


def _sctp(out: list[str], pkt: bytes, off: int, size: int, src: str | None, dst: str | None) -> None:
    """SCTP: ports, then each chunk with the fields tcpdump shows without -v."""
    need(pkt, off, 12, "sctp")
    sport, dport = struct.unpack_from(">HH", pkt, off)
    out.append(f"{src}.{sport} > {dst}.{dport}: sctp" if src is not None else f"{sport} > {dport}: sctp")
    pos, end = off + 12, off + size
    number = 0
    while pos + 4 <= end:
        need(pkt, pos, 4, "sctp")
        ctype, cflags, clen = struct.unpack_from(">BBH", pkt, pos)
        if clen < 4:
            break
        number += 1
        text = f"({number}) [{_SCTP_CHUNKS.get(ctype, f'Unknown chunk type: 0x{ctype:x}')}] "
        if ctype == 0 and clen >= 16:
            need(pkt, pos, 16, "sctp")
            tsn, sid, sseq, ppid = struct.unpack_from(">IHHI", pkt, pos + 4)
            marks = "".join(m for bit, m in ((4, "(U)"), (2, "(B)"), (1, "(E)")) if cflags & bit)
            text += (marks + " " if marks else "") + f"[TSN: {tsn}] [SID: {sid}] [SSEQ {sseq}] [PPID 0x{ppid:x}] "
        elif ctype in (1, 2) and clen >= 20:
            need(pkt, pos, 20, "sctp")
            tag, rwnd, ostreams, istreams, tsn = struct.unpack_from(">IIHHI", pkt, pos + 4)
            text += f"[init tag: {tag}] [rwnd: {rwnd}] [OS: {ostreams}] [MIS: {istreams}] [init TSN: {tsn}] "
        elif ctype == 3 and clen >= 16:
            need(pkt, pos, 16, "sctp")
            cum, rwnd, gaps, dups = struct.unpack_from(">IIHH", pkt, pos + 4)
            text += f"[cum ack {cum}] [a_rwnd {rwnd}] [#gap acks {gaps}] [#dup tsns {dups}] "
        out.append((" " if number == 1 else ", ") + text)
        pos += (clen + 3) & ~3


def _gre(out: list[str], pkt: bytes, off: int, size: int, ctx: Context) -> None:
    need(pkt, off, 4, "gre")
    flags, ptype = struct.unpack_from(">HH", pkt, off)
    version = flags & 7
    out.append(f"GREv{version}")
    if version != 0:
        out.append(f", length {size}")
        return
    pos = off + 4
    if flags & 0x8000:  # checksum present (+ reserved)
        pos += 4
    if flags & 0x2000:
        need(pkt, pos, 4, "gre")
        out.append(f", key=0x{struct.unpack_from('>I', pkt, pos)[0]:x}")
        pos += 4
    if flags & 0x1000:
        need(pkt, pos, 4, "gre")
        out.append(f", seq {struct.unpack_from('>I', pkt, pos)[0]}")
        pos += 4
    inner = size - (pos - off)
    out.append(f", length {size}: ")
    from diagnose.listing.link import print_ethertype  # GRE carries any ethertype

    print_ethertype(out, pkt, pos, inner, ctx, ptype)


def _igmp(out: list[str], pkt: bytes, off: int, size: int) -> None:
    need(pkt, off, 8, "igmp")
    itype, code = pkt[off], pkt[off + 1]
    group = ipv4_text(pkt, off + 4)
    if itype == 0x11:
        if size >= 12:
            mrt = code if code < 128 else ((code & 0x0F) | 0x10) << (((code >> 4) & 7) + 3)
            text = f"igmp query v3 [max resp time {mrt / 10:.1f}s]"
            if group != "0.0.0.0":
                text += f" [gaddr {group}]"
        elif code == 0:
            text = "igmp query" + (f" [gaddr {group}]" if group != "0.0.0.0" else "")
        else:
            text = f"igmp query v2 [max resp time {code}]" + (f" [gaddr {group}]" if group != "0.0.0.0" else "")
    elif itype == 0x12:
        text = f"igmp v1 report {group}"
    elif itype == 0x16:
        text = f"igmp v2 report {group}"
    elif itype == 0x17:
        text = f"igmp leave {group}"
    elif itype == 0x22:
        text = f"igmp v3 report, {be16(pkt, off + 6, 'igmp')} group record(s)"
    else:
        text = f"igmp-{itype}"
    out.append(text)
