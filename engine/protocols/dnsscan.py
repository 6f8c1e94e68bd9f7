"""DNS over UDP in a kernel: message header, question fingerprint and query/response matching for whole chunks.

UDP DNS is most of the packets an application layer sees in a busy capture (one query and one answer per lookup),
so it never goes through Python packet by packet. The kernel reads each message's header, hashes the question name
(wire bytes), and matches responses to queries in an open-addressing table keyed by (conversation, DNS id), exactly
as `dns.DnsTracker` does for DNS over TCP: the first response to a query gives dns.time and dns.response_to; the same
question again within 5 s before any answer is a retransmission (the answer is timed from the first copy); a second
response is a retransmitted response; a response without a query is unsolicited. Full messages (names, records) are
decoded in Python only when a field asks for them (`DnsBatch.messages`). The latency rules need only the addresses
each lookup resolved to: a second kernel reads those and the question name (`DnsBatch.address_answers`), and leaves
to Python only the messages whose reading it could not vouch for.
"""

from __future__ import annotations

import numpy as np

from diagnose.jit import inline, kernel
from diagnose.protocols.dns import (MAX_NAME_JUMPS, MAX_RECORDS, RETRANSMISSION_WINDOW_NS, T_A, T_AAAA, T_CAA,
                                    T_HTTPS, T_MX, T_OPT, T_SOA, T_SRV, T_SVCB, T_TXT, T_URI, _ipv6_text,
                                    parse_message)
from diagnose.packet import ST_REASSEMBLED
from diagnose.protocols.select import _payload_span, payload_span

B_RESPONSE, B_RETRANSMISSION, B_UNSOLICITED, B_SHORT, B_TRUNCATED = 1, 2, 4, 8, 16
EMPTY = np.int64(-1)

TX_DTYPE = np.dtype([
    ("key", np.int64),  # conversation << 16 | id, -1 = empty slot
    ("qframe", np.int64),
    ("qts", np.int64),
    ("qhash", np.uint64),
    ("rframe", np.int64),  # -1 while unanswered
], align=True)


def new_table(size: int) -> np.ndarray:
    t = np.zeros(size, TX_DTYPE)
    t["key"] = -1
    t["rframe"] = -1
    return t


@inline
def _home(key, mask):
    """A key's first slot in a table of mask + 1 slots (then the next ones, in order)."""
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((h >> np.uint64(17)) & np.uint64(mask))


@kernel
def _slot(table, key):
    mask = table.shape[0] - 1
    s = _home(key, mask)
    while table[s].key != -1 and table[s].key != key:
        s = (s + 1) & mask
    return s


# scan's picked messages, one row each: what AppLayer keeps of them for the flow facts
P_CONV, P_FRAME, P_RESPONSE, P_RCODE, P_SLOT, P_START, P_END, P_NAME_OFF, P_NAME_LEN = range(9)
P_FIELDS = 9
NAME_NONE, NAME_IN_PYTHON = -1, -2  # P_NAME_LEN when the first question has no name / was not read here


@kernel
def scan(buf, table, rows, n_rows, states, tx, window_ns, out_time, out_resp_to, out_retrans_of, out_bits, out_slot,
         out_protocol, picked, names):
    """Match the DNS rows of a chunk, then pick the messages whose first question's name the flow facts keep: error
    responses and the queries still unanswered once the whole chunk is matched. Returns (transactions added to
    `tx`, messages picked into `picked`, bytes of `names` used).

    The per-row work is written out here rather than in helpers given the arrays: such a call takes and drops a
    reference on every array argument, which cost more than matching the row. A picked message's name is its text
    as dns.read_name shows it (names[off: off + length]), NAME_NONE where app._first_qname finds none, and
    NAME_IN_PYTHON when it does not fit in `names`."""
    added = 0
    buf_len = buf.shape[0]
    mask = tx.shape[0] - 1
    for j in range(n_rows):
        r = table[rows[j]]
        c = r.conv
        out_time[j] = -1
        out_resp_to[j] = -1
        out_retrans_of[j] = -1
        out_slot[j] = -1
        bits = 0
        start, n = payload_span(r, buf_len)
        if r.payload_len < 12 or n < 12:
            out_bits[j] = B_SHORT
            continue
        ident = (np.int64(buf[start]) << 8) | buf[start + 1]
        flags = (np.int64(buf[start + 2]) << 8) | buf[start + 3]
        st = states[c]
        key = (np.int64(c) << 16) | ident
        s = _home(key, mask)
        while tx[s].key != -1 and tx[s].key != key:
            s = (s + 1) & mask
        out_slot[j] = s
        if flags & 0x0200:
            bits |= B_TRUNCATED
            if flags & 0x8000:
                st.dns_truncated += 1
        if (flags & 0x8000) == 0:  # query
            st.dns_queries += 1
            # FNV-1a of the first question's name as written (labels up to the root or a compression pointer)
            qh = np.uint64(0xCBF29CE484222325)
            p = start + 12
            while p < start + n:
                b = buf[p]
                qh = (qh ^ np.uint64(b)) * np.uint64(0x100000001B3)
                if b == 0 or b >= 0xC0:
                    break
                p += 1
            e = tx[s]
            if e.key == key and e.rframe == -1 and e.qhash == qh and 0 <= r.ts - e.qts < window_ns:
                bits |= B_RETRANSMISSION
                out_retrans_of[j] = e.qframe
                st.dns_retransmissions += 1
            else:
                if e.key == -1:
                    added += 1
                e.key = key
                e.qframe = r.frame
                e.qts = r.ts
                e.qhash = qh
                e.rframe = -1
        else:
            bits |= B_RESPONSE
            st.dns_responses += 1
            if (flags & 0xF) != 0:
                st.dns_errors += 1
            e = tx[s]
            if e.key != key:
                bits |= B_UNSOLICITED
                out_slot[j] = -1
            elif e.rframe == -1:
                e.rframe = r.frame
                t = r.ts - e.qts
                out_time[j] = t
                out_resp_to[j] = e.qframe
                if t > st.dns_time_max:
                    st.dns_time_max = t
            else:
                bits |= B_RETRANSMISSION
                out_retrans_of[j] = e.rframe
        out_bits[j] = bits
    k = 0
    used = 0
    for j in range(n_rows):
        r = table[rows[j]]
        out_protocol[j] = np.int64(states[r.conv].app) - 1  # 0 dns, 1 mdns, 2 llmnr
        bits = out_bits[j]
        if (bits & B_SHORT) != 0:
            continue
        start, n = payload_span(r, buf_len)
        code = buf[start + 3] & 0xF
        if (bits & B_RESPONSE) != 0:
            if code == 0:
                continue
        elif tx[out_slot[j]].rframe != -1:
            continue
        picked[k, P_CONV] = r.conv
        picked[k, P_FRAME] = r.frame
        picked[k, P_RESPONSE] = 1 if (bits & B_RESPONSE) != 0 else 0
        picked[k, P_RCODE] = code
        picked[k, P_SLOT] = out_slot[j]
        picked[k, P_START] = start
        picked[k, P_END] = start + n
        picked[k, P_NAME_OFF] = used
        length = NAME_NONE
        if buf[start + 4] != 0 or buf[start + 5] != 0:  # a question
            end, copied = _name_end(buf, start, n, 12, True, names, used)
            if end >= 0 and end + 4 <= n:
                length = copied if copied >= 0 else NAME_IN_PYTHON
        picked[k, P_NAME_LEN] = length
        if length > 0:
            used += length
        k += 1
    return added, k, used


@kernel
def _rehash(old, new):
    for s in range(old.shape[0]):
        if old[s].key != -1:
            t = _slot(new, old[s].key)
            new[t] = old[s]


# address_answers: how each row came out
A_SKIPPED, A_DONE, A_IN_PYTHON = 0, 1, 2
_NAME_RDATA = (2, 5, 12, 39)  # NS, CNAME, PTR, DNAME: rdata is a name (dns.NAME_TYPES)
_CHECKED_RDATA = (T_SOA, T_MX, T_TXT, 99, T_SRV, T_SVCB, T_HTTPS, T_URI, T_CAA, T_OPT)  # dns._rdata can reject these
NAME_BYTES_PER_ROW = 256


@inline
def _name_end(buf, start, n, pos, copy, out, o):
    """Walk the name written at message offset `pos` as dns.read_name does: (offset after it as written, or -1
    where read_name raises; bytes copied). With `copy` its text as read_name shows it goes to out[o:] (ASCII:
    labels joined by dots, bytes outside ! to ~ as \\xNN, <Root> for the root); copied is -1 when it does not fit."""
    end = -1
    jumps = 0
    labels = 0
    copied = 0
    while True:
        if pos >= n:
            return -1, copied
        length = np.int64(buf[start + pos])
        if length == 0:
            if end < 0:
                end = pos + 1
            if copy and copied == 0:
                copied = _put_root(out, o)
            return end, copied
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                return -1, copied
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_NAME_JUMPS:
                return -1, copied
            pos = ((length & 0x3F) << 8) | np.int64(buf[start + pos + 1])
            continue
        if kind != 0 or pos + 1 + length > n:
            return -1, copied
        if copy and copied >= 0:
            copied = _put_label(buf, start + pos + 1, length, labels > 0, out, o, copied)
        pos += 1 + length
        labels += 1
        if labels > 128:
            return -1, copied


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_ROOT = np.frombuffer(b"<Root>", np.uint8)


@inline
def _put_root(out, o):
    if o + 6 > out.shape[0]:
        return -1
    for k in range(6):
        out[o + k] = _ROOT[k]
    return 6


@inline
def _put_label(buf, p, length, dot, out, o, copied):
    """Append one label as dns._label_text shows it (after a dot unless it is the first); -1 when out is full."""
    q = o + copied
    if q + 1 + 4 * length > out.shape[0]:
        return -1
    if dot:
        out[q] = 46
        q += 1
    for k in range(length):
        b = buf[p + k]
        if 0x20 < b < 0x7F:
            out[q] = b
            q += 1
        else:
            out[q] = 92  # \xNN
            out[q + 1] = 120
            out[q + 2] = _HEX[b >> 4]
            out[q + 3] = _HEX[b & 15]
            q += 4
    return q - o


@inline
def _u16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@kernel
def address_answers(buf, table, rows, time, names, name_off, name_len, ans_j, ans_type, ans_hi, ans_lo, how):
    """The A/AAAA records of the answer section of every answered response (time >= 0), and the first question's
    name, read as dns.parse_message reads them; returns (answers written, name bytes written).

    Only messages that parse_message reads without fault up to the end of the answer section, and whose answer
    records have no rdata that parse_message checks beyond its length, are read here (how = A_DONE); any other
    answered response is left to Python (A_IN_PYTHON), as is one whose output does not fit. name_len is -1 when
    there is no question."""
    n_ans = 0
    used = 0
    cap = ans_j.shape[0]
    for j in range(rows.shape[0]):
        how[j] = A_SKIPPED
        name_len[j] = -1
        name_off[j] = 0
        if time[j] < 0:
            continue
        how[j] = A_IN_PYTHON
        start, n = _payload_span(buf, table[rows[j]])
        if n < 12 or (buf[start + 2] & 0x80) == 0:  # (scan times responses only)
            how[j] = A_SKIPPED
            continue
        qd = _u16(buf, start + 4)
        an = _u16(buf, start + 6)
        if an > MAX_RECORDS or n_ans + an > cap:
            continue
        pos = 12
        ok = True
        copied = -1
        for q in range(min(qd, MAX_RECORDS)):
            end, c = _name_end(buf, start, n, pos, q == 0, names, used)
            if q == 0:
                copied = c
            if end < 0 or c < 0 or end + 4 > n:
                ok = False
                break
            pos = end + 4
        if not ok:
            continue
        first = n_ans
        for _ in range(an):
            end, c = _name_end(buf, start, n, pos, False, names, 0)
            if end < 0 or end + 10 > n:
                ok = False
                break
            rtype = _u16(buf, start + end)
            rdlength = _u16(buf, start + end + 8)
            pos = end + 10
            if pos + rdlength > n:
                ok = False
                break
            p = start + pos
            if rtype == T_A or rtype == T_AAAA:
                if rdlength != (4 if rtype == T_A else 16):
                    ok = False
                    break
                hi = np.uint64(0)
                lo = np.uint64(0)
                if rtype == T_A:
                    for k in range(4):
                        lo = (lo << np.uint64(8)) | np.uint64(buf[p + k])
                else:
                    for k in range(8):
                        hi = (hi << np.uint64(8)) | np.uint64(buf[p + k])
                        lo = (lo << np.uint64(8)) | np.uint64(buf[p + 8 + k])
                ans_j[n_ans] = j
                ans_type[n_ans] = rtype
                ans_hi[n_ans] = hi
                ans_lo[n_ans] = lo
                n_ans += 1
            elif rtype in _NAME_RDATA:
                end, c = _name_end(buf, start, n, pos, False, names, 0)
                if end < 0:
                    ok = False
                    break
            elif rtype in _CHECKED_RDATA:
                ok = False
                break
            pos += rdlength
        if not ok:
            n_ans = first
            continue
        how[j] = A_DONE
        if qd > 0:
            name_off[j] = used
            name_len[j] = copied
            used += copied
    return n_ans, used


class DnsMatcher:
    """The transaction table across chunks, grown as needed (load factor at most 1/2)."""

    def __init__(self, size: int = 1 << 12):
        self.tx = new_table(size)
        self.count = 0

    def reserve(self, more: int) -> None:
        size = self.tx.shape[0]
        while (self.count + more) * 2 > size:
            size *= 2
        if size != self.tx.shape[0]:
            grown = new_table(size)
            _rehash(self.tx, grown)
            self.tx = grown

    def unanswered(self) -> list[tuple[int, int]]:
        """(conversation, query frame) of every query never answered."""
        open_ = self.tx[(self.tx["key"] != -1) & (self.tx["rframe"] == -1)]
        return [(int(k) >> 16, int(f)) for k, f in zip(open_["key"], open_["qframe"])]


class DnsBatch:
    """The UDP DNS messages of one chunk as arrays; `messages()` decodes them (valid until the next chunk)."""

    def __init__(self, buf, table, rows, time, resp_to, retrans_of, bits, protocols):
        self.buf, self.table, self.rows = buf, table, rows
        self.time, self.resp_to, self.retrans_of, self.bits, self.protocols = time, resp_to, retrans_of, bits, \
            protocols

    def __len__(self) -> int:
        return len(self.rows)

    def payload(self, j: int) -> bytes:
        r = self.table[self.rows[j]]
        start = int(r["data"]) + int(r["payload_off"])
        plen = int(r["payload_len"])
        avail = (len(self.buf) - start) if int(r["status"]) & ST_REASSEMBLED else int(r["caplen"]) - int(r["payload_off"])
        return self.buf[start: start + max(0, min(plen, avail))].tobytes()

    def address_answers(self) -> list[tuple[int, str, int, str | None]]:
        """(row, address, dns.time in ns, first question's name) of every A/AAAA answer of the answered responses
        (a row's answers in their order): what decoding `messages()` would give for them, without decoding the
        rest of each message or any other message."""
        rows = self.rows
        n = len(rows)
        if not n or not (self.time >= 0).any():
            return []
        names = np.empty(n * NAME_BYTES_PER_ROW, np.uint8)
        name_off = np.empty(n, np.int64)
        name_len = np.empty(n, np.int64)
        how = np.empty(n, np.int64)
        cap = 4 * n
        ans_j = np.empty(cap, np.int64)
        ans_type = np.empty(cap, np.int64)
        ans_hi = np.empty(cap, np.uint64)
        ans_lo = np.empty(cap, np.uint64)
        k, used = address_answers(self.buf, self.table, rows, self.time, names, name_off, name_len, ans_j, ans_type, ans_hi,
                            ans_lo, how)
        out = []
        texts = _ADDRESS_TEXTS
        rows_l, time_l = rows.tolist(), self.time.tolist()
        off_l, len_l = name_off.tolist(), name_len.tolist()
        text = names[:used].tobytes()
        last_j, name = -1, None
        for j, rtype, hi, lo in zip(ans_j[:k].tolist(), ans_type[:k].tolist(), ans_hi[:k].tolist(),
                                    ans_lo[:k].tolist()):
            if j != last_j:
                last_j = j
                name = None if len_l[j] < 0 else text[off_l[j]: off_l[j] + len_l[j]].decode("ascii")
            key = lo if rtype == T_A else (hi, lo)
            address = texts.get(key)
            if address is None:
                if len(texts) > 1 << 16:
                    texts.clear()
                address = texts[key] = _address_text(rtype, hi, lo)
            out.append((rows_l[j], address, time_l[j], name))
        for j in np.flatnonzero(how == A_IN_PYTHON).tolist():
            m = parse_message(self.payload(j), "udp")
            out.extend((rows_l[j], address, time_l[j], m.qname) for address in m.answer_addresses())
        return out

    def messages(self) -> list:
        """(row, DnsMessage) pairs with the matching results filled in."""
        out = []
        names = ("dns", "mdns", "llmnr")
        for j, row in enumerate(self.rows.tolist()):
            m = parse_message(self.payload(j), "udp")
            m.protocol = names[int(self.protocols[j])]
            bits = int(self.bits[j])
            if self.time[j] >= 0:
                m.time_ns = int(self.time[j])
                m.response_to = int(self.resp_to[j])
            if bits & B_RETRANSMISSION:
                m.retransmission = True
                m.retransmit_of = int(self.retrans_of[j])
            if bits & B_UNSOLICITED:
                m.unsolicited = True
            out.append((row, m))
        return out


WINDOW_NS = np.int64(RETRANSMISSION_WINDOW_NS)
_ADDRESS_TEXTS: dict = {}  # answered addresses repeat (the same servers): each is formatted once (a bounded memo)


def _address_text(rtype: int, hi: int, lo: int) -> str:
    """An A/AAAA answer as dns._rdata shows it."""
    if rtype == T_A:
        return f"{lo >> 24}.{(lo >> 16) & 0xFF}.{(lo >> 8) & 0xFF}.{lo & 0xFF}"
    return _ipv6_text(((hi << 64) | lo).to_bytes(16, "big"))
