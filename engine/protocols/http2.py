"""HTTP/2 (RFC 9113) over a reassembled byte stream: cleartext with prior knowledge, h2c upgrade, or TLS plaintext.

Each direction is an `Http2Half` cutting frames; both share an `Http2Connection` holding the streams. Header blocks
(HEADERS + CONTINUATION) are decoded with the `hpack` library, one decoder per direction because the dynamic table
is per direction; a block that cannot be decoded (frames missing from the capture) marks the frame malformed and the
analysis goes on. DATA payloads are skipped by length, never copied. A frame belongs to the packet completing it.
"""

from __future__ import annotations

import struct

import hpack

from diagnose.reassembly import StreamConsumer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
T_DATA, T_HEADERS, T_PRIORITY, T_RST_STREAM, T_SETTINGS, T_PUSH_PROMISE, T_PING, T_GOAWAY, T_WINDOW_UPDATE, \
    T_CONTINUATION = range(10)
FLAG_END_STREAM, FLAG_END_HEADERS, FLAG_PADDED, FLAG_PRIORITY = 0x1, 0x4, 0x8, 0x20
MAX_FRAME = 1 << 24
MAX_HEADER_BLOCK = 1 << 20
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
               4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
               9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY",
               13: "HTTP_1_1_REQUIRED"}

_HEADER = struct.Struct(">BHBBI")


class Frame:
    """One HTTP/2 frame (or the client preface: type -1)."""

    __slots__ = ("type", "flags", "stream_id", "length", "headers", "error_code", "last_stream_id",
                 "window_increment", "malformed", "direction")

    def __init__(self, ftype: int, flags: int, stream_id: int, length: int, direction: int):
        self.type, self.flags, self.stream_id, self.length, self.direction = ftype, flags, stream_id, length, direction
        self.headers: list[tuple[str, str]] | None = None
        self.error_code: int | None = None
        self.last_stream_id: int | None = None
        self.window_increment: int | None = None
        self.malformed: str | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers or ():
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"H2Frame(type={self.type} stream={self.stream_id} len={self.length} headers={self.headers})"


class Stream:
    """One HTTP/2 stream: its request and response as the flow facts see them."""

    __slots__ = ("id", "method", "path", "authority", "status", "request_ts", "request_frame", "response_ts",
                 "response_frame", "first_data_ts", "data_bytes", "ended", "reset_code", "reset_by")

    def __init__(self, stream_id: int):
        self.id = stream_id
        self.method = self.path = self.authority = None
        self.status: int | None = None
        self.request_ts = self.request_frame = self.response_ts = self.response_frame = None
        self.first_data_ts = None
        self.data_bytes = [0, 0]
        self.ended = [False, False]
        self.reset_code: int | None = None
        self.reset_by: int | None = None

    @property
    def ttfb_ns(self) -> int | None:
        if self.request_ts is None or self.response_ts is None:
            return None
        return self.response_ts - self.request_ts


class Http2Connection:
    def __init__(self, ctx, client_direction: int = 0, max_streams: int = 10000):
        self.ctx = ctx
        self.client_direction = client_direction
        self.streams: dict[int, Stream] = {}
        self.max_streams = max_streams
        self.goaway: list[tuple[int, int, int, int]] = []  # (frame, direction, last stream id, error code)
        self.malformed = 0

    def stream(self, stream_id: int) -> Stream | None:
        s = self.streams.get(stream_id)
        if s is None and len(self.streams) < self.max_streams:
            s = self.streams[stream_id] = Stream(stream_id)
        return s

    def half(self, direction: int, *, expect: bytes | None) -> "Http2Half":
        """The consumer of one direction; `expect`: bytes that must come first (the client preface, or its tail
        after an HTTP/1.1 parser already read "PRI * HTTP/2.0")."""
        return Http2Half(self, direction, expect)


class Http2Half(StreamConsumer):
    __slots__ = ("conn", "direction", "buf", "need", "in_payload", "ftype", "flags", "stream_id", "length",
                 "skippable", "decoder", "block", "block_frame", "preface", "lost", "desync")

    def __init__(self, conn: Http2Connection, direction: int, expect: bytes | None):
        self.conn = conn
        self.direction = direction
        self.buf = bytearray()
        self.preface = expect
        self.need = len(expect) if expect else FRAME_HEADER
        self.in_payload = False
        self.ftype = self.flags = self.stream_id = self.length = 0
        self.skippable = 0
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.block = bytearray()  # header block fragments until END_HEADERS
        self.block_frame: Frame | None = None
        self.lost = 0
        self.desync = False

    def feed(self, data, n: int, row: int) -> None:
        pos = 0
        while pos < n:
            if self.desync:
                self.lost += n - pos
                return
            if self.in_payload and self.skippable:  # a DATA payload: counted, not copied; it ends the frame
                take = min(self.skippable, n - pos)
                self.skippable -= take
                pos += take
                if self.skippable == 0:
                    self._frame(None, row)
                continue
            if data is None:
                self.gap(n - pos, row)
                return
            take = min(self.need - len(self.buf), n - pos)
            self.buf += data[pos: pos + take]
            pos += take
            if len(self.buf) < self.need:
                return
            if self.preface:
                if bytes(self.buf) != self.preface:
                    self.conn.malformed += 1
                    self.desync = True
                    return
                self.conn.ctx.emit("http2", row, Frame(-1, 0, 0, len(self.preface), self.direction))
                self.preface = None
                self.buf.clear()
                self.need = FRAME_HEADER
                continue
            if not self.in_payload:
                hi, lo, ftype, flags, sid = _HEADER.unpack(bytes(self.buf))
                length = (hi << 16) | lo
                self.ftype, self.flags, self.stream_id, self.length = ftype, flags, sid & 0x7FFFFFFF, length
                self.in_payload = True
                self.need = FRAME_HEADER + length
                if ftype == T_DATA:
                    self.skippable = length
                if length == 0:
                    self._frame(b"", row)
                continue
            self._frame(bytes(self.buf[FRAME_HEADER:]), row)

    def gap(self, n: int, row: int) -> None:
        if self.in_payload and self.skippable >= n:
            self.feed(None, n, row)
            return
        self.desync = True  # frame boundaries are lost for good: HTTP/2 has no resynchronisation point
        self.lost += n

    def _frame(self, payload: bytes | None, row: int) -> None:
        ftype, flags, sid, length = self.ftype, self.flags, self.stream_id, self.length
        self.buf.clear()
        self.in_payload = False
        self.need = FRAME_HEADER
        self.skippable = 0
        conn = self.conn
        ctx = conn.ctx
        frame = Frame(ftype, flags, sid, length, self.direction)
        client = self.direction == conn.client_direction
        try:
            if ftype == T_DATA:
                stream = conn.stream(sid)
                if stream is not None:
                    stream.data_bytes[self.direction] += length
                    if not client and stream.first_data_ts is None:
                        stream.first_data_ts = ctx.ts(row)
                    if flags & FLAG_END_STREAM:
                        stream.ended[self.direction] = True
            elif ftype in (T_HEADERS, T_PUSH_PROMISE, T_CONTINUATION):
                self._header_fragment(frame, payload or b"", row, client)
            elif ftype == T_RST_STREAM and payload is not None and len(payload) >= 4:
                frame.error_code = int.from_bytes(payload[:4], "big")
                stream = conn.stream(sid)
                if stream is not None:
                    stream.reset_code, stream.reset_by = frame.error_code, self.direction
            elif ftype == T_GOAWAY and payload is not None and len(payload) >= 8:
                frame.last_stream_id = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                frame.error_code = int.from_bytes(payload[4:8], "big")
                conn.goaway.append((ctx.frame(row), self.direction, frame.last_stream_id, frame.error_code))
            elif ftype == T_WINDOW_UPDATE and payload is not None and len(payload) >= 4:
                frame.window_increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        except (ValueError, IndexError) as exc:
            frame.malformed = str(exc)
            conn.malformed += 1
        ctx.emit("http2", row, frame)

    def _header_fragment(self, frame: Frame, payload: bytes, row: int, client: bool) -> None:
        flags = frame.flags
        frag = payload
        if frame.type in (T_HEADERS, T_PUSH_PROMISE):
            start = 0
            pad = 0
            if flags & FLAG_PADDED:
                if not frag:
                    raise ValueError("padded frame without pad length")
                pad = frag[0]
                start = 1
            if frame.type == T_HEADERS and flags & FLAG_PRIORITY:
                start += 5
            elif frame.type == T_PUSH_PROMISE:
                start += 4
            if start + pad > len(frag):
                raise ValueError("padding longer than the frame")
            frag = frag[start: len(frag) - pad]
            self.block.clear()
            self.block_frame = frame
        self.block += frag
        if len(self.block) > MAX_HEADER_BLOCK:
            self.block.clear()
            raise ValueError("header block too long")
        if not flags & FLAG_END_HEADERS:
            return
        block = bytes(self.block)
        self.block.clear()
        try:
            frame.headers = [(k, v) for k, v in self.decoder.decode(block, raw=False)]
        except Exception as exc:  # hpack raises its own errors and UnicodeDecodeError on broken blocks
            frame.malformed = f"HPACK: {exc}"
            self.conn.malformed += 1
            return
        first = self.block_frame or frame
        self.block_frame = None
        conn = self.conn
        stream = conn.stream(first.stream_id)
        if stream is None or first.type == T_PUSH_PROMISE:
            return
        ctx = conn.ctx
        if client:
            if stream.request_ts is None:
                stream.method = frame.header(":method")
                stream.path = frame.header(":path")
                stream.authority = frame.header(":authority")
                stream.request_ts = ctx.ts(row)
                stream.request_frame = ctx.frame(row)
        else:
            status = frame.header(":status")
            if status is not None and status.isascii() and status.isdigit():
                code = int(status)
                if stream.response_ts is None or (stream.status is not None and stream.status < 200):
                    stream.status = code
                    if stream.response_ts is None:
                        stream.response_ts = ctx.ts(row)
                        stream.response_frame = ctx.frame(row)
        if first.flags & FLAG_END_STREAM:
            stream.ended[self.direction] = True
