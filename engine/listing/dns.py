"""DNS messages summarised the way `tcpdump -n` prints them.

Query:    `63831+ A? www.lab.test. (30)`          id, opcode, + when recursion desired, % when checking disabled,
                                                   counts in brackets when unusual, each question, (message length)
Response: `63831*- 1/0/0 A 10.99.2.2 (46)`        id, opcode, rcode, * authoritative, - recursion not available,
                                                   | truncated, $ authenticated; answers/authority/additional counts,
                                                   then every answer record
Parsed from the payload bytes (listing is not the hot path); a record cut by the capture ends with `[|domain]`.
"""

from __future__ import annotations

import struct

from diagnose.listing.common import Truncated, c_char, ipv4_text, ipv6_text

TYPE_NAMES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL", 11: "WKS",
    12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT",
    22: "NSAP", 23: "NSAP_PTR", 24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT",
    31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME",
    40: "SINK", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
    99: "SPF", 100: "UINFO", 101: "UID", 102: "GID", 103: "UNSPEC", 104: "UNSPECA", 249: "TKEY", 250: "TSIG",
    251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI",
}
CLASS_NAMES = {1: "IN", 3: "CHAOS", 4: "HS", 255: "ANY"}
OPCODES = ("", " inv_q", " stat", " op3", " notify", " update", " op6", " op7", " op8", " updateA", " updateD",
           " updateDA", " updateM", " updateMA", " zoneInit", " zoneRef")
RCODES = ("", " FormErr", " ServFail", " NXDomain", " NotImp", " Refused", " YXDomain", " YXRRSet", " NXRRSet",
          " NotAuth", " NotZone", " Resp11", " Resp12", " Resp13", " Resp14", " NoChange")

T_A, T_NS, T_CNAME, T_PTR, T_MX, T_TXT, T_AAAA, T_SRV, T_DNAME, T_OPT, T_URI = 1, 2, 5, 12, 15, 16, 28, 33, 39, 41, 256
C_IN = 1
MDNS_CACHE_FLUSH = 0x8000  # top bit of the class in mDNS answers (unicast-response bit in questions)

QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
_ODD_QUERY_BITS = 0x06CF  # AA, TC, RA, Z and rcode bits: should be clear in a query


def type_name(t: int) -> str:
    return TYPE_NAMES.get(t, f"Type{t}")


def class_name(c: int) -> str:
    return CLASS_NAMES.get(c, f"(Class {c})")


def print_dns(out: list[str], msg: bytes, length: int, *, is_mdns: bool) -> None:
    """`msg`: the captured part of the message; `length`: its length on the wire."""
    if length < 12:
        out.append(f"domain [length {length} < 12] (invalid)")
        return
    if len(msg) < 12:
        raise Truncated("domain")
    ident, flags, qd, an, ns, ar = struct.unpack_from(">6H", msg)
    opcode = (flags >> 11) & 0xF
    msg = msg[:length]
    if flags & QR:
        out.append(f"{ident}{OPCODES[opcode]}{RCODES[flags & 0xF]}{'*' if flags & AA else ''}"
                   f"{'' if flags & RA else '-'}{'|' if flags & TC else ''}{'$' if flags & AD else ''}")
        if qd != 1:
            out.append(f" [{qd}q]")
        pos = 12
        for _ in range(qd):
            pos = _skip_name(msg, pos) + 4
            if pos > len(msg):
                raise Truncated("domain")
        out.append(f" {an}/{ns}/{ar}")
        for i in range(an):
            if pos >= len(msg):
                raise Truncated("domain")
            if i:
                out.append(",")
            pos = _record(out, msg, pos, is_mdns)
    else:
        out.append(f"{ident}{OPCODES[opcode]}{'+' if flags & RD else ''}{'%' if flags & CD else ''}")
        if flags & _ODD_QUERY_BITS:
            out.append(f" [b2&3=0x{flags:x}]")
        if opcode == 1:  # inverse query: answers expected, questions unusual
            if qd:
                out.append(f" [{qd}q]")
            if an != 1:
                out.append(f" [{an}a]")
        else:
            if an:
                out.append(f" [{an}a]")
            if qd != 1:
                out.append(f" [{qd}q]")
        if ns:
            out.append(f" [{ns}n]")
        if ar:
            out.append(f" [{ar}au]")
        pos = 12
        for _ in range(qd):
            if pos >= len(msg):
                raise Truncated("domain")
            pos = _question(out, msg, pos, is_mdns)
    out.append(f" ({length})")


def _question(out: list[str], msg: bytes, pos: int, is_mdns: bool) -> int:
    name, pos = read_name(msg, pos)
    if pos + 4 > len(msg):
        raise Truncated("domain")
    qtype, qclass = struct.unpack_from(">HH", msg, pos)
    text = f" {type_name(qtype)}"
    cls = qclass & ~MDNS_CACHE_FLUSH if is_mdns else qclass
    if cls != C_IN:
        text += f" {class_name(cls)}"
    if is_mdns:
        text += " (QU)" if qclass & MDNS_CACHE_FLUSH else " (QM)"
    out.append(f"{text}? {name}")
    return pos + 4


def _record(out: list[str], msg: bytes, pos: int, is_mdns: bool) -> int:
    pos = _skip_name(msg, pos)
    if pos + 10 > len(msg):
        raise Truncated("domain")
    rtype, rclass, ttl, rdlen = struct.unpack_from(">HHIH", msg, pos)
    pos += 10
    flush = is_mdns and bool(rclass & MDNS_CACHE_FLUSH)
    if is_mdns:
        rclass &= ~MDNS_CACHE_FLUSH
    if rtype != T_OPT and rclass != C_IN:
        out.append(f" {class_name(rclass)}")
    if flush:
        out.append(" (Cache flush)")
    out.append(f" {type_name(rtype)}")
    end = pos + rdlen
    if rtype == T_A:
        _need(msg, pos, 4)
        out.append(" " + ipv4_text(msg, pos))
    elif rtype == T_AAAA:
        _need(msg, pos, 16)
        out.append(" " + ipv6_text(msg, pos))
    elif rtype in (T_NS, T_CNAME, T_PTR, T_DNAME):
        out.append(" " + read_name(msg, pos)[0])
    elif rtype == T_MX:
        _need(msg, pos, 2)
        out.append(f" {read_name(msg, pos + 2)[0]} {struct.unpack_from('>H', msg, pos)[0]}")
    elif rtype == T_TXT:
        _need(msg, pos, rdlen)
        i = pos
        while i < end:
            n = msg[i]
            out.append(' "' + "".join(c_char(b) for b in msg[i + 1 : i + 1 + n]) + '"')
            i += 1 + n
    elif rtype == T_SRV:
        _need(msg, pos, 6)
        prio, weight, port = struct.unpack_from(">HHH", msg, pos)
        out.append(f" {read_name(msg, pos + 6)[0]}:{port} {prio} {weight}")
    elif rtype == T_URI:
        _need(msg, pos, rdlen)
        prio, weight = struct.unpack_from(">HH", msg, pos)
        out.append(f" {prio} {weight} " + "".join(c_char(b) for b in msg[pos + 4 : end]))
    elif rtype == T_OPT:
        out.append(f" UDPsize={rclass}" + (" DO" if ttl & 0x8000 else ""))
    if end > len(msg):
        raise Truncated("domain")
    return end


def _need(msg: bytes, pos: int, n: int) -> None:
    if pos + n > len(msg):
        raise Truncated("domain")


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """(name text with trailing dot, offset after the name in place). Compression pointers must point backwards."""
    labels: list[str] = []
    after = None
    limit = pos  # a pointer must go before every place we have read a name from: no loops
    while True:
        if pos >= len(msg):
            raise Truncated("domain")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise Truncated("domain")
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if after is None:
                after = pos + 2
            if target >= limit:
                raise Truncated("domain")
            pos = limit = target
            continue
        if n & 0xC0:
            raise Truncated("domain")  # extended label types are not shown
        if n == 0:
            if after is None:
                after = pos + 1
            break
        if pos + 1 + n > len(msg):
            raise Truncated("domain")
        labels.append("".join(c_char(b) for b in msg[pos + 1 : pos + 1 + n]))
        pos += 1 + n
    return ("".join(label + "." for label in labels) or "."), after


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        if pos >= len(msg):
            raise Truncated("domain")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            return pos + 2
        if n == 0:
            return pos + 1
        pos += 1 + (n & 0x3F)
