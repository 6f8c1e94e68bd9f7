"""TLS: hello parsing by hand (GREASE, every extension we read), fingerprints against their reference tools,
records and alerts, SSLv2 hello, HelloRetryRequest, encrypted phases and the handshake history."""

from __future__ import annotations

import struct
from functools import lru_cache

from diagnose.pipeline import open_pass
from diagnose.protocols.app import AppLayer
from diagnose.protocols.tls import (HRR_RANDOM, TlsConnection, is_grease, parse_client_hello, parse_server_hello,
                                    parse_sslv2_client_hello)
from oracles.fixtures import data_path


def ext(etype: int, body: bytes) -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def vec(size: int, body: bytes) -> bytes:
    return len(body).to_bytes(size, "big") + body


def client_hello_body(*, sni="example.com", alpn=(b"h2", b"http/1.1"), versions=(0x0A0A, 0x0304, 0x0303)) -> bytes:
    ciphers = [0x2A2A, 0x1301, 0x1302, 0xC02B]
    exts = [
        ext(0x1A1A, b""),  # GREASE
        ext(0, vec(2, b"\0" + vec(2, sni.encode()))),
        ext(10, vec(2, struct.pack(">3H", 0x3A3A, 29, 23))),
        ext(11, vec(1, b"\0")),
        ext(13, vec(2, struct.pack(">3H", 0x0403, 0x0804, 0x0401))),
        ext(16, vec(2, b"".join(vec(1, a) for a in alpn))),
        ext(35, b""),
        ext(43, vec(1, b"".join(struct.pack(">H", v) for v in versions))),
        ext(51, vec(2, struct.pack(">H", 29) + vec(2, b"k" * 32))),
    ]
    return (struct.pack(">H", 0x0303) + b"r" * 32 + vec(1, b"s" * 32) + vec(2, b"".join(
        struct.pack(">H", c) for c in ciphers)) + vec(1, b"\0") + vec(2, b"".join(exts)))


def test_client_hello_fields_and_grease():
    m = parse_client_hello(client_hello_body())
    assert m.malformed is None and m.version == 0x0303 and m.session_id == b"s" * 32
    assert m.ciphers == [0x2A2A, 0x1301, 0x1302, 0xC02B]  # kept as sent (Wireshark lists GREASE too)
    assert m.sni == "example.com" and m.alpn == ["h2", "http/1.1"]
    assert m.supported_versions == [0x0A0A, 0x0304, 0x0303] and m.groups == [0x3A3A, 29, 23]
    assert m.sig_algs == [0x0403, 0x0804, 0x0401] and m.key_share_groups == [29] and m.session_ticket == 0
    assert [t for t, _ in m.extensions] == [0x1A1A, 0, 10, 11, 13, 16, 35, 43, 51]
    # fingerprints leave GREASE out
    assert m.ja3_full == "771,4865-4866-49195,0-10-11-13-16-35-43-51,29-23,0"
    assert m.ja4.startswith("t13d0308h2_")  # TLS 1.3 from supported_versions, SNI, 3 ciphers, 8 extensions
    assert m.ja4_r == "t13d0308h2_1301,1302,c02b_000a,000b,000d,0023,002b,0033_0403,0804,0401"
    assert is_grease(0xFAFA) and not is_grease(0x1301)


def test_cut_hello_is_malformed_with_what_was_read():
    body = client_hello_body()
    m = parse_client_hello(body[:60])
    assert m.malformed and m.version == 0x0303 and m.sni is None


def test_server_hello_and_hello_retry_request():
    body = (struct.pack(">H", 0x0303) + b"R" * 32 + vec(1, b"") + struct.pack(">HB", 0x1302, 0)
            + vec(2, ext(43, struct.pack(">H", 0x0304)) + ext(16, vec(2, vec(1, b"h2")))))
    m = parse_server_hello(body)
    assert not m.hrr and m.cipher == 0x1302 and m.selected_version == 0x0304 and m.alpn == ["h2"]
    hrr = parse_server_hello(struct.pack(">H", 0x0303) + HRR_RANDOM + body[34:])
    assert hrr.hrr


def test_sslv2_client_hello():
    body = struct.pack(">HHHH", 0x0301, 6, 0, 16) + bytes.fromhex("010080030080") + b"c" * 16
    m = parse_sslv2_client_hello(body)
    assert m.sslv2 and m.version == 0x0301 and m.ciphers == [0x010080, 0x030080] and m.random == b"c" * 16


@lru_cache(maxsize=None)
def sessions(group: str, name: str):
    app = AppLayer(use_system_store=False)
    run = open_pass(str(data_path(group, *name.split("/"))))
    with run.capture:
        for chunk in run.chunks():
            app.update(chunk.buf, chunk.table, run.flows.conversations)
    summary = app.finish()
    return [f.tls.session for c, f in sorted(summary.flows.items()) if f.tls is not None]


def test_ja4_and_ja4s_equal_the_foxio_reference():
    """Expected values: FoxIO-LLC/ja4 python/test/testdata/{badcurveball.pcap,browsers-x509.pcapng}.json."""
    (curveball,) = sessions("corpus", "ja4/badcurveball.pcap")
    assert curveball.client_hello.ja4 == "t13d1615h2_46e7e9700bed_45f260be83e2"
    assert curveball.client_hello.ja4_r == (
        "t13d1615h2_000a,002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,"
        "000d,0012,0015,0017,001b,0023,002b,002d,0033,ff01_0403,0804,0401,0503,0805,0501,0806,0601,0201")
    assert curveball.server_hello.ja4s == "t1205h1_c02b_845f7282a956"
    browsers = sessions("corpus", "ja4/browsers-x509.pcapng")
    assert [s.client_hello.ja4 for s in browsers] == ["t13d1516h2_8daaf6152771_e5627efa2ab1"] * 3
    assert [s.server_hello.ja4s for s in browsers[1:]] == ["t1207h2_c02b_cf25e267ce22", "t1205h2_c02f_845f7282a956"]


def test_ja3_and_ja3s_equal_tshark():
    """Expected: tls.handshake.ja3 / ja3s of TShark 4.0.17 on these captures."""
    (curveball,) = sessions("corpus", "ja4/badcurveball.pcap")
    assert curveball.client_hello.ja3 == "66918128f1b9b03303d77c6f2eefd128"
    assert curveball.server_hello.ja3s_full == "771,49195,0-65281-11-35-16"
    assert curveball.server_hello.ja3s == "2d1eb5817ece335c24904f516ad5da12"
    (tls12,) = sessions("corpus", "zeek/tls1.2.pcap")
    assert tls12.client_hello.ja3 == "bd9c99b3a0f752c3ab8b052a79e9de3e"
    assert tls12.server_hello.ja3s == "c253ec3ad88e42f8da4032682892f9a0"


def test_handshake_history_and_counters():
    (tls12,) = sessions("corpus", "zeek/tls1.2.pcap")
    assert tls12.history_text == "CsxnGIFifDdL"  # upper case: client; F/f: the encrypted Finished
    assert tls12.version == 0x0303 and tls12.cipher == 0x0004 and tls12.app_records == [2, 2]
    (hrr,) = sessions("corpus", "zeek/hrr.pcap")
    assert hrr.hello_retry is not None and hrr.client_hellos == 2 and hrr.history_text == "CjiICsdD"
    assert hrr.version == 0x0304 and hrr.tls13
    v3 = sessions("corpus", "zeek/ssl.v3.pcap")
    assert v3[0].client_hello.sslv2 and v3[0].version == 0x0301


def test_encrypted_alerts_after_change_cipher_spec():
    """TLS 1.2: alerts after the sender's ChangeCipherSpec have no visible level/description (tls_wrong_host
    frames 12 and 14), a plaintext one does (frame 39)."""
    found = []
    for session in sessions("lab", "tls_wrong_host.pcap"):
        found += [(a.frame, a.encrypted, a.level, a.description) for a in session.alerts]
    assert sorted(found) == [(12, True, None, None), (14, True, None, None), (39, False, 2, 42)]


class _Ctx:
    """The emitter a TlsConnection talks to, recording what it emits."""

    def __init__(self):
        self.items = []

    def frame(self, row):
        return row

    def ts(self, row):
        return row * 1000

    def emit(self, kind, row, obj):
        self.items.append((kind, row, obj))


def record(ctype: int, body: bytes, version=0x0303) -> bytes:
    return struct.pack(">BHH", ctype, version, len(body)) + body


def handshake(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def test_handshake_messages_span_records_and_records_span_segments():
    ctx = _Ctx()
    conn = TlsConnection(ctx)
    hello = handshake(1, client_hello_body())
    data = record(22, hello[:50]) + record(22, hello[50:])  # one message in two records
    client = conn.halves[0]
    client.feed(data[:30], 30, 1)  # a segment that starts a record it does not finish
    client.feed(data[30:], len(data) - 30, 2)
    records = [obj for kind, row, obj in ctx.items if kind == "tls"]
    assert [(r.length, [m.type for m in r.messages]) for r in records] == [(50, []), (len(hello) - 50, [1])]
    assert [(kind, row) for kind, row, _ in ctx.items if kind == "tls_start"] == [("tls_start", 1)]
    assert conn.session.client_hello.sni == "example.com"


def test_application_data_bodies_are_skipped_not_copied():
    ctx = _Ctx()
    conn = TlsConnection(ctx)
    server = conn.halves[1]
    server.feed(record(23, b"x" * 10)[:5], 5, 1)
    assert server.skippable == 10  # the reassembler may pass a count instead of the bytes
    server.feed(None, 10, 2)
    assert conn.session.app_records == [0, 1] and conn.session.first_app_ts == [None, 2000]


def test_garbage_loses_sync_and_resynchronises_at_a_record_start():
    ctx = _Ctx()
    conn = TlsConnection(ctx)
    half = conn.halves[0]
    half.feed(b"\x99" * 20, 20, 1)
    assert half.desync
    half.feed(record(21, b"\x02\x28"), 7, 2)
    assert conn.session.alerts[0].description == 40 and not half.desync
