"""ICMP and ICMPv6 messages as `tcpdump -n` summarises them.

Errors name what the quoted packet was about, e.g. `ICMP 10.99.2.2 tcp port 8083 unreachable, length 68` (the
quoted destination and port), `ICMP6, destination unreachable, unreachable port, 2001:db8::9 udp port 53, length 56`.
`length` is the ICMP message length from the IP header.
"""

from __future__ import annotations

import struct

from diagnose.listing.common import be16, ipv4_text, ipv6_text, need

_UNREACH_V4 = {
    0: "net {dst} unreachable",
    1: "host {dst} unreachable",
    5: "{dst} unreachable - source route failed",
    6: "net {dst} unreachable - unknown",
    7: "host {dst} unreachable - unknown",
    8: "{dst} unreachable - source host isolated",
    9: "net {dst} unreachable - admin prohibited",
    10: "host {dst} unreachable - admin prohibited",
    11: "net {dst} unreachable - tos prohibited",
    12: "host {dst} unreachable - tos prohibited",
    13: "host {dst} unreachable - admin prohibited filter",
    14: "host {dst} unreachable - host precedence violation",
    15: "host {dst} unreachable - precedence cutoff",
}
_SIMPLE_V4 = {4: "source quench", 10: "router solicitation", 15: "information request", 16: "information reply",
              17: "address mask request"}
_REDIRECT = {0: "redirect {dst} to net {gw}", 1: "redirect {dst} to host {gw}", 2: "redirect-tos {dst} to net {gw}",
             3: "redirect-tos {dst} to host {gw}"}


def print_icmp(out: list[str], pkt: bytes, off: int, length: int) -> None:
    out.append("ICMP ")
    need(pkt, off, 4, "icmp")
    itype, code = pkt[off], pkt[off + 1]
    if itype in (0, 8):
        need(pkt, off, 8, "icmp")
        ident, seq = struct.unpack_from(">HH", pkt, off + 4)
        text = f"echo {'reply' if itype == 0 else 'request'}, id {ident}, seq {seq}"
    elif itype == 3:
        text = _unreachable(pkt, off, code)
    elif itype == 11:
        text = {0: "time exceeded in-transit", 1: "ip reassembly time exceeded"}.get(code, f"time exceeded-#{code}")
    elif itype == 5:
        need(pkt, off, 8 + 20, "icmp")
        gw = ipv4_text(pkt, off + 4)
        dst = ipv4_text(pkt, off + 8 + 16)
        text = _REDIRECT.get(code, "redirect-#{code} {dst} to {gw}").format(dst=dst, gw=gw, code=code)
    elif itype == 12:
        need(pkt, off, 5, "icmp")
        text = f"parameter problem - octet {pkt[off + 4]}" if code == 0 else f"parameter problem - code {code}"
    elif itype in (13, 14):
        need(pkt, off, 8, "icmp")
        ident, seq = struct.unpack_from(">HH", pkt, off + 4)
        if itype == 13:
            text = f"time stamp query id {ident} seq {seq}"
        else:
            need(pkt, off, 20, "icmp")
            org, recv, xmit = struct.unpack_from(">III", pkt, off + 8)
            text = (f"time stamp reply id {ident} seq {seq}: org {_ms_of_day(org)}, recv {_ms_of_day(recv)}, "
                    f"xmit {_ms_of_day(xmit)}")
    elif itype == 18:
        need(pkt, off, 12, "icmp")
        text = f"address mask is 0x{struct.unpack_from('>I', pkt, off + 8)[0]:08x}"
    elif itype in _SIMPLE_V4:
        text = _SIMPLE_V4[itype]
    elif itype == 9:
        text = "router advertisement"
    else:
        text = f"type-#{itype}"
    out.append(f"{text}, length {length}")


def _unreachable(pkt: bytes, off: int, code: int) -> str:
    quoted = off + 8
    need(pkt, quoted, 20, "icmp")
    dst = ipv4_text(pkt, quoted + 16)
    proto = pkt[quoted + 9]
    if code == 2:
        return f"{dst} protocol {proto} unreachable"
    if code == 3:
        hlen = (pkt[quoted] & 0x0F) * 4
        dport = be16(pkt, quoted + hlen + 2, "icmp")
        name = {6: "tcp", 17: "udp"}.get(proto)
        if name:
            return f"{dst} {name} port {dport} unreachable"
        return f"{dst} protocol {proto} port {dport} unreachable"
    if code == 4:
        mtu = be16(pkt, off + 6, "icmp")
        return f"{dst} unreachable - need to frag (mtu {mtu})" if mtu else f"{dst} unreachable - need to frag"
    return _UNREACH_V4.get(code, "{dst} unreachable - #{code}").format(dst=dst, code=code)


def _ms_of_day(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours % 24:02d}:{rest // 60:02d}:{rest % 60:02d}.{millis:03d}"


# ---- ICMPv6 ------------------------------------------------------------------------------------------------------
_SIMPLE_V6 = {133: "router solicitation", 134: "router advertisement", 138: "router renumbering",
              139: "node information query", 140: "node information reply", 141: "inverse neighbor solicitation",
              142: "inverse neighbor advertisement", 144: "ha discovery request", 145: "ha discovery reply",
              146: "mobile router solicitation", 147: "mobile router advertisement",
              151: "multicast router advertisement", 152: "multicast router solicitation",
              153: "multicast router termination", 200: "mtrace response", 201: "mtrace"}


def print_icmp6(out: list[str], pkt: bytes, off: int, length: int) -> None:
    out.append("ICMP6, ")
    need(pkt, off, 4, "icmp6")
    itype, code = pkt[off], pkt[off + 1]
    if itype in (128, 129):
        need(pkt, off, 8, "icmp6")
        ident, seq = struct.unpack_from(">HH", pkt, off + 4)
        text = f"echo {'request' if itype == 128 else 'reply'}, id {ident}, seq {seq}"
    elif itype == 1:
        text = "destination unreachable, " + _unreachable6(pkt, off, code)
    elif itype == 2:
        need(pkt, off, 8, "icmp6")
        text = f"packet too big, mtu {struct.unpack_from('>I', pkt, off + 4)[0]}"
    elif itype == 3:
        if code == 0:
            need(pkt, off, 8 + 40, "icmp6")
            text = f"time exceeded in-transit for {ipv6_text(pkt, off + 8 + 24)}"
        else:
            text = "time exceeded in-reassembly" if code == 1 else f"time exceeded code-#{code}"
    elif itype == 4:
        need(pkt, off, 8, "icmp6")
        pointer = struct.unpack_from(">I", pkt, off + 4)[0]
        what = {0: "erroneous", 1: "next header", 2: "option"}.get(code)
        text = f"parameter problem, {what} - octet {pointer}" if what else f"parameter problem, code-#{code}"
    elif itype in (130, 131, 132):
        need(pkt, off, 24, "icmp6")
        name = {130: "query", 131: "report", 132: "done"}[itype]
        delay = be16(pkt, off + 4, "icmp6")
        text = f"multicast listener {name}max resp delay: {delay} addr: {ipv6_text(pkt, off + 8)}"
    elif itype == 143:
        need(pkt, off, 8, "icmp6")
        text = f"multicast listener report v2, {be16(pkt, off + 6, 'icmp6')} group record(s)"
    elif itype == 135:
        need(pkt, off, 24, "icmp6")
        text = f"neighbor solicitation, who has {ipv6_text(pkt, off + 8)}"
    elif itype == 136:
        need(pkt, off, 24, "icmp6")
        text = f"neighbor advertisement, tgt is {ipv6_text(pkt, off + 8)}"
    elif itype == 137:
        need(pkt, off, 40, "icmp6")
        text = f"redirect, {ipv6_text(pkt, off + 24)} to {ipv6_text(pkt, off + 8)}"
    elif itype in _SIMPLE_V6:
        text = _SIMPLE_V6[itype]
    else:
        text = f"type-#{itype}"
    out.append(f"{text}, length {length}")


def _unreachable6(pkt: bytes, off: int, code: int) -> str:
    quoted = off + 8
    need(pkt, quoted, 40, "icmp6")
    dst = ipv6_text(pkt, quoted + 24)
    if code == 0:
        return f"unreachable route {dst}"
    if code == 1:
        return f" unreachable prohibited {dst}"  # sic: tcpdump prints two spaces here
    if code == 2:
        return f"beyond scope {dst}, source address {ipv6_text(pkt, quoted + 8)}"
    if code == 3:
        return f"unreachable address {dst}"
    if code == 4:
        nh = pkt[quoted + 6]
        name = {6: "tcp", 17: "udp"}.get(nh)
        if name:
            dport = be16(pkt, quoted + 40 + 2, "icmp6")
            return f"unreachable port, {dst} {name} port {dport}"
        return f"unreachable port, {dst}"
    return f"unknown unreach code ({code})"
