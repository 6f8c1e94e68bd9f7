"""DNS messages (RFC 1035 and later record types) parsed the way Wireshark shows them.

`parse_message(data)` never raises: a message that ends early or points its names in a loop gets `malformed` set
(Wireshark's expert "Malformed Packet") and keeps everything read before the fault, as Wireshark's tree does.
Names print as Wireshark prints them: labels joined by dots, no trailing dot, `<Root>` for the root.
Matching queries to responses (dns.time, retransmissions) is `DnsTracker`'s job, once per conversation.
"""

from __future__ import annotations

import ipaddress
import struct

T_A, T_NS, T_CNAME, T_SOA, T_PTR, T_MX, T_TXT, T_AAAA, T_SRV, T_DNAME, T_OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 39, 41
T_SVCB, T_HTTPS, T_URI, T_CAA = 64, 65, 256, 257
NAME_TYPES = (T_NS, T_CNAME, T_PTR, T_DNAME)

RCODE_NAMES = {0: "No error", 1: "Format error", 2: "Server failure", 3: "No such name", 4: "Not implemented",
               5: "Refused", 6: "Name exists", 7: "RR set exists", 8: "RR set does not exist", 9: "Not authoritative",
               10: "Name out of zone"}
TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
              35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 64: "SVCB",
              65: "HTTPS", 99: "SPF", 252: "AXFR", 255: "ANY", 256: "URI", 257: "CAA"}

F_RESPONSE, F_AUTHORITATIVE, F_TRUNCATED, F_RECDESIRED, F_RECAVAIL = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
F_Z, F_AUTHENTICATED, F_CHECKDISABLE = 0x0040, 0x0020, 0x0010

HEADER_LEN = 12
MAX_NAME_JUMPS = 64  # compression pointers followed per name before we call it a loop
MAX_RECORDS = 4096  # records parsed per message (a hostile count must not cost minutes)
RETRANSMISSION_WINDOW_NS = 5 * 10**9  # a repeated query later than this is a new transaction (Wireshark's default)

_UNPACK_HEADER = struct.Struct(">6H").unpack_from
_UNPACK_RR = struct.Struct(">HHIH").unpack_from
_UNPACK_Q = struct.Struct(">HH").unpack_from


class Malformed(Exception):
    """Raised inside the parser only; parse_message turns it into DnsMessage.malformed."""


class Record:
    """One resource record. `data` depends on the type (see _rdata); raw bytes for types we do not decode."""

    __slots__ = ("name", "type", "cls", "ttl", "rdlength", "data", "section")

    def __init__(self, name: str, rtype: int, cls: int, ttl: int, rdlength: int, data, section: str):
        self.name, self.type, self.cls, self.ttl, self.rdlength, self.data, self.section = \
            name, rtype, cls, ttl, rdlength, data, section

    def __repr__(self) -> str:
        return f"Record({self.section} {self.name} {TYPE_NAMES.get(self.type, self.type)} {self.data!r})"


class Opt:
    """EDNS(0) pseudo-record fields (RFC 6891)."""

    __slots__ = ("udp_payload_size", "ext_rcode", "version", "do", "options")

    def __init__(self, udp_payload_size: int, ttl: int, options: list[tuple[int, object]]):
        self.udp_payload_size = udp_payload_size
        self.ext_rcode = ttl >> 24
        self.version = (ttl >> 16) & 0xFF
        self.do = bool(ttl & 0x8000)
        self.options = options  # (code, decoded value or bytes); ECS (8) -> (family, source, scope, address)


class DnsMessage:
    """A parsed DNS message. Counts are the header's; lists hold what could be read."""

    __slots__ = ("id", "flags", "qdcount", "ancount", "nscount", "arcount", "questions", "records", "opt",
                 "malformed", "length", "transport", "protocol",
                 # filled by DnsTracker
                 "time_ns", "response_to", "response_in", "retransmission", "retransmit_of", "unsolicited")

    def __init__(self) -> None:
        self.id = self.flags = self.qdcount = self.ancount = self.nscount = self.arcount = 0
        self.questions: list[tuple[str, int, int]] = []
        self.records: list[Record] = []
        self.opt: Opt | None = None
        self.malformed: str | None = None
        self.length = 0
        self.transport = "udp"
        self.protocol = "dns"  # dns, mdns or llmnr (same message format, different Wireshark protocol)
        self.time_ns: int | None = None
        self.response_to: int | None = None
        self.response_in: int | None = None
        self.retransmission = False
        self.retransmit_of: int | None = None
        self.unsolicited = False

    @property
    def response(self) -> bool:
        return bool(self.flags & F_RESPONSE)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        """The full rcode: the header's 4 bits extended by EDNS (RFC 6891 §6.1.3)."""
        base = self.flags & 0xF
        return base | (self.opt.ext_rcode << 4) if self.opt is not None else base

    @property
    def qname(self) -> str | None:
        return self.questions[0][0] if self.questions else None

    @property
    def qtype(self) -> int | None:
        return self.questions[0][1] if self.questions else None

    def answers(self, rtype: int | None = None) -> list[Record]:
        return [r for r in self.records if r.section == "an" and (rtype is None or r.type == rtype)]

    def answer_addresses(self) -> list[str]:
        """The addresses of the answer section's A/AAAA records, in order (the addresses a lookup resolved to)."""
        return [r.data for r in self.records
                if r.section == "an" and r.type in (T_A, T_AAAA) and isinstance(r.data, str)]

    def __repr__(self) -> str:
        kind = "response" if self.response else "query"
        return f"DnsMessage({kind} id=0x{self.id:04x} q={self.questions} rcode={self.flags & 0xF} " \
               f"records={len(self.records)}{' MALFORMED ' + self.malformed if self.malformed else ''})"


def _label_text(raw: bytes) -> str:
    """A label as Wireshark shows it: printable ASCII as is, other bytes as \\xNN escapes."""
    if raw.isascii() and raw.isalnum():
        return raw.decode()
    out = []
    for b in raw:
        out.append(chr(b) if 0x20 < b < 0x7F else f"\\x{b:02x}")
    return "".join(out)


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """(name, offset after the name where it was written). Raises Malformed on a cut name or a pointer loop."""
    labels = []
    end = -1
    jumps = 0
    n_msg = len(msg)
    while True:
        if pos >= n_msg:
            raise Malformed("name runs past the end of the message")
        length = msg[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n_msg:
                raise Malformed("compression pointer cut")
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_NAME_JUMPS:
                raise Malformed("compression pointer loop")
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if kind:
            raise Malformed(f"unsupported label type 0x{kind:02x}")
        if pos + 1 + length > n_msg:
            raise Malformed("label runs past the end of the message")
        labels.append(_label_text(msg[pos + 1: pos + 1 + length]))
        pos += 1 + length
        if len(labels) > 128:
            raise Malformed("name too long")
    return (".".join(labels) if labels else "<Root>"), end


def _ipv6_text(raw: bytes) -> str:
    return ipaddress.IPv6Address(raw).compressed


def _character_strings(rdata: bytes) -> list[str]:
    out = []
    i = 0
    while i < len(rdata):
        n = rdata[i]
        if i + 1 + n > len(rdata):
            raise Malformed("character-string runs past its record")
        out.append(rdata[i + 1: i + 1 + n].decode("utf-8", "replace"))
        i += 1 + n
    return out


def _svcb(msg: bytes, pos: int, end: int):
    if pos + 2 > end:
        raise Malformed("SVCB record too short")
    priority = int.from_bytes(msg[pos: pos + 2], "big")
    target, after = read_name(msg, pos + 2)
    params = []
    i = after
    while i + 4 <= end:
        key, n = struct.unpack_from(">HH", msg, i)
        if i + 4 + n > end:
            raise Malformed("SVCB parameter runs past its record")
        params.append((key, msg[i + 4: i + 4 + n]))
        i += 4 + n
    return priority, target, params


def _edns_options(rdata: bytes) -> list[tuple[int, object]]:
    options = []
    i = 0
    while i + 4 <= len(rdata):
        code, n = struct.unpack_from(">HH", rdata, i)
        value = rdata[i + 4: i + 4 + n]
        if len(value) < n:
            raise Malformed("EDNS option runs past its record")
        if code == 8 and n >= 4:  # client subnet (RFC 7871)
            family, source, scope = struct.unpack_from(">HBB", value)
            addr = value[4:]
            if family == 1:
                addr = ".".join(str(b) for b in addr.ljust(4, b"\0")[:4])
            elif family == 2:
                addr = _ipv6_text(addr.ljust(16, b"\0")[:16])
            options.append((code, (family, source, scope, addr)))
        else:
            options.append((code, value))
        i += 4 + n
    if i != len(rdata):
        raise Malformed("EDNS options cut")
    return options


def _rdata(msg: bytes, rtype: int, pos: int, rdlength: int):
    end = pos + rdlength
    if rtype == T_A:
        if rdlength != 4:
            raise Malformed("A record length is not 4")
        b = msg[pos: end]
        return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"
    if rtype == T_AAAA:
        if rdlength != 16:
            raise Malformed("AAAA record length is not 16")
        return _ipv6_text(msg[pos: end])
    if rtype in NAME_TYPES:
        return read_name(msg, pos)[0]
    if rtype == T_MX:
        if rdlength < 3:
            raise Malformed("MX record too short")
        return int.from_bytes(msg[pos: pos + 2], "big"), read_name(msg, pos + 2)[0]
    if rtype == T_TXT or rtype == 99:
        return _character_strings(msg[pos: end])
    if rtype == T_SOA:
        mname, p = read_name(msg, pos)
        rname, p = read_name(msg, p)
        if p + 20 > end:
            raise Malformed("SOA record too short")
        return (mname, rname) + struct.unpack_from(">5I", msg, p)
    if rtype == T_SRV:
        if rdlength < 7:
            raise Malformed("SRV record too short")
        prio, weight, port = struct.unpack_from(">HHH", msg, pos)
        return prio, weight, port, read_name(msg, pos + 6)[0]
    if rtype in (T_SVCB, T_HTTPS):
        return _svcb(msg, pos, end)
    if rtype == T_URI:
        if rdlength < 4:
            raise Malformed("URI record too short")
        prio, weight = struct.unpack_from(">HH", msg, pos)
        return prio, weight, msg[pos + 4: end].decode("utf-8", "replace")
    if rtype == T_CAA:
        if rdlength < 2 or 2 + msg[pos + 1] > rdlength:
            raise Malformed("CAA record too short")
        n = msg[pos + 1]
        return msg[pos], msg[pos + 2: pos + 2 + n].decode("ascii", "replace"), msg[pos + 2 + n: end]
    return bytes(msg[pos: end])


def parse_message(data: bytes, transport: str = "udp") -> DnsMessage:
    """Parse one DNS message (without the TCP length prefix). Never raises."""
    m = DnsMessage()
    m.length = len(data)
    m.transport = transport
    try:
        _parse_into(m, data)
    except Malformed as exc:
        m.malformed = str(exc)
    except (ValueError, IndexError, struct.error) as exc:  # defensive: a decoding corner we did not foresee
        m.malformed = f"undecodable: {exc}"
    return m


def _parse_into(m: DnsMessage, msg: bytes) -> None:
    if len(msg) < HEADER_LEN:
        raise Malformed("shorter than the 12-byte header")
    m.id, m.flags, m.qdcount, m.ancount, m.nscount, m.arcount = _UNPACK_HEADER(msg)
    pos = HEADER_LEN
    n_msg = len(msg)
    for _ in range(min(m.qdcount, MAX_RECORDS)):
        name, pos = read_name(msg, pos)
        if pos + 4 > n_msg:
            raise Malformed("question cut")
        qtype, qclass = _UNPACK_Q(msg, pos)
        pos += 4
        m.questions.append((name, qtype, qclass))
    budget = MAX_RECORDS
    for section, count in (("an", m.ancount), ("ns", m.nscount), ("ar", m.arcount)):
        for _ in range(count):
            budget -= 1
            if budget < 0:
                raise Malformed("too many records")
            name, pos = read_name(msg, pos)
            if pos + 10 > n_msg:
                raise Malformed("record header cut")
            rtype, cls, ttl, rdlength = _UNPACK_RR(msg, pos)
            pos += 10
            if pos + rdlength > n_msg:
                raise Malformed("record data runs past the end of the message")
            if rtype == T_OPT:
                opt = Opt(cls, ttl, _edns_options(msg[pos: pos + rdlength]))
                if m.opt is None:
                    m.opt = opt
                m.records.append(Record(name, rtype, cls, ttl, rdlength, opt, section))
            else:
                m.records.append(Record(name, rtype, cls, ttl, rdlength, _rdata(msg, rtype, pos, rdlength), section))
            pos += rdlength


def looks_like_dns(data: bytes) -> bool:
    """Strict structural test for DNS on a port not registered for it: a plausible header, one question that
    parses to the end of the questions, counts that fit the length, no malformation."""
    if len(data) < HEADER_LEN + 5 or len(data) > 65535:
        return False
    _, flags, qd, an, ns, ar = _UNPACK_HEADER(data)
    if qd != 1 or (flags >> 11) & 0xF not in (0, 2, 4, 5) or (flags & F_Z):
        return False
    if not flags & F_RESPONSE and (an or ns or flags & 0xF):
        return False
    if (an + ns + ar) * 11 > len(data):
        return False
    m = parse_message(data)
    return m.malformed is None and bool(m.questions) and m.questions[0][2] in (1, 3, 4, 254, 255)


class DnsTracker:
    """Query/response matching inside one conversation, keyed by DNS id, as Wireshark's transaction table:
    the first response to a query gives dns.time and dns.response_to; a repeated query with the same id before any
    answer is a retransmission; a second response to an answered query is a retransmitted response."""

    __slots__ = ("_open", "retransmissions")

    def __init__(self) -> None:
        self._open: dict[int, list] = {}  # id -> [query frame, query ts, response frame or None, qname]
        self.retransmissions = 0

    def track(self, m: DnsMessage, frame: int, ts: int) -> None:
        if m.malformed and len(m.questions) == 0 and m.length < HEADER_LEN:
            return
        entry = self._open.get(m.id)
        if not m.response:
            if entry is not None and entry[2] is None and entry[3] == m.qname \
                    and 0 <= ts - entry[1] < RETRANSMISSION_WINDOW_NS:
                m.retransmission = True  # the answer is timed from the first copy
                m.retransmit_of = entry[0]
                self.retransmissions += 1
                return
            self._open[m.id] = [frame, ts, None, m.qname]
            return
        if entry is None:
            m.unsolicited = True
            return
        if entry[2] is None:
            entry[2] = frame
            m.time_ns = ts - entry[1]
            m.response_to = entry[0]
        else:
            m.retransmission = True
            m.retransmit_of = entry[2]

    def unanswered(self) -> list[tuple[int, int, str | None]]:
        """(query frame, id, qname) of every query never answered."""
        return [(e[0], ident, e[3]) for ident, e in self._open.items() if e[2] is None]
