"""HTTP/2 on built connections: prior knowledge and h2c upgrade, HPACK headers, CONTINUATION, DATA skipped,
RST_STREAM and GOAWAY, per-stream time to first byte."""

from __future__ import annotations

import struct

import hpack

from diagnose.protocols.fields import frame_values
from diagnose.protocols.http2 import PREFACE
from test_http import Conn, analyse  # the connection builder and the pipeline runner


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def run_frames(path):
    from diagnose.pipeline import open_pass
    from diagnose.protocols.app import AppLayer

    app = AppLayer(use_system_store=False)
    values = {}
    run = open_pass(path)
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            frames = chunk.table["frame"]
            for name in ("http2.type", "http2.headers.method", "http2.headers.path", "http2.headers.status",
                         "http2.rst_stream.error", "http2.goaway.error", "http2.streamid", "http2.magic"):
                for row, vals in frame_values(out, name).items():
                    values.setdefault(name, {})[int(frames[row])] = vals
    return values, app.finish()


def test_prior_knowledge_connection(tmp_path):
    client, server = hpack.Encoder(), hpack.Encoder()
    c = Conn(server_port=8000)
    settings = frame(4, 0, 0, b"")
    get_a = frame(1, 0x5, 1, client.encode([(":method", "GET"), (":path", "/a"), (":scheme", "http"),
                                             (":authority", "lab")]))
    block = client.encode([(":method", "POST"), (":path", "/b"), (":scheme", "http"), (":authority", "lab"),
                           ("x-long", "v" * 100)])
    post_b = frame(1, 0x0, 3, block[:20]) + frame(9, 0x4, 3, block[20:])  # HEADERS + CONTINUATION
    (c1,) = c.send(0, PREFACE + settings + get_a + post_b)
    (s1,) = c.send(1, frame(4, 0, 0, b"") + frame(1, 0x4, 1, server.encode([(":status", "200")])), dt=0.2)
    data = c.send(1, frame(0, 0x1, 1, b"d" * 5000), dt=0.01)  # DATA, END_STREAM: skipped by length
    (s2,) = c.send(1, frame(1, 0x5, 3, server.encode([(":status", "404")])))
    (s3,) = c.send(1, frame(3, 0, 5, struct.pack(">I", 8)) + frame(7, 0, 0, struct.pack(">II", 3, 0)))
    values, summary = run_frames(c.write(tmp_path / "h2.pcap"))
    assert values["http2.magic"] == {c1: [PREFACE.decode()]}
    assert values["http2.headers.method"] == {c1: ["GET", "POST"]}
    assert values["http2.headers.path"] == {c1: ["/a", "/b"]}
    assert values["http2.headers.status"] == {s1: ["200"], s2: ["404"]}
    assert values["http2.type"][c1] == [4, 1, 1, 9] and values["http2.type"][data[-1]] == [0]
    assert values["http2.rst_stream.error"] == {s3: [8]} and values["http2.goaway.error"] == {s3: [0]}
    (flow,) = summary.flows.values()
    streams = flow.http2.streams
    assert streams[1].status == 200 and streams[1].data_bytes[1] == 5000 and streams[1].ended[1]
    assert 0.19 < streams[1].ttfb_ns / 1e9 < 0.21
    assert streams[3].method == "POST" and streams[3].status == 404
    assert streams[5].reset_code == 8 and flow.http2.goaway == [(s3, 1, 3, 0)]


def test_h2c_upgrade(tmp_path):
    client, server = hpack.Encoder(), hpack.Encoder()
    c = Conn()
    c.send(0, b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
              b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    (s101,) = c.send(1, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                        + frame(4, 0, 0, b"") + frame(1, 0x5, 1, server.encode([(":status", "200")])))
    (c2,) = c.send(0, PREFACE + frame(4, 0, 0, b"") + frame(1, 0x5, 3, client.encode(
        [(":method", "GET"), (":path", "/after"), (":scheme", "http"), (":authority", "lab")])))
    values, summary = run_frames(c.write(tmp_path / "h2c.pcap"))
    assert values["http2.headers.status"] == {s101: ["200"]}
    assert values["http2.headers.path"] == {c2: ["/after"]}
    per_frame, _, fields, _ = analyse(str(tmp_path / "h2c.pcap"))
    assert fields["http.response.code"] == {s101: [101]}


def test_broken_header_block_is_malformed_and_the_next_frames_still_parse(tmp_path):
    c = Conn(server_port=8000)
    (c1,) = c.send(0, PREFACE + frame(1, 0x5, 1, b"\xff\xff\xff\xff\x0f") + frame(6, 0, 0, b"12345678"))
    values, summary = run_frames(c.write(tmp_path / "bad.pcap"))
    assert values["http2.type"][c1] == [1, 6]
    (flow,) = summary.flows.values()
    assert flow.http2.malformed == 1
