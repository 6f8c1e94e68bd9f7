"""The decryptor plug for the TLS parser (KeyLogDecryption / SessionDecryptor), driven the way the parser calls it:
flow directions instead of roles, only protected records (no ChangeCipherSpec in TLS 1.2), (inner_type,
plaintext) or None back. Sessions come from live OpenSSL sessions (test_tls_decrypt_live's harness)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from test_tls_decrypt_live import REQUEST, RESPONSE, make_certificates, parse_hellos, run_session, run_tls13_session

from diagnose.keylog import KeyLog
from diagnose.protocols.tls_decrypt import (
    DECRYPTED,
    NOT_DECRYPTED,
    NOTHING_ENCRYPTED,
    KeyLogDecryption,
    Outcome,
    Reason,
)


@dataclass
class Hello:
    random: bytes
    cipher: int | None = None
    extensions: list = field(default_factory=list)


@dataclass
class ParsedSession:
    client_hello: Hello
    server_hello: Hello
    version: int
    client_direction: int


def parsed(session: dict, client_direction: int) -> ParsedSession:
    hello = parse_hellos(session)
    extensions = [(0x0016, 0)] * hello["etm"] + [(0x0017, 0)] * hello["ems"]
    return ParsedSession(Hello(hello["client_random"]), Hello(hello["server_random"], hello["suite"], extensions),
                         hello["version"], client_direction)


def drive(plug, session: dict, client_direction: int) -> dict[int, bytes]:
    """Feed the records like the TLS parser: protected ones only. Returns application data per flow direction."""
    tls13 = parse_hellos(session)["version"] == 0x0304
    out = {0: b"", 1: b""}
    for role, d in (("client", client_direction), ("server", 1 - client_direction)):
        after_ccs = False
        for ctype, version, fragment in session[role]:
            fragment = bytes.fromhex(fragment)
            if ctype == 20:
                after_ccs = True
                continue
            protected = ctype == 23 if tls13 else after_ccs
            if not protected:
                continue
            result = plug.decrypt(d, ctype, version, fragment) if plug is not None else None
            if result is not None:
                inner, plaintext = result
                if inner == 23:
                    out[d] += plaintext
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-SHA384", "TLS13"])
@pytest.mark.parametrize("client_direction", [0, 1])
def test_plug_decrypts_by_flow_direction(certs, tmp_path, cipher, client_direction):
    keys = str(tmp_path / "keys.log")
    if cipher == "TLS13":
        session = run_tls13_session(certs, keys, "TLS_AES_128_GCM_SHA256", tmp_path)
    else:
        session = run_session(certs, keys, ciphers=cipher)
    factory = KeyLogDecryption(KeyLog.load([keys], use_environment=False))
    plug = factory(parsed(session, client_direction))
    assert plug is not None
    data = drive(plug, session, client_direction)
    assert data[client_direction] == REQUEST and data[1 - client_direction] == RESPONSE
    assert plug.outcome().status == DECRYPTED == KeyLogDecryption.outcome_of(*factory.sessions[0]).status
    assert len(factory.sessions) == 1 and factory.sessions[0][2] is plug


def test_plug_declines_sessions_it_cannot_decrypt(certs, tmp_path):
    session = run_session(certs, str(tmp_path / "keys.log"), ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    factory = KeyLogDecryption(KeyLog())
    assert factory(parsed(session, 0)) is None
    (entry, keys, decryptor), = factory.sessions
    assert keys.reason is Reason.NO_SECRET and decryptor is None
    assert KeyLogDecryption.outcome_of(entry, keys, decryptor) == Outcome(NOTHING_ENCRYPTED, Reason.NO_SECRET, 0, 0)
    entry.app_records = [3, 2]  # what the parser counted while it skipped the bodies
    assert KeyLogDecryption.outcome_of(entry, keys, decryptor) == Outcome(NOT_DECRYPTED, Reason.NO_SECRET, 0, 0)
    incomplete = parsed(session, 0)
    incomplete.server_hello = None
    assert factory(incomplete) is None and factory.sessions[-1][1] is None
    assert KeyLogDecryption.outcome_of(*factory.sessions[-1]).status == NOTHING_ENCRYPTED
