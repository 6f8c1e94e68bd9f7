"""`diagnose keys` match summary and `diagnose inject-secrets`: right, missing, foreign, cut, wrong and garbage key
logs each give the right summary and a clear warning without raising, and no secret reaches any output."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from oracles.fixtures import data_path

from diagnose.capture import open_capture
from diagnose.errors import UsageError
from diagnose.keylog import TLS_KEY_LOG_SECRET_TYPE, KeyLog
from diagnose.protocols.tls_decrypt import DECRYPTED, NOT_DECRYPTED, NOTHING_ENCRYPTED, PARTLY_DECRYPTED, Reason
from diagnose.report.keys import format_key_match, inject_secrets, match_keys

LAB = data_path("lab")
CAPTURE = str(LAB / "tls_decrypt_keylog.pcap")
KEYS = LAB / "tls_decrypt_keylog.keys"

OUTPUTS: list[str] = []  # every text the functions under test produced, for the secret grep at the end


def run(capture: str, keylogs=(), **kwargs):
    match = match_keys(capture, [str(k) for k in keylogs], use_environment=False, **kwargs)
    OUTPUTS.extend([format_key_match(match), json.dumps(match.to_dict()), *match.warnings, repr(match)])
    return match


def statuses(match):
    return [(s.stream, s.outcome.status, s.outcome.reason) for s in match.sessions]


def test_right_key_log():
    match = run(CAPTURE, [KEYS])
    assert match.headline() == "2 TLS sessions, 2 with a key log secret, 2 decrypted"
    assert statuses(match) == [(0, DECRYPTED, None), (1, DECRYPTED, None)]
    assert [(s.version_name, s.suite_name, s.sni) for s in match.sessions] == [
        ("TLS 1.3", "TLS_AES_256_GCM_SHA384", "server.lab.test"),
        ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "server.lab.test")]
    assert [s.first_frame for s in match.sessions] == [8, 37]  # the ClientHello frames
    assert [s.client_random for s in match.sessions] == [line.split()[1] for line in KEYS.read_text().splitlines()
                                                         if line.startswith(("CLIENT_HANDSHAKE", "CLIENT_RANDOM"))]
    assert match.warnings == []
    text = format_key_match(match)
    assert text.startswith("2 TLS sessions, 2 with a key log secret, 2 decrypted\n")
    assert "10.99.1.2:" in text and "-> 10.99.2.2:8443" in text


def test_no_key_log():
    match = run(CAPTURE)
    assert match.headline() == "2 TLS sessions, 0 with a key log secret, 0 decrypted"
    assert statuses(match) == [(0, NOT_DECRYPTED, Reason.NO_SECRET), (1, NOT_DECRYPTED, Reason.NO_SECRET)]
    assert len(match.warnings) == 1 and match.warnings[0].startswith("no key log:")
    assert "not decrypted: no key log line for its client random" in format_key_match(match)


def test_key_log_of_another_capture():
    match = run(CAPTURE, [LAB / "slow_ttfb_tls.keys"])
    assert match.headline() == "2 TLS sessions, 0 with a key log secret, 0 decrypted"
    assert [w for w in match.warnings if "key log of another capture" in w]


def test_truncated_key_log(tmp_path):
    text = KEYS.read_text()
    cut_at = text.index("CLIENT_TRAFFIC_SECRET_0") + 100  # inside that line's secret; CLIENT_RANDOM is lost too
    cut = tmp_path / "cut.keys"
    cut.write_text(text[:cut_at])
    match = run(CAPTURE, [cut])
    assert match.headline() == "2 TLS sessions, 1 with a key log secret, 0 decrypted"
    tls13, tls12 = match.sessions
    assert (tls13.outcome.status, tls13.outcome.reason) == (PARTLY_DECRYPTED, Reason.TLS13_LINES_MISSING)
    assert tls13.missing_labels == ["CLIENT_TRAFFIC_SECRET_0"]
    assert tls13.outcome.decrypted > 0 and tls13.outcome.failed > 0
    assert (tls12.outcome.status, tls12.outcome.reason) == (NOT_DECRYPTED, Reason.NO_SECRET)
    assert any(re.search(r"cut\.keys:5: .*looks cut short", w) for w in match.warnings)
    assert any("lack key log lines (CLIENT_TRAFFIC_SECRET_0)" in w for w in match.warnings)
    assert "[missing CLIENT_TRAFFIC_SECRET_0]" in format_key_match(match)


def test_wrong_key_log(tmp_path):
    """Right client randoms, wrong secrets (every secret's first hex digit changed): authentication fails."""
    lines = []
    for line in KEYS.read_text().splitlines():
        label, random, secret = line.split()
        lines.append(f"{label} {random} {'0' if secret[0] != '0' else '1'}{secret[1:]}")
    wrong = tmp_path / "wrong.keys"
    wrong.write_text("\n".join(lines) + "\n")
    match = run(CAPTURE, [wrong])
    assert match.headline() == "2 TLS sessions, 2 with a key log secret, 0 decrypted"
    assert statuses(match) == [(0, NOT_DECRYPTED, Reason.AUTH_FAILED), (1, NOT_DECRYPTED, Reason.AUTH_FAILED)]
    assert any("authentication failed" in w and "tcp.stream 0, 1" in w for w in match.warnings)


@pytest.mark.parametrize("content", [os.urandom(3000), b"\x00" * 100, b"not a key log\nat all\n", b""])
def test_garbage_key_log(tmp_path, content):
    junk = tmp_path / "junk.keys"
    junk.write_bytes(content)
    match = run(CAPTURE, [junk])
    assert match.headline() == "2 TLS sessions, 0 with a key log secret, 0 decrypted"
    assert any("holds no usable secrets" in w for w in match.warnings)


def test_partial_tls13_key_log_is_enough_for_the_certificate():
    """tls_expired_cert.keys holds one line: the server handshake secret of the TLS 1.3 stream."""
    match = run(str(LAB / "tls_expired_cert.pcap"), [LAB / "tls_expired_cert.keys"])
    assert match.headline() == "2 TLS sessions, 1 with a key log secret, 1 decrypted"
    assert statuses(match) == [(0, NOTHING_ENCRYPTED, Reason.NO_SECRET), (1, DECRYPTED, None)]
    assert match.sessions[1].secret_labels == ["SERVER_HANDSHAKE_TRAFFIC_SECRET"]


def test_sessions_without_server_hello_and_environment_variable(monkeypatch):
    monkeypatch.setenv("SSLKEYLOGFILE", str(KEYS))
    match = match_keys(str(LAB / "tls_version_mismatch.pcap"))
    OUTPUTS.append(format_key_match(match))
    assert match.headline() == "1 TLS sessions, 0 with a key log secret, 0 decrypted"
    assert statuses(match) == [(0, NOTHING_ENCRYPTED, None)]
    assert match.keylog_sources == [f"SSLKEYLOGFILE={KEYS}"]
    with_env = match_keys(CAPTURE)
    assert with_env.decrypted == 2


def test_capture_secrets_and_files_together():
    dsb = str(data_path("corpus", "derived", "tls_nss_example-dsb.pcapng"))
    match = run(dsb)
    assert match.headline() == "2 TLS sessions, 2 with a key log secret, 2 decrypted"
    assert match.keylog_sources == ["decryption secrets block 1"]
    assert run(dsb, use_capture_secrets=False).decrypted == 0
    plain = run(str(data_path("corpus", "scapy", "tls_nss_example.pcap")),
                [data_path("corpus", "scapy", "tls_nss_example.keys.txt")])
    assert plain.decrypted == 2


def test_unsupported_cipher_says_which(tmp_path):
    """zeek/ssl.v3.pcap negotiates TLS 1.0 with RC4-MD5 (0x0004): with key log lines for its client randoms the
    summary says the suite is not supported, and which."""
    capture = str(data_path("corpus", "zeek", "ssl.v3.pcap"))
    randoms = [s.client_random for s in run(capture).sessions]
    keys = tmp_path / "ssl3.keys"
    keys.write_text("".join(f"CLIENT_RANDOM {r} {'5a' * 48}\n" for r in randoms))
    match = run(capture, [keys])
    assert match.headline() == "2 TLS sessions, 2 with a key log secret, 0 decrypted"
    assert {(s.version_name, s.suite_name, s.outcome.reason, s.detail) for s in match.sessions} == {
        ("TLS 1.0", "0x0004", Reason.CIPHER_UNSUPPORTED, "cipher suite 0x0004")}
    assert "not decrypted: cipher suite not supported for decryption (cipher suite 0x0004)" in format_key_match(match)


def test_every_capture_is_summarised_without_raising():
    for path in sorted(list(LAB.glob("*.pcap")) + list(data_path("corpus").glob("*/*.pcap*"))):
        if path.name.endswith(".json") or path.name == "tls1.2-badmagic.pcap":
            continue
        match = run(str(path), [KEYS])
        assert match.with_secret <= len(match.sessions)


# -- inject-secrets ------------------------------------------------------------------------------------------------
def read_back(path):
    frames = []
    with open_capture(str(path)) as capture:
        for chunk in capture.chunks():
            for r in chunk.table:
                frames.append((int(r["ts"]), int(r["wirelen"]), chunk.buf[r["data"]:r["data"] + r["caplen"]].tobytes()))
        return frames, list(capture.info.secrets)


def test_inject_secrets_equals_editcap(tmp_path):
    """The corpus' derived/illustrated-tls13-dsb.pcapng was made by editcap --inject-secrets from the same files."""
    source = data_path("corpus", "illustrated-tls13", "capture.pcap")
    keylog = data_path("corpus", "illustrated-tls13", "keylog.txt")
    out = tmp_path / "out.pcapng"
    result = inject_secrets(str(source), [str(keylog)], str(out))
    OUTPUTS.append(json.dumps(result))
    assert result["packets"] == 22 and result["client_randoms"] == 1 and result["secret_lines"] == 5
    ours, our_secrets = read_back(out)
    editcap, editcap_secrets = read_back(data_path("corpus", "derived", "illustrated-tls13-dsb.pcapng"))
    assert ours == editcap and ours == read_back(source)[0]
    assert [s.secret_type for s in our_secrets] == [s.secret_type for s in editcap_secrets] == [TLS_KEY_LOG_SECRET_TYPE]
    mine, theirs = KeyLog(), KeyLog()
    mine.add_secrets(our_secrets)
    theirs.add_secrets(editcap_secrets)
    assert mine.client_randoms() == theirs.client_randoms()
    assert mine.lookup(mine.client_randoms()[0]) == theirs.lookup(theirs.client_randoms()[0])
    assert run(str(out)).decrypted == 1


def test_inject_only_matching_secrets(tmp_path):
    both = tmp_path / "both.keys"
    both.write_text(KEYS.read_text() + (LAB / "slow_ttfb_tls.keys").read_text())
    out = tmp_path / "out.pcapng"
    result = inject_secrets(CAPTURE, [str(both)], str(out), only_matching=True)
    assert result["client_randoms"] == 2 and result["secret_lines"] == 6
    _, secrets = read_back(out)
    injected = KeyLog()
    injected.add_secrets(secrets)
    assert len(injected) == 2
    assert run(str(out)).headline() == "2 TLS sessions, 2 with a key log secret, 2 decrypted"


def test_inject_secrets_refusals(tmp_path):
    with pytest.raises(UsageError, match="cannot hold decryption secrets"):
        inject_secrets(CAPTURE, [str(KEYS)], str(tmp_path / "out.pcap"))
    junk = tmp_path / "junk.keys"
    junk.write_text("nothing here\n")
    with pytest.raises(UsageError, match="no usable secrets") as bad:
        inject_secrets(CAPTURE, [str(junk)], str(tmp_path / "out.pcapng"))
    OUTPUTS.append(str(bad.value))
    with pytest.raises(UsageError, match="matches one of the 2 TLS sessions"):
        inject_secrets(CAPTURE, [str(LAB / "slow_ttfb_tls.keys")], str(tmp_path / "o.pcapng"), only_matching=True)
    existing = tmp_path / "exists.pcapng"
    existing.write_bytes(b"x")
    with pytest.raises(UsageError, match="file exists"):
        inject_secrets(CAPTURE, [str(KEYS)], str(existing))
    assert not (tmp_path / "out.pcapng").exists()


def test_inject_into_a_capture_without_packets(tmp_path):
    out = tmp_path / "empty.pcapng"
    inject_secrets(str(data_path("corpus", "tcpdump", "empty.pcapng")), [str(KEYS)], str(out))
    frames, secrets = read_back(out)
    assert frames == [] and len(secrets) == 1


# -- no secret anywhere --------------------------------------------------------------------------------------------
def all_secret_hex() -> set[str]:
    files = [*LAB.glob("*.keys"), data_path("corpus", "illustrated-tls13", "keylog.txt"),
             data_path("corpus", "scapy", "tls_nss_example.keys.txt")]
    secrets = set()
    for f in files:
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                secrets.add(parts[2].lower())
    return secrets


def test_zz_no_secret_in_any_output():
    """Runs last in this file: every summary, JSON, warning and error produced above, grepped for the secrets of
    every key log used (whole, and any 16-digit piece of them)."""
    assert len(OUTPUTS) > 40
    secrets = all_secret_hex()
    assert len(secrets) >= 15
    pieces = {s[i:i + 16] for s in secrets for i in range(0, len(s) - 15, 8)}
    for text in OUTPUTS:
        low = text.lower()
        for piece in pieces:
            assert piece not in low
    assert np.all([isinstance(t, str) for t in OUTPUTS])
