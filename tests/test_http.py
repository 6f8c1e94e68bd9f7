"""HTTP/1.x through the whole application layer on built captures: keep-alive, pipelining, bodies by length and
chunked, HEAD/1xx/204/304, close-delimited, cut by RST, split headers, reordering, recognition by content."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.all import IP, TCP, Ether, Raw, wrpcap

from diagnose.fields import ChunkContext, lookup
from diagnose.pipeline import open_pass
from diagnose.protocols.app import AppLayer
from diagnose.protocols.http import start_kind

CLIENT, SERVER = ("10.1.0.1", 41000), ("10.2.0.1", 8080)


class Conn:
    """Builds one TCP connection packet by packet with consistent sequence numbers."""

    def __init__(self, server_port: int = SERVER[1]):
        self.sport, self.dport = CLIENT[1], server_port
        self.seq = [1000, 5000]
        self.packets = []
        self.t = 1_700_000_000.0
        self._add(0, "S", b"", seq=999)
        self._add(1, "SA", b"", seq=4999)
        self._add(0, "A", b"")

    def _add(self, d, flags, payload, seq=None, dt=0.001):
        src, dst = (CLIENT[0], SERVER[0]) if d == 0 else (SERVER[0], CLIENT[0])
        sp, dp = (self.sport, self.dport) if d == 0 else (self.dport, self.sport)
        seq = self.seq[d] if seq is None else seq
        p = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, seq=seq, ack=self.seq[1 - d], flags=flags)
        if payload:
            p = p / Raw(payload)
        self.t += dt
        p.time = self.t
        self.packets.append(p)
        return len(self.packets)  # frame number

    def send(self, d, data: bytes, mss: int = 1460, dt=0.001, flags="PA") -> list[int]:
        frames = []
        for i in range(0, len(data), mss):
            piece = data[i:i + mss]
            frames.append(self._add(d, flags, piece, dt=dt))
            self.seq[d] += len(piece)
        return frames

    def segment_at(self, d, offset: int, data: bytes, dt=0.001) -> int:
        """A segment at stream offset `offset` of direction d (for reordering), without moving the sender."""
        base = 1000 if d == 0 else 5000
        return self._add(d, "PA", data, seq=base + offset, dt=dt)

    def fin(self, d):
        f = self._add(d, "FA", b"")
        self.seq[d] += 1
        return f

    def rst(self, d):
        return self._add(d, "RA", b"")

    def write(self, path):
        wrpcap(str(path), self.packets)
        return str(path)


def analyse(path):
    """({frame: [HttpMessage]}, summary, {field: {frame: [values]}} for a few fields via the field registry)."""
    app = AppLayer(use_system_store=False)
    per_frame, fields = {}, {}
    run = open_pass(path)
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            for frame, msgs in out.by_frame("http").items():
                per_frame.setdefault(frame, []).extend(msgs)
            ctx = ChunkContext(chunk.buf, chunk.table, extra={"app": out})
            for name in ("http.request.method", "http.response.code", "http.time", "http.request", "http.host"):
                for occurrence in lookup(name).extract(ctx):
                    for row in np.nonzero(occurrence.present)[0]:
                        value = occurrence.values[row]
                        fields.setdefault(name, {}).setdefault(int(chunk.table["frame"][row]), []).append(
                            value.item() if hasattr(value, "item") else value)
    summary = app.finish()
    return per_frame, summary, fields, app


def request(method="GET", uri="/", extra=b"", host=b"lab"):
    return f"{method} {uri} HTTP/1.1\r\n".encode() + b"Host: " + host + b"\r\n" + extra + b"\r\n"


def response(code=200, body=b"", headers=None):
    headers = {"Content-Length": str(len(body))} if headers is None else headers
    head = f"HTTP/1.1 {code} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


def test_keep_alive_responses_belong_to_the_frame_completing_the_body(tmp_path):
    c = Conn()
    r1 = c.send(0, request(uri="/a"))
    body = b"x" * 4000
    s1 = c.send(1, response(200, body), dt=0.05)
    r2 = c.send(0, request(uri="/b"))
    s2 = c.send(1, response(404, b"nope"))
    per_frame, summary, fields, _ = analyse(c.write(tmp_path / "ka.pcap"))
    assert fields["http.request.method"] == {r1[0]: ["GET"], r2[0]: ["GET"]}
    assert fields["http.response.code"] == {s1[-1]: [200], s2[-1]: [404]}
    assert len(s1) == 3 and s1[-1] not in fields["http.request.method"]
    microseconds = [round(float(c.packets[f - 1].time) * 1e6) for f in (s1[-1], r1[0])]  # what the pcap stores
    assert fields["http.time"][s1[-1]] == [(microseconds[0] - microseconds[1]) * 1000]
    (flow,) = summary.flows.values()
    assert [(t.request.uri, t.response.code) for t in flow.http.transactions] == [("/a", 200), ("/b", 404)]
    assert flow.http.transactions[0].response.body_bytes == 4000
    assert fields["http.host"][r1[0]] == ["lab"]


def test_pipelined_requests_in_one_segment(tmp_path):
    c = Conn()
    (both,) = c.send(0, request(uri="/1") + request(uri="/2"))
    s = c.send(1, response(200, b"one") + response(500, b"two"))
    per_frame, summary, fields, _ = analyse(c.write(tmp_path / "pipe.pcap"))
    assert [m.uri for m in per_frame[both]] == ["/1", "/2"]
    assert fields["http.response.code"] == {s[0]: [200, 500]}
    assert [m.request.uri for m in per_frame[s[0]]] == ["/1", "/2"]


def test_chunked_body_ends_at_the_last_chunk(tmp_path):
    c = Conn()
    c.send(0, request())
    chunks = b"5\r\nhello\r\n" + b"800\r\n" + b"y" * 0x800 + b"\r\n" + b"0\r\nX-Trailer: 1\r\n\r\n"
    s = c.send(1, response(200, chunks, {"Transfer-Encoding": "chunked"}), mss=700)
    per_frame, summary, fields, _ = analyse(c.write(tmp_path / "chunked.pcap"))
    assert fields["http.response.code"] == {s[-1]: [200]}
    msg = per_frame[s[-1]][0]
    assert msg.chunked and msg.body_bytes == 5 + 0x800


@pytest.mark.parametrize("method,code,headers", [
    ("HEAD", 200, {"Content-Length": "123456"}),
    ("GET", 304, {"Content-Length": "999"}),
    ("GET", 204, {}),
])
def test_responses_without_body(tmp_path, method, code, headers):
    c = Conn()
    c.send(0, request(method=method))
    (s1,) = c.send(1, response(code, b"", headers))
    c.send(0, request(uri="/next"))
    (s2,) = c.send(1, response(200, b"ok"))
    _, _, fields, _ = analyse(c.write(tmp_path / "nobody.pcap"))
    assert fields["http.response.code"] == {s1: [code], s2: [200]}


def test_interim_100_continue_does_not_consume_the_request(tmp_path):
    c = Conn()
    (r,) = c.send(0, request(method="POST", extra=b"Expect: 100-continue\r\nContent-Length: 4\r\n"))
    (s100,) = c.send(1, b"HTTP/1.1 100 Continue\r\n\r\n")
    c.send(0, b"data")
    (s200,) = c.send(1, response(201, b""))
    per_frame, summary, fields, _ = analyse(c.write(tmp_path / "continue.pcap"))
    assert fields["http.response.code"] == {s100: [100], s200: [201]}
    assert per_frame[s200][0].request.method == "POST"
    (flow,) = summary.flows.values()
    assert [t.response.code for t in flow.http.transactions] == [201]


def test_close_delimited_body_ends_at_the_fin(tmp_path):
    c = Conn()
    c.send(0, request())
    c.send(1, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"z" * 3000)
    fin = c.fin(1)
    per_frame, _, fields, _ = analyse(c.write(tmp_path / "close.pcap"))
    assert fields["http.response.code"] == {fin: [200]}
    assert per_frame[fin][0].body_bytes == 3000


def test_response_cut_by_rst_is_truncated_not_shown(tmp_path):
    c = Conn()
    c.send(0, request())
    c.send(1, response(200, b"q" * 50_000)[:20_000])
    c.rst(1)
    _, summary, fields, app = analyse(c.write(tmp_path / "rst.pcap"))
    assert "http.response.code" not in fields
    (flow,) = summary.flows.values()
    (tx,) = flow.http.transactions
    assert tx.truncated and tx.response.content_length == 50_000
    assert tx.response.body_bytes == 20_000 - len(response(200, b"q" * 50_000)) + 50_000
    assert app.events < len(c.packets)  # body packets in order were consumed by the kernel


def test_header_split_over_segments_and_lf_only_lines(tmp_path):
    c = Conn()
    frames = c.send(0, b"GET /split HTTP/1.1\nHost: lab\nUser-Agent: t\n\n", mss=10)
    (s,) = c.send(1, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    per_frame, _, fields, _ = analyse(c.write(tmp_path / "split.pcap"))
    assert fields["http.request.method"] == {frames[-1]: ["GET"]}
    assert per_frame[frames[-1]][0].uri == "/split" and per_frame[frames[-1]][0].header("user-agent") == "t"
    assert per_frame[frames[-1]][0].first_frame == frames[0]
    assert fields["http.response.code"] == {s: [200]}


def test_reordered_body_completes_at_the_segment_that_fills_the_hole(tmp_path):
    c = Conn()
    c.send(0, request())
    data = response(200, b"b" * 3000)
    c.segment_at(1, 0, data[:1000])
    c.segment_at(1, 2000, data[2000:])  # arrives before 1000..1999
    filler = c.segment_at(1, 1000, data[1000:2000])
    _, _, fields, _ = analyse(c.write(tmp_path / "reorder.pcap"))
    assert fields["http.response.code"] == {filler: [200]}


def test_recognised_by_content_on_any_port_and_only_with_known_methods(tmp_path):
    c = Conn(server_port=5999)
    (r,) = c.send(0, request(method="PROPFIND"))
    (s,) = c.send(1, response(207, b""))
    _, _, fields, _ = analyse(c.write(tmp_path / "port.pcap"))
    assert fields["http.request.method"] == {r: ["PROPFIND"]} and fields["http.response.code"] == {s: [207]}
    assert start_kind(b"GET/ HTTP/1.1\r\n") is None
    assert start_kind(b"FOO / HTTP/1.1\r\n") is None
    assert start_kind(b"OPTIONS\r\n") == "request"
    assert start_kind(b"GE") == "maybe"
    assert start_kind(b"HTTP/1.1 200 OK\r\n") == "response"


def test_first_bytes_split_before_classification(tmp_path):
    """A request whose first segment is only "G" is still found (the first bytes wait for more)."""
    c = Conn()
    c.send(0, b"G")
    rest = c.send(0, request(uri="/g")[1:])
    (s,) = c.send(1, response(200, b""))
    per_frame, _, fields, _ = analyse(c.write(tmp_path / "g.pcap"))
    assert fields["http.request.method"] == {rest[0]: ["GET"]} and per_frame[rest[0]][0].uri == "/g"
    assert fields["http.response.code"] == {s: [200]}


def test_bad_content_length_is_malformed_and_analysis_goes_on(tmp_path):
    c = Conn()
    c.send(0, request())
    (s,) = c.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n")
    c.fin(1)
    app = AppLayer(use_system_store=False)
    run = open_pass(c.write(tmp_path / "bad.pcap"))
    malformed = []
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            malformed += [(int(chunk.table["frame"][row]), kind) for row, kind, _ in out.malformed]
    app.finish()
    assert [kind for _, kind in malformed] == ["http"]  # one malformed message, and the response still completes


def test_status_code_must_be_ascii_digits():
    """Found by the fuzz test: latin-1 '²' is a digit to str.isdigit but not to int()."""
    from diagnose.protocols.http import parse_datagram

    class Ctx:
        def frame(self, row):
            return row

        def ts(self, row):
            return 0

    assert parse_datagram(b"HTTP/1.1 \xb200 OK\r\n\r\n", Ctx(), 1) is None
    assert parse_datagram(b"HTTP/1.1 200 OK\r\n\r\n", Ctx(), 1).code == 200
