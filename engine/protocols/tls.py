"""TLS (and SSL 3.0, SSLv2-compatible ClientHello) over a reassembled TCP connection, without keys.

Each direction is a `TlsHalf` (a StreamConsumer) that cuts its bytes into records; both share a `TlsSession` that
knows the negotiation (versions, cipher suite, SNI, ALPN, certificates, alerts) and keeps a Zeek-like history.

What a packet shows follows Wireshark: a record belongs to the packet that completes it; handshake messages are
reassembled across records and belong to the record that completes them; after a ChangeCipherSpec (TLS <= 1.2) a
direction's handshake and alert records are encrypted (no type, no level/description, but still an alert record);
in TLS 1.3 everything after the ServerHello travels as application data. Application data bodies are skipped by
length (never copied) unless a decryptor was attached (issue 7: see `Decryptor`).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from diagnose.protocols.x509 import CertInfo, DerError, der_children, der_element, parse_certificate
from diagnose.reassembly import StreamConsumer

CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA, CT_HEARTBEAT = 20, 21, 22, 23, 24
HS_HELLO_REQUEST, HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_NEW_SESSION_TICKET = 0, 1, 2, 4
HS_END_OF_EARLY_DATA, HS_ENCRYPTED_EXTENSIONS, HS_CERTIFICATE, HS_SERVER_KEY_EXCHANGE = 5, 8, 11, 12
HS_CERTIFICATE_REQUEST, HS_SERVER_HELLO_DONE, HS_CERTIFICATE_VERIFY, HS_CLIENT_KEY_EXCHANGE = 13, 14, 15, 16
HS_FINISHED, HS_CERTIFICATE_STATUS, HS_KEY_UPDATE = 20, 22, 24

EXT_SNI, EXT_GROUPS, EXT_POINT_FORMATS, EXT_SIG_ALGS, EXT_ALPN = 0, 10, 11, 13, 16
EXT_SESSION_TICKET, EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE, EXT_PSK = 35, 43, 51, 41

MAX_RECORD = (1 << 14) + 2048 + 256  # largest TLSCiphertext plus slack for broken stacks
MAX_HANDSHAKE = 1 << 20  # a handshake message longer than this is malformed
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

VERSION_NAMES = {0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
                 0x0304: "TLSv1.3"}
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
               22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
               42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
               45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
               49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction",
               70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
               86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
               109: "missing_extension", 110: "unsupported_extension", 111: "certificate_unobtainable",
               112: "unrecognized_name", 113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
               115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol"}
HANDSHAKE_NAMES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest",
                   4: "NewSessionTicket", 5: "EndOfEarlyData", 8: "EncryptedExtensions", 11: "Certificate",
                   12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone", 15: "CertificateVerify",
                   16: "ClientKeyExchange", 20: "Finished", 21: "CertificateURL", 22: "CertificateStatus",
                   24: "KeyUpdate", 254: "MessageHash"}
# Zeek's ssl_history letters (upper case: sent by the client, lower case: by the server)
HISTORY_LETTERS = {0: "h", 1: "c", 2: "s", 3: "v", 4: "t", 5: "e", 8: "o", 11: "x", 12: "k", 13: "r", 14: "n",
                   15: "y", 16: "g", 20: "f", 21: "w", 22: "u", 24: "p", 254: "m"}

_U16 = struct.Struct(">H").unpack_from


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ... 0xfafa)."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


class Malformed(Exception):
    pass


class _Reader:
    """Bounds-checked reads over a handshake body."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise Malformed("field runs past its message")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def vec(self, size_bytes: int) -> bytes:
        n = int.from_bytes(self.take(size_bytes), "big")
        return self.take(n)


def _u16_list(raw: bytes) -> list[int]:
    if len(raw) % 2:
        raise Malformed("odd length in a list of 16-bit values")
    return [int.from_bytes(raw[i: i + 2], "big") for i in range(0, len(raw), 2)]


# ---- handshake messages ----------------------------------------------------------------------------------------------

class Handshake:
    """A handshake message of a type we do not decode further."""

    __slots__ = ("type", "length", "malformed", "encrypted")

    def __init__(self, htype: int, length: int):
        self.type, self.length = htype, length
        self.malformed: str | None = None
        self.encrypted = False

    @property
    def name(self) -> str:
        return HANDSHAKE_NAMES.get(self.type, f"handshake {self.type}")

    def __repr__(self) -> str:
        return f"{self.name}()"


class Hello(Handshake):
    """Fields common to ClientHello and ServerHello."""

    __slots__ = ("version", "random", "session_id", "extensions", "sni", "alpn", "supported_versions",
                 "groups", "point_formats", "sig_algs", "key_share_groups", "session_ticket", "psk")

    def __init__(self, htype: int, length: int):
        super().__init__(htype, length)
        self.version = 0
        self.random = b""
        self.session_id = b""
        self.extensions: list[tuple[int, int]] = []  # (type, length) in order
        self.sni: str | None = None
        self.alpn: list[str] = []
        self.supported_versions: list[int] = []
        self.groups: list[int] = []
        self.point_formats: list[int] = []
        self.sig_algs: list[int] = []
        self.key_share_groups: list[int] = []
        self.session_ticket: int | None = None  # ticket length (0 = empty extension: asks for a ticket)
        self.psk = False

    def _extensions(self, r: _Reader, client: bool) -> None:
        if r.left() == 0:
            return
        block = _Reader(r.vec(2))
        while block.left():
            etype = block.u16()
            body = block.vec(2)
            self.extensions.append((etype, len(body)))
            self._extension(etype, body, client)

    def _extension(self, etype: int, body: bytes, client: bool) -> None:
        r = _Reader(body)
        if etype == EXT_SNI and client and body:
            names = _Reader(r.vec(2))
            while names.left():
                kind = names.u8()
                name = names.vec(2)
                if kind == 0 and self.sni is None:
                    self.sni = name.decode("latin-1")
        elif etype == EXT_ALPN and body:
            names = _Reader(r.vec(2))
            while names.left():
                self.alpn.append(names.vec(1).decode("latin-1"))
        elif etype == EXT_SUPPORTED_VERSIONS and body:
            if client:
                self.supported_versions = _u16_list(r.vec(1))
            else:
                self.supported_versions = [r.u16()]
        elif etype == EXT_GROUPS and client and body:
            self.groups = _u16_list(r.vec(2))
        elif etype == EXT_POINT_FORMATS and body:
            self.point_formats = list(r.vec(1))
        elif etype == EXT_SIG_ALGS and client and body:
            self.sig_algs = _u16_list(r.vec(2))
        elif etype == EXT_KEY_SHARE and body:
            if client:
                shares = _Reader(r.vec(2))
                while shares.left():
                    self.key_share_groups.append(shares.u16())
                    shares.vec(2)
            else:
                self.key_share_groups.append(r.u16())
        elif etype == EXT_SESSION_TICKET:
            self.session_ticket = len(body)
        elif etype == EXT_PSK:
            self.psk = True


class ClientHello(Hello):
    __slots__ = ("ciphers", "compression", "sslv2", "ja3_full", "ja3", "ja4", "ja4_r")

    def __init__(self, length: int):
        super().__init__(HS_CLIENT_HELLO, length)
        self.ciphers: list[int] = []
        self.compression: list[int] = []
        self.sslv2 = False
        self.ja3_full = self.ja3 = self.ja4 = self.ja4_r = None

    def __repr__(self) -> str:
        return f"ClientHello(0x{self.version:04x} sni={self.sni} alpn={self.alpn} ciphers={len(self.ciphers)})"


class ServerHello(Hello):
    __slots__ = ("cipher", "compression", "hrr", "ja3s_full", "ja3s", "ja4s")

    def __init__(self, length: int):
        super().__init__(HS_SERVER_HELLO, length)
        self.cipher: int | None = None
        self.compression = 0
        self.hrr = False
        self.ja3s_full = self.ja3s = self.ja4s = None

    @property
    def selected_version(self) -> int:
        return self.supported_versions[0] if self.supported_versions else self.version

    def __repr__(self) -> str:
        kind = "HelloRetryRequest" if self.hrr else "ServerHello"
        return f"{kind}(0x{self.selected_version:04x} cipher={self.cipher and hex(self.cipher)})"


class Certificate(Handshake):
    __slots__ = ("certs",)

    def __init__(self, length: int):
        super().__init__(HS_CERTIFICATE, length)
        self.certs: list[CertInfo] = []

    def __repr__(self) -> str:
        return f"Certificate({[c.subject_text for c in self.certs]})"


class CertificateStatus(Handshake):
    """A stapled OCSP response (RFC 6066); `certs`: certificates the response carries (its signer's)."""

    __slots__ = ("status_type", "response_status", "certs")

    def __init__(self, length: int):
        super().__init__(HS_CERTIFICATE_STATUS, length)
        self.status_type = 0
        self.response_status: int | None = None
        self.certs: list[CertInfo] = []


class CertificateRequest(Handshake):
    __slots__ = ("cert_types", "sig_algs")

    def __init__(self, length: int):
        super().__init__(HS_CERTIFICATE_REQUEST, length)
        self.cert_types: list[int] = []
        self.sig_algs: list[int] = []


class NewSessionTicket(Handshake):
    __slots__ = ("lifetime", "ticket_length")

    def __init__(self, length: int):
        super().__init__(HS_NEW_SESSION_TICKET, length)
        self.lifetime = 0
        self.ticket_length = 0


def parse_client_hello(body: bytes) -> ClientHello:
    m = ClientHello(len(body))
    try:
        r = _Reader(body)
        m.version = r.u16()
        m.random = r.take(32)
        m.session_id = r.vec(1)
        m.ciphers = _u16_list(r.vec(2))
        m.compression = list(r.vec(1))
        m._extensions(r, client=True)
    except Malformed as exc:
        m.malformed = str(exc)
    fingerprint_client(m)
    return m


def parse_sslv2_client_hello(body: bytes) -> ClientHello:
    """SSLv2-compatible ClientHello (RFC 6101 appendix E): body after the 2-byte record header and msg type."""
    m = ClientHello(len(body))
    m.sslv2 = True
    try:
        r = _Reader(body)
        m.version = r.u16()
        spec_len, sid_len, chal_len = r.u16(), r.u16(), r.u16()
        specs = r.take(spec_len)
        m.session_id = r.take(sid_len)
        m.random = r.take(chal_len)
        if spec_len % 3:
            raise Malformed("cipher spec list not a multiple of 3")
        m.ciphers = [int.from_bytes(specs[i: i + 3], "big") for i in range(0, spec_len, 3)]
    except Malformed as exc:
        m.malformed = str(exc)
    return m


def parse_server_hello(body: bytes) -> ServerHello:
    m = ServerHello(len(body))
    try:
        r = _Reader(body)
        m.version = r.u16()
        m.random = r.take(32)
        m.hrr = m.random == HRR_RANDOM
        m.session_id = r.vec(1)
        m.cipher = r.u16()
        m.compression = r.u8()
        m._extensions(r, client=False)
    except Malformed as exc:
        m.malformed = str(exc)
    fingerprint_server(m)
    return m


def parse_certificate_message(body: bytes, tls13: bool) -> Certificate:
    m = Certificate(len(body))
    try:
        r = _Reader(body)
        if tls13:
            r.vec(1)  # certificate_request_context
        chain = _Reader(r.vec(3))
        while chain.left():
            der = chain.vec(3)
            m.certs.append(parse_certificate(der))
            if tls13:
                chain.vec(2)  # per-certificate extensions
    except Malformed as exc:
        m.malformed = str(exc)
    return m


def parse_certificate_request(body: bytes, tls13: bool) -> CertificateRequest:
    m = CertificateRequest(len(body))
    try:
        r = _Reader(body)
        if tls13:
            r.vec(1)
            ext = _Reader(r.vec(2))
            while ext.left():
                etype = ext.u16()
                value = ext.vec(2)
                if etype == EXT_SIG_ALGS:
                    m.sig_algs = _u16_list(_Reader(value).vec(2))
        else:
            m.cert_types = list(r.vec(1))
            if r.left() >= 2:
                m.sig_algs = _u16_list(r.vec(2))
    except Malformed as exc:
        m.malformed = str(exc)
    return m


def parse_new_session_ticket(body: bytes, tls13: bool) -> NewSessionTicket:
    m = NewSessionTicket(len(body))
    try:
        r = _Reader(body)
        m.lifetime = r.u32()
        if tls13:
            r.u32()  # age add
            r.vec(1)  # nonce
        m.ticket_length = len(r.vec(2))
    except Malformed as exc:
        m.malformed = str(exc)
    return m


def parse_certificate_status(body: bytes) -> CertificateStatus:
    m = CertificateStatus(len(body))
    try:
        r = _Reader(body)
        m.status_type = r.u8()
        if m.status_type == 1:
            m.response_status, m.certs = ocsp_response(r.vec(3))
    except (Malformed, DerError) as exc:
        m.malformed = str(exc)
    return m


def ocsp_response(der: bytes) -> tuple[int, list[CertInfo]]:
    """(responseStatus, certificates in the BasicOCSPResponse) of an OCSPResponse (RFC 6960 4.2.1)."""
    tag, c0, c1 = der_element(der, 0, len(der))
    items = list(der_children(der, c0, c1))
    if not items or items[0][0] != 0x0A:
        raise DerError("not an OCSPResponse")
    status = int.from_bytes(der[items[0][1]: items[0][2]], "big")
    certs: list[CertInfo] = []
    for t, b0, b1 in items[1:]:
        if t != 0xA0:
            continue
        _, rb0, rb1 = der_element(der, b0, b1)  # ResponseBytes
        parts = list(der_children(der, rb0, rb1))
        if len(parts) < 2 or parts[1][0] != 0x04:
            continue
        _, bo0, bo1 = der_element(der, parts[1][1], parts[1][2])  # BasicOCSPResponse
        for bt, x0, x1 in der_children(der, bo0, bo1):
            if bt == 0xA0:
                _, l0, l1 = der_element(der, x0, x1)
                pos = l0
                while pos < l1:
                    _, e0, e1 = der_element(der, pos, l1)
                    certs.append(parse_certificate(der[pos:e1]))
                    pos = e1
    return status, certs


def parse_handshake(htype: int, body: bytes, tls13: bool) -> Handshake:
    if htype == HS_CLIENT_HELLO:
        return parse_client_hello(body)
    if htype == HS_SERVER_HELLO:
        return parse_server_hello(body)
    if htype == HS_CERTIFICATE:
        return parse_certificate_message(body, tls13)
    if htype == HS_CERTIFICATE_REQUEST:
        return parse_certificate_request(body, tls13)
    if htype == HS_NEW_SESSION_TICKET:
        return parse_new_session_ticket(body, tls13)
    if htype == HS_CERTIFICATE_STATUS:
        return parse_certificate_status(body)
    return Handshake(htype, len(body))


# ---- fingerprints --------------------------------------------------------------------------------------------------

def _ja4_version(v: int) -> str:
    return {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}.get(v, "00")


def _ja4_alpn(alpn: list[str]) -> str:
    if not alpn or not alpn[0]:
        return "00"
    value = alpn[0]
    first, last = value[0], value[-1]
    if first.isascii() and first.isalnum() and last.isascii() and last.isalnum():
        return first + last
    raw = value.encode("latin-1").hex()
    return raw[0] + raw[-1]


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def fingerprint_client(m: ClientHello) -> None:
    """JA3 (Salesforce) and JA4 (FoxIO, TLS over TCP) of a ClientHello."""
    exts = [t for t, _ in m.extensions]
    ciphers = [c for c in m.ciphers if not is_grease(c)]
    groups = [g for g in m.groups if not is_grease(g)]
    m.ja3_full = ",".join((str(m.version), "-".join(map(str, ciphers)),
                           "-".join(str(t) for t in exts if not is_grease(t)), "-".join(map(str, groups)),
                           "-".join(map(str, m.point_formats))))
    m.ja3 = hashlib.md5(m.ja3_full.encode()).hexdigest()
    versions = [v for v in m.supported_versions if not is_grease(v)]
    version = max(versions) if versions else m.version
    ext_clean = [t for t in exts if not is_grease(t)]
    head = (f"t{_ja4_version(version)}{'d' if m.sni is not None else 'i'}{min(len(ciphers), 99):02d}"
            f"{min(len(ext_clean), 99):02d}{_ja4_alpn(m.alpn)}")
    cipher_text = ",".join(sorted(f"{c:04x}" for c in ciphers))
    ext_text = ",".join(sorted(f"{t:04x}" for t in ext_clean if t not in (EXT_SNI, EXT_ALPN)))
    sig_text = ",".join(f"{s:04x}" for s in m.sig_algs if not is_grease(s))
    ext_part = ext_text + ("_" + sig_text if sig_text else "")
    m.ja4_r = f"{head}_{cipher_text}_{ext_part}"
    m.ja4 = f"{head}_{_sha12(cipher_text)}_{_sha12(ext_part) if ext_text else '000000000000'}"


def fingerprint_server(m: ServerHello) -> None:
    exts = [t for t, _ in m.extensions]
    m.ja3s_full = f"{m.version},{m.cipher},{'-'.join(map(str, exts))}"
    m.ja3s = hashlib.md5(m.ja3s_full.encode()).hexdigest()
    alpn = m.alpn[0] if m.alpn else ""
    alpn_code = _ja4_alpn([alpn]) if alpn else "00"
    m.ja4s = (f"t{_ja4_version(m.selected_version)}{min(len(exts), 99):02d}{alpn_code}_{(m.cipher or 0):04x}_"
              f"{_sha12(','.join(f'{t:04x}' for t in exts))}")


# ---- records ---------------------------------------------------------------------------------------------------------

class Record:
    """One TLS record as the packet that completes it shows it."""

    __slots__ = ("content_type", "version", "length", "messages", "alert", "encrypted", "sslv2", "direction",
                 "decrypted", "malformed", "plaintext")

    def __init__(self, content_type: int, version: int, length: int, direction: int):
        self.content_type, self.version, self.length, self.direction = content_type, version, length, direction
        self.messages: list[Handshake] = []  # handshake messages completed by this record
        self.alert: tuple[int, int] | None = None  # (level, description) of a plaintext alert
        self.encrypted = False
        self.sslv2 = False
        self.decrypted = False
        self.malformed: str | None = None
        self.plaintext: bytes | None = None  # decrypted application data (Follow TLS Stream shows it)

    def __repr__(self) -> str:
        what = {20: "CCS", 21: "Alert", 22: "Handshake", 23: "AppData", 24: "Heartbeat"}.get(self.content_type,
                                                                                           self.content_type)
        extra = self.messages or (self.alert if self.alert else "")
        return f"Record({what} 0x{self.version:04x} {self.length}{' enc' if self.encrypted else ''} {extra})"


@dataclass
class Alert:
    frame: int
    ts: int
    direction: int
    level: int | None  # None when encrypted
    description: int | None
    encrypted: bool

    @property
    def name(self) -> str:
        if self.description is None:
            return "encrypted alert"
        return ALERT_NAMES.get(self.description, f"alert {self.description}")


@dataclass
class TlsSession:
    """The negotiation of one TLS connection, as the flow facts see it."""

    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    hello_retry: ServerHello | None = None
    client_hellos: int = 0
    certificates: list[CertInfo] = field(default_factory=list)  # server chain, in the order sent
    certificate_frame: int | None = None
    client_certificates: list[CertInfo] = field(default_factory=list)
    certificate_request: bool = False
    alerts: list[Alert] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    ccs: list[bool] = field(default_factory=lambda: [False, False])
    app_records: list[int] = field(default_factory=lambda: [0, 0])
    app_bytes: list[int] = field(default_factory=lambda: [0, 0])
    first_app_ts: list[int | None] = field(default_factory=lambda: [None, None])
    last_app_ts: list[int | None] = field(default_factory=lambda: [None, None])
    client_hello_ts: int | None = None
    server_hello_ts: int | None = None
    handshake_done_ts: int | None = None  # first application data record after the hellos (either side)
    client_direction: int | None = None  # 0/1: which flow direction sent the ClientHello
    malformed: int = 0
    decrypted: bool = False

    @property
    def version(self) -> int | None:
        """The negotiated version (supported_versions of the ServerHello, else its legacy version)."""
        return self.server_hello.selected_version if self.server_hello is not None else None

    @property
    def cipher(self) -> int | None:
        return self.server_hello.cipher if self.server_hello is not None else None

    @property
    def sni(self) -> str | None:
        return self.client_hello.sni if self.client_hello is not None else None

    @property
    def alpn(self) -> str | None:
        if self.server_hello is not None and self.server_hello.alpn:
            return self.server_hello.alpn[0]
        return None

    @property
    def tls13(self) -> bool:
        return self.version == 0x0304

    @property
    def history_text(self) -> str:
        return "".join(self.history)

    def note(self, letter: str, client: bool) -> None:
        self.history.append(letter.upper() if client else letter)


class Decryptor:
    """What TLS decryption (issue 7) plugs in: `AppLayer(decryptor_factory=factory)` calls
    factory(session: TlsSession) once the ServerHello is known; it returns None or an object with
    `decrypt(direction: int, record_type: int, version: int, body: bytes) -> (inner_type, plaintext) | None`
    (direction 0/1 = flow direction; None = not decryptable, the record stays opaque)."""

    def decrypt(self, direction: int, record_type: int, version: int, body: bytes):
        return None


RECORD_HEADER = 5


class TlsHalf(StreamConsumer):
    """One direction of a TLS connection: records -> handshake messages, alerts, counters."""

    __slots__ = ("conn", "direction", "buf", "need", "rtype", "rversion", "rlength", "skippable", "in_body",
                 "hs_buf", "desync", "first", "lost", "app_consumer", "_pending_skip_row")

    def __init__(self, conn: "TlsConnection", direction: int):
        self.conn = conn
        self.direction = direction
        self.buf = bytearray()
        self.need = RECORD_HEADER
        self.in_body = False
        self.rtype = self.rversion = self.rlength = 0
        self.skippable = 0
        self.hs_buf = bytearray()
        self.desync = False
        self.first = True
        self.lost = 0
        self.app_consumer: StreamConsumer | None = None  # decrypted application data goes here

    def feed(self, data, n: int, row: int) -> None:
        pos = 0
        if data is not None and not self.in_body and not self.buf and not self.desync:
            self.conn.ctx.emit("tls_start", row, None)  # Wireshark's TLS dissector sees this packet
        while pos < n:
            if self.desync:
                if pos == 0 and data is not None and _plausible_header(data):
                    self.desync = False
                    self.buf.clear()
                    self.need = RECORD_HEADER
                    self.in_body = False
                else:
                    self.lost += n - pos
                    return
            if self.in_body and self.skippable:  # a body nobody reads: count it (it ends the record)
                take = min(self.skippable, n - pos)
                self.skippable -= take
                pos += take
                if self.skippable == 0:
                    self._record(None, row)
                continue
            if data is None:
                self._lose(n - pos)
                return
            take = min(self.need - len(self.buf), n - pos)
            self.buf += data[pos: pos + take]
            pos += take
            if len(self.buf) < self.need:
                return
            if not self.in_body:
                if not self._header(bytes(self.buf), row):
                    continue
            else:
                body = bytes(self.buf[RECORD_HEADER:]) if not self.first_sslv2 else bytes(self.buf)
                self._record(body, row)

    @property
    def first_sslv2(self) -> bool:
        return self.rtype == -2

    def _header(self, head: bytes, row: int) -> bool:
        """Validate a record header; arm the body. False when the stream is lost."""
        if self.first and head[0] & 0x80 and len(head) >= 3 and head[2] == 1:  # SSLv2 ClientHello
            length = ((head[0] & 0x7F) << 8) | head[1]
            self.first = False
            self.rtype, self.rversion, self.rlength = -2, 0x0002, length
            self.in_body = True
            self.need = 2 + length
            return True
        self.first = False
        ctype, version, length = head[0], _U16(head, 1)[0], _U16(head, 3)[0]
        if not (CT_CCS <= ctype <= CT_HEARTBEAT) or (version >> 8) != 3 or length > MAX_RECORD:
            self.conn.session.malformed += 1
            self._lose(len(head))
            return False
        self.rtype, self.rversion, self.rlength = ctype, version, length
        self.in_body = True
        self.need = RECORD_HEADER + length
        if length == 0:
            self._record(b"", row)
            return True
        if ctype == CT_APPDATA and self.conn.wants_app_bytes(self.direction) is False:
            self.skippable = length
        return True

    def _lose(self, n: int) -> None:
        self.desync = True
        self.buf.clear()
        self.hs_buf.clear()
        self.in_body = False
        self.skippable = 0
        self.need = RECORD_HEADER
        self.lost += n

    def gap(self, n: int, row: int) -> None:
        if self.in_body and self.skippable >= n:
            self.feed(None, n, row)
            return
        self._lose(n)

    def close(self, row: int, reason: str) -> None:
        if self.app_consumer is not None:
            self.app_consumer.close(row, reason)

    def _record(self, body: bytes | None, row: int) -> None:
        rtype, version, length = self.rtype, self.rversion, self.rlength
        self.buf.clear()
        self.in_body = False
        self.need = RECORD_HEADER
        self.skippable = 0
        if rtype == -2:
            rec = Record(CT_HANDSHAKE, 0x0002, length, self.direction)
            rec.sslv2 = True
            if body is not None and len(body) >= 3 and body[2] == 1:
                hello = parse_sslv2_client_hello(body[3:])
                rec.messages.append(hello)
                self.conn.handshake(hello, self.direction, row)
            self.conn.emit(rec, row)
            return
        self.conn.record(self, Record(rtype, version, length, self.direction), body, row)


def _plausible_header(data) -> bool:
    return len(data) >= 5 and CT_CCS <= data[0] <= CT_HEARTBEAT and data[1] == 3 and data[2] <= 4


class TlsConnection:
    """The two TlsHalf directions of one connection and their shared session."""

    def __init__(self, ctx, decryptor_factory=None, app_factory=None):
        self.ctx = ctx
        self.session = TlsSession()
        self.halves = (TlsHalf(self, 0), TlsHalf(self, 1))
        self.decryptor_factory = decryptor_factory
        self.decryptor = None
        self.app_factory = app_factory  # app_factory(connection, direction) -> StreamConsumer for plaintext
        self._app_offsets = [0, 0]

    def wants_app_bytes(self, direction: int) -> bool:
        return self.decryptor is not None

    def emit(self, rec: Record, row: int) -> None:
        self.ctx.emit("tls", row, rec)

    # ---- records -----------------------------------------------------------------------------------------------
    def record(self, half: TlsHalf, rec: Record, body: bytes | None, row: int) -> None:
        s = self.session
        d = half.direction
        client = s.client_direction is None or s.client_direction == d
        ctype = rec.content_type
        after_ccs_12 = s.ccs[d] and s.server_hello is not None and not s.tls13  # (a TLS 1.3 CCS changes nothing)
        after_sh_13 = s.tls13 and s.server_hello is not None
        if ctype == CT_CCS:
            s.ccs[d] = True
            s.note("i", client)
        elif ctype == CT_ALERT:
            encrypted = after_ccs_12 or rec.length != 2 or body is None
            plain = None
            if encrypted and self.decryptor is not None and body is not None:
                plain = self._decrypt(d, ctype, rec.version, body)
            if plain is not None:
                rec.decrypted = True
                body, encrypted = plain[1], False
            rec.encrypted = encrypted
            if not encrypted and len(body) >= 2:
                rec.alert = (body[0], body[1])
            ctx = self.ctx
            s.alerts.append(Alert(ctx.frame(row), ctx.ts(row), d, None if encrypted else body[0],
                                  None if encrypted else body[1], encrypted))
            s.note("l", client)
        elif ctype == CT_HANDSHAKE:
            if after_ccs_12:
                rec.encrypted = True
                plain = self._decrypt(d, ctype, rec.version, body) if self.decryptor is not None and body else None
                if plain is not None and plain[0] == CT_HANDSHAKE:
                    rec.encrypted, rec.decrypted = False, True
                    self._handshake_bytes(half, rec, plain[1], row)
                else:
                    half.hs_buf.clear()
                    s.note("f", client)  # the encrypted Finished
            else:
                self._handshake_bytes(half, rec, body or b"", row)
        elif ctype == CT_APPDATA:
            rec.encrypted = True
            plain = None
            if self.decryptor is not None and body is not None:
                plain = self._decrypt(d, ctype, rec.version, body)
            if plain is not None:
                rec.encrypted, rec.decrypted = False, True
                inner, data = plain
                if inner == CT_HANDSHAKE:
                    self._handshake_bytes(half, rec, data, row)
                elif inner == CT_ALERT and len(data) >= 2:
                    rec.alert = (data[0], data[1])
                    ctx = self.ctx
                    s.alerts.append(Alert(ctx.frame(row), ctx.ts(row), d, data[0], data[1], False))
                    s.note("l", client)
                elif inner == CT_APPDATA:
                    self._app_data(d, rec, data, row)
            if plain is None or plain[0] == CT_APPDATA:
                self._count_app(d, rec, row, client, after_sh_13 and s.handshake_done_ts is None)
        self.emit(rec, row)

    def _count_app(self, d: int, rec: Record, row: int, client: bool, maybe_handshake: bool) -> None:
        s = self.session
        ts = self.ctx.ts(row)
        s.app_records[d] += 1
        s.app_bytes[d] += rec.length
        if s.first_app_ts[d] is None:
            s.first_app_ts[d] = ts
            s.note("d", client)
        s.last_app_ts[d] = ts

    def _decrypt(self, d: int, ctype: int, version: int, body: bytes):
        try:
            return self.decryptor.decrypt(d, ctype, version, body)
        except Exception:  # a decryptor must never stop the analysis
            return None

    def _app_data(self, d: int, rec: Record, data: bytes, row: int) -> None:
        rec.plaintext = data
        half = self.halves[d]
        if half.app_consumer is None and self.app_factory is not None:
            half.app_consumer = self.app_factory(self, d, data)
        if half.app_consumer is not None:
            half.app_consumer.feed(data, len(data), row)

    def _handshake_bytes(self, half: TlsHalf, rec: Record, data: bytes, row: int) -> None:
        buf = half.hs_buf
        buf += data
        while len(buf) >= 4:
            htype = buf[0]
            length = int.from_bytes(buf[1:4], "big")
            if length > MAX_HANDSHAKE:
                self.session.malformed += 1
                rec.malformed = "handshake message too long"
                buf.clear()
                return
            if len(buf) < 4 + length:
                return
            body = bytes(buf[4: 4 + length])
            del buf[: 4 + length]
            msg = parse_handshake(htype, body, self.session.tls13)
            if msg.malformed:
                self.session.malformed += 1
            rec.messages.append(msg)
            self.handshake(msg, half.direction, row)

    def handshake(self, msg: Handshake, d: int, row: int) -> None:
        s = self.session
        ctx = self.ctx
        if msg.type == HS_CLIENT_HELLO:
            s.client_hellos += 1
            if s.client_direction is None:
                s.client_direction = d
            if s.client_hello is None:
                s.client_hello = msg
                s.client_hello_ts = ctx.ts(row)
        client = s.client_direction is None or s.client_direction == d
        if msg.type == HS_SERVER_HELLO:
            if s.client_direction is None:
                s.client_direction = 1 - d
                client = False
            if msg.hrr:
                s.hello_retry = msg
                s.note("j", client)
                return
            s.server_hello = msg
            s.server_hello_ts = ctx.ts(row)
            if self.decryptor_factory is not None and self.decryptor is None:
                try:
                    self.decryptor = self.decryptor_factory(s)
                except Exception:
                    self.decryptor = None
        elif msg.type == HS_CERTIFICATE:
            if client and s.client_direction is not None:
                s.client_certificates = msg.certs
            else:
                s.certificates = msg.certs
                s.certificate_frame = ctx.frame(row)
        elif msg.type == HS_CERTIFICATE_REQUEST:
            s.certificate_request = True
        s.note(HISTORY_LETTERS.get(msg.type, "z"), client)
