"""The application layer: classify flows by content, reassemble what needs it, parse DNS, HTTP/1.x, HTTP/2 and TLS.

Call `update(buf, table, conversations)` once per decoded chunk after the flow table, then `finish()` at the end:

    app = AppLayer(ca_file=...)
    for chunk in run.chunks():
        out = app.update(chunk.buf, chunk.table, run.flows.conversations)   # AppChunk: per-frame results
        ...                                                                 # use `out` before the next chunk
    summary = app.finish()                                                  # per-flow facts (AppFlow objects)

A numba kernel (protocols/select.py) consumes the packets no parser needs (in-order bytes inside a body of known
length, pure ACKs, flows that are not ours); only the rest reaches Python. A parsed PDU belongs to the packet that
completed it, as Wireshark attributes reassembled PDUs; `AppChunk.items[kind]` holds (row, object) pairs per chunk
(kind: dns, http, http2, tls) and the field registry reads per-frame values from them (protocols/fields.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from diagnose.flows import PROTO_TCP, PROTO_UDP
from diagnose.packet import ST_REASSEMBLED
from diagnose.protocols import classify as cls
from diagnose.protocols.dns import DnsMessage, DnsTracker, parse_message
from diagnose.protocols.http import HttpConnection, HttpHalf, parse_datagram
from diagnose.protocols.http2 import PREFACE, Http2Connection
from diagnose.protocols.select import IGNORE, MAX_ATTEMPTS, TRACK, UNSEEN, new_states, resume, scan_chunk, end_chunk
from diagnose.protocols.tls import TlsConnection
from diagnose.protocols.x509 import ChainReport, check_chain
from diagnose.reassembly import Direction, StreamConsumer

KINDS = ("dns", "http", "http2", "tls", "tls_start")  # tls_start: a frame began a TLS record it did not finish
MAX_ROUNDS_BEFORE_PYTHON = 64  # a conversation with more events per chunk than this is walked in Python


@dataclass
class AppChunk:
    """Per-frame results of one chunk: (row, PDU object) pairs per protocol, rows in the order they completed."""

    table: np.ndarray
    items: dict[str, list] = field(default_factory=lambda: {k: [] for k in KINDS})
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (row, protocol, reason)

    def rows(self, kind: str) -> list:
        return self.items.get(kind, [])

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
        self.dirs: list[Direction | None] = [None, None]
        self.http: HttpConnection | None = None
        self.http2: Http2Connection | None = None
        self.tls: TlsConnection | None = None
        self.dns: DnsTracker | None = None
        self.dns_messages = 0
        self.rst_frame: int | None = None
        self.closed = [False, False]
        self.fresh = [True, True]  # no payload of this direction was passed over before tracking began
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
            return self.tls.halves[d]
        return DnsTcpHalf(self)

    def _upgrade(self, protocol: str, half, row: int, block: bytes):
        """HTTP/1.1 -> HTTP/2 (h2c, or a preface read by the HTTP/1 parser); other upgrades stay opaque."""
        if protocol not in ("h2c", "h2-preface"):
            return None
        d = next(k for k, dd in enumerate(self.dirs) if dd is not None and dd.consumer is half)
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
            out["http.status_codes"] = [t.response.code for t in txs if t.response is not None]
            out["http.truncated"] = [
                {"frame": t.response.first_frame, "received": t.response.body_bytes,
                 "content_length": t.response.content_length} for t in txs if t.truncated]
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
                 max_pending: int = 2 << 20):
        self.decryptor_factory = decryptor_factory
        self.ca_file = ca_file
        self.use_system_store = use_system_store
        self.max_pending = max_pending
        self.flows: dict[int, AppFlow] = {}
        self._states = new_states(1024)
        self._out: AppChunk | None = None
        self._frames = None
        self._ts = None
        self._last_ts = 0
        self._last_frame = 0
        self.events = 0  # packets that reached Python (for profiling)
        self._stale: dict[int, set] = {}  # conversation -> directions with payload passed over before tracking
        self._probes: dict[tuple[int, int], tuple[int, bytearray]] = {}  # first bytes too short to classify
        self._capture_end_ts: int | None = None

    # ---- the emitter protocol consumers use ----------------------------------------------------------------------
    def frame(self, row) -> int | None:
        if row is None or row < 0:
            return None
        return int(self._frames[row])

    def ts(self, row) -> int:
        if row is None or row < 0:
            return self._last_ts
        return int(self._ts[row])

    def emit(self, kind: str, row, obj) -> None:
        if row is None or row < 0 or self._out is None:
            return  # completed at the end of the capture: a flow fact, no packet shows it
        self._out.items[kind].append((row, obj))
        bad = getattr(obj, "malformed", None)
        if bad:
            self._out.malformed.append((row, kind, bad))

    # ---- per chunk -------------------------------------------------------------------------------------------------
    def update(self, buf: np.ndarray, table: np.ndarray, conversations: np.ndarray) -> AppChunk:
        out = self._out = AppChunk(table)
        n = table.shape[0]
        if n == 0:
            return out
        if len(conversations) > len(self._states):
            grown = new_states(max(len(conversations), len(self._states) * 2))
            grown[: len(self._states)] = self._states
            self._states = grown
        self._frames = table["frame"]
        self._ts = table["ts"]
        self._buf = buf
        self._table = table
        self._convs = conversations
        states = self._states
        next_row = np.empty(n, np.int32)
        events = np.empty(n, np.int32)
        k = scan_chunk(buf, table, states, next_row, events, MAX_ATTEMPTS)
        rounds = 0
        while k:
            rows = events[:k].copy()
            rows.sort()
            self.events += k
            for i in rows.tolist():
                self._event(i)
            tcp_rows = rows[table["ip_proto"][rows] == PROTO_TCP]
            rounds += 1
            if not len(tcp_rows):
                break
            if rounds > MAX_ROUNDS_BEFORE_PYTHON:
                self._walk_in_python(tcp_rows, next_row)
                break
            k = resume(buf, table, states, next_row, tcp_rows, len(tcp_rows), events, MAX_ATTEMPTS)
        end_chunk(table, states)
        self._last_ts = int(self._ts[-1])
        self._last_frame = int(self._frames[-1])
        self._out = None
        return out

    def _walk_in_python(self, starts: np.ndarray, next_row: np.ndarray) -> None:
        """Finish conversations with very many events in this chunk packet by packet (no more kernel rounds)."""
        from diagnose.protocols.select import _step
        buf, table, states = self._buf, self._table, self._states
        for start in starts.tolist():
            r = int(next_row[start])
            while r >= 0:
                if _step(buf, table, r, states, MAX_ATTEMPTS):
                    self.events += 1
                    self._event(r)
                r = int(next_row[r])

    def _payload(self, r) -> tuple[bytes, int]:
        """(captured payload bytes, payload length on the wire) of a row."""
        plen = int(r["payload_len"])
        off = int(r["payload_off"])
        if off < 0 or plen <= 0:
            return b"", 0
        start = int(r["data"]) + off
        if int(r["status"]) & ST_REASSEMBLED:
            avail = len(self._buf) - start
        else:
            avail = int(r["caplen"]) - off
        n = max(0, min(plen, avail))
        return self._buf[start: start + n].tobytes(), plen

    def _event(self, i: int) -> None:
        table = self._table
        r = table[i]
        c = int(r["conv"])
        d = int(r["dir"])
        st = self._states[c]
        proto = int(r["ip_proto"])
        data, plen = self._payload(r)
        seq = int(r["tcp_seq"])
        flow = self.flows.get(c)
        if flow is None:
            if int(st["mode"]) != UNSEEN:
                return
            if proto == PROTO_TCP:
                probe = self._probes.pop((c, d), None)
                if probe is not None and seq == (probe[0] + len(probe[1])) & 0xFFFFFFFF:
                    seq, data, plen = probe[0], bytes(probe[1]) + data, len(probe[1]) + plen
            sport, dport = int(r["sport"]), int(r["dport"])
            kind = cls.classify_tcp(data, sport, dport) if proto == PROTO_TCP else cls.classify_udp(data, sport, dport)
            if kind is None:
                if plen > 0:
                    st["attempts"] += 1
                    if proto == PROTO_TCP:
                        if len(data) < 64 and plen == len(data) and cls.maybe_start(data):
                            self._probes[(c, d)] = (seq, bytearray(data))  # too short to tell: wait for more
                        else:
                            self._stale.setdefault(c, set()).add(d)
                    if st["attempts"] >= MAX_ATTEMPTS:
                        st["mode"] = IGNORE
                        self._probes.pop((c, 0), None)
                        self._probes.pop((c, 1), None)
                return
            flow = self.flows[c] = AppFlow(c, kind, self)
            passed = int(st["passed"])
            for k in self._stale.pop(c, ()):
                flow.fresh[k] = False
            for k in (0, 1):
                if passed & (1 << k):
                    flow.fresh[k] = False
            st["mode"] = TRACK
        if proto == PROTO_UDP:
            if plen > 0:
                if flow.protocol == cls.SSDP:
                    msg = parse_datagram(data, self, i)
                    if msg is not None:
                        self.emit("http", i, msg)
                elif flow.protocol in (cls.DNS, cls.MDNS, cls.LLMNR):
                    flow.dns_message(parse_message(data, "udp"), i)
            return
        self._tcp_event(flow, st, r, i, d, seq, data, plen)

    def _tcp_event(self, flow: AppFlow, st, r, i: int, d: int, seq: int, data: bytes, plen: int) -> None:
        flags = int(r["tcp_flags"])
        direction = flow.dirs[d]
        if direction is None and plen > 0 and not flow.closed[d]:
            conv = self._convs[flow.conv]
            if flow.fresh[d] and conv["base_set"][d]:
                base = (int(conv["base_seq"][d]) + 1) & 0xFFFFFFFF
                if ((seq - base) & 0xFFFFFFFF) > (1 << 20):  # not near the stream start: start where we are
                    base = seq
            else:
                base = seq
            direction = flow.dirs[d] = Direction(base, flow.consumer(d, data), max_pending=self.max_pending)
        if direction is not None:
            used = int(st["used"][d])
            if used:
                st["used"][d] = 0
                direction.skip_ahead(used)
            if direction.pending and st["ack_ok"][1 - d]:
                direction.acked(int(st["ack"][1 - d]), i)
            if plen > 0:
                direction.segment(seq, data, plen, i)
            if flags & 0x01 and not direction.pending:
                direction.close(i, "fin")
                flow.closed[d] = True
        if flags & 0x04:
            flow.rst_frame = self.frame(i)
            for k in (0, 1):
                dk = flow.dirs[k]
                if dk is not None and not dk.closed:
                    dk.close(i, "rst")
                flow.closed[k] = True
        for k in (0, 1):
            dk = flow.dirs[k]
            if dk is None:
                continue
            st["nxt"][k] = dk.next_seq()
            st["nxt_ok"][k] = 0 if dk.closed else 1
            st["skip"][k] = 0 if (dk.pending or dk.closed) else dk.consumer.skippable
        st["watch_close"] = 1 if any(dk is not None and not dk.closed and dk.consumer.skippable > (1 << 40)
                                     for dk in flow.dirs) else 0
        if flow.closed[0] and flow.closed[1]:
            st["mode"] = IGNORE if flow.dirs[0] is not None or flow.dirs[1] is not None else st["mode"]

    # ---- the end ---------------------------------------------------------------------------------------------------
    def finish(self) -> dict[int, AppFlow]:
        """Close every direction (holes become gaps, cut messages become truncated), judge certificate chains."""
        self._out = None
        for c, flow in self.flows.items():
            st = self._states[c]
            for k, d in enumerate(flow.dirs):
                if d is not None and not d.closed:
                    used = int(st["used"][k])
                    if used:
                        st["used"][k] = 0
                        d.skip_ahead(used)
                    d.close(None, "end of capture")
            if flow.tls is not None and flow.tls.session.certificates:
                s = flow.tls.session
                when_ns = s.server_hello_ts or self._last_ts
                when = dt.datetime.fromtimestamp(when_ns / 1e9, tz=dt.timezone.utc)
                flow.chain = check_chain(s.certificates, when=when, hostname=s.sni, ca_file=self.ca_file,
                                         use_system=self.use_system_store)
        return self.flows
