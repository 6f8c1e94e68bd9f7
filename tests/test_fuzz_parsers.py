"""Fuzzing: mutated and truncated corpus payloads through every parser, and mutated capture chunks through the
whole application layer. Nothing may raise: bad data becomes a `malformed` mark and the analysis goes on.

The inputs are real: payloads (DNS messages, HTTP heads, TLS records, certificates) taken from the corpus and lab
captures, then cut, flipped, spliced, duplicated. Examples are derandomised so CI runs the same 10,000 cases.
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnose.packet import ST_REASSEMBLED
from diagnose.pipeline import open_pass
from diagnose.protocols import classify, dns, http, http2, tls, x509
from diagnose.protocols.app import AppLayer
from oracles.fixtures import data_path

CAPTURES = [("lab", "http_404_and_500.pcap"), ("lab", "dns_nxdomain.pcap"), ("lab", "tls_expired_cert.pcap"),
            ("lab", "tls_wrong_host.pcap"), ("lab", "mid_stream_rst.pcap"), ("corpus", "zeek/dns-edns-ecs.pcap"),
            ("corpus", "zeek/methods.pcap"), ("corpus", "zeek/ssl.v3.pcap"), ("corpus", "zeek/hrr.pcap"),
            ("corpus", "ja4/latest.pcapng"), ("corpus", "ja4/http1.pcapng"), ("corpus", "tcpdump/dns-uri.pcap"),
            ("corpus", "zeek/tls13-ech.pcap"), ("corpus-zeek", "wikipedia.pcap")]


def _payloads_of(buf, table):
    out = []
    for r in table:
        plen, off = int(r["payload_len"]), int(r["payload_off"])
        if plen <= 0 or off < 0:
            continue
        start = int(r["data"]) + off
        avail = len(buf) - start if int(r["status"]) & ST_REASSEMBLED else int(r["caplen"]) - off
        if avail > 0:
            out.append(buf[start: start + min(plen, avail, 4096)].tobytes())
    return out


@lru_cache(maxsize=None)
def corpus() -> tuple[list[bytes], list[bytes], list[tuple]]:
    """(payloads, certificates DER, chunks (buf, table, conversations) to mutate whole)."""
    payloads, certs, chunks = [], [], []
    for group, name in CAPTURES:
        run = open_pass(str(data_path(group, *name.split("/"))))
        app = AppLayer(use_system_store=False)
        with run.capture:
            for chunk in run.chunks():
                payloads += _payloads_of(chunk.buf, chunk.table)
                out = app.update(chunk.buf, chunk.table, run.flows.conversations)
                for _, record in out.items["tls"]:
                    for message in record.messages:
                        certs += [c.der for c in getattr(message, "certs", [])]
                chunks.append((group, name, chunk.buf.copy(), chunk.table.copy(), run.flows.conversations.copy()))
        app.finish()
    payloads = sorted(set(payloads))
    # TLS handshake bodies too (the hello parsers take the body after the record and message headers)
    payloads += [p[9:] for p in payloads if len(p) > 9 and p[0] == 22 and p[1] == 3]
    return payloads, sorted(set(certs)), chunks


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: cut, flip a byte, insert, delete, duplicate a slice."""
    b = bytearray(data)
    for kind, pos, value in ops:
        if not b:
            b = bytearray([value])
            continue
        pos %= len(b)
        if kind == 0:
            del b[pos:]
        elif kind == 1:
            b[pos] ^= value or 0xFF
        elif kind == 2:
            b[pos:pos] = bytes([value]) * (1 + value % 7)
        elif kind == 3:
            del b[pos: pos + 1 + value % 16]
        else:
            b[pos:pos] = b[pos: pos + 1 + value % 64]
    return bytes(b)


class Ctx:
    """The emitter stream parsers talk to."""

    def __init__(self):
        self.items = 0

    def frame(self, row):
        return row

    def ts(self, row):
        return 0 if row is None else row

    def emit(self, kind, row, obj):
        self.items += 1


def feed_in_pieces(consumer, data: bytes, cut: int) -> None:
    pieces = [data[i: i + cut] for i in range(0, len(data), cut)] or [b""]
    for row, piece in enumerate(pieces):
        if piece:
            consumer.feed(piece, len(piece), row)
    consumer.gap(7, len(pieces))
    consumer.feed(data[:40], len(data[:40]), len(pieces) + 1)
    consumer.close(len(pieces) + 2, "end")


def every_parser(data: bytes, cut: int) -> None:
    m = dns.parse_message(data)
    assert m.malformed is None or isinstance(m.malformed, str)
    dns.looks_like_dns(data)
    dns.DnsTracker().track(m, 1, 1)
    classify.classify_tcp(data, 1234, 443)
    classify.classify_udp(data, 53, 1234)
    classify.classify_udp(data, 7000, 7001)
    http.start_kind(data)
    http.parse_datagram(data, Ctx(), 0)
    for htype in (1, 2, 4, 11, 13, 22):
        tls.parse_handshake(htype, data, tls13=bool(cut & 1))
    tls.parse_sslv2_client_hello(data)
    x509.parse_certificate(data)
    conn = http.HttpConnection(Ctx())
    feed_in_pieces(http.HttpHalf(conn), data, cut)
    feed_in_pieces(tls.TlsConnection(Ctx()).halves[cut & 1], data, cut)
    h2 = http2.Http2Connection(Ctx())
    feed_in_pieces(h2.half(0, expect=None), data, cut)
    feed_in_pieces(h2.half(1, expect=http2.PREFACE), http2.PREFACE + data, cut)


mutation = st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(0, 255))


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(which=st.integers(0, 1 << 30), ops=st.lists(mutation, max_size=6), cut=st.integers(1, 1500))
def test_ten_thousand_mutated_payloads_through_every_parser(which, ops, cut):
    payloads, certs, _ = corpus()
    source = certs if which % 10 == 0 and certs else payloads
    every_parser(mutate(source[which % len(source)], ops), cut)


def test_malformed_input_is_marked():
    """Cut messages are marked malformed (not silently accepted) by each message parser."""
    payloads, certs, _ = corpus()
    assert len(payloads) > 500 and len(certs) > 10
    dns_messages = [p for p in payloads if dns.parse_message(p).malformed is None and dns.looks_like_dns(p)]
    assert dns_messages and all(dns.parse_message(p[: len(p) // 2]).malformed for p in dns_messages[:50])
    hellos = [p[9:] for p in payloads if len(p) > 60 and p[:3] in (b"\x16\x03\x01", b"\x16\x03\x03") and p[5] == 1]
    assert hellos and all(tls.parse_client_hello(h[:40]).malformed for h in hellos)
    assert all(x509.parse_certificate(c[: len(c) // 3]).malformed for c in certs)


def test_mutated_chunks_through_the_application_layer():
    """Whole chunks with mutated payload bytes, shuffled sequence numbers and cut lengths: the AppLayer never
    raises, marks malformed PDUs, and keeps analysing the chunks that follow."""
    _, _, chunks = corpus()
    rng = random.Random(6)
    malformed = parsed = 0
    for round_ in range(12):
        app, capture = None, None
        for group, name, buf, table, convs in chunks:
            if (group, name) != capture:  # one application layer per capture, as in a real pass
                if app is not None:
                    app.finish()
                app, capture = AppLayer(use_system_store=False), (group, name)
            buf = buf.copy()
            table = table.copy()
            rows = np.nonzero((table["payload_len"] > 0) & (table["payload_off"] >= 0))[0]
            for i in rows.tolist():
                if rng.random() < 0.3:
                    start = int(table["data"][i]) + int(table["payload_off"][i])
                    n = max(0, min(int(table["payload_len"][i]), int(table["caplen"][i]) - int(table["payload_off"][i])))
                    for _ in range(rng.randrange(1, 8)):
                        if n:
                            buf[start + rng.randrange(n)] = rng.randrange(256)
                if rng.random() < 0.05:
                    table["tcp_seq"][i] = (int(table["tcp_seq"][i]) + rng.randrange(-3000, 3000)) & 0xFFFFFFFF
                if rng.random() < 0.05:
                    table["payload_len"][i] = max(1, int(table["payload_len"][i]) - rng.randrange(50))
            out = app.update(buf, table, convs)
            malformed += len(out.malformed)
            parsed += sum(len(v) for v in out.items.values())
        app.finish()
    assert malformed > 0 and parsed > 1000
