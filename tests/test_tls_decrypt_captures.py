"""Decryption of the lab and corpus captures that ship key logs or decryption-secrets blocks, against tshark.

The stored tshark fixtures (run with the same key logs) say which handshake messages each frame carries once
decrypted, which frames are HTTP, the URIs, status codes, http.time and certificates. The TLS records are taken
from the packet table by a small test-only helper (TCP payloads per direction in sequence order, records attributed
to the frame holding their last byte), so these tests exercise the key log and the decryptor, not a TLS parser.
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest
from cryptography import x509
from oracles.fixtures import data_path, load_tshark, packet_columns

from diagnose.keylog import KeyLog
from diagnose.packet import TH_SYN
from diagnose.pipeline import open_pass
from diagnose.protocols.tls_decrypt import Reason, TlsSessionKeys


# -- test-only TLS record extraction ---------------------------------------------------------------------------------
@dataclass
class Record:
    content_type: int
    version: int
    fragment: bytes
    frame: int  # the frame holding the record's last byte
    ts: int


@dataclass
class Stream:
    segments: dict = field(default_factory=lambda: defaultdict(list))  # dir -> [(seq, bytes, frame, ts, syn)]


def read_tcp(path: str):
    """Per tcp.stream and direction, the payload bytes of every segment (copied: the chunk buffer is reused)."""
    streams: dict[int, Stream] = defaultdict(Stream)
    run = open_pass(path)
    with run.capture:
        for chunk in run.chunks():
            t = chunk.table
            rows = np.nonzero((t["ip_proto"] == 6) & (t["stream"] >= 0) & (t["l4_off"] >= 0))[0]
            for i in rows:
                r = t[i]
                start = int(r["data"]) + int(r["payload_off"]) if r["payload_off"] >= 0 else 0
                captured = max(0, min(int(r["payload_len"]), int(r["data"]) + int(r["caplen"]) - start))
                payload = chunk.buf[start:start + captured].tobytes() if r["payload_off"] >= 0 else b""
                streams[int(r["stream"])].segments[int(r["dir"])].append(
                    (int(r["tcp_seq"]), payload, int(r["frame"]), int(r["ts"]), bool(r["tcp_flags"] & TH_SYN)))
        secrets = list(run.capture.info.secrets)
    return streams, secrets


def records_of(segments) -> list[Record]:
    """In-order bytes (retransmitted bytes dropped), split into TLS records."""
    data, owner = bytearray(), []  # owner[i] = (frame, ts) of byte i
    next_seq = None
    for seq, payload, frame, ts, syn in segments:
        if syn:
            next_seq = (seq + 1) & 0xFFFFFFFF
            continue
        if not payload:
            continue
        if next_seq is None:
            next_seq = seq
        skip = (next_seq - seq) & 0xFFFFFFFF
        if skip >= len(payload) or skip >= 1 << 31:
            if skip >= 1 << 31:
                raise AssertionError("a hole in the test capture")
            continue
        data += payload[skip:]
        owner += [(frame, ts)] * (len(payload) - skip)
        next_seq = (seq + len(payload)) & 0xFFFFFFFF
    out, i = [], 0
    while i + 5 <= len(data):
        length = int.from_bytes(data[i + 3:i + 5], "big")
        if data[i] not in (20, 21, 22, 23, 24) or i + 5 + length > len(data):
            break
        frame, ts = owner[i + 5 + length - 1]
        out.append(Record(data[i], int.from_bytes(data[i + 1:i + 3], "big"), bytes(data[i + 5:i + 5 + length]),
                          frame, ts))
        i += 5 + length
    return out


def hello(records: list[Record], msg_type: int) -> bytes | None:
    for r in records:
        if r.content_type == 22 and r.fragment and r.fragment[0] == msg_type:
            return r.fragment
    return None


def server_hello_facts(sh: bytes) -> dict:
    version = int.from_bytes(sh[4:6], "big")
    i = 39 + sh[38]
    suite = int.from_bytes(sh[i:i + 2], "big")
    i += 3
    ext = {}
    if i + 2 <= len(sh):
        end, i = i + 2 + int.from_bytes(sh[i:i + 2], "big"), i + 2
        while i + 4 <= end:
            t, n = int.from_bytes(sh[i:i + 2], "big"), int.from_bytes(sh[i + 2:i + 4], "big")
            ext[t] = sh[i + 4:i + 4 + n]
            i += 4 + n
    if 0x2B in ext:
        version = int.from_bytes(ext[0x2B], "big")
    return {"version": version, "suite": suite, "random": sh[6:38], "ems": 0x17 in ext, "etm": 0x16 in ext}


@dataclass
class Decoded:
    handshake_types: dict = field(default_factory=lambda: defaultdict(list))  # frame -> [types]
    app_data: list = field(default_factory=list)  # (frame, ts, plaintext)
    app_streams: list = field(default_factory=list)  # per direction: [(frame, ts, plaintext)]
    handshake_messages: list = field(default_factory=list)  # (frame, message bytes)
    decryptors: list = field(default_factory=list)
    sessions: list = field(default_factory=list)


def decode(path: str, keylog: KeyLog | None, *, use_capture_secrets: bool = False) -> Decoded:
    streams, secrets = read_tcp(path)
    if use_capture_secrets:
        keylog = KeyLog.load(secrets=secrets, use_environment=False)
    out = Decoded()
    for number, stream in sorted(streams.items()):
        by_dir = {d: records_of(segs) for d, segs in stream.segments.items()}
        client_dir = next((d for d, recs in by_dir.items() if hello(recs, 1)), None)
        if client_dir is None:
            continue
        server_dir = 1 - client_dir
        ch, sh = hello(by_dir[client_dir], 1), hello(by_dir.get(server_dir, []), 2)
        keys = None
        if sh is not None:
            facts = server_hello_facts(sh)
            keys = TlsSessionKeys(facts["version"], facts["suite"], ch[6:38], facts["random"], keylog,
                                  extended_master_secret=facts["ems"], encrypt_then_mac=facts["etm"])
            out.sessions.append((number, keys))
        for d, role in ((client_dir, "client"), (server_dir, "server")):
            decryptor = keys.decryptor(role) if keys else None
            out.decryptors.append((number, role, decryptor))
            pending = b""
            out.app_streams.append([])
            for r in by_dir.get(d, []):
                if decryptor is not None:
                    result = decryptor.decrypt(r.content_type, r.version, r.fragment)
                    ctype, plain = result.content_type, result.plaintext
                elif r.content_type == 22 and (sh is None or r.fragment[:1] in (b"\x01", b"\x02")):
                    ctype, plain = 22, r.fragment
                else:
                    ctype, plain = r.content_type, None
                if plain is None:
                    pending = b""
                    continue
                if ctype == 23:
                    out.app_data.append((r.frame, r.ts, plain))
                    out.app_streams[-1].append((r.frame, r.ts, plain))
                elif ctype == 22:
                    pending += plain
                    while len(pending) >= 4 and len(pending) >= 4 + int.from_bytes(pending[1:4], "big"):
                        n = 4 + int.from_bytes(pending[1:4], "big")
                        out.handshake_types[r.frame].append(pending[0])
                        out.handshake_messages.append((r.frame, pending[:n]))
                        pending = pending[n:]
    return out


def http_frames(decoded: Decoded) -> dict[int, str]:
    """{frame: first line} of each HTTP/1 message in the decrypted data, at the frame that completes it (headers,
    then a Content-Length body), as tshark attributes a reassembled message. No length on a response: unfinished."""
    found = {}
    for direction in decoded.app_streams:
        data, owner = b"", []
        for frame, _, plain in direction:
            data += plain
            owner += [frame] * len(plain)
        start = 0
        while start < len(data):
            end = re.search(rb"\r?\n\r?\n", data[start:])
            if end is None:
                break
            head = data[start:start + end.end()].decode("latin-1")
            line = head.split("\n", 1)[0].rstrip("\r")
            if not (line.startswith("HTTP/1.") or line.split(" ", 1)[0] in ("GET", "POST", "HEAD", "PUT")):
                break
            length = re.search(r"(?im)^content-length:\s*(\d+)", head)
            if length is None and line.startswith("HTTP/"):
                break
            stop = start + end.end() + (int(length[1]) if length else 0)
            if stop > len(data):
                break
            found[owner[stop - 1]] = line
            start = stop
    return found


def tshark_handshake_types(columns) -> dict[int, list[int]]:
    return {int(f): [int(x) for x in v.split(",")] for f, v in zip(columns["frame.number"],
                                                                  columns["tls.handshake.type"]) if v}


# -- captures with a key log file ------------------------------------------------------------------------------------
KEYED = [("lab", "tls_decrypt_keylog.pcap", "tls_decrypt_keylog.keys"),
         ("lab", "slow_ttfb_tls.pcap", "slow_ttfb_tls.keys"),
         ("lab", "tls_expired_cert.pcap", "tls_expired_cert.keys"),
         ("lab", "tls_wrong_host.pcap", "tls_wrong_host.keys"),
         ("corpus", "illustrated-tls13/capture.pcap", "illustrated-tls13/keylog.txt"),
         ("corpus", "scapy/tls_nss_example.pcap", "scapy/tls_nss_example.keys.txt")]


def keylog_for(group: str, keys: str) -> KeyLog:
    return KeyLog.load([str(data_path(group, keys))], use_environment=False)


@pytest.mark.parametrize("group,name,keys", KEYED, ids=[n for _, n, _ in KEYED])
def test_decrypted_handshake_messages_per_frame_equal_tshark(group, name, keys):
    decoded = decode(str(data_path(group, name)), keylog_for(group, keys))
    fixture = load_tshark(group, name)["keys"]["with_keys"]
    assert dict(decoded.handshake_types) == tshark_handshake_types(packet_columns(fixture))
    assert sorted(f for f, types in decoded.handshake_types.items() if 11 in types) == \
        fixture["frame_sets"]["tls.handshake.type == 11"]


@pytest.mark.parametrize("group,name,keys", KEYED, ids=[n for _, n, _ in KEYED])
def test_decrypted_http_frames_equal_tshark(group, name, keys):
    decoded = decode(str(data_path(group, name)), keylog_for(group, keys))
    fixture = load_tshark(group, name)["keys"]["with_keys"]
    columns = packet_columns(fixture)
    found = http_frames(decoded)
    requests = {int(f): f"{m} {u}" for f, m, u in zip(columns["frame.number"], columns["http.request.method"],
                                                      columns["http.request.uri"]) if m}
    responses = {int(f): c for f, c in zip(columns["frame.number"], columns["http.response.code"]) if c}
    assert {f for f, line in found.items() if not line.startswith("HTTP/")} == set(requests)
    for frame, request in requests.items():
        assert found[frame].startswith(request + " ")
    for frame, code in responses.items():
        assert found[frame].split(" ")[1] == code
    # tshark's `http` set: the request frames and the response frames it could parse
    assert set(responses) | set(requests) == set(fixture["frame_sets"]["http"])


def test_lab_tls_decrypt_keylog_truths():
    """GET / -> 200 and GET /missing -> 404 over TLS 1.3 (0x1302); GET /error -> 500 over TLS 1.2 (0xc030)."""
    decoded = decode(str(data_path("lab", "tls_decrypt_keylog.pcap")), keylog_for("lab", "tls_decrypt_keylog.keys"))
    assert [(n, k.version, k.cipher_suite) for n, k in decoded.sessions] == [(0, 0x0304, 0x1302),
                                                                            (1, 0x0303, 0xC030)]
    assert http_frames(decoded) == {16: "GET / HTTP/1.1", 19: "HTTP/1.1 200 OK", 21: "GET /missing HTTP/1.1",
                                    24: "HTTP/1.1 404 Not Found", 45: "GET /error HTTP/1.1",
                                    48: "HTTP/1.1 500 Internal Server Error"}
    assert sorted(http_frames(decoded)) == load_tshark("lab", "tls_decrypt_keylog.pcap")["keys"]["with_keys"][
        "frame_sets"]["http"]  # the acceptance's 6 frames
    assert all(d.failed == 0 for _, _, d in decoded.decryptors)


def test_lab_tls_decrypt_keylog_without_keys():
    decoded = decode(str(data_path("lab", "tls_decrypt_keylog.pcap")), KeyLog())
    assert decoded.app_data == [] and http_frames(decoded) == {}
    assert load_tshark("lab", "tls_decrypt_keylog.pcap")["frame_sets"]["http"] == []
    assert [k.reason for _, k in decoded.sessions] == [Reason.NO_SECRET, Reason.NO_SECRET]
    keyed = decode(str(data_path("lab", "tls_decrypt_keylog.pcap")), keylog_for("lab", "tls_decrypt_keylog.keys"))
    protected = sum(d.decrypted for _, _, d in keyed.decryptors)
    assert protected == 20 and sum(d.failed for _, _, d in decoded.decryptors) == protected
    assert all(d.first_failure in (None, Reason.NO_SECRET) for _, _, d in decoded.decryptors)


def test_slow_ttfb_tls_http_time():
    decoded = decode(str(data_path("lab", "slow_ttfb_tls.pcap")), keylog_for("lab", "slow_ttfb_tls.keys"))
    times = {frame: ts for frame, ts, _ in decoded.app_data}  # http.time: request frame to response frame
    assert http_frames(decoded) == {15: "GET /slow?d=2.5 HTTP/1.1", 22: "HTTP/1.1 200 OK"}
    columns = packet_columns(load_tshark("lab", "slow_ttfb_tls.pcap")["keys"]["with_keys"])
    expected = Decimal(columns["http.time"][21])  # frame 22
    assert abs(Decimal(times[22] - times[15]) / 10**9 - expected) < Decimal("0.000001")
    assert Decimal("2.49") < expected < Decimal("2.52")


def certificates_in(message: bytes, tls13: bool) -> list[x509.Certificate]:
    """The certificate_list of a Certificate handshake message."""
    i = 4
    if tls13:
        i += 1 + message[i]  # certificate_request_context
    end = i + 3 + int.from_bytes(message[i:i + 3], "big")
    i += 3
    out = []
    while i < end:
        n = int.from_bytes(message[i:i + 3], "big")
        out.append(x509.load_der_x509_certificate(message[i + 3:i + 3 + n]))
        i += 3 + n
        if tls13:
            i += 2 + int.from_bytes(message[i:i + 2], "big")
    return out


def test_tls_expired_cert_tls13_certificate_decrypts():
    """Only SERVER_HANDSHAKE_TRAFFIC_SECRET is logged: enough for the server's encrypted Certificate (frame 20)."""
    decoded = decode(str(data_path("lab", "tls_expired_cert.pcap")), keylog_for("lab", "tls_expired_cert.keys"))
    (_, stream0), (_, stream1) = decoded.sessions
    assert stream0.reason is Reason.NO_SECRET and stream1.reason is None and stream1.tls13
    assert stream1.missing_labels == ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                                      "SERVER_TRAFFIC_SECRET_0"]
    message = next(m for frame, m in decoded.handshake_messages if frame == 20 and m[0] == 11)
    chain = certificates_in(message, tls13=True)
    leaf = chain[0]
    assert leaf.not_valid_after_utc == datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "server.lab.test"
    expected = load_tshark("lab", "tls_expired_cert.pcap")["keys"]["with_keys"]["certificates"]["20"]
    assert len(chain) == len(expected) == 2
    assert [c["not_after"] for c in expected][0] == "2021-01-01 00:00:00 (UTC)"
    for cert, oracle in zip(chain, expected):
        assert cert.serial_number == int(oracle["serial"], 16)


# -- captures carrying their secrets (pcapng decryption-secrets blocks) ----------------------------------------------
DSB = ["derived/illustrated-tls13-dsb.pcapng", "derived/tls_nss_example-dsb.pcapng"]


@pytest.mark.parametrize("name", DSB)
def test_dsb_captures_decrypt_like_tshark(name):
    decoded = decode(str(data_path("corpus", name)), None, use_capture_secrets=True)
    fixture = load_tshark("corpus", name)  # tshark reads the DSB itself: the plain run is the keyed one
    assert dict(decoded.handshake_types) == tshark_handshake_types(packet_columns(fixture))
    assert set(http_frames(decoded)) == set(fixture["frame_sets"]["http"])
    assert all(d.failed == 0 for _, _, d in decoded.decryptors if d is not None)
    assert decoded.app_data


def test_keyed_captures_never_fail_authentication():
    """With the right key logs, a record either opens or lacks its secret; none fails authentication."""
    for group, name, keys in KEYED:
        decoded = decode(str(data_path(group, name)), keylog_for(group, keys))
        opened = 0
        for number, role, decryptor in decoded.decryptors:
            if decryptor is not None:
                assert decryptor.first_failure in (None, Reason.NO_SECRET, Reason.TLS13_LINES_MISSING), (name, number)
                opened += decryptor.decrypted
        assert opened > 0, name
