"""Decrypt real TLS sessions made in the test by Python's ssl (OpenSSL) over memory BIOs, one per cipher family.

Client and server talk through memory BIOs; the bytes each side writes are the wire, split into records here.
OpenSSL writes the key log (SSLContext.keylog_filename). Each session carries known application data both ways,
so decryption is checked against known plaintext, for every suite family the decryptor supports: TLS 1.2 AES-GCM,
ChaCha20-Poly1305, AES-CCM(_8), AES-CBC with HMAC-SHA1/SHA256/SHA384 in MAC-then-encrypt and encrypt-then-MAC,
TLS 1.0/1.1 CBC, resumption; TLS 1.3 AES-128/256-GCM, ChaCha20-Poly1305, AES-128-CCM(_8). TLS 1.3 suites can
only be chosen through OpenSSL's configuration, so those sessions run in a subprocess with OPENSSL_CONF set (this
file is also that subprocess's script).
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import subprocess
import sys
import warnings
from pathlib import Path

# OpenSSL 3.0 option bits Python does not name
OP_NO_EXTENDED_MASTER_SECRET = 1 << 0
OP_NO_ENCRYPT_THEN_MAC = 1 << 19

REQUEST = b"GET /secret-page HTTP/1.1\r\nHost: localhost\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + bytes(i % 251 for i in range(20000))  # > 1 record


# -- the harness (runs in this process or, for TLS 1.3 suite choice, as a subprocess) --------------------------------
def make_certificates(directory: Path) -> dict[str, str]:
    """A self-signed RSA and ECDSA certificate for 'localhost' (PEM files), so every key exchange can be used."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    paths = {}
    for kind, key in (("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("ecdsa", ec.generate_private_key(ec.SECP256R1()))):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=36500))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(key, hashes.SHA256()))
        cert_path, key_path = directory / f"{kind}.crt", directory / f"{kind}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        paths[kind] = (str(cert_path), str(key_path))
    return paths


def split_records(wire: bytes) -> list[tuple[int, int, bytes]]:
    records, i = [], 0
    while i + 5 <= len(wire):
        length = int.from_bytes(wire[i + 3:i + 5], "big")
        records.append((wire[i], int.from_bytes(wire[i + 1:i + 3], "big"), wire[i + 5:i + 5 + length]))
        i += 5 + length
    assert i == len(wire), "the wire ends inside a record"
    return records


def run_session(certs: dict, keylog: str, *, version: str = "TLSv1_2", ciphers: str | None = None,
                options: int = 0, resume: bool = False) -> dict:
    """Handshake, REQUEST one way, RESPONSE the other, close_notify both ways. Returns each side's records.

    With resume=True a first session is made and the returned one resumes it (abbreviated handshake)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated, on purpose here
        tls_version = getattr(ssl.TLSVersion, version)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for ctx in (server_ctx, client_ctx):
            ctx.minimum_version = ctx.maximum_version = tls_version
            if ciphers:
                ctx.set_ciphers(ciphers)
            ctx.options |= options
    for kind in ("rsa", "ecdsa"):
        server_ctx.load_cert_chain(*certs[kind])
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = keylog

    def one(session=None):
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        wire = {"client": bytearray(), "server": bytearray()}

        def pump():
            for name, out, into in (("client", c_out, s_in), ("server", s_out, c_in)):
                data = out.read()
                wire[name] += data
                into.write(data)

        def attempt(step):
            try:
                return step()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None

        for _ in range(10):  # a few round trips finish any handshake; do_handshake is a no-op once done
            attempt(client.do_handshake)
            attempt(server.do_handshake)
            pump()
        client.write(REQUEST)
        pump()
        received = b""
        while len(received) < len(REQUEST):
            received += server.read(65536)
        assert received == REQUEST
        server.write(RESPONSE)
        pump()
        received = b""
        while len(received) < len(RESPONSE):
            received += client.read(65536)
        assert received == RESPONSE
        attempt(client.unwrap)
        pump()
        attempt(server.unwrap)
        pump()
        return client, server, wire

    session = None
    if resume:
        first_client, _, _ = one()
        session = first_client.session
    client, server, wire = one(session)
    return {"version": client.version(), "cipher": client.cipher()[0], "resumed": client.session_reused,
            "client": [[t, v, f.hex()] for t, v, f in split_records(bytes(wire["client"]))],
            "server": [[t, v, f.hex()] for t, v, f in split_records(bytes(wire["server"]))]}


def run_tls13_session(certs: dict, keylog: str, suite: str, tmp: Path) -> dict:
    """A TLS 1.3 session restricted to `suite`: a subprocess with an OpenSSL configuration naming it."""
    conf = tmp / f"{suite}.cnf"
    conf.write_text("openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n"
                    "system_default = system_default_sect\n[system_default_sect]\n"
                    f"Ciphersuites = {suite}\n")
    env = dict(os.environ, OPENSSL_CONF=str(conf))
    args = json.dumps({"certs": certs, "keylog": keylog})
    out = subprocess.run([sys.executable, __file__, args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


if __name__ == "__main__":  # the TLS 1.3 subprocess: OPENSSL_CONF has chosen the suite
    job = json.loads(sys.argv[1])
    print(json.dumps(run_session(job["certs"], job["keylog"], version="TLSv1_3")))
    sys.exit(0)


# -- the tests --------------------------------------------------------------------------------------------------------
import pytest  # noqa: E402

from diagnose.keylog import KeyLog  # noqa: E402
from diagnose.protocols.tls_decrypt import TLS13, Reason, Status, TlsSessionKeys  # noqa: E402


def parse_hellos(session: dict) -> dict:
    """Version, suite, randoms and the EMS/EtM extensions from the plaintext hellos (a test-only parser)."""
    client_hello = bytes.fromhex(session["client"][0][2])
    server_hello = bytes.fromhex(session["server"][0][2])
    assert client_hello[0] == 1 and server_hello[0] == 2
    version = int.from_bytes(server_hello[4:6], "big")
    sid_len = server_hello[38]
    i = 39 + sid_len
    suite = int.from_bytes(server_hello[i:i + 2], "big")
    i += 3
    extensions = {}
    if i + 2 <= len(server_hello):
        end = i + 2 + int.from_bytes(server_hello[i:i + 2], "big")
        i += 2
        while i + 4 <= end:
            ext_type = int.from_bytes(server_hello[i:i + 2], "big")
            length = int.from_bytes(server_hello[i + 2:i + 4], "big")
            extensions[ext_type] = server_hello[i + 4:i + 4 + length]
            i += 4 + length
    if 0x002B in extensions:
        version = int.from_bytes(extensions[0x002B], "big")
    return {"version": version, "suite": suite, "client_random": client_hello[6:38],
            "server_random": server_hello[6:38], "ems": 0x0017 in extensions, "etm": 0x0016 in extensions}


def decrypt_session(session: dict, keylog_path: str):
    hello = parse_hellos(session)
    keylog = KeyLog()
    keylog.add_file(keylog_path)
    assert not keylog.problems
    keys = TlsSessionKeys(hello["version"], hello["suite"], hello["client_random"], hello["server_random"], keylog,
                          extended_master_secret=hello["ems"], encrypt_then_mac=hello["etm"])
    assert keys.reason is None, keys.reason
    results = {}
    for side in ("client", "server"):
        decryptor = keys.decryptor(side)
        results[side] = [decryptor.decrypt(t, v, bytes.fromhex(f)) for t, v, f in session[side]]
        assert decryptor.failed == 0, [r.status for r in results[side]]
    return hello, results


def application_data(results) -> bytes:
    return b"".join(r.plaintext for r in results if r.content_type == 23)


def check_session(session: dict, keylog_path: str):
    hello, results = decrypt_session(session, keylog_path)
    assert application_data(results["client"]) == REQUEST
    assert application_data(results["server"]) == RESPONSE
    for side in ("client", "server"):
        decrypted = [r for r in results[side] if r.status is Status.DECRYPTED]
        assert decrypted, side
        assert (decrypted[-1].content_type, decrypted[-1].plaintext) == (21, b"\x01\x00")  # close_notify
        handshake = [r.plaintext for r in decrypted if r.content_type == 22]
        if hello["version"] == TLS13:
            first = handshake[0][0]
            assert first == (8 if side == "server" else 20)  # EncryptedExtensions / client Finished
        else:
            assert handshake[0][0] == 20 and len(handshake[0]) == 16  # Finished, 12 bytes of verify_data
    return hello


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


TLS12_CASES = [
    # (OpenSSL cipher name, options, expected suite, expected EtM)
    ("ECDHE-RSA-AES128-GCM-SHA256", 0, 0xC02F, False),
    ("ECDHE-RSA-AES256-GCM-SHA384", 0, 0xC030, False),
    ("AES256-GCM-SHA384", 0, 0x009D, False),
    ("ECDHE-RSA-CHACHA20-POLY1305", 0, 0xCCA8, False),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", 0, 0xCCA9, False),
    ("AES128-CCM", 0, 0xC09C, False),
    ("ECDHE-ECDSA-AES256-CCM8", 0, 0xC0AF, False),
    ("ECDHE-RSA-AES128-SHA", 0, 0xC013, True),
    ("ECDHE-RSA-AES128-SHA", OP_NO_ENCRYPT_THEN_MAC, 0xC013, False),
    ("ECDHE-RSA-AES128-SHA256", 0, 0xC027, True),
    ("ECDHE-RSA-AES128-SHA256", OP_NO_ENCRYPT_THEN_MAC, 0xC027, False),
    ("ECDHE-RSA-AES256-SHA384", 0, 0xC028, True),
    ("ECDHE-RSA-AES256-SHA384", OP_NO_ENCRYPT_THEN_MAC, 0xC028, False),
    ("ECDHE-ECDSA-AES256-SHA", OP_NO_ENCRYPT_THEN_MAC, 0xC00A, False),
    ("ECDHE-RSA-AES128-GCM-SHA256", OP_NO_EXTENDED_MASTER_SECRET, 0xC02F, False),
]


@pytest.mark.parametrize("cipher,options,suite,etm", TLS12_CASES,
                         ids=[f"{c}{'-noEtM' if o & OP_NO_ENCRYPT_THEN_MAC else ''}"
                              f"{'-noEMS' if o & OP_NO_EXTENDED_MASTER_SECRET else ''}" for c, o, _, _ in TLS12_CASES])
def test_tls12_suite(certs, tmp_path, cipher, options, suite, etm):
    keylog = str(tmp_path / "keys.log")
    session = run_session(certs, keylog, ciphers=cipher, options=options)
    hello = check_session(session, keylog)
    assert (hello["version"], hello["suite"], hello["etm"]) == (0x0303, suite, etm)
    assert hello["ems"] == (not options & OP_NO_EXTENDED_MASTER_SECRET)


@pytest.mark.parametrize("version,cipher", [("TLSv1", "ECDHE-RSA-AES128-SHA"), ("TLSv1_1", "ECDHE-RSA-AES256-SHA")])
@pytest.mark.parametrize("options", [0, OP_NO_ENCRYPT_THEN_MAC], ids=["EtM", "MtE"])
def test_tls10_and_tls11_cbc(certs, tmp_path, version, cipher, options):
    keylog = str(tmp_path / "keys.log")
    session = run_session(certs, keylog, version=version, ciphers=cipher + ":@SECLEVEL=0", options=options)
    hello = check_session(session, keylog)
    assert hello["version"] == {"TLSv1": 0x0301, "TLSv1_1": 0x0302}[version]


def test_tls12_resumed_session(certs, tmp_path):
    """Abbreviated handshake: the server's ChangeCipherSpec comes first; the log repeats the master secret."""
    keylog = str(tmp_path / "keys.log")
    session = run_session(certs, keylog, ciphers="ECDHE-RSA-AES128-GCM-SHA256", options=ssl.OP_NO_TICKET,
                          resume=True)
    assert session["resumed"]
    server_types = [t for t, _, _ in session["server"]]
    assert server_types[:3] == [22, 20, 22]  # ServerHello, CCS, Finished: no certificate this time
    check_session(session, keylog)


@pytest.mark.parametrize("suite,code", [("TLS_AES_128_GCM_SHA256", 0x1301), ("TLS_AES_256_GCM_SHA384", 0x1302),
                                        ("TLS_CHACHA20_POLY1305_SHA256", 0x1303), ("TLS_AES_128_CCM_SHA256", 0x1304),
                                        ("TLS_AES_128_CCM_8_SHA256", 0x1305)])
def test_tls13_suite(certs, tmp_path, suite, code):
    keylog = str(tmp_path / "keys.log")
    session = run_tls13_session(certs, keylog, suite, tmp_path)
    hello = check_session(session, keylog)
    assert (hello["version"], hello["suite"]) == (0x0304, code)
    # the server's NewSessionTicket messages come under the application keys, after its Finished
    _, results = decrypt_session(session, keylog)
    handshake_types = [r.plaintext[0] for r in results["server"]
                       if r.content_type == 22 and r.status is Status.DECRYPTED]
    assert 4 in handshake_types


def test_wrong_key_log_fails_every_protected_record_without_raising(certs, tmp_path):
    first, second = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    session = run_session(certs, first, ciphers="ECDHE-RSA-AES128-SHA256")
    run_session(certs, second, ciphers="ECDHE-RSA-AES128-SHA256")
    hello = parse_hellos(session)
    # the other session's master secret under this session's client random: a wrong key log
    wrong_secret = next(line.split()[2] for line in Path(second).read_text().splitlines()
                        if line.startswith("CLIENT_RANDOM "))
    keylog = KeyLog()
    keylog.add_text(f"CLIENT_RANDOM {hello['client_random'].hex()} {wrong_secret}\n", "wrong.keys")
    assert not keylog.problems and hello["client_random"] in keylog
    keys = TlsSessionKeys(hello["version"], hello["suite"], hello["client_random"], hello["server_random"], keylog,
                          encrypt_then_mac=hello["etm"])
    for side in ("client", "server"):
        decryptor = keys.decryptor(side)
        results = [decryptor.decrypt(t, v, bytes.fromhex(f)) for t, v, f in session[side]]
        failed = [r for r in results if r.status is Reason.AUTH_FAILED]
        assert decryptor.decrypted == 0 and decryptor.failed == len(failed) >= 3  # Finished, data, alert
        assert all(r.plaintext is None for r in failed)
