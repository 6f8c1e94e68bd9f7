"""TCP in a tcpdump-style line: flags, relative seq/ack, window, options, length and a payload summary.

Relative numbers follow tcpdump's rule, which differs from Wireshark's: a conversation (both endpoints, either
direction) gets its base numbers from the first packet that has ACK set, or again from any packet with SYN+ACK; that
packet is printed with absolute numbers, later ones relative to the bases. Packets without ACK (a bare SYN, a bare
RST) print absolute numbers and leave the table alone. SACK blocks are relative to the receiver's base.
"""

from __future__ import annotations

import struct

from diagnose.listing import dns as listing_dns
from diagnose.listing import text as listing_text
from diagnose.listing.common import Context, Truncated, be16, need

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"), (ECE, "E"), (CWR, "W"))
_MASK = 0xFFFFFFFF

HTTP_PORTS = (80, 8080)
RTSP_PORTS = (554, 8554)


def flag_text(flags: int) -> str:
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text or "none"


def print_tcp(out: list[str], pkt: bytes, off: int, length: int, ctx: Context, src: str | None, dst: str | None,
              conv: tuple) -> None:
    """`src`/`dst`: address text to put before the ports (None when an IPv6 extension header already printed the
    addresses). `conv`: (family, source address bytes, destination address bytes) for the relative-number table."""
    if off + 4 > len(pkt):
        if src is not None:
            out.append(f"{src} > {dst}:")
        raise Truncated("tcp")
    sport, dport = struct.unpack_from(">HH", pkt, off)
    out.append(f"{src}.{sport} > {dst}.{dport}: " if src is not None else f"{sport} > {dport}: ")
    need(pkt, off, 20, "tcp")
    seq, ack, offx, flags, win, _csum, urp = struct.unpack_from(">IIBBHHH", pkt, off + 4)
    hlen = (offx >> 4) * 4
    if hlen < 20:
        out.append(f" tcp {length - hlen} [bad hdr length {hlen} - too short, < 20]")
        return
    out.append(f"Flags [{flag_text(flags)}]")
    if hlen > length:
        out.append(f" [bad hdr length {hlen} - too long, > {length}]")
        return
    payload = length - hlen

    peer_base = None
    if flags & ACK:
        a, b = (conv[1], sport), (conv[2], dport)
        rev = a > b
        key = (conv[0], b, a) if rev else (conv[0], a, b)
        bases = ctx.state.tcp_bases
        entry = bases.get(key)
        if entry is None or flags & SYN:
            # first sight of the conversation (or a new handshake): remember, print absolute numbers
            own, other = seq, (ack - 1) & _MASK
            bases[key] = (other, own) if rev else (own, other)
            peer_base = other
        else:
            own, other = (entry[1], entry[0]) if rev else entry
            seq = (seq - own) & _MASK
            ack = (ack - other) & _MASK
            peer_base = other

    if payload > 0:
        out.append(f", seq {seq}:{(seq + payload) & _MASK}")
    elif flags & (SYN | FIN | RST):
        out.append(f", seq {seq}")
    if flags & ACK:
        out.append(f", ack {ack}")
    out.append(f", win {win}")
    if flags & URG:
        out.append(f", urg {urp}")
    if hlen > 20:
        out.append(", options [")
        if not _options(out, pkt, off + 20, hlen - 20, peer_base):
            return  # a malformed option ends the line, as in tcpdump
        out.append("]")
    out.append(f", length {payload}")
    if payload > 0:
        start = off + hlen
        data = pkt[start : start + payload]
        _payload(out, data, payload, sport, dport)


def _payload(out: list[str], data: bytes, length: int, sport: int, dport: int) -> None:
    ports = (sport, dport)
    if 25 in ports:
        out.append(": ")
        listing_text.text_protocol(out, data, length, "SMTP", "smtp", None)
    elif 22 in ports:
        listing_text.ssh_banner(out, data)
    elif 21 in ports:
        out.append(": ")
        listing_text.text_protocol(out, data, length, "FTP", "ftp", None)
    elif sport in HTTP_PORTS or dport in HTTP_PORTS:
        out.append(": ")
        listing_text.text_protocol(out, data, length, "HTTP", "http", listing_text.HTTP_METHODS, code_second=True)
    elif sport in RTSP_PORTS or dport in RTSP_PORTS:
        out.append(": ")
        listing_text.text_protocol(out, data, length, "RTSP", "rtsp", listing_text.RTSP_METHODS, code_second=True)
    elif 53 in ports:
        # DNS over TCP: a 2-byte length, then the message
        out.append(" ")
        prefix = be16(data, 0, "domain")
        if prefix != length - 2:
            out.append(f"[prefix length({prefix}) != length({length - 2})] (invalid)")
            return
        listing_dns.print_dns(out, data[2:], prefix, is_mdns=False)


_OPTION_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackOK", 5: "sack", 6: "echo", 7: "echoreply",
                 8: "TS", 11: "cc", 12: "ccnew", 13: "ccecho", 19: "md5", 27: "qs", 28: "uto", 29: "tcp-ao",
                 30: "mptcp", 34: "tfo", 253: "exp", 254: "exp"}
# value bytes read for options of fixed size: read (and skipped) whatever the length byte says, like tcpdump;
# a length byte that disagrees is shown as [len N]
_VALUE_SIZE = {2: 2, 3: 1, 4: 0, 6: 4, 7: 4, 8: 8, 11: 4, 12: 4, 13: 4, 19: 16, 28: 2}
_MPTCP_SUBTYPES = {0: "capable", 1: "join", 2: "dss", 3: "add-addr", 4: "rem-addr", 5: "prio", 6: "fail",
                   7: "fast-close", 8: "tcprst"}


def _options(out: list[str], pkt: bytes, off: int, size: int, peer_base: int | None) -> bool:
    """Append the option list; False when an option was malformed (tcpdump ends the line with [bad opt]).
    An option cut by the capture ends the line with ` [|tcp]>`."""
    left = size
    sep = ""
    while left > 0:
        out.append(sep)
        sep = ","
        if off >= len(pkt):
            raise Truncated("tcp", ">")
        kind = pkt[off]
        if kind in (0, 1):
            optlen = 1
        else:
            if off + 1 >= len(pkt):
                raise Truncated("tcp", ">")
            optlen = pkt[off + 1]
            if optlen < 2 or optlen > left:
                out.append("[bad opt]")
                return False
        off += 1 if kind in (0, 1) else 2
        left -= 1 if kind in (0, 1) else 2
        name = _OPTION_NAMES.get(kind)
        datalen = _VALUE_SIZE.get(kind, optlen - 2) if kind > 1 else 0
        if datalen > left:
            out.append((name or f"unknown-{kind}") + "[bad opt]")
            return False
        if off + datalen > len(pkt):
            out.append(name or f"unknown-{kind}")
            raise Truncated("tcp", ">")
        out.append(_option_text(kind, optlen, pkt[off : off + datalen], peer_base))
        off += datalen
        left -= datalen
        if kind > 1 and kind in _VALUE_SIZE and datalen + 2 != optlen:
            out.append(f"[len {optlen}]")
        if kind == 0:
            break
    return True


def _option_text(kind: int, optlen: int, data: bytes, peer_base: int | None) -> str:
    name = _OPTION_NAMES.get(kind)
    if kind in (0, 1, 4):
        return name
    if kind == 2:
        return f"mss {struct.unpack_from('>H', data)[0]}"
    if kind == 28:
        return _uto(struct.unpack_from(">H", data)[0])
    if kind == 3:
        return f"wscale {data[0]}"
    if kind == 5:
        if len(data) % 8:
            return "sack invalid sack"
        blocks = []
        for i in range(0, len(data), 8):
            left, right = struct.unpack_from(">II", data, i)
            if peer_base is not None:
                left, right = (left - peer_base) & _MASK, (right - peer_base) & _MASK
            blocks.append(f"{{{left}:{right}}}")
        return f"sack {len(data) // 8} " + "".join(blocks)
    if kind == 8:
        val, ecr = struct.unpack_from(">II", data)
        return f"TS val {val} ecr {ecr}"
    if kind in (6, 7, 11, 12, 13):
        return f"{name} {struct.unpack_from('>I', data)[0]}"
    if kind == 19:
        return "md5 shared secret not supplied with -M, can't check - " + data.hex()
    if kind == 34:
        return "tfo " + _fastopen(data)
    if kind in (253, 254):
        if len(data) >= 2 and data[0] == 0xF9 and data[1] == 0x89:
            return "exp-tfo" + _fastopen(data[2:])
        return f"exp-{data[:2].hex()}" if len(data) >= 2 else "exp"
    if kind == 30:
        subtype = data[0] >> 4 if data else -1
        return f"mptcp {optlen} {_MPTCP_SUBTYPES.get(subtype, 'unknown')}"
    if name is not None:
        return name
    return f"unknown-{kind} 0x{data.hex()}" if data else f"unknown-{kind}"


def _uto(value: int) -> str:
    minutes = value & 1
    return f"uto 0x{value:x} {(value >> 1) * 60 if minutes else value >> 1}"


def _fastopen(cookie: bytes) -> str:
    if not cookie:
        return " cookiereq"
    if len(cookie) < 4 or len(cookie) > 16:
        return " invalid"
    return " cookie " + cookie.hex()
