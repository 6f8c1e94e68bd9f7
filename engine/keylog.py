"""TLS key logs: the NSS key log format (SSLKEYLOGFILE, `--keylog FILE`) and pcapng decryption-secrets blocks.

A key log line is `LABEL <client random hex> <secret hex>`. The labels used for decryption are CLIENT_RANDOM (the
TLS 1.2 master secret, whatever the key exchange and with or without extended master secret) and the TLS 1.3
traffic secrets; EXPORTER_SECRET is kept for completeness. Other labels (RSA, early exporter, ECH, ...) are counted
and skipped. A line that cannot be right (wrong field count, bad hex, wrong lengths) is a problem with its line
number, never fatal: the rest of the file is still used.

Secrets never reach any output: problems cite the line number only, never the line, and every object here has a
repr that lists which secrets exist, not their values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from diagnose.errors import UsageError

TLS_KEY_LOG_SECRET_TYPE = 0x544C534B  # pcapng DSB secrets type 'TLSK': the data is an NSS key log
ENVIRONMENT_VARIABLE = "SSLKEYLOGFILE"

# NSS label -> attribute of SessionSecrets
LABELS = {
    "CLIENT_RANDOM": "master_secret",
    "CLIENT_EARLY_TRAFFIC_SECRET": "client_early",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": "client_handshake",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": "server_handshake",
    "CLIENT_TRAFFIC_SECRET_0": "client_traffic",
    "SERVER_TRAFFIC_SECRET_0": "server_traffic",
    "EXPORTER_SECRET": "exporter",
}
TLS13_LABELS = ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0")
MASTER_SECRET_BYTES = 48
TLS13_SECRET_BYTES = (32, 48)  # HKDF output of SHA-256 and SHA-384 suites
CLIENT_RANDOM_BYTES = 32
_LABEL_SHAPE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_HEX = re.compile(r"[0-9a-fA-F]*\Z")


@dataclass(eq=True)
class SessionSecrets:
    """The secrets a key log holds for one client random. Absent ones are None; repr names present ones only."""

    master_secret: bytes | None = None
    client_early: bytes | None = None
    client_handshake: bytes | None = None
    server_handshake: bytes | None = None
    client_traffic: bytes | None = None
    server_traffic: bytes | None = None
    exporter: bytes | None = None

    def labels(self) -> list[str]:
        """NSS labels of the secrets present, in the format's order."""
        return [label for label, attr in LABELS.items() if getattr(self, attr) is not None]

    def missing_tls13_labels(self) -> list[str]:
        return [label for label in TLS13_LABELS if getattr(self, LABELS[label]) is None]

    def __repr__(self) -> str:
        return f"SessionSecrets({', '.join(self.labels())})"

    __str__ = __repr__


@dataclass(frozen=True)
class KeyLogProblem:
    """A key log line that was skipped: where it is and why (never its content: it may hold a secret)."""

    source: str
    line: int  # 1-based; 0 when the problem is about the whole source
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


@dataclass
class KeyLog:
    """Secrets by client random, merged from any number of key log files and decryption-secrets blocks."""

    sources: list[str] = field(default_factory=list)
    problems: list[KeyLogProblem] = field(default_factory=list)
    lines_used: int = 0
    lines_ignored: int = 0  # well-formed lines with a label we do not use
    _secrets: dict[bytes, SessionSecrets] = field(default_factory=dict, repr=False)
    _where: dict[tuple[bytes, str], tuple[str, int]] = field(default_factory=dict, repr=False)

    # -- loading ------------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, paths: Iterable[str] = (), *, secrets: Iterable = (), environ: Mapping[str, str] | None = None,
             use_environment: bool = True) -> KeyLog:
        """Key log from `paths` (--keylog), the capture's decryption secrets and, if set, $SSLKEYLOGFILE."""
        keylog = cls()
        for path in paths:
            keylog.add_file(path)
        keylog.add_secrets(secrets)
        if use_environment:
            keylog.add_environment(os.environ if environ is None else environ)
        return keylog

    def add_file(self, path: str) -> None:
        """Read a key log named by the user; a file that cannot be read at all is a UsageError (exit 2)."""
        p = Path(path)
        if p.is_dir():
            raise UsageError(f"{path}: is a directory, not a key log file")
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{path}: key log file not found") from None
        except OSError as e:
            raise UsageError(f"{path}: cannot read key log ({e.strerror})") from None
        self.add_text(data, path)

    def add_environment(self, environ: Mapping[str, str]) -> None:
        """$SSLKEYLOGFILE, when set: a missing file there is a warning, not an error (browsers create it lazily)."""
        path = environ.get(ENVIRONMENT_VARIABLE)
        if not path:
            return
        source = f"{ENVIRONMENT_VARIABLE}={path}"
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            self.problems.append(KeyLogProblem(source, 0, f"cannot read key log ({e.strerror or e})"))
            return
        self.add_text(data, source)

    def add_secrets(self, secrets: Iterable) -> None:
        """pcapng decryption-secrets blocks (objects with secret_type and data); TLS key logs are used."""
        for index, secret in enumerate(secrets):
            source = f"decryption secrets block {index + 1}"
            if secret.secret_type != TLS_KEY_LOG_SECRET_TYPE:
                self.problems.append(KeyLogProblem(
                    source, 0, f"secrets type 0x{secret.secret_type:08x} is not a TLS key log; skipped"))
                continue
            self.add_text(secret.data, source)

    def add_text(self, data: bytes | str, source: str) -> None:
        """Parse one key log's text; every bad line becomes a problem and parsing goes on."""
        if isinstance(data, bytes):
            if data.startswith((b"\xff\xfe", b"\xfe\xff")):
                self.sources.append(source)
                self.problems.append(KeyLogProblem(source, 0, "UTF-16 text; a key log is ASCII (convert it first)"))
                return
            text = data.decode("ascii", errors="replace")
        else:
            text = data
        self.sources.append(source)
        lines = text.split("\n")
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            reason = self._add_line(line, source, number)
            if reason:
                if number == len(lines) and not text.endswith("\n"):
                    reason += " (last line, no newline: the file looks cut short)"
                self.problems.append(KeyLogProblem(source, number, reason))

    def _add_line(self, line: str, source: str, number: int) -> str | None:
        """Store one line; return why it was rejected, or None."""
        parts = line.split()
        label = parts[0]
        if not _LABEL_SHAPE.match(label):
            return "not a key log line (no LABEL at the start)"
        if label not in LABELS:
            if len(parts) == 3 or label == "RSA":
                self.lines_ignored += 1
                return None
            return f"unknown label {label!r} with {len(parts)} fields"
        if len(parts) != 3:
            return f"{label}: expected 3 fields, found {len(parts)}"
        random_hex, secret_hex = parts[1], parts[2]
        if not _HEX.match(random_hex) or not _HEX.match(secret_hex):
            return f"{label}: not hexadecimal"
        if len(random_hex) != 2 * CLIENT_RANDOM_BYTES:
            return f"{label}: client random has {len(random_hex) / 2:g} bytes, expected {CLIENT_RANDOM_BYTES}"
        if len(secret_hex) % 2:
            return f"{label}: secret has an odd number of hex digits"
        size = len(secret_hex) // 2
        if label == "CLIENT_RANDOM" and size != MASTER_SECRET_BYTES:
            return f"{label}: master secret has {size} bytes, expected {MASTER_SECRET_BYTES}"
        if label != "CLIENT_RANDOM" and size not in TLS13_SECRET_BYTES:
            return f"{label}: secret has {size} bytes, expected 32 or 48"
        client_random, secret = bytes.fromhex(random_hex), bytes.fromhex(secret_hex)
        entry = self._secrets.setdefault(client_random, SessionSecrets())
        attr = LABELS[label]
        old = getattr(entry, attr)
        if old is not None and old != secret:
            first = self._where[(client_random, attr)]
            return f"{label}: another value for this client random than {first[0]}:{first[1]} (kept the first)"
        if old is None:
            setattr(entry, attr, secret)
            self._where[(client_random, attr)] = (source, number)
        self.lines_used += 1
        return None

    # -- use ----------------------------------------------------------------------------------------------------------
    def lookup(self, client_random: bytes) -> SessionSecrets | None:
        return self._secrets.get(bytes(client_random))

    def __contains__(self, client_random: bytes) -> bool:
        return bytes(client_random) in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def client_randoms(self) -> list[bytes]:
        return list(self._secrets)

    def warnings(self) -> list[str]:
        """One line per problem, for the report's warnings (no secret in them)."""
        return [f"key log {p}" for p in self.problems]

    def to_text(self, client_randoms: Iterable[bytes] | None = None) -> bytes:
        """The secrets as a clean NSS key log (all, or only those of `client_randoms`): the payload of a DSB."""
        wanted = self._secrets if client_randoms is None else {bytes(r) for r in client_randoms}
        out = []
        for client_random, entry in self._secrets.items():
            if client_random not in wanted:
                continue
            for f in fields(entry):
                value = getattr(entry, f.name)
                if value is not None:
                    label = next(k for k, v in LABELS.items() if v == f.name)
                    out.append(f"{label} {client_random.hex()} {value.hex()}\n")
        return "".join(out).encode("ascii")

    def __repr__(self) -> str:
        return (f"KeyLog({len(self._secrets)} client randoms from {len(self.sources)} sources, "
                f"{self.lines_used} lines used, {self.lines_ignored} ignored, {len(self.problems)} problems)")

    __str__ = __repr__
