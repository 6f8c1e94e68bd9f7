"""The usual HTTP/1.x exchange is followed by the selection kernel (protocols/select.py, records turned into messages
by AppLayer._kernel_messages) and handed to the Python parser as soon as anything else happens (_materialize). Both
ways must give the same messages, per-frame fields and flow facts: every capture here is analysed with the kernel
path on and off and the results compared, and the simple cases must really avoid Python events."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnose.errors import CaptureError
from diagnose.pipeline import open_pass
from diagnose.protocols.app import AppLayer
from diagnose.protocols.fields import frame_values

from test_http import Conn, request, response

DATA = Path(__file__).parent / "data"
FIELDS = ("http.request.method", "http.request.uri", "http.request.version", "http.response.code",
          "http.response.phrase", "http.content_length", "http.time", "http.request_in", "http.host",
          "http.request_number", "http.response_number", "http.response.line")


def _message(m) -> tuple:
    return (m.is_request, m.method, m.uri, m.version, m.code, m.phrase, m.raw, m.frame, m.ts, m.first_frame,
            m.first_ts, m.content_length, m.chunked, m.body_bytes, m.body_gap, m.malformed, m.number, m.time_ns,
            m.complete, m.protocol, m.request.frame if m.request is not None else None)


def _transaction(t) -> tuple:
    return tuple(getattr(t, name) for name in HttpTransactionFields)


HttpTransactionFields = ("method", "uri", "request_frame", "request_ts", "code", "first_frame", "first_ts", "frame",
                         "ts", "body_bytes", "content_length", "has_request", "has_response", "truncated")


def analyse(path, follow: bool):
    app = AppLayer(use_system_store=False, kernel_http=follow)
    messages, fields, malformed = [], {}, []
    try:
        run = open_pass(str(path))
    except CaptureError as e:  # the corpus has broken files on purpose: both ways refuse them alike
        return {"refused": str(e)}, app
    with run.capture:
        for chunk in run.chunks():
            out = app.update(chunk.buf, chunk.table, run.flows.conversations)
            frames = chunk.table["frame"]
            messages += sorted((int(frames[row]), _message(m)) for row, m in out.rows("http"))
            for name in FIELDS:  # by frame: the two ways complete PDUs of different flows in another order
                for row, values in sorted(frame_values(out, name).items()):
                    fields.setdefault(name, []).append((int(frames[row]), values))
            malformed += [(int(frames[row]), kind, why) for row, kind, why in out.malformed if kind == "http"]
    summary = app.finish()
    flows = {}
    for c, flow in summary.flows.items():
        facts = flow.facts()
        if flow.http is not None:
            facts["transactions"] = [_transaction(t) for t in flow.http.transactions]
            facts["http.counts"] = (flow.http.requests, flow.http.responses, flow.http.malformed,
                                    flow.http.dropped_transactions)
        facts["rst_frame"] = flow.rst_frame
        flows[c] = facts
    return {"messages": messages, "fields": fields, "malformed": malformed, "flows": flows}, app


def same_both_ways(path) -> AppLayer:
    followed, app = analyse(path, True)
    parsed, _ = analyse(path, False)
    assert followed == parsed
    return app


def body(n: int) -> bytes:
    return bytes(range(256)) * (n // 256) + b"z" * (n % 256)


def test_a_plain_exchange_needs_no_python_event(tmp_path):
    c = Conn(server_port=80)
    c.send(0, request(uri="/index.html"))
    c.send(1, response(200, body(20000)), dt=0.02)
    c.fin(0)
    c.fin(1)
    path = c.write(tmp_path / "plain.pcap")
    app = same_both_ways(path)
    assert app.events == 0
    _, off = analyse(path, False)
    assert off.events == 2  # the request and the response head: what the kernel path saves
    result, _ = analyse(path, True)
    (facts,) = result["flows"].values()
    assert facts["http.status_codes"] == [200] and not facts["http.truncated"]


@pytest.mark.parametrize("case", [
    "small_body", "empty_body", "keep_alive", "rst_mid_body", "fin_mid_body", "capture_ends_mid_body",
    "retransmitted_body", "reordered_body", "lost_body_segment", "head", "chunked", "post_with_body", "no_content",
    "not_modified", "split_response_head", "split_request", "close_delimited", "pipelined", "bytes_past_body",
    "extra_client_data", "lower_case_header", "bad_content_length", "transfer_encoding_identity", "lf_only",
    "server_first", "status_line_without_phrase", "huge_content_length", "two_content_lengths", "fin_on_head",
])
def test_kernel_and_python_agree(tmp_path, case):
    c = Conn(server_port=80)
    if case == "small_body":
        c.send(0, request())
        c.send(1, response(200, b"hello"))
    elif case == "empty_body":
        c.send(0, request())
        c.send(1, response(404, b""))
    elif case == "keep_alive":
        c.send(0, request(uri="/a"))
        c.send(1, response(200, body(5000)))
        c.send(0, request(uri="/b"))
        c.send(1, response(500, body(300)))
    elif case == "rst_mid_body":
        c.send(0, request())
        data = response(200, body(10000))
        c.send(1, data[:4000])
        c.rst(1)
    elif case == "fin_mid_body":
        c.send(0, request())
        data = response(200, body(10000))
        c.send(1, data[:4000])
        c.fin(1)
        c.fin(0)
    elif case == "capture_ends_mid_body":
        c.send(0, request())
        c.send(1, response(200, body(10000))[:6000])
    elif case == "retransmitted_body":
        c.send(0, request())
        data = response(200, body(6000))
        c.send(1, data[:3000])
        c.segment_at(1, 1460, data[1460:2920])
        c.send(1, data[3000:])
    elif case == "reordered_body":
        c.send(0, request())
        data = response(200, body(6000))
        c.send(1, data[:1460])
        c.segment_at(1, 2920, data[2920:4380])
        c.segment_at(1, 1460, data[1460:2920])
        c.seq[1] += 4380 - 1460
        c.send(1, data[4380:])
    elif case == "lost_body_segment":
        c.send(0, request())
        data = response(200, body(6000))
        c.send(1, data[:1460])
        c.seq[1] += 1460  # never captured
        c.send(1, data[2920:])
        c.fin(1)
        c.fin(0)
    elif case == "head":
        c.send(0, request(method="HEAD"))
        c.send(1, response(200, b"", headers={"Content-Length": "1000"}))
    elif case == "chunked":
        c.send(0, request())
        c.send(1, response(200, b"5\r\nhello\r\n0\r\n\r\n", headers={"Transfer-Encoding": "chunked"}))
    elif case == "post_with_body":
        c.send(0, request(method="POST", extra=b"Content-Length: 4\r\n") + b"abcd")
        c.send(1, response(201, b"ok"))
    elif case == "no_content":
        c.send(0, request(method="DELETE"))
        c.send(1, response(204, b"", headers={}))
    elif case == "not_modified":
        c.send(0, request())
        c.send(1, response(304, b"", headers={"ETag": "x"}))
    elif case == "split_response_head":
        c.send(0, request())
        data = response(200, body(3000))
        c.send(1, data[:20])
        c.send(1, data[20:])
    elif case == "split_request":
        data = request(extra=b"X-Long: " + b"a" * 100 + b"\r\n")
        c.send(0, data[:30])
        c.send(0, data[30:])
        c.send(1, response(200, b"x"))
    elif case == "close_delimited":
        c.send(0, request())
        c.send(1, response(200, b"until the end", headers={"Connection": "close"}))
        c.fin(1)
    elif case == "pipelined":
        c.send(0, request(uri="/1") + request(uri="/2"))
        c.send(1, response(200, b"one") + response(200, b"two"))
    elif case == "bytes_past_body":
        c.send(0, request())
        c.send(1, response(200, b"abc") + b"garbage")
    elif case == "extra_client_data":
        c.send(0, request())
        c.send(1, response(200, body(4000))[:2000])
        c.send(0, b"more bytes from the client")
        c.send(1, response(200, body(4000))[2000:])
    elif case == "lower_case_header":
        c.send(0, request())
        c.send(1, response(200, b"abcdef", headers={"content-LENGTH": " 6 "}))
    elif case == "bad_content_length":
        c.send(0, request())
        c.send(1, response(200, b"abc", headers={"Content-Length": "3x"}))
    elif case == "transfer_encoding_identity":
        c.send(0, request())
        c.send(1, response(200, b"abc", headers={"Transfer-Encoding": "identity", "Content-Length": "3"}))
    elif case == "lf_only":
        c.send(0, b"GET /lf HTTP/1.1\nHost: lab\n\n")
        c.send(1, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    elif case == "server_first":
        c.send(1, response(200, b"hi"))
        c.send(0, request())
    elif case == "status_line_without_phrase":
        c.send(0, request())
        c.send(1, b"HTTP/1.0 200\r\nContent-Length: 3\r\n\r\nabc")
    elif case == "huge_content_length":
        c.send(0, request())
        c.send(1, response(200, b"abc", headers={"Content-Length": "99999999999999"}))
        c.fin(1)
    elif case == "two_content_lengths":
        c.send(0, request())
        c.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc")
    elif case == "fin_on_head":
        c.send(0, request())
        c.send(1, response(200, body(3000))[:1000], flags="FPA")
    c.fin(0)
    same_both_ways(c.write(tmp_path / f"{case}.pcap"))


CAPTURES = sorted(p for p in [*(DATA / "lab").glob("*.pcap*"), *(DATA / "corpus").rglob("*.pcap*")]
                  if not p.name.endswith(".json"))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(DATA)))
def test_lab_and_corpus_captures_agree(path):
    same_both_ways(path)


@pytest.mark.parametrize("name", ["lab/retransmissions.pcap",
                                  "corpus/zeek/methods.pcap", "corpus/zeek/206_example_b.pcap"])
def test_walking_in_python_after_many_rounds_agrees(name, monkeypatch):
    """A chunk with very many event rounds is finished packet by packet in Python (AppLayer._walk_in_python, which
    calls the kernel's step itself): the same results."""
    usual, _ = analyse(DATA / name, True)
    walks = []
    walk = AppLayer._walk_in_python
    monkeypatch.setattr(AppLayer, "_walk_in_python", lambda self, *a: walks.append(1) or walk(self, *a))
    monkeypatch.setattr("diagnose.protocols.app.MAX_ROUNDS_BEFORE_PYTHON", 0)
    walked, _ = analyse(DATA / name, True)
    assert walks and walked == usual and usual["messages"]
