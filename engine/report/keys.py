"""`diagnose keys CAPTURE --keylog FILE`: which TLS sessions the key log decrypts, and why the others are not.
`diagnose inject-secrets CAPTURE --keylog FILE -o out.pcapng`: a copy of the capture carrying the key log in a
decryption-secrets block (like `editcap --inject-secrets tls,FILE`).

The match summary: N TLS sessions (TCP streams that start with a ClientHello), M with a key log secret for their
client random, K decrypted (every protected record opened); for every other session the reason (no key log line
for its client random, TLS 1.3 lines missing, authentication failed, cipher unsupported, records missing from the
capture, or nothing was encrypted). Secrets are never printed: only labels, counts and client randoms.

The scan here is deliberately small: TCP payloads in sequence order per direction, split into records, the two
hellos parsed for randoms/version/suite/SNI, every record handed to the decryptor. It needs no other analysis and
keeps only partial records in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np

from diagnose.addresses import format_address
from diagnose.capture import Secret
from diagnose.errors import UsageError
from diagnose.keylog import TLS_KEY_LOG_SECRET_TYPE, KeyLog
from diagnose.packet import TH_SYN, new_table
from diagnose.pipeline import open_pass
from diagnose.progress import progress_for
from diagnose.protocols.tls_decrypt import (
    CIPHER_SUITES,
    DECRYPTED,
    EXT_ENCRYPT_THEN_MAC,
    EXT_EXTENDED_MASTER_SECRET,
    Outcome,
    Reason,
    RecordDecryptor,
    TlsSessionKeys,
    session_outcome,
)

VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
MAX_RECORD = (1 << 14) + 2048 + 256
MAX_OUT_OF_ORDER = 256  # segments held per direction waiting for a hole to fill; beyond that the hole is lost
MAX_QUEUED_RECORDS = 64  # records held per direction until the ServerHello tells the keys


# -- the model ------------------------------------------------------------------------------------------------------
@dataclass
class SessionMatch:
    """One TLS session and what the key log did for it."""

    stream: int  # tcp.stream
    first_frame: int  # the ClientHello's frame
    client_random: str  # hex, as in the key log (not a secret: it travels in clear in the ClientHello)
    client: str  # address:port
    server: str
    sni: str | None
    version: int | None  # negotiated; None without a ServerHello
    cipher_suite: int | None
    has_secret: bool  # the key log has at least one line for this client random
    secret_labels: list[str]  # which NSS labels it has (names only)
    missing_labels: list[str]  # TLS 1.3 labels it lacks
    outcome: Outcome
    detail: str = ""  # what exactly is unsupported, or why a secret does not apply

    @property
    def version_name(self) -> str:
        if self.version is None:
            return "-"
        return VERSION_NAMES.get(self.version, f"0x{self.version:04x}")

    @property
    def suite_name(self) -> str:
        if self.cipher_suite is None:
            return "-"
        suite = CIPHER_SUITES.get(self.cipher_suite)
        return suite.name if suite else f"0x{self.cipher_suite:04x}"

    def to_dict(self) -> dict:
        return {"stream": self.stream, "first_frame": self.first_frame, "client_random": self.client_random,
                "client": self.client,
                "server": self.server, "sni": self.sni, "version": self.version_name,
                "cipher_suite": self.suite_name, "has_secret": self.has_secret,
                "secret_labels": self.secret_labels, "missing_labels": self.missing_labels,
                "status": self.outcome.status, "reason": str(self.outcome.reason) if self.outcome.reason else None,
                "detail": self.detail or None,
                "records_decrypted": self.outcome.decrypted, "records_failed": self.outcome.failed}


@dataclass
class KeyMatch:
    """The match summary of a capture and its key logs."""

    capture: str
    keylog_sources: list[str]
    client_randoms: int  # in the key logs (files, $SSLKEYLOGFILE, decryption-secrets blocks)
    sessions: list[SessionMatch] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def with_secret(self) -> int:
        return sum(s.has_secret for s in self.sessions)

    @property
    def decrypted(self) -> int:
        return sum(s.outcome.status == DECRYPTED for s in self.sessions)

    def headline(self) -> str:
        return (f"{len(self.sessions)} TLS sessions, {self.with_secret} with a key log secret, "
                f"{self.decrypted} decrypted")

    def to_dict(self) -> dict:
        return {"capture": self.capture, "keylog_sources": self.keylog_sources,
                "keylog_client_randoms": self.client_randoms, "tls_sessions": len(self.sessions),
                "with_secret": self.with_secret, "decrypted": self.decrypted,
                "sessions": [s.to_dict() for s in self.sessions], "warnings": self.warnings}


# -- the scan -------------------------------------------------------------------------------------------------------
class _Half:
    """One direction: in-order TCP bytes -> TLS records. A hole that cannot be filled ends the parsing."""

    __slots__ = ("next_seq", "pending", "buf", "first_frame", "endpoint", "lost", "records", "hs_buf")

    def __init__(self):
        self.next_seq: int | None = None
        self.pending: dict[int, tuple[bytes, int, int]] = {}  # seq -> (data, wire length, frame)
        self.buf = bytearray()
        self.first_frame = 0
        self.endpoint = ""
        self.lost = False  # bytes missing (hole, snaplen) or not TLS any more
        self.records: list[tuple[int, int, bytes]] = []  # complete records not yet handed on
        self.hs_buf = bytearray()  # plaintext handshake bytes, for the hellos

    def segment(self, seq: int, data: bytes, wire_len: int) -> None:
        if self.lost:
            return
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) & 0xFFFFFFFF
        if ahead and ahead < 1 << 31:  # a hole before this segment: hold it
            self.pending[seq] = (data, wire_len, 0)
            if len(self.pending) > MAX_OUT_OF_ORDER:
                self.lost = True
            return
        self._append(seq, data, wire_len)
        while self.pending and not self.lost:
            ready = [s for s in self.pending if not (s - self.next_seq) & 0xFFFFFFFF
                     or (s - self.next_seq) & 0xFFFFFFFF >= 1 << 31]
            if not ready:
                break
            for s in ready:
                data, wire_len, _ = self.pending.pop(s)
                self._append(s, data, wire_len)

    def _append(self, seq: int, data: bytes, wire_len: int) -> None:
        behind = (self.next_seq - seq) & 0xFFFFFFFF  # bytes of this segment we already have
        if behind >= wire_len:
            return
        if len(data) < wire_len:  # not all captured (snaplen): what follows cannot be parsed
            self.lost = True
        self.buf += data[behind:]
        self.next_seq = (seq + wire_len) & 0xFFFFFFFF
        self._split()

    def _split(self) -> None:
        buf, i = self.buf, 0
        while len(buf) - i >= 5:
            ctype, major, length = buf[i], buf[i + 1], int.from_bytes(buf[i + 3:i + 5], "big")
            if not 20 <= ctype <= 24 or major != 3 or length > MAX_RECORD:
                self.lost = True
                break
            if len(buf) - i < 5 + length:
                break
            self.records.append((ctype, int.from_bytes(buf[i + 1:i + 3], "big"), bytes(buf[i + 5:i + 5 + length])))
            i += 5 + length
        del buf[:i]

    def end(self) -> None:
        if self.pending or (self.buf and not self.lost):
            self.lost = True


class _Session:
    """One TCP stream that starts with TLS."""

    def __init__(self, stream: int):
        self.stream = stream
        self.halves = (_Half(), _Half())
        self.client_dir: int | None = None
        self.client_random = b""
        self.sni: str | None = None
        self.server: tuple[int, int, bytes, set[int]] | None = None  # version, suite, random, extensions
        self.keys: TlsSessionKeys | None = None
        self.decryptors: dict[int, RecordDecryptor] = {}
        self.queued: tuple[list, list] = ([], [])
        self.malformed = False

    def take_records(self, d: int, keylog: KeyLog) -> None:
        """Hand this direction's complete records on: to the hello parser until the keys are known (held until
        then), to the decryptors after."""
        half = self.halves[d]
        records, half.records = half.records, []
        for record in records:
            if self.keys is not None:
                self.decryptors[d].decrypt(*record)
                continue
            if len(self.queued[d]) < MAX_QUEUED_RECORDS:
                self.queued[d].append(record)
            if record[0] == 22 and not self.malformed:
                self._hello_bytes(d, record[2], keylog)
            if self.keys is not None:  # this record completed the ServerHello: catch up on both directions
                for side in (0, 1):
                    for held in self.queued[side]:
                        self.decryptors[side].decrypt(*held)
                    self.queued[side].clear()

    def _hello_bytes(self, d: int, fragment: bytes, keylog: KeyLog) -> None:
        buf = self.halves[d].hs_buf
        buf += fragment
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:4], "big"):
            n = 4 + int.from_bytes(buf[1:4], "big")
            message = bytes(buf[:n])
            del buf[:n]
            try:
                if message[0] == 1 and self.client_dir is None:
                    self.client_dir = d
                    self.client_random, self.sni = _client_hello(message)
                elif message[0] == 2 and self.client_dir is not None and d != self.client_dir:
                    server = _server_hello(message)
                    if server[2] != HRR_RANDOM:
                        self.server = server
                        self._make_keys(keylog)
                        return
            except (IndexError, ValueError, UnicodeDecodeError):
                self.malformed = True
                return

    def _make_keys(self, keylog: KeyLog) -> None:
        version, suite, server_random, extensions = self.server
        self.keys = TlsSessionKeys(version, suite, self.client_random, server_random, keylog,
                                   extended_master_secret=EXT_EXTENDED_MASTER_SECRET in extensions,
                                   encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in extensions)
        self.decryptors = {self.client_dir: self.keys.decryptor("client"),
                           1 - self.client_dir: self.keys.decryptor("server")}

    def match(self, keylog: KeyLog) -> SessionMatch:
        secrets = keylog.lookup(self.client_random)
        lost = any(h.lost for h in self.halves)
        if self.keys is not None:
            outcome = session_outcome(self.keys, list(self.decryptors.values()), records_missing=lost)
            missing = self.keys.missing_labels
        else:
            outcome = Outcome("nothing encrypted", None, 0, 0)
            missing = []
        client, server = self.halves[self.client_dir], self.halves[1 - self.client_dir]
        return SessionMatch(
            stream=self.stream, first_frame=client.first_frame, client_random=self.client_random.hex(),
            client=client.endpoint, server=server.endpoint,
            sni=self.sni, version=self.server[0] if self.server else None,
            cipher_suite=self.server[1] if self.server else None, has_secret=secrets is not None,
            secret_labels=secrets.labels() if secrets else [], missing_labels=missing, outcome=outcome,
            detail=self.keys.detail if self.keys is not None and self.keys.reason is not None else "")


def _extensions(message: bytes, i: int) -> list[tuple[int, bytes]]:
    out = []
    if i + 2 > len(message):
        return out
    end = min(len(message), i + 2 + int.from_bytes(message[i:i + 2], "big"))
    i += 2
    while i + 4 <= end:
        etype, length = int.from_bytes(message[i:i + 2], "big"), int.from_bytes(message[i + 2:i + 4], "big")
        out.append((etype, message[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def _client_hello(message: bytes) -> tuple[bytes, str | None]:
    """(client random, SNI) of a ClientHello handshake message."""
    random = message[6:38]  # after type, length and legacy version
    if len(random) != 32:
        raise ValueError("short ClientHello")
    i = 39 + message[38]  # session id
    i += 2 + int.from_bytes(message[i:i + 2], "big")  # cipher suites
    i += 1 + message[i]  # compression methods
    sni = None
    for etype, body in _extensions(message, i):
        if etype == 0 and len(body) > 5 and body[2] == 0:
            sni = body[5:5 + int.from_bytes(body[3:5], "big")].decode("ascii")
    return random, sni


def _server_hello(message: bytes) -> tuple[int, int, bytes, set[int]]:
    """(negotiated version, cipher suite, server random, extension types) of a ServerHello message."""
    version = int.from_bytes(message[4:6], "big")
    random = message[6:38]
    i = 39 + message[38]
    suite = int.from_bytes(message[i:i + 2], "big")
    if len(random) != 32 or i + 3 > len(message):
        raise ValueError("short ServerHello")
    extensions = _extensions(message, i + 3)
    for etype, body in extensions:
        if etype == 0x002B and len(body) == 2:  # supported_versions: the real version
            version = int.from_bytes(body, "big")
    return version, suite, random, {etype for etype, _ in extensions}


# -- the commands ---------------------------------------------------------------------------------------------------
def match_keys(capture: str, keylogs: Sequence[str] = (), *, use_environment: bool = True,
               use_capture_secrets: bool = True) -> KeyMatch:
    """Scan `capture`, decrypt its TLS sessions with the key logs (files, $SSLKEYLOGFILE, the capture's own
    decryption-secrets blocks) and summarise the match. Bad key log lines become warnings; nothing raises for them
    (a key log file that cannot be read at all is a UsageError).
    """
    keylog = KeyLog.load(keylogs, use_environment=use_environment)
    scan = _Scan(keylog)
    run = open_pass(capture)
    secrets_seen = 0
    with run.capture, progress_for(run.capture) as tick:
        info = run.capture.info
        for chunk in run.chunks():
            if use_capture_secrets and len(info.secrets) > secrets_seen:  # DSBs come before their packets
                keylog.add_secrets(info.secrets[secrets_seen:])
                secrets_seen = len(info.secrets)
            scan.chunk(chunk)
            tick()
        if use_capture_secrets and len(info.secrets) > secrets_seen:
            keylog.add_secrets(info.secrets[secrets_seen:])
        capture_warnings = list(info.warnings)
    matches = [s.match(keylog) for s in scan.finish()]
    result = KeyMatch(capture, list(keylog.sources), len(keylog), matches)
    result.warnings = capture_warnings + keylog.warnings() + match_warnings(result, keylog)
    return result


class _Scan:
    """TLS sessions of a capture, chunk by chunk: streams are classified by their first payload byte, so the
    rows of other TCP streams are dropped with numpy and never reach Python."""

    def __init__(self, keylog: KeyLog):
        self.keylog = keylog
        self.sessions: dict[int, _Session] = {}
        self.kind = np.zeros(1024, np.int8)  # per tcp.stream: 0 not seen yet, 1 TLS, 2 something else

    def chunk(self, chunk) -> None:
        t, buf = chunk.table, chunk.buf
        rows = np.nonzero((t["ip_proto"] == 6) & (t["stream"] >= 0) & (t["payload_off"] >= 0)
                          & (t["payload_len"] > 0) & ((t["tcp_flags"] & TH_SYN) == 0))[0]
        if not len(rows):
            return
        streams = t["stream"][rows]
        top = int(streams.max())
        if top >= len(self.kind):
            self.kind = np.concatenate([self.kind, np.zeros(max(top + 1, 2 * len(self.kind)), np.int8)])
        kind = self.kind
        # classify new streams by their first payload (one row each), then keep only the rows of TLS streams
        new = rows[kind[streams] == 0]
        if len(new):
            first_streams, first = np.unique(t["stream"][new], return_index=True)
            for stream, i in zip(first_streams.tolist(), new[first].tolist()):
                start = int(t["data"][i]) + int(t["payload_off"][i])
                head = buf[start:start + 3]
                captured = int(t["data"][i]) + int(t["caplen"][i]) - start
                if captured >= 3 and head[0] == 22 and head[1] == 3 and head[2] <= 4:
                    kind[stream] = 1
                    self.sessions[stream] = _Session(stream)
                else:
                    kind[stream] = 2
        for i in rows[kind[streams] == 1]:
            r = t[i]
            stream = int(r["stream"])
            start = int(r["data"]) + int(r["payload_off"])
            wire_len = int(r["payload_len"])
            captured = max(0, min(wire_len, int(r["data"]) + int(r["caplen"]) - start))
            session = self.sessions[stream]
            d = int(r["dir"])
            half = session.halves[d]
            if not half.endpoint:
                half.endpoint = _endpoint(r)
                half.first_frame = int(r["frame"])
            half.segment(int(r["tcp_seq"]), buf[start:start + captured].tobytes(), wire_len)
            if half.records:
                session.take_records(d, self.keylog)

    def finish(self) -> list[_Session]:
        """Sessions with a ClientHello, in tcp.stream order, after their last records were handed on."""
        for session in self.sessions.values():
            for d, half in enumerate(session.halves):
                half.end()
                session.take_records(d, self.keylog)
        return [s for _, s in sorted(self.sessions.items()) if s.client_dir is not None]


def _endpoint(row) -> str:
    address = format_address(int(row["ipv"]), int(row["src_hi"]), int(row["src_lo"]))
    return f"[{address}]:{int(row['sport'])}" if int(row["ipv"]) == 6 else f"{address}:{int(row['sport'])}"


def match_warnings(result: KeyMatch, keylog: KeyLog) -> list[str]:
    """Warnings about the match as a whole (no key log, none matching, wrong secrets, cut TLS 1.3 logs)."""
    warnings = []
    if not keylog.sources:
        if result.sessions:
            warnings.append("no key log: give --keylog FILE, set SSLKEYLOGFILE, or use a capture with "
                            "decryption secrets; TLS contents stay encrypted")
        return warnings
    if len(keylog) == 0:
        warnings.append(f"the key log ({', '.join(keylog.sources)}) holds no usable secrets")
    elif result.sessions and result.with_secret == 0:
        warnings.append(f"none of the {len(keylog)} client randoms in the key log matches one of the "
                        f"{len(result.sessions)} TLS sessions of this capture: is it the key log of another capture?")
    failed = [s for s in result.sessions if s.outcome.reason is Reason.AUTH_FAILED]
    if failed:
        warnings.append(f"{len(failed)} TLS session(s) (tcp.stream {', '.join(str(s.stream) for s in failed)}) do not "
                        "decrypt with the logged secrets (authentication failed): a wrong or edited key log")
    missing = [s for s in result.sessions if s.missing_labels and s.outcome.status != DECRYPTED]
    if missing:
        labels = sorted({label for s in missing for label in s.missing_labels})
        warnings.append(f"{len(missing)} TLS 1.3 session(s) lack key log lines ({', '.join(labels)}): "
                        "an incomplete or cut key log")
    return warnings


def format_key_match(match: KeyMatch) -> str:
    """The match summary as text: the headline, the key logs used, then one line per session."""
    lines = [match.headline()]
    if match.keylog_sources:
        lines.append(f"key log: {', '.join(match.keylog_sources)} ({match.client_randoms} client randoms)")
    else:
        lines.append("key log: none")
    if match.sessions:
        rows = [("stream", "frame", "client -> server", "SNI", "version", "cipher suite", "result")]
        for s in match.sessions:
            result = s.outcome.describe()
            if s.detail and s.outcome.reason in (Reason.CIPHER_UNSUPPORTED, Reason.NO_SECRET):
                result += f" ({s.detail})"
            if s.outcome.status != DECRYPTED and s.missing_labels and s.outcome.reason is Reason.TLS13_LINES_MISSING:
                result += f" [missing {', '.join(s.missing_labels)}]"
            rows.append((str(s.stream), str(s.first_frame), f"{s.client} -> {s.server}", _printable(s.sni or "-"),
                         s.version_name, s.suite_name, result))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines.append("")
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines) + "\n"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def inject_secrets(capture: str, keylogs: Sequence[str], output: str, *, overwrite: bool = False,
                   only_matching: bool = False, use_environment: bool = False) -> dict:
    """Copy `capture` to pcapng `output` with the key log in a decryption-secrets block placed before the packets.

    only_matching=True keeps only the secrets of the capture's own TLS sessions (a first pass finds them), so the
    copy can be shared without unrelated secrets. Returns counts for the CLI (never the secrets).
    """
    from diagnose.capture.writer import PCAP_EXTENSIONS, CaptureWriter

    if Path(output).suffix.lower() in PCAP_EXTENSIONS:
        raise UsageError(f"{output}: a pcap file cannot hold decryption secrets; write .pcapng")
    keylog = KeyLog.load(keylogs, use_environment=use_environment)
    if len(keylog) == 0:
        reason = "; ".join(keylog.warnings()) or "no CLIENT_RANDOM or TLS 1.3 secret lines"
        raise UsageError(f"no usable secrets in the key log ({reason})")
    wanted = None
    if only_matching:
        randoms = _session_randoms(capture)
        wanted = [r for r in randoms if r in keylog]
        if not wanted:
            raise UsageError(f"none of the {len(keylog)} client randoms in the key log matches one of the "
                             f"{len(randoms)} TLS sessions of {capture}")
    data = keylog.to_text(wanted)
    run = open_pass(capture)
    with run.capture, CaptureWriter(output, capture, overwrite=overwrite, format="pcapng") as writer:
        info = run.capture.info
        injected = False
        for chunk in run.chunks():
            if not injected:
                info.secrets.append(Secret(TLS_KEY_LOG_SECRET_TYPE, data))
                injected = True
            writer.write(chunk.buf, chunk.table, info)
        if not injected:  # a capture without packets still gets its header, interfaces and secrets
            info.secrets.append(Secret(TLS_KEY_LOG_SECRET_TYPE, data))
            writer.write(np.zeros(0, np.uint8), new_table(0), info)
    return {"packets": writer.packets, "client_randoms": len(wanted) if wanted is not None else len(keylog),
            "secret_lines": data.count(b"\n"), "warnings": keylog.warnings()}


def _session_randoms(capture: str) -> list[bytes]:
    """Client randoms of the capture's TLS sessions (one pass, no key log)."""
    scan = _Scan(KeyLog())
    run = open_pass(capture)
    with run.capture:
        for chunk in run.chunks():
            scan.chunk(chunk)
    return [s.client_random for s in scan.finish()]
