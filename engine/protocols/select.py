"""The application layer's hot path: a numba kernel that decides which packets need Python at all.

Per conversation the kernel keeps a mode (not yet classified / ignored / tracked) and, per direction of a tracked TCP
flow, the next expected sequence number and how many bytes the parser does not need (a body of known length). A
packet that continues a direction in order inside such a body is consumed here (counted, never copied); every other
packet of a tracked or unclassified flow is an *event* for Python. Once a TCP conversation has an event, its later
packets wait: Python handles the event (which may change the state), then the kernel resumes that conversation from
the packet after the event. `next_row` links each packet to the next one of its conversation, so resuming costs only
the packets walked.
"""

from __future__ import annotations

import numpy as np

from diagnose.jit import kernel
from diagnose.packet import ST_ICMP_ERROR, ST_IP_FRAGMENT, ST_REASSEMBLED
from diagnose.tablegrowth import reserved, zeroed

UNSEEN, IGNORE, TRACK = 0, 1, 2
# what a tracked conversation speaks, as far as the kernel must know
APP_PYTHON, APP_DNS, APP_MDNS, APP_LLMNR = 0, 1, 2, 3  # APP_PYTHON: every payload packet is an event
# _step results
NOTHING, EVENT, DNS_ROW, DONE = 0, 1, 2, 3  # DONE: consumed the last bytes the parser had asked to skip
MAX_ATTEMPTS = 6  # payload packets looked at before a flow is declared "not ours"

CONV_STATE_DTYPE = np.dtype([
    ("mode", np.uint8),
    ("attempts", np.uint8),
    ("passed", np.uint8),  # bit d: direction d had payload before the flow was recognised
    ("watch_close", np.uint8),  # FIN/RST packets are events (a parser waits for the end of the connection)
    ("blocked", np.uint8),  # scratch: has an unhandled event in this chunk
    ("last_end", np.int32),  # scratch: 1 + last row of this conversation seen in the chunk (for next_row), 0 = none
    ("nxt", np.uint32, (2,)),  # next sequence number Python expects, per direction
    ("nxt_ok", np.uint8, (2,)),
    ("skip", np.int64, (2,)),  # bytes from nxt the parser does not need
    ("used", np.int64, (2,)),  # bytes the kernel consumed since Python last looked
    ("done_end", np.int32, (2,)),  # 1 + row whose bytes ended the skipped run (Python settles it), 0 = none
    ("ack", np.uint32, (2,)),  # highest ACK sent by each direction
    ("ack_ok", np.uint8, (2,)),
    ("app", np.uint8),
    # DNS over UDP, counted by the DNS kernel (dnsscan.py)
    ("dns_queries", np.int32),
    ("dns_responses", np.int32),
    ("dns_retransmissions", np.int32),
    ("dns_errors", np.int32),  # responses with a non-zero rcode
    ("dns_truncated", np.int32),  # responses with the TC bit (the client should retry over TCP)
    ("dns_time_max", np.int64),
], align=True)


def new_states(n: int | None = None) -> np.ndarray:
    """Zeroed states (every field's "nothing yet" is 0): n rows, or rows reserved up front and mapped only as
    conversations write them (diagnose.tablegrowth), so ~10^5 conversations need no growth (a growth holds the
    old and the new table at once) and no spare rows in memory."""
    return reserved(CONV_STATE_DTYPE) if n is None else zeroed(n, CONV_STATE_DTYPE)


@kernel
def _payload_span(buf, r):
    """(absolute start, captured length) of a row's transport payload."""
    if r.payload_off < 0 or r.payload_len <= 0:
        return 0, 0
    start = r.data + r.payload_off
    if (r.status & ST_REASSEMBLED) != 0:
        avail = buf.shape[0] - start
    else:
        avail = r.caplen - r.payload_off
    n = r.payload_len if r.payload_len < avail else avail
    if n < 0:
        n = 0
    return start, n


@kernel
def _worth_a_look(buf, r, is_tcp):
    """Cheap byte test before Python classifies: could this payload start a protocol we parse?"""
    start, n = _payload_span(buf, r)
    if n < 1:
        return False
    if r.sport == 53 or r.dport == 53 or r.sport == 5353 or r.dport == 5353 or r.sport == 5355 or r.dport == 5355:
        return True
    b0 = buf[start]
    if 20 <= b0 <= 23:  # TLS record
        return n < 2 or buf[start + 1] == 3
    if b0 >= 65 and b0 <= 90:  # an upper-case letter: HTTP method, "HTTP/", HTTP/2 preface
        return True
    if is_tcp:
        if (b0 & 0x80) != 0 and n >= 5 and buf[start + 2] == 1 and (buf[start + 3] == 0 or buf[start + 3] == 3):
            return True  # SSLv2-compatible ClientHello
        if n >= 14 and ((np.int64(b0) << 8) | buf[start + 1]) + 2 == r.payload_len:
            return True  # a length prefix as DNS over TCP has
        return False
    if n >= 17 and buf[start + 4] == 0 and buf[start + 5] == 1:  # one question: maybe DNS on another port
        return True
    return False


@kernel
def _step(buf, table, i, states, max_attempts):
    """Account row i: NOTHING, EVENT (Python must see it) or DNS_ROW (the DNS kernel takes it)."""
    r = table[i]
    c = r.conv
    if c < 0 or (r.status & (ST_ICMP_ERROR | ST_IP_FRAGMENT)) != 0 or r.l4_off < 0:
        return NOTHING
    is_tcp = r.ip_proto == 6
    if not is_tcp and r.ip_proto != 17:
        return NOTHING
    st = states[c]
    mode = st.mode
    if mode == IGNORE:
        return NOTHING
    d = r.dir
    plen = r.payload_len
    if not is_tcp:
        if plen <= 0:
            return NOTHING
        if mode == UNSEEN:
            sp = r.sport
            dp = r.dport
            if sp != 1900 and dp != 1900:  # SSDP (HTTP over UDP) is for Python
                if sp == 53 or dp == 53:
                    st.app = APP_DNS
                elif sp == 5353 or dp == 5353:
                    st.app = APP_MDNS
                elif sp == 5355 or dp == 5355:
                    st.app = APP_LLMNR
                if st.app != APP_PYTHON:
                    st.mode = TRACK
                    return DNS_ROW
            if _worth_a_look(buf, r, False):
                return EVENT
            st.attempts += 1
            if st.attempts >= max_attempts:
                st.mode = IGNORE
            return NOTHING
        return DNS_ROW if st.app != APP_PYTHON else EVENT
    flags = r.tcp_flags
    if (flags & 0x10) != 0:
        if st.ack_ok[d] == 0 or np.int32(r.tcp_ack - st.ack[d]) > 0:
            st.ack[d] = r.tcp_ack
            st.ack_ok[d] = 1
    if mode == UNSEEN:
        if plen <= 0:
            return NOTHING
        if _worth_a_look(buf, r, True):
            return EVENT
        st.passed |= np.uint8(1 << d)
        st.attempts += 1
        if st.attempts >= max_attempts:
            st.mode = IGNORE
        return NOTHING
    if (flags & 0x05) != 0 and st.watch_close != 0:
        return EVENT
    if plen <= 0:
        return NOTHING
    if st.nxt_ok[d] != 0 and r.tcp_seq == st.nxt[d] and plen <= st.skip[d] and st.done_end[d] == 0:
        st.nxt[d] = st.nxt[d] + np.uint32(plen)
        st.skip[d] -= plen
        st.used[d] += plen
        if st.skip[d] == 0:  # this packet ends the body: Python attributes the PDU to it later
            st.done_end[d] = i + 1
            return DONE
        return NOTHING
    return EVENT


@kernel
def scan_chunk(buf, table, states, next_row, events, dns_rows, done, max_attempts):
    """First pass over a chunk: link rows per conversation, consume what needs no Python, list the first events,
    every DNS row and the rows that ended a skipped body. Returns the three counts."""
    n = table.shape[0]
    k = 0
    m = 0
    q = 0
    for i in range(n):
        next_row[i] = -1
        c = table[i].conv
        if c < 0:
            continue
        st = states[c]
        if st.last_end > 0:
            next_row[st.last_end - 1] = i
        st.last_end = i + 1
        if st.blocked != 0:
            continue
        what = _step(buf, table, i, states, max_attempts)
        if what == EVENT:
            events[k] = i
            k += 1
            if table[i].ip_proto == 6:
                st.blocked = 1
        elif what == DNS_ROW:
            dns_rows[m] = i
            m += 1
        elif what == DONE:
            done[q] = i
            q += 1
    return k, m, q


@kernel
def resume(buf, table, states, next_row, starts, n_starts, events, done, n_done, max_attempts):
    """Continue each TCP conversation after the event row in `starts` until its next event. Returns the number of
    events and the new count of rows in `done`."""
    k = 0
    q = n_done
    for j in range(n_starts):
        r = next_row[starts[j]]
        c = table[starts[j]].conv
        states[c].blocked = 0
        while r >= 0:
            what = _step(buf, table, r, states, max_attempts)
            if what == EVENT:
                events[k] = r
                k += 1
                states[c].blocked = 1
                break
            if what == DONE:
                done[q] = r
                q += 1
            r = next_row[r]
    return k, q


@kernel
def end_chunk(table, states):
    """Reset the per-chunk scratch fields of every conversation in the chunk."""
    for i in range(table.shape[0]):
        c = table[i].conv
        if c >= 0:
            states[c].last_end = 0
            states[c].blocked = 0
