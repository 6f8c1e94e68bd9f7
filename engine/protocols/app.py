"""The application layer: classify flows by content, reassemble what needs it, parse DNS, HTTP/1.x, HTTP/2 and TLS.

Call `update(buf, table, conversations)` once per decoded chunk after the flow table, then `finish()` at the end:

    app = AppLayer(ca_file=...)
    for chunk in run.chunks():
        out = app.update(chunk.buf, chunk.table, run.flows.conversations)   # AppChunk: per-frame results
        ...                                                                 # use `out` before the next chunk
    summary = app.finish()            # AppSummary: .flows {conv: AppFlow}, .dns {conv: DnsFacts} (UDP DNS)

A numba kernel (protocols/select.py) consumes the packets no parser needs (in-order bytes inside a body of known
length, pure ACKs, flows that are not ours) and UDP DNS goes through its own kernel (protocols/dnsscan.py); only the
rest reaches Python. A parsed PDU belongs to the packet that completed it, as Wireshark attributes reassembled PDUs;
`AppChunk.items[kind]` holds (row, object) pairs per chunk (kind: dns, http, http2, tls) and the field registry
reads per-frame values from them (protocols/fields.py). Like the chunk's buffer and table, an AppChunk is valid until
the next update (UDP DNS messages are decoded from the chunk buffer when first asked for).
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from diagnose.flows import F_FIN, F_RST, PROTO_TCP, PROTO_UDP
from diagnose.packet import ST_REASSEMBLED
from diagnose.protocols import classify as cls
from diagnose.protocols.dns import HEADER_LEN, DnsMessage, DnsTracker, Malformed, parse_message, read_name
from diagnose.protocols.http import BODY, HttpConnection, HttpHalf, HttpMessage, TransactionStore, _parse_head, \
    parse_datagram
from diagnose.protocols.http2 import PREFACE, Http2Connection
from diagnose.protocols.dnsscan import NAME_NONE, P_FIELDS, WINDOW_NS, DnsBatch, DnsMatcher
from diagnose.protocols.dnsscan import scan as dns_scan
from diagnose.protocols.select import (DONE, EVENT, IGNORE, K_DONE, K_FIELDS, K_HEAD, K_HEAD_DONE, K_REQUEST,
                                       MAX_ATTEMPTS, TRACK, UNSEEN, new_states, resume, scan_chunk)
from diagnose.protocols.tls import TlsConnection
from diagnose.protocols.x509 import ChainReport, check_chain
from diagnose.reassembly import Direction, PendingBudget, StreamConsumer
from diagnose.tablegrowth import grown

def _hosts(conv) -> tuple:
    """The two addresses of a conversation, in a canonical order (ports left out)."""
    a = (int(conv["a_hi"]), int(conv["a_lo"]))
    b = (int(conv["b_hi"]), int(conv["b_lo"]))
    return (a, b) if a <= b else (b, a)


def _first_qname(data: bytes) -> str | None:
    """parse_message(data).qname without decoding the rest of the message: the first question's name, None when
    there is none or it does not parse."""
    if len(data) < HEADER_LEN or not (data[4] or data[5]):
        return None
    try:
        name, pos = read_name(data, HEADER_LEN)
    except (Malformed, ValueError, IndexError):
        return None
    return name if pos + 4 <= len(data) else None


KINDS = ("dns", "http", "http2", "tls", "tls_start")  # tls_start: a frame began a TLS record it did not finish
_BOTH_FRESH = (True, True)
_NO_DIRECTIONS = (None, None)
_BOTH_CLOSED = (True, True)
_NOT_CLOSED = (False, False)
DNS_NAME_BYTES = 1 << 16  # a chunk's names of error responses and open queries (more are read in Python)
MAX_ROUNDS_BEFORE_PYTHON = 64  # a conversation with more events per chunk than this is walked in Python


@dataclass
class AppChunk:
    """Per-frame results of one chunk: (row, PDU object) pairs per protocol, rows in the order they completed.

    Valid until the next `AppLayer.update` (UDP DNS messages are decoded from the chunk buffer on first use)."""

    table: np.ndarray
    emitted: dict[str, list] = field(default_factory=lambda: {k: [] for k in KINDS})
    dns_batches: list = field(default_factory=list)
    malformed_rows: list[tuple[int, str, str]] = field(default_factory=list)  # (row, protocol, reason)

    @property
    def items(self) -> dict[str, list]:
        if self.dns_batches:
            decoded = [pair for batch in self.dns_batches for pair in batch.messages()]
            self.dns_batches = []
            for row, msg in decoded:
                if msg.malformed:
                    self.malformed_rows.append((row, "dns", msg.malformed))
            self.emitted["dns"] = sorted(self.emitted["dns"] + decoded, key=lambda pair: pair[0])
        return self.emitted

    @property
    def malformed(self) -> list[tuple[int, str, str]]:
        self.items  # decode pending DNS so its malformed messages are listed
        return self.malformed_rows

    def rows(self, kind: str) -> list:
        """(row, object) pairs of one kind; only "dns" decodes the chunk's UDP DNS messages."""
        if kind == "dns":
            return self.items["dns"]
        return self.emitted.get(kind, [])

    def by_frame(self, kind: str) -> dict[int, list]:
        """{frame number: [objects]} (tests and reports; not for the hot path)."""
        frames = self.table["frame"]
        out: dict[int, list] = {}
        for row, obj in self.items.get(kind, []):
            out.setdefault(int(frames[row]), []).append(obj)
        return out


class DnsTcpHalf(StreamConsumer):
    """DNS over TCP: 2-byte length-prefixed messages (RFC 1035 4.2.2, RFC 7766)."""

    __slots__ = ("flow", "buf", "skippable", "lost")

    def __init__(self, flow: "AppFlow"):
        self.flow = flow
        self.buf = bytearray()
        self.skippable = 0
        self.lost = 0

    def feed(self, data, n: int, row: int) -> None:
        if data is None:
            self.gap(n, row)
            return
        buf = self.buf
        buf += data
        while len(buf) >= 2:
            length = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + length:
                return
            msg = parse_message(bytes(buf[2: 2 + length]), transport="tcp")
            del buf[: 2 + length]
            self.flow.dns_message(msg, row)

    def gap(self, n: int, row: int) -> None:
        self.buf.clear()  # the framing is lost; the next segment may start a message again
        self.lost += n


class AppFlow:
    """What the application layer knows about one conversation."""

    __slots__ = ("conv", "protocol", "layer", "dirs", "http", "http2", "tls", "dns", "dns_messages", "rst_frame",
                 "closed", "fresh", "chain")

    def __init__(self, conv: int, protocol: str, layer: "AppLayer"):
        self.conv = conv
        self.protocol = protocol  # dns, mdns, llmnr, http, http2, tls
        self.layer = layer
        self.dirs: list[Direction | None] | tuple = [None, None]
        self.http: HttpConnection | None = None
        self.http2: Http2Connection | None = None
        self.tls: TlsConnection | None = None
        self.dns: DnsTracker | None = None
        self.dns_messages = 0
        self.rst_frame: int | None = None
        self.closed = [False, False]
        self.fresh = _BOTH_FRESH  # no payload of this direction was passed over before tracking began (a list
        # once one was: most flows share the tuple)
        self.chain: ChainReport | None = None

    # ---- consumers -------------------------------------------------------------------------------------------------
    def consumer(self, d: int, first: bytes) -> StreamConsumer:
        p = self.protocol
        if p == cls.HTTP:
            if self.http is None:
                self.http = HttpConnection(self.layer, on_upgrade=self._upgrade)
            return HttpHalf(self.http)
        if p == cls.HTTP2:
            if self.http2 is None:
                client = d if first[:len(PREFACE)] == PREFACE[:len(first)] else 1 - d
                self.http2 = Http2Connection(self.layer, client_direction=client)
            return self.http2.half(d, expect=PREFACE if d == self.http2.client_direction else None)
        if p == cls.TLS:
            if self.tls is None:
                self.tls = TlsConnection(self.layer, self.layer.decryptor_factory, self._tls_app)
                convs = self.layer._convs
                if convs is not None and self.conv < len(convs) and convs["client"][self.conv] >= 0:
                    self.tls.session.client_direction = int(convs["client"][self.conv])  # who sent the SYN
            return self.tls.halves[d]
        return DnsTcpHalf(self)

    def _upgrade(self, protocol: str, half, row: int, block: bytes):
        """HTTP/1.1 -> HTTP/2 (h2c, or a preface read by the HTTP/1 parser); other upgrades stay opaque."""
        if protocol not in ("h2c", "h2-preface"):
            return None
        d = next((k for k, dd in enumerate(self.dirs) if dd is not None and dd.consumer is half), None)
        if d is None and self.tls is not None:  # HTTP/1.1 inside decrypted TLS
            d = next((k for k, h in enumerate(self.tls.halves) if h.app_consumer is half), None)
        if d is None:
            return None
        if self.http2 is None:
            self.http2 = Http2Connection(self.layer, client_direction=(1 - d) if protocol == "h2c" else d)
        return self.http2.half(d, expect=b"SM\r\n\r\n" if protocol == "h2-preface" else None)

    def _tls_app(self, conn: TlsConnection, d: int, first: bytes) -> StreamConsumer | None:
        """Plaintext of a decrypted TLS session: HTTP/2 when ALPN says h2 or the preface shows, else HTTP/1.x."""
        alpn = conn.session.alpn
        client = conn.session.client_direction if conn.session.client_direction is not None else 0
        if alpn == "h2" or first[:len(PREFACE)] == PREFACE[:len(first)]:
            if self.http2 is None:
                self.http2 = Http2Connection(self.layer, client_direction=client)
            return self.http2.half(d, expect=PREFACE if d == client else None)
        if self.http is None:
            self.http = HttpConnection(self.layer, on_upgrade=self._upgrade)
        return HttpHalf(self.http)

    def dns_message(self, msg: DnsMessage, row: int) -> None:
        layer = self.layer
        msg.protocol = self.protocol if self.protocol in (cls.MDNS, cls.LLMNR) else cls.DNS
        if self.dns is None:
            self.dns = DnsTracker()
        self.dns.track(msg, layer.frame(row), layer.ts(row))
        self.dns_messages += 1
        layer.emit("dns", row, msg)

    # ---- facts -----------------------------------------------------------------------------------------------------
    def facts(self) -> dict:
        """Named per-flow facts for rules and reports."""
        out: dict = {"protocol": self.protocol}
        if self.http is not None:
            txs = self.http.transactions
            out["http.transactions"] = len(txs) + self.http.dropped_transactions
            out["http.status_codes"] = [t.code for t in txs if t.has_response]
            out["http.truncated"] = [
                {"frame": t.first_frame, "received": t.body_bytes, "content_length": t.content_length}
                for t in txs if t.truncated]
            ttfb = [t.ttfb_ns for t in txs if t.ttfb_ns is not None]
            out["http.ttfb_max"] = max(ttfb) / 1e9 if ttfb else None
        if self.tls is not None:
            s = self.tls.session
            out.update({
                "tls.version": s.version, "tls.cipher": s.cipher, "tls.sni": s.sni, "tls.alpn": s.alpn,
                "tls.offered_versions": (s.client_hello.supported_versions or [s.client_hello.version])
                if s.client_hello is not None else None,
                "tls.history": s.history_text,
                "tls.alerts": [(a.frame, a.direction, a.level, a.description, a.encrypted) for a in s.alerts],
                "tls.certificates": [c.subject_text for c in s.certificates],
                "tls.ja3": s.client_hello.ja3 if s.client_hello is not None else None,
                "tls.ja4": s.client_hello.ja4 if s.client_hello is not None else None,
            })
            if self.chain is not None:
                out["tls.chain"] = self.chain
        if self.dns is not None:
            out["dns.messages"] = self.dns_messages
            out["dns.unanswered"] = self.dns.unanswered()
        if self.http2 is not None:
            out["http2.streams"] = len(self.http2.streams)
            out["http2.goaway"] = list(self.http2.goaway)
        return out


class AppLayer:
    """Application-layer analysis of one capture (see the module docstring)."""

    def __init__(self, *, decryptor_factory=None, ca_file: str | None = None, use_system_store: bool = True,
                 max_pending: int = 2 << 20, max_pending_total: int = 64 << 20, kernel_http: bool = True):
        self.decryptor_factory = decryptor_factory
        self.ca_file = ca_file
        self.use_system_store = use_system_store
        self.kernel_http = kernel_http  # the selection kernel follows the usual HTTP/1.x exchange (tests turn it off)
        self.max_pending = max_pending  # out-of-order bytes held per direction
        self.pending_budget = PendingBudget(max_pending_total)  # ... and by all directions together
        self.flows: dict[int, AppFlow] = {}
        self.http_store = TransactionStore()  # the HTTP/1.x transactions of every connection, as columns
        self._states = new_states()
        self._views()
        self._out: AppChunk | None = None
        self._frames = None
        self._ts = None
        self._last_ts = 0
        self._cur_row = self._cur_frame = self._cur_ts = -1  # the event being handled (saves array lookups)
        self._convs = None
        self._live: set[int] = set()  # TCP conversations with parser state (retired once closed both ways)
        self._last_frame = 0
        self.events = 0  # packets that reached Python (for profiling)
        self._stale: dict[int, set] = {}  # conversation -> directions with payload passed over before tracking
        self._probes: dict[tuple[int, int], tuple[int, bytearray]] = {}  # first bytes too short to classify
        self._used_probe: tuple[int, bytes, int] | None = None
        self._dns = DnsMatcher()
        self._dns_open: dict[int, tuple[int, int, str | None]] = {}  # slot -> (conversation, frame, name)
        self._dns_names = np.empty(DNS_NAME_BYTES, np.uint8)  # the DNS kernel writes the names the facts keep here
        self.dns_errors: list[tuple[int, int, str | None, int]] = []  # (conversation, frame, name, rcode)
        self.max_kept = 10000  # problem records kept for the facts (bounded memory)
        self._capture_end_ts: int | None = None
        self._summary: AppSummary | None = None
        self._kbody: dict[int, HttpMessage] = {}  # kernel-followed conversations: the response whose body is under way
        self._recs = np.empty((0, K_FIELDS), np.int64)  # the kernel's message records (AppLayer._kernel_messages)
        self._status_lines: dict[bytes, tuple] = {}  # status line -> (version, phrase, code) as _parse_head reads it
        self._nrec = np.zeros(1, np.int64)

    def _views(self) -> None:
        """Field views of the kernel state (indexing a view is much cheaper than naming the field each time)."""
        st = self._states
        self._v_mode, self._v_attempts, self._v_passed = st["mode"], st["attempts"], st["passed"]
        self._v_used, self._v_ack, self._v_ack_ok = st["used"], st["ack"], st["ack_ok"]
        self._v_done = st["done_end"]  # 1 + row, 0 = none
        self._v_nxt, self._v_nxt_ok, self._v_skip, self._v_watch = st["nxt"], st["nxt_ok"], st["skip"], \
            st["watch_close"]
        self._v_kh, self._v_kreq, self._v_kphase = st["kh"], st["kreq_dir"], st["kphase"]

    # ---- the emitter protocol consumers use ----------------------------------------------------------------------
    def frame(self, row) -> int | None:
        if row == self._cur_row:
            return self._cur_frame
        if row is None or row < 0:
            return None
        return int(self._frames[row])

    def ts(self, row) -> int:
        if row == self._cur_row:
            return self._cur_ts
        if row is None or row < 0:
            return self._last_ts
        return int(self._ts[row])

    def emit(self, kind: str, row, obj) -> None:
        if row is None or row < 0 or self._out is None:
            return  # completed at the end of the capture: a flow fact, no packet shows it
        self._out.emitted[kind].append((row, obj))
        bad = getattr(obj, "malformed", None)
        if bad:
            self._out.malformed_rows.append((row, kind, bad))

    # ---- per chunk -------------------------------------------------------------------------------------------------
    def update(self, buf: np.ndarray, table: np.ndarray, conversations: np.ndarray) -> AppChunk:
        # The cyclic garbage collector would rescan every flow's objects again and again while this chunk's
        # small objects are made; none of them form cycles that outlive the chunk, so it waits until the end.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._update(buf, table, conversations)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _update(self, buf: np.ndarray, table: np.ndarray, conversations: np.ndarray) -> AppChunk:
        out = self._out = AppChunk(table)
        n = table.shape[0]
        if n == 0:
            return out
        if len(conversations) > len(self._states):
            self._states = grown(self._states, len(conversations))
            self._views()
        self._base_seq = conversations["base_seq"]
        self._base_set = conversations["base_set"]
        self._frames = table["frame"]
        self._ts = table["ts"]
        self._buf = buf
        self._table = table
        self._convs = conversations
        states = self._states
        next_row = np.empty(n, np.int32)
        events = np.empty(n, np.int32)
        dns_rows = np.empty(n, np.int32)
        done = np.empty(n, np.int32)
        recs, nrec = self._recs, self._nrec  # messages the kernel read (one per row at most; a few per kernel call,
        if len(recs) < n:  # so the buffer is kept and only its first pages are ever written)
            recs = self._recs = np.empty((n, K_FIELDS), np.int64)
        k, m, q = scan_chunk(buf, table, states, next_row, events, dns_rows, done, MAX_ATTEMPTS, conversations, recs,
                             nrec, self.kernel_http)
        if nrec[0]:
            self._kernel_messages()
        if m:
            self._dns_batch(out, dns_rows[:m].copy())
        self._event_view = table[self._EVENT_COLUMNS]  # a view of the fields _events reads
        rounds = 0
        while k:
            rows = np.sort(events[:k])
            self.events += k
            tcp = self._events(rows)
            rounds += 1
            if not tcp:
                break
            tcp_rows = np.array(tcp, rows.dtype)
            if rounds > MAX_ROUNDS_BEFORE_PYTHON:
                q = self._walk_in_python(tcp_rows, next_row, done, q)
                break
            k, q = resume(buf, table, states, next_row, tcp_rows, len(tcp_rows), events, done, q, MAX_ATTEMPTS,
                          conversations, recs, nrec, self.kernel_http)
            if nrec[0]:
                self._kernel_messages()
        if q:
            self._settle_rows(done[:q])
        self._retire_finished(conversations)
        self._cur_row = -1
        self._last_ts = int(self._ts[-1])
        self._last_frame = int(self._frames[-1])
        self._out = None
        return out

    def _dns_batch(self, out: AppChunk, rows: np.ndarray) -> None:
        """Match this chunk's UDP DNS messages in the DNS kernel, which also reads the names the flow facts keep."""
        n = len(rows)
        matcher = self._dns
        matcher.reserve(n)
        time, resp_to, retrans_of, bits, slots, protocols = np.empty((6, n), np.int64)
        picked = np.empty((n, P_FIELDS), np.int64)
        added, k, used = dns_scan(self._buf, self._table, rows, n, self._states, matcher.tx, WINDOW_NS, time, resp_to,
                                  retrans_of, bits, slots, protocols, picked, self._dns_names)
        matcher.count += added
        out.dns_batches.append(DnsBatch(self._buf, self._table, rows, time, resp_to, retrans_of, bits, protocols))
        # names for the flow facts: errors (rcode != 0) and queries still open at the end of this chunk
        if k:
            text = self._dns_names[:used].tobytes()
            for conv, frame, is_response, code, slot, start, end, name_off, name_len in picked[:k].tolist():
                if name_len >= 0:
                    qname = text[name_off: name_off + name_len].decode("ascii")
                elif name_len == NAME_NONE:
                    qname = None
                else:
                    qname = _first_qname(self._buf[start:end].tobytes())
                if is_response:
                    if len(self.dns_errors) < self.max_kept:
                        self.dns_errors.append((conv, frame, qname, code))
                else:
                    self._dns_open[slot] = (conv, frame, qname)

    def _retire_finished(self, conversations: np.ndarray) -> None:
        """Connections closed in both directions (FIN each way, or a RST) keep their facts and drop their parsers
        and buffers: memory follows the open connections, not all of them."""
        live = self._live
        if not live:
            return
        ids = np.fromiter(live, np.int64, len(live))
        ids = ids[ids < len(conversations)]
        flags = conversations["flags"][ids]
        a, b = flags[:, 0], flags[:, 1]
        ended_ids = ids[((a & b & F_FIN) | ((a | b) & F_RST)) != 0]  # FIN each way, or a RST (one bit each)
        if not len(ended_ids):
            return
        ended_list = ended_ids.tolist()
        live.difference_update(ended_list)
        flows, kbody = self.flows, self._kbody
        for c, followed in zip(ended_list, self._v_kh[ended_ids].tolist()):
            flow = flows[c]
            if followed:
                if c not in kbody:  # the kernel followed it to the end: no parser state to close
                    flow.closed = _BOTH_CLOSED
                    continue
                self._materialize(flow, c)
            for k, d in enumerate(flow.dirs):
                if d is not None and not d.closed:
                    used = int(self._v_used[c, k])
                    if used:
                        self._v_used[c, k] = 0
                        d.skip_ahead(used)
                    d.close(None, "connection closed")
            flow.dirs = _NO_DIRECTIONS  # shared: a retired flow gets no more events (the kernel ignores it)
            flow.closed = _BOTH_CLOSED
            if flow.http is not None:
                flow.http.on_upgrade = None  # a bound method of the flow (~60 bytes each): nothing upgrades now
        self._v_kh[ended_ids] = 0
        self._v_mode[ended_ids] = IGNORE

    def _tcp_fallback(self, dns: "DnsFactsTable") -> None:
        """Mark truncated UDP answers that were followed by DNS over TCP between the same two hosts."""
        convs = self._convs
        truncated = dns.convs[dns.truncated != 0].tolist()
        if convs is None or not truncated:
            return
        tcp_pairs = {}
        for c, flow in self.flows.items():
            if flow.protocol == cls.DNS and (flow.dirs[0] is not None or flow.dirs[1] is not None) \
                    and c < len(convs):
                tcp_pairs.setdefault(_hosts(convs[c]), []).append(int(convs[c]["first_ts"]))
        for c in truncated:
            if c < len(convs):
                last = int(convs[c]["last_ts"])
                if any(t >= int(convs[c]["first_ts"]) and t - last < 60 * 10**9
                       for t in tcp_pairs.get(_hosts(convs[c]), ())):
                    dns.tcp_fallback.add(c)

    def _walk_in_python(self, starts: np.ndarray, next_row: np.ndarray, done: np.ndarray, q: int) -> int:
        """Finish conversations with very many events in this chunk packet by packet (no more kernel rounds)."""
        from diagnose.protocols.select import _step
        buf, table, states = self._buf, self._table, self._states
        convs, recs, nrec = self._convs, self._recs, self._nrec
        states["blocked"][table["conv"][starts]] = 0  # walked here, not by resume (which would unblock them)
        for start in starts.tolist():
            r = int(next_row[start])
            while r >= 0:
                what = _step(buf, table, r, states, MAX_ATTEMPTS, convs, recs, nrec, self.kernel_http)
                if nrec[0]:
                    self._kernel_messages()
                if what == EVENT:
                    self.events += 1
                    self._events(np.array([r]))
                elif what == DONE:
                    done[q] = r
                    q += 1
                r = int(next_row[r])
        return q

    def _settle_rows(self, rows: np.ndarray) -> None:
        """Bodies the kernel skipped to their end in this chunk: let their parsers complete them at those rows."""
        table = self._table
        for c, d, frame, ts, row in zip(table["conv"][rows].tolist(), table["dir"][rows].tolist(),
                                        self._frames[rows].tolist(), self._ts[rows].tolist(), rows.tolist()):
            if self._v_done.item(c, d) == row + 1:
                flow = self.flows.get(c)
                if flow is not None:
                    self._cur_row, self._cur_frame, self._cur_ts = row, frame, ts
                    self._settle(flow, c, d)
        self._cur_row = -1

    def _settle(self, flow: AppFlow, c: int, d: int) -> None:
        """Give direction d the bytes the kernel consumed, ending at its done row; refresh the kernel's view."""
        row = self._v_done.item(c, d) - 1
        self._v_done[c, d] = 0
        direction = flow.dirs[d]
        used = self._v_used.item(c, d)
        self._v_used[c, d] = 0
        if direction is None:
            return
        if used:
            direction.skip_ahead(used, row)
        self._write_back(flow, c, d)

    def _kernel_messages(self) -> None:
        """Turn the message records the kernel wrote (select.K_REQUEST ...) into the HttpMessages, transactions and
        flows the Python parser would have made at the same rows, then clear them. A followed connection has one
        request and at most one response, so HttpConnection.completed comes down to a few assignments here (tests
        compare both ways on every capture: tests/test_http_kernel_path.py); the exchanges that end here go to the
        transaction store together, in the order they ended."""
        nrec = self._nrec
        recs = self._recs[: int(nrec[0])].tolist()
        nrec[0] = 0
        buf, flows, kbody, live = memoryview(self._buf), self.flows, self._kbody, self._live
        emitted = self._out.emitted["http"]
        status_lines = self._status_lines
        ended, values, methods, uris = [], [], [], []  # the exchanges that end here: their connections, store values
        for row, kind, c, start, length, code, content_length, frame, ts in recs:
            if kind == K_REQUEST:
                flow = flows[c] = AppFlow(c, cls.HTTP, self)
                flow.dirs, flow.closed = _NO_DIRECTIONS, _NOT_CLOSED  # made when Python takes over (_materialize)
                conn = flow.http = HttpConnection(self)  # no upgrade callback either
                live.add(c)
                msg = HttpMessage(True)
                _parse_head(buf[start: start + length].tobytes(), msg)
                msg.first_frame = msg.frame = frame
                msg.first_ts = msg.ts = ts
                msg.complete = True
                conn.requests = msg.number = 1
                conn.waiting = [msg]
                emitted.append((row, msg))
                continue
            if kind == K_DONE:
                msg = kbody.pop(c)
            else:
                msg = HttpMessage(False)
                block = buf[start: start + length].tobytes()
                line = block[: block.find(b"\n")]
                known = status_lines.get(line)
                if known is None:
                    _parse_head(block, msg)  # a status line the kernel checked: nothing malformed
                    if len(status_lines) < 1024:
                        status_lines[line] = msg.version, msg.phrase, msg.code
                else:  # what _parse_head makes of the same status line (the usual few: "HTTP/1.1 200 OK", ...)
                    msg.raw = block
                    msg.version, msg.phrase, msg.code = known
                msg.first_frame, msg.first_ts = frame, ts
                msg.content_length = content_length
                if kind == K_HEAD:
                    kbody[c] = msg  # body_bytes is set when the body ends (or Python takes over)
                    continue
            conn = flows[c].http
            body = msg.body_bytes = msg.content_length
            msg.complete = True
            msg.frame, msg.ts = frame, ts
            conn.responses = msg.number = 1
            msg.request = request = conn.waiting[0]
            conn.waiting = ()
            msg.time_ns = ts - request.ts
            ended.append(conn)
            values.append((request.frame, request.ts, msg.code, msg.first_frame, msg.first_ts, frame, ts, body, body))
            methods.append(request.method)
            uris.append(request.uri)
            emitted.append((row, msg))
        if ended:
            first = self.http_store.extend_exchanges(values, methods, uris)
            for k, conn in enumerate(ended):
                conn.rows = first + k

    def _materialize(self, flow: AppFlow, c: int) -> None:
        """A conversation the kernel followed needs Python from now on: build the directions and parser halves the
        Python path would have at this point (the kernel took only packets that path would not have seen), and
        track it like any other flow."""
        self._v_kh[c] = 0
        conn = flow.http
        conn.on_upgrade = flow._upgrade
        flow.closed = [False, False]
        client = self._v_kreq.item(c)
        phase = self._v_kphase.item(c)
        dirs = [None, None]
        for d in (client, 1 - client) if phase else (client,):
            base = (self._base_seq.item(c, d) + 1) & 0xFFFFFFFF
            direction = dirs[d] = Direction(base, HttpHalf(conn), max_pending=self.max_pending,
                                            budget=self.pending_budget)
            direction.started = True
            direction.next_off = direction.delivered = (self._v_nxt.item(c, d) - base) & 0xFFFFFFFF
        if phase == 1:  # a response body under way
            half = dirs[1 - client].consumer
            msg = half.msg = self._kbody.pop(c)
            half.state = BODY
            half.remaining = half.skippable = self._v_skip.item(c, 1 - client)
            msg.body_bytes = msg.content_length - half.remaining
        flow.dirs = dirs
        self._write_back(flow, c, -1)

    _EVENT_COLUMNS = ["conv", "dir", "ip_proto", "payload_off", "payload_len", "data", "caplen", "status",
                      "tcp_seq", "tcp_flags", "sport", "dport", "frame", "ts"]

    def _events(self, rows: np.ndarray) -> list[int]:
        """Hand the event rows (in row order) to their flows; returns the TCP ones (the kernel resumes them).
        A row's columns come as one tuple (ndarray.item of the view: a round has two or three rows, and a gather of
        the rows with tolist cost ~4 us more whatever their number; per-column numpy calls cost more still)."""
        buf = self._buf
        buf_len = len(buf)
        tcp_rows = []
        row_list = rows.tolist()
        for i, (c, d, proto, poff, plen, data0, caplen, status, seq, flags, sport, dport, frame, ts) in zip(
                row_list, map(self._event_view.item, row_list)):
            self._cur_row, self._cur_frame, self._cur_ts = i, frame, ts
            if proto == PROTO_TCP:
                tcp_rows.append(i)
            if poff < 0 or plen <= 0:
                data, plen = b"", 0
            else:
                start = data0 + poff
                avail = (buf_len - start) if status & ST_REASSEMBLED else caplen - poff
                n = plen if plen < avail else max(avail, 0)
                data = buf[start: start + n].tobytes()
            flow = self.flows.get(c)
            if flow is None:
                flow = self._classify(i, c, d, proto, seq, data, plen, sport, dport)
                if flow is None:
                    continue
                probe = self._used_probe
                if probe is not None:
                    seq, data, plen = probe
            elif proto == PROTO_TCP and self._v_kh.item(c):
                self._materialize(flow, c)
            if proto == PROTO_UDP:
                if plen > 0:
                    if flow.protocol == cls.SSDP:
                        msg = parse_datagram(data, self, i)
                        if msg is not None:
                            self.emit("http", i, msg)
                    elif flow.protocol in (cls.DNS, cls.MDNS, cls.LLMNR):
                        flow.dns_message(parse_message(data, "udp"), i)
                continue
            self._tcp_event(flow, c, i, d, seq, flags, data, plen)
        return tcp_rows

    def _classify(self, i: int, c: int, d: int, proto: int, seq: int, data: bytes, plen: int, sport: int,
                  dport: int) -> AppFlow | None:
        """Decide what an unclassified conversation speaks from this payload; the new AppFlow or None."""
        self._used_probe = None
        if self._v_mode[c] != UNSEEN:
            return None
        if proto == PROTO_TCP:
            probe = self._probes.pop((c, d), None)
            if probe is not None and seq == (probe[0] + len(probe[1])) & 0xFFFFFFFF:
                seq, data, plen = probe[0], bytes(probe[1]) + data, len(probe[1]) + plen
                self._used_probe = (seq, data, plen)
        kind = cls.classify_tcp(data, sport, dport) if proto == PROTO_TCP else cls.classify_udp(data, sport, dport)
        if kind is None:
            self._used_probe = None
            if plen > 0:
                attempts = int(self._v_attempts[c]) + 1
                self._v_attempts[c] = attempts
                if proto == PROTO_TCP:
                    if len(data) < 64 and plen == len(data) and cls.maybe_start(data):
                        self._probes[(c, d)] = (seq, bytearray(data))  # too short to tell: wait for more
                    else:
                        self._stale.setdefault(c, set()).add(d)
                if attempts >= MAX_ATTEMPTS:
                    self._v_mode[c] = IGNORE
                    self._probes.pop((c, 0), None)
                    self._probes.pop((c, 1), None)
            return None
        flow = self.flows[c] = AppFlow(c, kind, self)
        passed = int(self._v_passed[c])
        if passed or self._stale:
            fresh = [True, True]
            for k in self._stale.pop(c, ()):
                fresh[k] = False
            for k in (0, 1):
                if passed & (1 << k):
                    fresh[k] = False
            if not (fresh[0] and fresh[1]):
                flow.fresh = fresh
        self._v_mode[c] = TRACK
        return flow

    def _tcp_event(self, flow: AppFlow, c: int, i: int, d: int, seq: int, flags: int, data: bytes,
                   plen: int) -> None:
        done = self._v_done
        if done.item(c, 0) or done.item(c, 1):
            saved = self._cur_row, self._cur_frame, self._cur_ts
            for k in (0, 1):
                if done.item(c, k):
                    self._cur_row = -1
                    self._settle(flow, c, k)
            self._cur_row, self._cur_frame, self._cur_ts = saved
        direction = flow.dirs[d]
        if direction is None and plen > 0 and not flow.closed[d]:
            base = seq
            if flow.fresh[d] and self._base_set.item(c, d):
                base = (self._base_seq.item(c, d) + 1) & 0xFFFFFFFF
                if ((seq - base) & 0xFFFFFFFF) > (1 << 20):  # not near the stream start: start where we are
                    base = seq
            direction = flow.dirs[d] = Direction(base, flow.consumer(d, data), max_pending=self.max_pending,
                                                 budget=self.pending_budget)
            self._live.add(c)
        changed = d
        if direction is not None:
            used = self._v_used.item(c, d)
            if used:
                self._v_used[c, d] = 0
                direction.skip_ahead(used)
            if direction.pending and self._v_ack_ok.item(c, 1 - d):
                direction.acked(self._v_ack.item(c, 1 - d), i)
            if plen > 0:
                direction.segment(seq, data, plen, i)
            if flags & 0x01 and not direction.pending:
                direction.close(i, "fin")
                flow.closed[d] = True
        if flags & 0x04:
            flow.rst_frame = self._cur_frame
            for k in (0, 1):
                dk = flow.dirs[k]
                if dk is not None and not dk.closed:
                    dk.close(i, "rst")
                flow.closed[k] = True
            changed = -1
        self._write_back(flow, c, changed)

    def _write_back(self, flow: AppFlow, c: int, changed: int) -> None:
        """Tell the kernel what direction `changed` (-1: both) expects next and how much it may skip."""
        watch = 0
        k = 0
        for dk in flow.dirs:
            if dk is not None:
                skip = dk.consumer.skippable
                if k == changed or changed < 0:
                    self._v_nxt[c, k] = (dk.base + dk.next_off) & 0xFFFFFFFF
                    if dk.closed:
                        self._v_nxt_ok[c, k] = 0
                        self._v_skip[c, k] = 0
                    else:
                        self._v_nxt_ok[c, k] = 1
                        self._v_skip[c, k] = 0 if dk.pending else skip
                if skip > (1 << 40) and not dk.closed:
                    watch = 1
            k += 1
        self._v_watch[c] = watch
        closed = flow.closed
        if closed[0] and closed[1]:
            self._v_mode[c] = IGNORE

    # ---- the end ---------------------------------------------------------------------------------------------------
    def finish(self) -> "AppSummary":
        """Close every direction (holes become gaps, cut messages become truncated), judge certificate chains,
        collect the DNS facts of the DNS kernel. The layer is done then: it drops its kernel tables (the rules run
        after it, at the process's peak of memory), and a second call returns the same summary."""
        if self._summary is not None:
            return self._summary
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._summary = self._finish()
            self._drop_kernel_state()
            return self._summary
        finally:
            if gc_was_enabled:
                gc.enable()

    def _finish(self) -> "AppSummary":
        self._out = None
        for c in list(self._kbody):  # responses the kernel was reading: closed below like the others
            self._materialize(self.flows[c], c)
        for c, flow in self.flows.items():
            for k, d in enumerate(flow.dirs):
                if d is not None and not d.closed:
                    used = int(self._v_used[c, k])
                    if used:
                        self._v_used[c, k] = 0
                        d.skip_ahead(used)
                    d.close(None, "end of capture")
            if flow.tls is not None and flow.tls.session.certificates:
                s = flow.tls.session
                when_ns = s.server_hello_ts or self._last_ts
                when = dt.datetime.fromtimestamp(when_ns / 1e9, tz=dt.timezone.utc)
                flow.chain = check_chain(s.certificates, when=when, hostname=s.sni, ca_file=self.ca_file,
                                         use_system=self.use_system_store)
        states = self._states[: len(self._convs) if self._convs is not None else 0]  # not the reserved rows
        dns_convs = np.nonzero(states["app"] != 0)[0]
        picked = states[dns_convs]
        dns = DnsFactsTable(dns_convs, *(picked[name] for name in DnsFactsTable.COUNTS))
        self._tcp_fallback(dns)
        open_names: dict[tuple[int, int], str | None] = {}  # (conversation, frame) -> name of its first open slot
        for slot_conv, slot_frame, slot_name in self._dns_open.values():
            open_names.setdefault((slot_conv, slot_frame), slot_name)
        unanswered = [(conv, frame, open_names.get((conv, frame))) for conv, frame in self._dns.unanswered()]
        for conv, frame, name in unanswered:
            if conv in dns:
                dns.unanswered.setdefault(conv, []).append((frame, name))
        for conv, frame, name, rcode in self.dns_errors:
            if conv in dns:
                dns.errors_seen.setdefault(conv, []).append((frame, name, rcode))
        return AppSummary(self.flows, dns)

    def _drop_kernel_state(self) -> None:
        """Free what only the per-chunk kernels needed (~15 MB on 10^5 conversations): their per-conversation
        state, the DNS transaction table and the last chunk's arrays."""
        self._states = new_states(0)  # the reserved map is returned to the system
        self._views()
        self._dns = DnsMatcher(1)
        self._dns_open = {}
        self._dns_names = None
        self._probes = {}
        self._stale = {}
        self._live = set()
        self._kbody = {}
        self._recs = self._nrec = None
        self._event_view = self._table = self._buf = self._frames = self._ts = None
        self._base_seq = self._base_set = self._convs = None


@dataclass(slots=True)  # one per UDP DNS conversation: tens of thousands
class DnsFacts:
    """DNS over UDP of one conversation (from the DNS kernel)."""

    conv: int
    queries: int
    responses: int
    retransmissions: int
    errors: int  # responses with a non-zero rcode
    time_max_ns: int
    truncated: int = 0  # responses with the TC bit
    tcp_fallback: bool = False  # after a truncated answer, DNS over TCP between the same hosts was seen
    unanswered: list[tuple[int, str | None]] = field(default_factory=list)  # (query frame, name)
    errors_seen: list[tuple[int, str | None, int]] = field(default_factory=list)  # (response frame, name, rcode)


class DnsFactsTable(Mapping):
    """The DnsFacts of every UDP DNS conversation as columns (tens of thousands of conversations: one object each
    cost ~300 bytes); a mapping conv -> DnsFacts made on demand. `convs` is sorted; the lists of the few
    conversations with unanswered queries or error responses are kept by conversation."""

    COUNTS = ("dns_queries", "dns_responses", "dns_retransmissions", "dns_errors", "dns_time_max", "dns_truncated")

    def __init__(self, convs, queries, responses, retransmissions, errors, time_max_ns, truncated):
        self.convs = np.array(convs, np.int64)
        self.queries = np.array(queries, np.int32)
        self.responses = np.array(responses, np.int32)
        self.retransmissions = np.array(retransmissions, np.int32)
        self.errors = np.array(errors, np.int32)
        self.time_max_ns = np.array(time_max_ns, np.int64)
        self.truncated = np.array(truncated, np.int32)
        self.tcp_fallback: set[int] = set()
        self.unanswered: dict[int, list[tuple[int, str | None]]] = {}
        self.errors_seen: dict[int, list[tuple[int, str | None, int]]] = {}

    def _index(self, conv) -> int:
        i = int(np.searchsorted(self.convs, conv))
        return i if i < len(self.convs) and self.convs[i] == conv else -1

    def __contains__(self, conv) -> bool:
        return isinstance(conv, (int, np.integer)) and self._index(conv) >= 0

    def __getitem__(self, conv) -> DnsFacts:
        i = self._index(conv) if isinstance(conv, (int, np.integer)) else -1
        if i < 0:
            raise KeyError(conv)
        c = int(conv)
        return DnsFacts(c, int(self.queries[i]), int(self.responses[i]), int(self.retransmissions[i]),
                        int(self.errors[i]), int(self.time_max_ns[i]), int(self.truncated[i]), c in self.tcp_fallback,
                        self.unanswered.get(c, []), self.errors_seen.get(c, []))

    def __iter__(self):
        return iter(self.convs.tolist())

    def __len__(self) -> int:
        return len(self.convs)


@dataclass
class AppSummary:
    """What `AppLayer.finish()` knows per conversation: AppFlow objects (HTTP, TLS, HTTP/2, DNS over TCP and DNS
    found by structure) and DnsFacts (DNS over UDP on its ports, a DnsFactsTable)."""

    flows: dict[int, AppFlow]
    dns: DnsFactsTable
