"""HTTP/1.x over a reassembled TCP connection: requests and responses, bodies skipped by length.

Each direction is an `HttpHalf` (a StreamConsumer); the two halves of a connection share an `HttpConnection` that
pairs responses with requests in order (keep-alive and pipelining), knows which requests get no response body
(HEAD, CONNECT) and records one `HttpTransaction` per exchange for the flow facts.

Like Wireshark (body reassembly on, its default) a message belongs to the packet that completes it: the header's
last byte when there is no body, else the body's last byte (chunked: the last chunk and trailers). A request line is
recognised only with a method Wireshark knows (so "GET/ HTTP/1.1" is not a request); LF-only lines are accepted.
Bodies are never copied: their length is skipped (`skippable`), and the reassembler passes counts instead of bytes.
A message cut by the end of the connection is not a PDU (Wireshark does not show it either); it is kept as a
truncated transaction: bytes received against the announced Content-Length.
"""

from __future__ import annotations

from array import array
from itertools import repeat

from diagnose.reassembly import StreamConsumer

# Request methods Wireshark's HTTP dissector recognises (RFC 9110, WebDAV, CalDAV, UPnP, RPC over HTTP, ...).
METHODS = frozenset(
    b"GET PUT ACL POST HEAD COPY MOVE LOCK MKCOL TRACE PATCH LABEL MERGE DELETE SEARCH UNLOCK REPORT UPDATE NOTIFY "
    b"BMOVE BCOPY BDELETE BPROPFIND BPROPPATCH PROPFIND PROPPATCH UNCHECKOUT MKACTIVITY CHECKOUT CHECKIN OPTIONS "
    b"CONNECT POLL SUBSCRIBE UNSUBSCRIBE M-SEARCH MKWORKSPACE VERSION-CONTROL BASELINE-CONTROL MKCALENDAR "
    b"ORDERPATCH CCM_POST RPC_IN_DATA RPC_OUT_DATA RPC_ECHO_DATA SSTP_DUPLEX_POST MKREDIRECTREF "
    b"UPDATEREDIRECTREF PRI".split())

MAX_HEADER = 64 * 1024  # a header block longer than this is malformed (and dropped)
CLOSE_DELIMITED = 1 << 62  # "until the connection closes"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# parser states
HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, TRAILERS, TUNNEL, DESYNC = range(7)


def start_kind(data: bytes) -> str | None:
    """What the first bytes of a message are: "request", "response", "maybe" (too short to tell) or None."""
    space = data.find(b" ", 0, 20)
    if space > 0:  # the usual cases first: "GET /...", "HTTP/1.1 200 ..."
        token = bytes(data[:space])
        if token in METHODS:
            return "request"
        if token[:5] == b"HTTP/" and len(token) > 5 and 48 <= token[5] <= 57:
            return "response"
    head = bytes(data[:64])
    if head[:5] == b"HTTP/":
        return "response" if len(head) < 6 or head[5:6].isdigit() else None
    if len(head) < 5 and b"HTTP/".startswith(head):
        return "maybe"
    line_end = len(head)
    for stop in (b"\r", b"\n"):
        i = head.find(stop)
        if 0 <= i < line_end:
            line_end = i
    space = head.find(b" ", 0, line_end)
    token = head[:space] if space >= 0 else head[:line_end]
    if space >= 0 or line_end < len(head):
        return "request" if token in METHODS else None
    return "maybe" if any(m.startswith(token) for m in METHODS) else None  # no space or line end yet


def looks_like_http(data: bytes) -> bool:
    return start_kind(data) in ("request", "response")


class HttpMessage:
    """A request or a response. The header block is kept raw (`raw`) and split into `headers` (lower-case name,
    value) and `lines` only when something asks: most messages are only counted and timed."""

    __slots__ = ("is_request", "method", "uri", "version", "code", "phrase", "raw", "_headers", "frame", "ts",
                 "first_frame", "first_ts", "content_length", "chunked", "body_bytes", "body_gap", "malformed",
                 "request", "number", "time_ns", "complete", "protocol")

    def __init__(self, is_request: bool):
        self.is_request = is_request
        self.method = self.uri = self.version = self.phrase = None
        self.code: int | None = None
        self.raw = b""
        self._headers: list[tuple[str, str]] | None = None
        self.frame = self.ts = self.first_frame = self.first_ts = None
        self.content_length: int | None = None
        self.chunked = False
        self.body_bytes = 0
        self.body_gap = 0
        self.malformed: str | None = None
        self.request: HttpMessage | None = None  # the request a response answers
        self.number = 0  # 1-based index among requests (or responses) of the connection
        self.time_ns: int | None = None  # http.time of a response
        self.complete = False
        self.protocol = "http"  # or "ssdp" (HTTP over UDP)

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = _split_headers(self)
        return self._headers

    @property
    def lines(self) -> list[str]:
        """Header lines as http.request.line / http.response.line show them (with their CRLF)."""
        out = []
        for line in self.raw.decode("latin-1").split("\n")[1:]:
            line = line.rstrip("\r")
            if line and ":" in line and line[0] not in " \t":
                out.append(line + "\r\n")
        return out

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def host(self) -> str | None:
        return self.header("host")

    def __repr__(self) -> str:
        if self.is_request:
            return f"HttpRequest({self.method} {self.uri} frame={self.frame})"
        return f"HttpResponse({self.code} frame={self.frame} body={self.body_bytes}/{self.content_length})"


def _split_headers(msg: HttpMessage) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in msg.raw.decode("latin-1").split("\n")[1:]:
        line = line.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t" and headers:  # obsolete line folding: continues the previous value
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            if msg.malformed is None:
                msg.malformed = "header line without a colon"
            continue
        headers.append((name.strip().lower(), value.strip()))
    return headers


def _quick_header(lower: bytes, name: bytes) -> str | None:
    """The first value of header `name` (lower-case, with its colon) in a lower-cased header block, or None."""
    i = lower.find(name)
    while i > 0 and lower[i - 1] != 0x0A:  # must start a line
        i = lower.find(name, i + 1)
    if i <= 0:
        return None
    j = lower.find(b"\n", i)
    return lower[i + len(name): j if j >= 0 else len(lower)].strip().decode("latin-1")


class HttpTransaction:
    """One request and its response, as the flow facts see it: the few values the facts read, copied out of the
    two messages when the exchange ends (a connection keeps its transactions to the end of the capture, the
    messages with their header blocks only as long as their chunk). `request` and `response` give them back as
    read-only `MessageSummary` objects."""

    __slots__ = ("method", "uri", "request_frame", "request_ts", "code", "first_frame", "first_ts", "frame", "ts",
                 "body_bytes", "content_length", "has_request", "has_response", "truncated")

    def __init__(self, request: HttpMessage | None, response: HttpMessage | None, truncated: bool = False):
        self.has_request = request is not None
        if request is not None:
            method = request.method
            self.method = _METHOD_TEXTS.get(method, method)  # one shared text per method
            self.uri, self.request_frame, self.request_ts = request.uri, request.frame, request.ts
        else:
            self.method = self.uri = self.request_frame = self.request_ts = None
        self.has_response = response is not None
        if response is not None:
            self.code, self.frame, self.ts = response.code, response.frame, response.ts
            self.first_frame, self.first_ts = response.first_frame, response.first_ts
            self.body_bytes, self.content_length = response.body_bytes, response.content_length
        else:
            self.code = self.frame = self.ts = self.first_frame = self.first_ts = self.content_length = None
            self.body_bytes = 0
        self.truncated = truncated

    @property
    def request(self) -> "MessageSummary | None":
        if not self.has_request:
            return None
        return MessageSummary(True, self.method, self.uri, None, self.request_frame, self.request_ts, None, None,
                              None, None)

    @property
    def response(self) -> "MessageSummary | None":
        if not self.has_response:
            return None
        return MessageSummary(False, None, None, self.code, self.frame, self.ts, self.first_frame, self.first_ts,
                              self.body_bytes, self.content_length)

    @property
    def ttfb_ns(self) -> int | None:
        """Request complete -> first byte of the response."""
        if not self.has_request or not self.has_response or self.request_ts is None or self.first_ts is None:
            return None
        return self.first_ts - self.request_ts


class MessageSummary:
    """What a transaction keeps of one of its messages (see HttpTransaction): of a request its method, URI, frame
    and time; of a response its code, frames, times and body sizes. The rest is None."""

    __slots__ = ("is_request", "method", "uri", "code", "frame", "ts", "first_frame", "first_ts", "body_bytes",
                 "content_length")

    def __init__(self, is_request, method, uri, code, frame, ts, first_frame, first_ts, body_bytes, content_length):
        self.is_request, self.method, self.uri, self.code = is_request, method, uri, code
        self.frame, self.ts, self.first_frame, self.first_ts = frame, ts, first_frame, first_ts
        self.body_bytes, self.content_length = body_bytes, content_length


_METHOD_TEXTS = {m.decode("ascii"): m.decode("ascii") for m in METHODS}


class TransactionStore:
    """The HttpTransactions of many connections as columns: a busy capture keeps ~10^4 connections' transactions
    to the end, and an object per transaction with its frame numbers and times as Python ints cost ~350 bytes (here
    ~90 plus the URI). Rows are appended as exchanges end; `get(row)` makes the HttpTransaction again."""

    _INTS = ("request_frame", "request_ts", "code", "first_frame", "first_ts", "frame", "ts", "body_bytes",
             "content_length")  # None where absent (a presence bit each)
    _HAS_REQUEST, _HAS_RESPONSE, _TRUNCATED = 1 << 9, 1 << 10, 1 << 11

    _EXCHANGE = (1 << 9) - 1 | _HAS_REQUEST | _HAS_RESPONSE  # every value present, request and response
    _LIMIT = 1 << 63

    def __init__(self):
        self.ints = [array("q") for _ in self._INTS]
        self.bits = array("H")
        self.methods: list[str | None] = []  # shared texts
        self.uris: list[str | None] = []
        self.huge: dict[tuple[int, int], int] = {}  # (row, column) -> a value past 64 bits (a forged Content-Length)

    def append(self, tx: HttpTransaction) -> int:
        row = len(self.bits)
        bits = (self._HAS_REQUEST if tx.has_request else 0) | (self._HAS_RESPONSE if tx.has_response else 0) | \
            (self._TRUNCATED if tx.truncated else 0)
        for k, (name, column) in enumerate(zip(self._INTS, self.ints)):
            value = getattr(tx, name)
            if value is None:
                column.append(0)
                continue
            bits |= 1 << k
            try:
                column.append(value)
            except OverflowError:
                column.append(0)
                self.huge[(row, k)] = value
        self.bits.append(bits)
        self.methods.append(tx.method)
        self.uris.append(tx.uri)
        return row

    def append_exchange(self, request: "HttpMessage", response: "HttpMessage") -> int:
        """append(HttpTransaction(request, response)) without making the transaction (the usual exchange)."""
        values = (request.frame, request.ts, response.code, response.first_frame, response.first_ts, response.frame,
                  response.ts, response.body_bytes, response.content_length)
        if None in values or not -self._LIMIT <= response.content_length < self._LIMIT:
            return self.append(HttpTransaction(request, response))
        row = len(self.bits)
        for column, value in zip(self.ints, values):
            column.append(value)
        self.bits.append(self._EXCHANGE)
        method = request.method
        self.methods.append(_METHOD_TEXTS.get(method, method))
        self.uris.append(request.uri)
        return row

    def extend_exchanges(self, values: list[tuple], methods: list[str], uris: list[str | None]) -> int:
        """append_exchange for many exchanges at once, given as their values in _INTS order (every one present and
        within 64 bits: the exchanges the selection kernel read), methods and URIs; returns the first one's row."""
        row = len(self.bits)
        for column, part in zip(self.ints, zip(*values)):
            column.extend(part)
        self.bits.extend(repeat(self._EXCHANGE, len(values)))
        self.methods.extend(map(_METHOD_TEXTS.get, methods, methods))
        self.uris.extend(uris)
        return row

    def get(self, row: int) -> HttpTransaction:
        bits = self.bits[row]
        tx = HttpTransaction.__new__(HttpTransaction)
        tx.method, tx.uri = self.methods[row], self.uris[row]
        for k, (name, column) in enumerate(zip(self._INTS, self.ints)):
            value = None
            if bits & (1 << k):
                value = self.huge.get((row, k), column[row]) if self.huge else column[row]
            setattr(tx, name, value)
        tx.has_request = bool(bits & self._HAS_REQUEST)
        tx.has_response = bool(bits & self._HAS_RESPONSE)
        tx.truncated = bool(bits & self._TRUNCATED)
        return tx


class HttpConnection:
    """State shared by the two directions of one HTTP/1.x connection. Its transactions are rows of the emitter's
    TransactionStore (`ctx.http_store`; a store of its own when the emitter has none)."""

    __slots__ = ("ctx", "waiting", "requests", "responses", "store", "rows", "max_transactions",
                 "dropped_transactions", "on_upgrade", "malformed")

    def __init__(self, ctx, on_upgrade=None, max_transactions: int = 10000):
        self.ctx = ctx  # the AppLayer's emitter: ctx.frame(row), ctx.ts(row), ctx.emit(kind, row, obj)
        # requests without a response yet (few: a list is smaller than a deque), made for the first one: most
        # connections end with none waiting, and an empty list costs 56 bytes
        self.waiting: list[HttpMessage] | tuple = ()
        self.requests = 0
        self.responses = 0
        store = getattr(ctx, "http_store", None)
        self.store: TransactionStore = store if store is not None else TransactionStore()
        self.rows: int | list[int] | None = None  # the store's rows of this connection (most have one)
        self.max_transactions = max_transactions
        self.dropped_transactions = 0
        self.on_upgrade = on_upgrade  # callback(protocol, half, row) when the connection switches protocol
        self.malformed = 0

    @property
    def transactions(self) -> list[HttpTransaction]:
        """The recorded exchanges in order (made from the store at each call)."""
        rows = self.rows
        if rows is None:
            return []
        get = self.store.get
        return [get(rows)] if isinstance(rows, int) else [get(r) for r in rows]

    def record(self, tx: HttpTransaction) -> None:
        rows = self.rows
        count = 0 if rows is None else 1 if isinstance(rows, int) else len(rows)
        if count >= self.max_transactions:
            self.dropped_transactions += 1
            return
        row = self.store.append(tx)
        if rows is None:
            self.rows = row
        elif isinstance(rows, int):
            self.rows = [rows, row]
        else:
            rows.append(row)

    def completed(self, msg: "HttpMessage", row: int, frame: int | None, ts: int) -> None:
        """A message ends at `row` (frame number and time given: its half's parser, or the application layer for a
        message its kernel read): numbered, paired with its request, recorded as a transaction, emitted."""
        ctx = self.ctx
        msg.complete = True
        msg.frame = frame
        msg.ts = ts
        if msg.is_request:
            self.requests += 1
            msg.number = self.requests
            if self.waiting:
                self.waiting.append(msg)
            else:
                self.waiting = [msg]
            ctx.emit("http", row, msg)
            return
        self.responses += 1
        msg.number = self.responses
        final = not (100 <= msg.code < 200) or msg.code == 101
        request = None
        if self.waiting:
            request = self.waiting[0]
            if final:
                self.waiting.pop(0)
                if not self.waiting:
                    self.waiting = ()
        if request is not None:
            msg.request = request
            msg.time_ns = ts - request.ts
        if final:
            rows = self.rows
            if rows is None and request is not None and self.max_transactions > 0:  # the usual first exchange
                self.rows = self.store.append_exchange(request, msg)
            else:
                self.record(HttpTransaction(request, msg))
        ctx.emit("http", row, msg)


def _parse_head(block: bytes, msg: HttpMessage) -> bool:
    """Fill msg from a header block (start line + header lines): the start line now, headers when asked.
    False if the start line is not HTTP."""
    msg.raw = block
    end = block.find(b"\n")
    start = (block[:end] if end >= 0 else block).rstrip(b"\r").decode("latin-1")
    if msg.is_request:
        method, _, rest = start.partition(" ")
        msg.method = method
        uri, sep, version = rest.rpartition(" ")
        if sep and version.startswith("HTTP/"):
            msg.uri, msg.version = uri, version
        elif rest:
            msg.uri = rest
    else:
        version, _, rest = start.partition(" ")
        code, _, phrase = rest.partition(" ")
        msg.version, msg.phrase = version, phrase
        if len(code) != 3 or not (code.isascii() and code.isdigit()):  # "²00" is a digit to str.isdigit
            msg.malformed = "bad status code"
            return False
        msg.code = int(code)
    return True


class HttpHalf(StreamConsumer):
    """One direction of an HTTP/1.x connection: parses requests or responses (whichever starts a message)."""

    __slots__ = ("conn", "state", "buf", "searched", "msg", "remaining", "skippable", "closed", "lost", "forward")

    def __init__(self, conn: HttpConnection):
        self.conn = conn
        self.state = HEAD
        self.buf = bytearray()
        self.searched = 0
        self.msg: HttpMessage | None = None
        self.remaining = 0
        self.skippable = 0
        self.closed = False
        self.lost = 0  # bytes dropped while out of sync
        self.forward: StreamConsumer | None = None  # after an upgrade: the consumer of the new protocol

    # ---- StreamConsumer --------------------------------------------------------------------------------------------
    def feed(self, data, n: int, row: int) -> None:
        pos = 0
        while pos < n:
            state = self.state
            if state == BODY or state == CHUNK_DATA:
                take = min(self.remaining, n - pos)
                self.remaining -= take
                self.msg.body_bytes += take
                pos += take
                if self.remaining == 0:
                    if state == BODY:
                        self._complete(row)
                    else:
                        self.state = CHUNK_SIZE
                self.skippable = self.remaining
                continue
            if state == TUNNEL:
                if self.forward is not None:
                    piece = None if data is None else (data[pos:] if pos else data)
                    self.forward.feed(piece, n - pos, row)
                    self.skippable = self.forward.skippable
                else:
                    self.skippable = CLOSE_DELIMITED
                return
            if data is None:  # skipped bytes outside a body: nothing to parse them with
                self._desync(n - pos)
                return
            if state == DESYNC:
                if pos == 0 and looks_like_http(data[:64]):
                    self.state = HEAD
                    continue
                self.lost += n - pos
                return
            pos = self._text(data, pos, n, row)

    def gap(self, n: int, row: int) -> None:
        if self.state in (BODY, CHUNK_DATA) and self.remaining >= n:
            self.msg.body_gap += n
            self.feed(None, n, row)
            return
        if self.state == TUNNEL:
            if self.forward is not None:
                self.forward.gap(n, row)
            return
        if self.msg is not None and self.state != HEAD:
            self.msg.body_gap += n
        self._desync(n)

    def close(self, row: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        msg = self.msg
        if self.forward is not None:
            self.forward.close(row, reason)
        if msg is not None and self.state == BODY and self.remaining >= CLOSE_DELIMITED // 2:
            self._complete(row)  # a body that runs to the close is complete now
        elif msg is not None and not msg.complete and self.state != TUNNEL:
            self._truncated(msg)
        self.skippable = 0

    # ---- parsing ---------------------------------------------------------------------------------------------------
    def _desync(self, n: int) -> None:
        if self.msg is not None and not self.msg.complete:
            self._truncated(self.msg)
        self.msg = None
        self.buf.clear()
        self.searched = 0
        self.state = DESYNC
        self.skippable = 0
        self.remaining = 0
        self.lost += n

    def _text(self, data, pos: int, n: int, row: int) -> int:
        """Header, chunk-size line or trailer bytes from data[pos:n]; returns the new position."""
        buf = self.buf
        state = self.state
        if state == HEAD and self.msg is None:
            space = data.find(b" ", pos, pos + 20)  # start_kind's usual cases without its slice and call
            token = bytes(data[pos:space]) if space > pos else b""
            if token in METHODS:
                kind = "request"
            elif token[:5] == b"HTTP/" and len(token) > 5 and 48 <= token[5] <= 57:
                kind = "response"
            else:
                kind = start_kind(data[pos: pos + 64] if pos or n > 64 else data)
            if kind is None or (kind == "maybe" and n - pos >= 64):
                self.state = DESYNC
                self.lost += n - pos
                return n
            self.msg = msg = HttpMessage(kind == "request")
            ctx = self.conn.ctx
            msg.first_frame = ctx.frame(row)
            msg.first_ts = ctx.ts(row)
            self.searched = 0
            if kind != "maybe":  # the usual case: the whole header block is in this piece
                i = data.find(b"\n\r\n", pos, n)
                j = data.find(b"\n\n", pos, n)
                if i >= 0 or j >= 0:
                    end = j + 2 if j >= 0 and (i < 0 or j < i) else i + 3
                    self._head(bytes(data[pos:end]), row)
                    return end
        start_len = len(buf)
        buf += data[pos:n] if (pos or n != len(data)) else data
        end = self._find_end(buf, b"\n" if state == CHUNK_SIZE else b"\n\n")
        if end < 0:
            if len(buf) > MAX_HEADER:
                if self.msg is not None:
                    self.msg.malformed = "header block too long"
                    self.conn.malformed += 1
                self._desync(0)
            elif state == HEAD and start_len < 64 <= len(buf) and start_kind(buf) not in ("request", "response"):
                self.msg = None
                self._desync(0)
            return n
        used = end - start_len  # bytes of this piece that belong to the block
        block = bytes(buf[:end])
        buf.clear()
        self.searched = 0
        if state == HEAD:
            kind = start_kind(block)
            if kind not in ("request", "response"):
                self.msg = None
                self._desync(0)
                return n
            self.msg.is_request = kind == "request"
            self._head(block, row)
        elif state == CHUNK_SIZE:
            self._chunk_size(block, row)
        else:  # TRAILERS
            self._complete(row)
        return pos + used

    def _find_end(self, buf: bytearray, terminator: bytes) -> int:
        """Index just past the end of the block (after the blank line / the line), or -1."""
        start = max(0, self.searched - 3)
        if terminator == b"\n":
            i = buf.find(b"\n", start)
            self.searched = len(buf)
            return -1 if i < 0 else i + 1
        i = buf.find(b"\n\r\n", start)
        j = buf.find(b"\n\n", start)
        self.searched = len(buf)
        if i < 0 and j < 0:
            return -1
        if j >= 0 and (i < 0 or j < i):
            return j + 2
        return i + 3

    def _head(self, block: bytes, row: int) -> None:
        msg = self.msg
        conn = self.conn
        if not _parse_head(block, msg):
            conn.malformed += 1
            self.msg = None
            self.state = DESYNC
            return
        if msg.malformed:
            conn.malformed += 1
        lower = block.lower()
        te = _quick_header(lower, b"transfer-encoding:") if b"transfer-encoding:" in lower else None
        cl = _quick_header(lower, b"content-length:")
        if cl is not None:
            try:
                msg.content_length = int(cl.split(",")[0].strip())
                if msg.content_length < 0:
                    raise ValueError
            except ValueError:
                msg.malformed = "bad Content-Length"
                msg.content_length = None
                conn.malformed += 1
        if msg.is_request:
            if msg.method == "PRI" and msg.uri == "*" and msg.version == "HTTP/2.0":
                self._upgrade("h2-preface", row, block)
                return
            if te is not None and "chunked" in te.lower():
                self._start_chunked(row)
            elif msg.content_length:
                self._start_body(msg.content_length, row)
            else:
                self._complete(row)
            return
        request = conn.waiting[0] if conn.waiting else None
        code = msg.code
        no_body = (100 <= code < 200) or code in (204, 304) or (request is not None and request.method == "HEAD")
        if request is not None and request.method == "CONNECT" and 200 <= code < 300:
            self._complete(row)
            self.state = TUNNEL
            self.skippable = CLOSE_DELIMITED
            return
        if code == 101:
            self._complete(row)
            upgrade = (_quick_header(lower, b"upgrade:") or "").lower()
            self._upgrade("h2c" if upgrade == "h2c" else "other", row, b"")
            return
        if no_body:
            self._complete(row)
        elif te is not None and "chunked" in te.lower():
            self._start_chunked(row)
        elif msg.content_length is not None:
            if msg.content_length:
                self._start_body(msg.content_length, row)
            else:
                self._complete(row)
        else:
            self._start_body(CLOSE_DELIMITED, row)

    def _start_body(self, length: int, row: int) -> None:
        self.state = BODY
        self.remaining = length
        self.skippable = length

    def _start_chunked(self, row: int) -> None:
        self.msg.chunked = True
        self.state = CHUNK_SIZE
        self.skippable = 0

    def _chunk_size(self, line: bytes, row: int) -> None:
        text = line.split(b";", 1)[0].strip()
        if not text:  # the CRLF that ends a chunk's data
            return
        try:
            size = int(text, 16)
        except ValueError:
            self.msg.malformed = "bad chunk size"
            self.conn.malformed += 1
            self._desync(0)
            return
        if size == 0:
            self.state = TRAILERS
            self.buf += b"\n"  # the size line's own newline lets an empty trailer section end at the next blank line
            self.searched = 0
            return
        self.state = CHUNK_DATA
        self.remaining = size
        self.skippable = size

    def _complete(self, row: int) -> None:
        msg = self.msg
        self.state = HEAD
        self.skippable = 0
        self.remaining = 0
        self.msg = None
        ctx = self.conn.ctx
        self.conn.completed(msg, row, ctx.frame(row), ctx.ts(row))

    def _truncated(self, msg: HttpMessage) -> None:
        """A message the connection ended (or a gap cut) before it was complete."""
        msg.complete = False
        if msg.is_request or msg.code is None:
            return
        request = None
        if self.conn.waiting:
            request = self.conn.waiting.pop(0)
            if not self.conn.waiting:
                self.conn.waiting = ()
        self.conn.record(HttpTransaction(request, msg, truncated=True))

    def _upgrade(self, protocol: str, row: int, block: bytes) -> None:
        """Switch this direction to another protocol; what follows goes to `forward` (if the app gave one)."""
        self.state = TUNNEL
        self.skippable = 0
        if self.conn.on_upgrade is not None:
            self.forward = self.conn.on_upgrade(protocol, self, row, block)


def parse_datagram(data: bytes, ctx, row: int) -> HttpMessage | None:
    """One HTTP message in one UDP datagram (SSDP): start line and headers; no body framing, no pairing."""
    kind = start_kind(data)
    if kind not in ("request", "response"):
        return None
    end = data.find(b"\n\r\n")
    end2 = data.find(b"\n\n")
    cut = min(e for e in (end + 3 if end >= 0 else len(data), end2 + 2 if end2 >= 0 else len(data)))
    msg = HttpMessage(is_request=kind == "request")
    msg.protocol = "ssdp"
    if not _parse_head(data[:cut], msg):
        return None
    msg.complete = True
    msg.frame = msg.first_frame = ctx.frame(row)
    msg.ts = msg.first_ts = ctx.ts(row)
    return msg
