"""The application layer's hot path: a numba kernel that decides which packets need Python at all.

Per conversation the kernel keeps a mode (not yet classified / ignored / tracked) and, per direction of a tracked TCP
flow, the next expected sequence number and how many bytes the parser does not need (a body of known length). A
packet that continues a direction in order inside such a body is consumed here (counted, never copied); every other
packet of a tracked or unclassified flow is an *event* for Python. Once a TCP conversation has an event, its later
packets wait: Python handles the event (which may change the state), then the kernel resumes that conversation from
the packet after the event. `next_row` links each packet to the next one of its conversation, so resuming costs only
the packets walked. The usual HTTP/1.x exchange (a request, a response with a Content-Length) is followed here too,
as records of its messages (see K_REQUEST below).
"""

from __future__ import annotations

import numpy as np

from diagnose.jit import inline, kernel
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
    ("kh", np.uint8),  # 1: a plain HTTP/1.x exchange the kernel follows itself (see _take_request)
    ("kreq_dir", np.uint8),  # ... the direction that sent the request
    ("kphase", np.uint8),  # ... 0 request read, 1 response body under way, 2 response complete
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


@inline
def payload_span(r, buf_len):
    """(absolute start, captured length) of a row's transport payload in a chunk buffer of buf_len bytes (the
    buffer's length, not the buffer: per-row helpers given an array take and drop a reference on it)."""
    if r.payload_off < 0 or r.payload_len <= 0:
        return np.int64(0), np.int64(0)
    start = np.int64(r.data) + r.payload_off
    if (r.status & ST_REASSEMBLED) != 0:
        avail = buf_len - start
    else:
        avail = np.int64(r.caplen) - r.payload_off
    n = np.int64(r.payload_len) if r.payload_len < avail else avail
    if n < 0:
        n = np.int64(0)
    return start, n


@kernel
def _payload_span(buf, r):
    return payload_span(r, buf.shape[0])


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


# The usual HTTP/1.x connection (one request without a body, one response framed by Content-Length) is followed
# here without Python: the kernel reads the two message heads as the Python parser would and writes a record per
# message (row, what, conversation, head start and length, status code, Content-Length, frame, time) that Python turns
# into the same HttpMessage objects. Anything else in such a conversation (another request, a hole, a retransmission,
# payload after the response) is an event like in any tracked flow, and Python first builds the reassembly and parser
# state the kernel stands for (AppLayer._materialize): the kernel only takes packets Python would not have seen either.
K_REQUEST, K_HEAD, K_HEAD_DONE, K_DONE = 0, 1, 2, 3  # record kinds: a request; a response head (body follows);
# a response head with its whole body; the end of a response body
K_FIELDS = 9  # row, kind, conv, head start, head length, status code, Content-Length, frame, ts
_GET = np.frombuffer(b"GET ", np.uint8)
_POST = np.frombuffer(b"POST ", np.uint8)
_PUT = np.frombuffer(b"PUT ", np.uint8)
_DELETE = np.frombuffer(b"DELETE ", np.uint8)
_OPTIONS = np.frombuffer(b"OPTIONS ", np.uint8)
_PATCH = np.frombuffer(b"PATCH ", np.uint8)
_HTTP1 = np.frombuffer(b"HTTP/1.", np.uint8)
_CONTENT_LENGTH = np.frombuffer(b"\ncontent-length:", np.uint8)  # at a line start, like http._quick_header
_TRANSFER_ENCODING = np.frombuffer(b"\ntransfer-encoding:", np.uint8)  # ... it is left to Python


@kernel
def _starts(buf, s, n, pattern):
    m = pattern.shape[0]
    if n < m:
        return False
    for k in range(m):
        if buf[s + k] != pattern[k]:
            return False
    return True


@kernel
def _at_lower(buf, p, end, pattern):
    """buf[p:] starts with the lower-case pattern, ASCII letters compared without case."""
    m = pattern.shape[0]
    if p + m > end:
        return False
    for k in range(m):
        b = np.int64(buf[p + k])
        if 65 <= b <= 90:
            b += 32
        if b != pattern[k]:
            return False
    return True


@kernel
def _scan_head(buf, s, n):
    """Read the header block at buf[s:s+n] as http.py would: (its length up to the blank line, CRLF or LF; -1 if it
    does not end there), the value of its first Content-Length line (-1 without one, -2 when it is not a plain
    number: Python decides what it means), and whether a line names Transfer-Encoding."""
    end = s + n
    length = np.int64(-1)
    cl = np.int64(-1)
    te = False
    for p in range(s, end - 1):
        if buf[p] != 10:
            continue
        nb = buf[p + 1]
        if nb == 10:
            length = p + 2 - s
            break
        if nb == 13 and p + 2 < end and buf[p + 2] == 10:
            length = p + 3 - s
            break
        if cl == -1 and _at_lower(buf, p, end, _CONTENT_LENGTH):
            cl = _number(buf, p + _CONTENT_LENGTH.shape[0], end)
        elif _at_lower(buf, p, end, _TRANSFER_ENCODING):
            te = True
    return length, cl, te


@kernel
def _number(buf, q, end):
    """A header value at buf[q:] that is a plain decimal number up to its line end, else -2."""
    while q < end and (buf[q] == 32 or buf[q] == 9):
        q += 1
    value = np.int64(0)
    digits = 0
    while q < end and 48 <= buf[q] <= 57:
        value = value * 10 + (buf[q] - 48)
        digits += 1
        q += 1
    if digits == 0 or digits > 12:  # below 2**40: no close watch (AppLayer._write_back)
        return np.int64(-2)
    while q < end and (buf[q] == 32 or buf[q] == 9 or buf[q] == 13):
        q += 1
    if q >= end or buf[q] != 10:
        return np.int64(-2)
    return value


@kernel
def _record(recs, nrec, i, kind, c, s, h, code, cl, r):
    k = nrec[0]
    recs[k, 0] = i
    recs[k, 1] = kind
    recs[k, 2] = c
    recs[k, 3] = s
    recs[k, 4] = h
    recs[k, 5] = code
    recs[k, 6] = cl
    recs[k, 7] = r.frame
    recs[k, 8] = r.ts
    nrec[0] = k + 1


@kernel
def _stream_start(r, convs):
    """Start (absolute) and length of a payload that opens its direction's stream, captured whole; (-1, 0) else."""
    c = r.conv
    d = r.dir
    if (r.tcp_flags & 0x07) != 0 or r.payload_off < 0 or (r.status & ST_REASSEMBLED) != 0:
        return np.int64(-1), np.int64(0)
    n = np.int64(r.payload_len)
    cv = convs[c]
    if n <= 0 or r.caplen - r.payload_off < n or cv.base_set[d] == 0:
        return np.int64(-1), np.int64(0)
    if np.int64(r.tcp_seq) != (np.int64(cv.base_seq[d]) + 1) & 0xFFFFFFFF:
        return np.int64(-1), np.int64(0)
    return np.int64(r.data) + r.payload_off, n


@kernel
def _take_request(buf, r, i, st, convs, recs, nrec):
    """The first payload of an unclassified TCP conversation: a whole request head without a body at the start of
    its stream (a method whose response always has a body by its framing)? Then the kernel follows the exchange."""
    s, n = _stream_start(r, convs)
    if s < 0:
        return False
    if not (_starts(buf, s, n, _GET) or _starts(buf, s, n, _POST) or _starts(buf, s, n, _PUT)
            or _starts(buf, s, n, _DELETE) or _starts(buf, s, n, _OPTIONS) or _starts(buf, s, n, _PATCH)):
        return False
    length, cl, te = _scan_head(buf, s, n)
    if length != n or cl != -1 or te:
        return False
    d = r.dir
    st.mode = TRACK
    st.kh = 1
    st.kreq_dir = d
    st.kphase = 0
    st.nxt[d] = (np.int64(r.tcp_seq) + n) & 0xFFFFFFFF
    st.nxt_ok[d] = 1
    st.skip[d] = 0
    _record(recs, nrec, i, K_REQUEST, r.conv, s, n, 0, 0, r)
    return True


@kernel
def _take_response(buf, r, i, st, convs, recs, nrec):
    """The first payload of the answering direction: a status line, a head and a Content-Length (no status or
    header that changes the framing)?"""
    s, n = _stream_start(r, convs)
    if s < 0 or n < 13 or not _starts(buf, s, n, _HTTP1):
        return False
    if not (48 <= buf[s + 7] <= 57) or buf[s + 8] != 32:
        return False
    code = 0
    for k in range(9, 12):
        b = buf[s + k]
        if b < 48 or b > 57:
            return False
        code = code * 10 + (b - 48)
    after = buf[s + 12]
    if not (after == 32 or after == 10 or (after == 13 and n > 13 and buf[s + 13] == 10)):
        return False
    if code < 200 or code > 599 or code == 204 or code == 304:
        return False
    h, cl, te = _scan_head(buf, s, n)
    if h < 0 or te or cl < 0 or n - h > cl:
        return False
    d = r.dir
    st.nxt[d] = (np.int64(r.tcp_seq) + n) & 0xFFFFFFFF
    st.nxt_ok[d] = 1
    st.skip[d] = cl - (n - h)
    if st.skip[d] == 0:
        st.kphase = 2
        _record(recs, nrec, i, K_HEAD_DONE, r.conv, s, h, code, cl, r)
    else:
        st.kphase = 1
        _record(recs, nrec, i, K_HEAD, r.conv, s, h, code, cl, r)
    return True


SLOW, BODY_DONE = 4, 5  # _fast_step: the rest needs the chunk's bytes (_slow_step); a followed body ended


@inline
def _fast_step(r, st, i):
    """Account row i (r, its conversation's state st) as far as the row and the state tell: NOTHING, EVENT (Python
    must see it), DNS_ROW (the DNS kernel takes it), DONE, or SLOW when the payload must be read (_slow_step goes
    on from there) or BODY_DONE when a body the kernel followed ended at this row (its record is written by the
    caller). Only records and numbers are passed: a per-row function given arrays takes and drops a reference on
    each (numba), which cost more than the rest of the row."""
    if (r.status & (ST_ICMP_ERROR | ST_IP_FRAGMENT)) != 0 or r.l4_off < 0:
        return NOTHING
    is_tcp = r.ip_proto == 6
    if not is_tcp and r.ip_proto != 17:
        return NOTHING
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
            return SLOW
        return DNS_ROW if st.app != APP_PYTHON else EVENT
    flags = r.tcp_flags
    if (flags & 0x10) != 0:
        if st.ack_ok[d] == 0 or np.int32(r.tcp_ack - st.ack[d]) > 0:
            st.ack[d] = r.tcp_ack
            st.ack_ok[d] = 1
    if mode == UNSEEN:
        if plen <= 0:
            return NOTHING
        return SLOW
    if (flags & 0x05) != 0 and st.watch_close != 0:
        return EVENT
    if plen <= 0:
        return NOTHING
    if st.kh != 0:  # a payload packet of a conversation the kernel follows: EVENT exactly where a Python-tracked
        # flow in the same state would have one
        if d != st.kreq_dir:
            if st.kphase == 1 and r.tcp_seq == st.nxt[d] and plen <= st.skip[d]:
                st.nxt[d] = st.nxt[d] + np.uint32(plen)
                st.skip[d] -= plen
                if st.skip[d] == 0:
                    st.kphase = 2
                    return BODY_DONE
                return NOTHING
            if st.kphase == 0:
                return SLOW
        return EVENT
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
def _slow_step(buf, r, i, st, max_attempts, convs, recs, nrec, follow_http):
    """The rest of _fast_step's SLOW rows: a payload of an unclassified flow (the start of an HTTP exchange the
    kernel follows, worth a look by Python, or one more attempt), or the first answer of a followed exchange."""
    if r.ip_proto != 6:
        if _worth_a_look(buf, r, False):
            return EVENT
        st.attempts += 1
        if st.attempts >= max_attempts:
            st.mode = IGNORE
        return NOTHING
    if st.mode == UNSEEN:
        if follow_http and st.attempts == 0 and st.passed == 0 and _take_request(buf, r, i, st, convs, recs, nrec):
            return NOTHING
        if _worth_a_look(buf, r, True):
            return EVENT
        st.passed |= np.uint8(1 << r.dir)
        st.attempts += 1
        if st.attempts >= max_attempts:
            st.mode = IGNORE
        return NOTHING
    if _take_response(buf, r, i, st, convs, recs, nrec):
        return NOTHING
    return EVENT


@kernel
def _step(buf, table, i, states, max_attempts, convs, recs, nrec, follow_http):
    """Account row i as scan_chunk and resume do (AppLayer._walk_in_python)."""
    r = table[i]
    if r.conv < 0:
        return NOTHING
    st = states[r.conv]
    what = _fast_step(r, st, i)
    if what == SLOW:
        return _slow_step(buf, r, i, st, max_attempts, convs, recs, nrec, follow_http)
    if what == BODY_DONE:
        _record(recs, nrec, i, K_DONE, r.conv, 0, 0, 0, 0, r)
        return NOTHING
    return what


@kernel
def scan_chunk(buf, table, states, next_row, events, dns_rows, done, max_attempts, convs, recs, nrec, follow_http):
    """First pass over a chunk: link rows per conversation, consume what needs no Python, list the first events,
    every DNS row and the rows that ended a skipped body. Returns the three counts.

    A conversation's last_end (1 + its last row so far) is never reset: it is from this chunk exactly when it
    points before the row at hand and at a row of the same conversation (had the conversation a row before this
    one in the chunk, last_end was set there)."""
    n = table.shape[0]
    k = 0
    m = 0
    q = 0
    for i in range(n):
        next_row[i] = -1
        r = table[i]
        c = r.conv
        if c < 0:
            continue
        st = states[c]
        last = st.last_end - 1
        if 0 <= last < i and table[last].conv == c:
            next_row[last] = i
        st.last_end = i + 1
        if st.blocked != 0:
            continue
        what = _fast_step(r, st, i)
        if what == NOTHING:
            continue
        if what == SLOW:
            what = _slow_step(buf, r, i, st, max_attempts, convs, recs, nrec, follow_http)
        elif what == BODY_DONE:
            _record(recs, nrec, i, K_DONE, c, 0, 0, 0, 0, r)
            continue
        if what == EVENT:
            events[k] = i
            k += 1
            if r.ip_proto == 6:
                st.blocked = 1
        elif what == DNS_ROW:
            dns_rows[m] = i
            m += 1
        elif what == DONE:
            done[q] = i
            q += 1
    return k, m, q


@kernel
def resume(buf, table, states, next_row, starts, n_starts, events, done, n_done, max_attempts, convs, recs, nrec,
           follow_http):
    """Continue each TCP conversation after the event row in `starts` until its next event. Returns the number of
    events and the new count of rows in `done`. Every conversation blocked in this chunk is in `starts` (its
    event was the last Python was handed), so none is blocked afterwards."""
    k = 0
    q = n_done
    for j in range(n_starts):
        i = next_row[starts[j]]
        c = table[starts[j]].conv
        st = states[c]
        st.blocked = 0
        while i >= 0:
            r = table[i]
            what = _fast_step(r, st, i)
            if what == SLOW:
                what = _slow_step(buf, r, i, st, max_attempts, convs, recs, nrec, follow_http)
            elif what == BODY_DONE:
                _record(recs, nrec, i, K_DONE, c, 0, 0, 0, 0, r)
                what = NOTHING
            if what == EVENT:
                events[k] = i
                k += 1
                st.blocked = 1
                break
            if what == DONE:
                done[q] = i
                q += 1
            i = next_row[i]
    return k, q
