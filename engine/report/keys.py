"""`diagnose keys CAPTURE --keylog FILE`: which TLS sessions the key log decrypts, and why the others are not.
`diagnose inject-secrets CAPTURE --keylog FILE -o out.pcapng`: a copy of the capture carrying the key log in a
decryption-secrets block (like `editcap --inject-secrets tls,FILE`).

The match summary: N TLS sessions (TCP streams that start with a ClientHello), M with a key log secret for their
client random, K decrypted (every protected record opened); for every other session the reason (no key log line
for its client random, TLS 1.3 lines missing, authentication failed, cipher unsupported, records missing from the
capture, or nothing was encrypted). Secrets are never printed: only labels, counts and client randoms.

The sessions come from the application layer (protocols/app.py: reassembly, the TLS parser) with
tls_decrypt.KeyLogDecryption as its decryptor factory, the same path that decrypts for the diagnosis and for
`diagnose follow`, so the summary says what those commands will see.
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
    NOT_DECRYPTED,
    NOTHING_ENCRYPTED,
    Outcome,
    Reason,
    TlsSessionKeys,
)

VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


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
class _Scan:
    """TLS sessions of a capture, chunk by chunk: the application layer (the TLS parser every command uses) with
    KeyLogDecryption as its decryptor factory. Besides the sessions it keeps, per conversation and direction, the
    first packet with payload (the ClientHello's frame, the endpoints) and how many records stayed encrypted."""

    def __init__(self, keylog: KeyLog):
        from diagnose.protocols.app import AppLayer
        from diagnose.protocols.tls_decrypt import KeyLogDecryption

        self.keylog = keylog
        self.decryption = KeyLogDecryption(keylog)
        # no certificate judgement here (finish() is never called), so no system trust store is read
        self.app = AppLayer(decryptor_factory=self.decryption, use_system_store=False)
        self.first_frame = np.zeros(2048, np.int64)  # [conv * 2 + dir]: first frame with payload, 0 = none yet
        self.encrypted: dict[int, int] = {}  # conversation -> records the parser could not open
        self.conversations = None

    def chunk(self, chunk, conversations) -> None:
        t = chunk.table
        self.conversations = conversations
        out = self.app.update(chunk.buf, t, conversations)
        convs = t["conv"]
        for row, record in out.rows("tls"):
            if record.encrypted:
                c = int(convs[row])
                self.encrypted[c] = self.encrypted.get(c, 0) + 1
        rows = np.nonzero((t["ip_proto"] == 6) & (t["conv"] >= 0) & (t["payload_off"] >= 0) & (t["payload_len"] > 0)
                          & ((t["tcp_flags"] & TH_SYN) == 0))[0]
        if not len(rows):
            return
        slots = t["conv"][rows].astype(np.int64) * 2 + t["dir"][rows]
        top = int(slots.max())
        if top >= len(self.first_frame):
            grown = np.zeros(max(top + 1, 2 * len(self.first_frame)), np.int64)
            grown[: len(self.first_frame)] = self.first_frame
            self.first_frame = grown
        unique, first = np.unique(slots, return_index=True)
        new = self.first_frame[unique] == 0
        self.first_frame[unique[new]] = t["frame"][rows[first[new]]]

    def finish(self) -> list[_Session]:
        """Sessions with a ClientHello, in tcp.stream order."""
        found = {id(session): (keys, decryptor) for session, keys, decryptor in self.decryption.sessions}
        convs = self.conversations
        out = []
        for c, flow in self.app.flows.items():
            tls = flow.tls
            if tls is None or tls.session.client_hello is None or tls.session.client_direction is None:
                continue
            if tls.session.client_hello.sslv2:  # its challenge is not the 32-byte random a key log names
                continue
            keys, decryptor = found.get(id(tls.session), (None, None))
            out.append(_Session(int(convs["stream"][c]), convs[c], flow, keys, decryptor,
                                self.first_frame[2 * c: 2 * c + 2].tolist(), self.encrypted.get(c, 0)))
        return sorted(out, key=lambda s: s.stream)


class _Session:
    """One TLS session as the application layer saw it."""

    def __init__(self, stream: int, conversation, flow, keys: TlsSessionKeys | None, decryptor,
                 first_frames: list[int], encrypted: int):
        tls = flow.tls
        self.stream = stream
        self.session = tls.session
        self.client_dir = tls.session.client_direction
        self.client_random = tls.session.client_hello.random
        self.keys, self.decryptor = keys, decryptor
        self.first_frames = first_frames
        self.encrypted = encrypted
        self.endpoints = [_endpoint(conversation, side) for side in (0, 1)]
        # a hole, a cut record or a stream that stopped being TLS: later records cannot be checked
        self.lost = any(half.lost or half.desync or half.buf or half.in_body for half in tls.halves) or any(
            d is not None and d.pending for d in flow.dirs)

    def outcome(self) -> Outcome:
        if self.decryptor is not None:
            return self.decryptor.outcome(records_missing=self.lost)
        if self.keys is None:
            return Outcome(NOTHING_ENCRYPTED, None, 0, 0)
        # declined (keys.reason says why): every record the parser saw encrypted is one that failed
        return Outcome(NOT_DECRYPTED if self.encrypted else NOTHING_ENCRYPTED, self.keys.reason, 0, self.encrypted)

    def match(self, keylog: KeyLog) -> SessionMatch:
        secrets = keylog.lookup(self.client_random)
        s = self.session
        keys = self.keys
        return SessionMatch(
            stream=self.stream, first_frame=self.first_frames[self.client_dir], client_random=self.client_random.hex(),
            client=self.endpoints[self.client_dir], server=self.endpoints[1 - self.client_dir],
            sni=s.sni, version=s.version, cipher_suite=s.cipher, has_secret=secrets is not None,
            secret_labels=secrets.labels() if secrets else [], missing_labels=keys.missing_labels if keys else [],
            outcome=self.outcome(), detail=keys.detail if keys is not None and keys.reason is not None else "")


def _endpoint(conversation, side: int) -> str:
    """address:port of side A (0) or B (1) of a conversation row ([address]:port for IPv6)."""
    p = "ab"[side]
    ipv = int(conversation["ipv"])
    address = format_address(ipv, int(conversation[f"{p}_hi"]), int(conversation[f"{p}_lo"]))
    port = int(conversation[f"{p}_port"])
    return f"[{address}]:{port}" if ipv == 6 else f"{address}:{port}"


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
            scan.chunk(chunk, run.flows.conversations)
            tick()
        if use_capture_secrets and len(info.secrets) > secrets_seen:
            keylog.add_secrets(info.secrets[secrets_seen:])
        capture_warnings = list(info.warnings)
    matches = [s.match(keylog) for s in scan.finish()]
    result = KeyMatch(capture, list(keylog.sources), len(keylog), matches)
    result.warnings = capture_warnings + keylog.warnings() + match_warnings(result, keylog)
    return result


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
            scan.chunk(chunk, run.flows.conversations)
    return [s.client_random for s in scan.finish()]
