"""DNS over UDP in a kernel: message header, question fingerprint and query/response matching for whole chunks.

UDP DNS is most of the packets an application layer sees in a busy capture (one query and one answer per lookup),
so it never goes through Python packet by packet. The kernel reads each message's header, hashes the question name
(wire bytes), and matches responses to queries in an open-addressing table keyed by (conversation, DNS id), exactly
as `dns.DnsTracker` does for DNS over TCP: the first response to a query gives dns.time and dns.response_to; the same
question again within 5 s before any answer is a retransmission (the answer is timed from the first copy); a second
response is a retransmitted response; a response without a query is unsolicited. Full messages (names, records) are
decoded in Python only when a field asks for them (`DnsBatch.messages`).
"""

from __future__ import annotations

import numpy as np

from diagnose.jit import kernel
from diagnose.protocols.dns import RETRANSMISSION_WINDOW_NS, parse_message
from diagnose.packet import ST_REASSEMBLED
from diagnose.protocols.select import _payload_span

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


@kernel
def _slot(table, key):
    mask = table.shape[0] - 1
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    s = np.int64((h >> np.uint64(17)) & np.uint64(mask))
    while table[s].key != -1 and table[s].key != key:
        s = (s + 1) & mask
    return s


@kernel
def _question_hash(buf, start, n):
    """FNV-1a of the first question's name as written (labels up to the root or a compression pointer)."""
    h = np.uint64(0xCBF29CE484222325)
    p = start + 12
    end = start + n
    while p < end:
        b = buf[p]
        h = (h ^ np.uint64(b)) * np.uint64(0x100000001B3)
        if b == 0 or b >= 0xC0:
            break
        p += 1
    return h


@kernel
def scan(buf, table, rows, n_rows, states, tx, window_ns, out_time, out_resp_to, out_retrans_of, out_bits, out_slot):
    """Match the DNS rows of a chunk; returns the number of transactions added to `tx`."""
    added = 0
    for j in range(n_rows):
        i = rows[j]
        r = table[i]
        c = r.conv
        out_time[j] = -1
        out_resp_to[j] = -1
        out_retrans_of[j] = -1
        out_slot[j] = -1
        bits = 0
        start, n = _payload_span(buf, r)
        if r.payload_len < 12 or n < 12:
            out_bits[j] = B_SHORT
            continue
        ident = (np.int64(buf[start]) << 8) | buf[start + 1]
        flags = (np.int64(buf[start + 2]) << 8) | buf[start + 3]
        st = states[c]
        key = (np.int64(c) << 16) | ident
        s = _slot(tx, key)
        out_slot[j] = s
        if flags & 0x0200:
            bits |= B_TRUNCATED
            if flags & 0x8000:
                st.dns_truncated += 1
        if (flags & 0x8000) == 0:  # query
            st.dns_queries += 1
            qh = _question_hash(buf, start, n)
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
    return added


@kernel
def _rehash(old, new):
    for s in range(old.shape[0]):
        if old[s].key != -1:
            t = _slot(new, old[s].key)
            new[t] = old[s]


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
