"""TLS 1.3 decryption against RFC 8448 §3 (Simple 1-RTT Handshake, TLS_AES_128_GCM_SHA256).

Every value below is typed from the RFC's text: the hellos, the logged traffic secrets, the derived keys and IVs,
and the complete protected records. The plaintexts are checked against the RFC's handshake messages and its
transcript hashes, so a wrong key schedule, nonce, AAD or inner-type handling cannot pass.
"""

from __future__ import annotations

import hashlib

import pytest

from diagnose.keylog import KeyLog
from diagnose.protocols.tls_decrypt import (
    CIPHER_SUITES,
    Reason,
    Status,
    TlsSessionKeys,
    hkdf_expand_label,
    tls13_traffic_keys,
)


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


CLIENT_HELLO = h("""
01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7
00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01 00 01 00 00 0a 00 14 00
12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60
e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d 00 20
00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01
00 1c 00 02 40 01""")
SERVER_HELLO = h("""
02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e d3 e2 69 28
00 13 01 00 00 2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1 56 d6 cc 25 3b 83 3d f1
dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04""")
CLIENT_RANDOM = CLIENT_HELLO[6:38]
SERVER_RANDOM = SERVER_HELLO[6:38]

CLIENT_HS_SECRET = h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
SERVER_HS_SECRET = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
CLIENT_AP_SECRET = h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
SERVER_AP_SECRET = h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
EXPORTER_SECRET = h("fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50")

ENCRYPTED_EXTENSIONS = h("""
08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 1c 00 02 40 01 00 00
00 00""")
CERTIFICATE_VERIFY = h("""
0f 00 00 84 08 04 00 80 5a 74 7c 5d 88 fa 9b d2 e5 5a b0 85 a6 10 15 b7 21 1f 82 4c d4 84 14 5a b3 ff 52 f1 fd a8
47 7b 0b 7a bc 90 db 78 e2 d3 3a 5c 14 1a 07 86 53 fa 6b ef 78 0c 5e a2 48 ee aa a7 85 c4 f3 94 ca b6 d3 0b be 8d
48 59 ee 51 1f 60 29 57 b1 54 11 ac 02 76 71 45 9e 46 44 5c 9e a5 8c 18 1e 81 8e 95 b8 c3 fb 0b f3 27 84 09 d3 be
15 2a 3d a5 04 3e 06 3d da 65 cd f5 ae a2 0d 53 df ac d4 2f 74 f3""")
SERVER_FINISHED = h("""
14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c 30 95 72 cb 7f ff ee 54 54 b7 8f 07 18""")
CLIENT_FINISHED = h("""
14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed d5 ce 61""")
NEW_SESSION_TICKET = h("""
04 00 00 c9 00 00 00 1e fa d6 aa c5 02 00 00 00 b2 2c 03 5d 82 93 59 ee 5f f7 af 4e c9 00 00 00 00 26 2a 64 94 dc
48 6d 2c 8a 34 cb 33 fa 90 bf 1b 00 70 ad 3c 49 88 83 c9 36 7c 09 a2 be 78 5a bc 55 cd 22 60 97 a3 a9 82 11 72 83
f8 2a 03 a1 43 ef d3 ff 5d d3 6d 64 e8 61 be 7f d6 1d 28 27 db 27 9c ce 14 50 77 d4 54 a3 66 4d 4e 6d a4 d2 9e e0
37 25 a6 a4 da fc d0 fc 67 d2 ae a7 05 29 51 3e 3d a2 67 7f a5 90 6c 5b 3f 7d 8f 92 f2 28 bd a4 0d da 72 14 70 f9
fb f2 97 b5 ae a6 17 64 6f ac 5c 03 27 2e 97 07 27 c6 21 a7 91 41 ef 5f 7d e6 50 5e 5b fb c3 88 e9 33 43 69 40 93
93 4a e4 d3 57 00 08 00 2a 00 04 00 00 04 00""")
APPLICATION_PAYLOAD = bytes(range(50))  # both sides send 00 01 02 ... 31
CLOSE_NOTIFY = h("01 00")

# complete records as sent on the wire
SERVER_HANDSHAKE_RECORD = h("""
17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a
a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd 05 d2 a3 89
28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07
16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b
3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6
10 92 8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94 5b a2 46 ab
66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea 52 0a
56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f 44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26
4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37
ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8
4d c3 bd 7e 1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da 8c 87
c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f
c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be 5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c
69 18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb 56 30 c8 ca
01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c
0b 3b 66 76 30 38 eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84
5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd
4a e3 79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e 75 0e dc 53 37 0d 2b""")
CLIENT_FINISHED_RECORD = h("""
17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03
38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46""")
SERVER_TICKET_RECORD = h("""
17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80
dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c 73
53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29
99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13
46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12
1c 74 bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79 b3 7b f1 59 85 68 4f""")
CLIENT_DATA_RECORD = h("""
17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4
6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4""")
SERVER_DATA_RECORD = h("""
17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90
e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d""")
CLIENT_ALERT_RECORD = h("17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3")
SERVER_ALERT_RECORD = h("17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9")

# transcript hashes the RFC gives: they pin down the decrypted handshake messages byte for byte
HASH_CH_SH = h("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8")
HASH_CH_SERVER_FINISHED = h("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13")
HASH_CH_CLIENT_FINISHED = h("209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d")

KEYLOG_TEXT = f"""# RFC 8448 section 3, as a key log
CLIENT_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM.hex()} {CLIENT_HS_SECRET.hex()}
SERVER_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM.hex()} {SERVER_HS_SECRET.hex()}
CLIENT_TRAFFIC_SECRET_0 {CLIENT_RANDOM.hex()} {CLIENT_AP_SECRET.hex()}
SERVER_TRAFFIC_SECRET_0 {CLIENT_RANDOM.hex()} {SERVER_AP_SECRET.hex()}
EXPORTER_SECRET {CLIENT_RANDOM.hex()} {EXPORTER_SECRET.hex()}
"""
ALL_SECRETS_HEX = [s.hex() for s in (CLIENT_HS_SECRET, SERVER_HS_SECRET, CLIENT_AP_SECRET, SERVER_AP_SECRET,
                                     EXPORTER_SECRET)]


def split(record: bytes) -> tuple[int, int, bytes]:
    assert int.from_bytes(record[3:5], "big") == len(record) - 5
    return record[0], int.from_bytes(record[1:3], "big"), record[5:]


def session(keylog_text: str = KEYLOG_TEXT) -> TlsSessionKeys:
    keylog = KeyLog()
    keylog.add_text(keylog_text, "rfc8448.keys")
    return TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, keylog)


def test_transcription_of_the_hellos():
    assert hashlib.sha256(CLIENT_HELLO + SERVER_HELLO).digest() == HASH_CH_SH


@pytest.mark.parametrize("secret,key,iv", [
    (SERVER_HS_SECRET, "3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30"),
    (CLIENT_HS_SECRET, "dbfaa693d1762c5b666af5d950258d01", "5bd3c71b836e0b76bb73265f"),
    (SERVER_AP_SECRET, "9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984"),
    (CLIENT_AP_SECRET, "17422dda596ed5d9acd890e3c63f5051", "5b78923dee08579033e523d9"),
])
def test_traffic_keys(secret, key, iv):
    assert tls13_traffic_keys(CIPHER_SUITES[0x1301], secret) == (h(key), h(iv))


def test_hkdf_expand_label_finished_key():
    # RFC 8448: finished key of the server handshake secret ("tls13 finished", empty context)
    assert hkdf_expand_label("sha256", SERVER_HS_SECRET, "finished", b"", 32) == h(
        "008d3b66f816ea559f96b537e885c31fc068bf492c652f01f288a1d8cdc19fc8")


def test_server_flight_decrypts_to_the_rfc_messages():
    keys = session()
    assert keys.reason is None
    server = keys.decryptor("server")
    hello = server.decrypt(22, 0x0303, SERVER_HELLO)
    assert hello.status is Status.CLEAR and hello.plaintext == SERVER_HELLO

    flight = server.decrypt(*split(SERVER_HANDSHAKE_RECORD))
    assert flight.status is Status.DECRYPTED and flight.content_type == 22
    assert flight.plaintext.startswith(ENCRYPTED_EXTENSIONS)
    assert flight.plaintext.endswith(CERTIFICATE_VERIFY + SERVER_FINISHED)
    assert len(flight.plaintext) == 40 + 445 + 136 + 36
    assert hashlib.sha256(CLIENT_HELLO + SERVER_HELLO + flight.plaintext).digest() == HASH_CH_SERVER_FINISHED
    certificate = flight.plaintext[40:40 + 445]
    assert certificate[:4] == h("0b 00 01 b9")

    # after its Finished the server writes with its application keys: ticket, data, close_notify
    ticket = server.decrypt(*split(SERVER_TICKET_RECORD))
    assert (ticket.content_type, ticket.plaintext) == (22, NEW_SESSION_TICKET)
    data = server.decrypt(*split(SERVER_DATA_RECORD))
    assert (data.content_type, data.plaintext) == (23, APPLICATION_PAYLOAD)
    alert = server.decrypt(*split(SERVER_ALERT_RECORD))
    assert (alert.content_type, alert.plaintext) == (21, CLOSE_NOTIFY)
    assert (server.decrypted, server.failed) == (4, 0)


def test_client_flight_decrypts_to_the_rfc_messages():
    client = session().decryptor("client")
    assert client.decrypt(22, 0x0301, CLIENT_HELLO).status is Status.CLEAR
    finished = client.decrypt(*split(CLIENT_FINISHED_RECORD))
    assert (finished.content_type, finished.plaintext) == (22, CLIENT_FINISHED)
    server_flight = session().decryptor("server").decrypt(*split(SERVER_HANDSHAKE_RECORD)).plaintext
    assert hashlib.sha256(CLIENT_HELLO + SERVER_HELLO + server_flight + finished.plaintext).digest() \
        == HASH_CH_CLIENT_FINISHED
    data = client.decrypt(*split(CLIENT_DATA_RECORD))
    assert (data.content_type, data.plaintext) == (23, APPLICATION_PAYLOAD)
    alert = client.decrypt(*split(CLIENT_ALERT_RECORD))
    assert (alert.content_type, alert.plaintext) == (21, CLOSE_NOTIFY)
    assert (client.decrypted, client.failed) == (3, 0)


def test_application_keys_alone_still_open_the_application_records():
    """Only the *_TRAFFIC_SECRET_0 lines: handshake records are reported missing, application data opens."""
    only_app = "\n".join(line for line in KEYLOG_TEXT.splitlines() if "HANDSHAKE" not in line)
    keys = session(only_app)
    assert keys.reason is None and keys.missing_labels == ["CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                                                           "SERVER_HANDSHAKE_TRAFFIC_SECRET"]
    server = keys.decryptor("server")
    flight = server.decrypt(*split(SERVER_HANDSHAKE_RECORD))
    assert flight.plaintext is None and flight.status is Reason.TLS13_LINES_MISSING
    assert server.decrypt(*split(SERVER_TICKET_RECORD)).plaintext == NEW_SESSION_TICKET
    assert server.decrypt(*split(SERVER_DATA_RECORD)).plaintext == APPLICATION_PAYLOAD
    assert (server.decrypted, server.failed, server.first_failure) == (2, 1, Reason.TLS13_LINES_MISSING)


def test_handshake_keys_alone_open_the_handshake_only():
    only_hs = "\n".join(line for line in KEYLOG_TEXT.splitlines() if "HANDSHAKE" in line)
    server = session(only_hs).decryptor("server")
    assert server.decrypt(*split(SERVER_HANDSHAKE_RECORD)).ok
    after = server.decrypt(*split(SERVER_TICKET_RECORD))
    assert after.status is Reason.TLS13_LINES_MISSING


def test_no_line_for_the_client_random():
    other = KEYLOG_TEXT.replace(CLIENT_RANDOM.hex(), "ab" * 32)
    keys = session(other)
    assert keys.reason is Reason.NO_SECRET
    result = keys.decryptor("server").decrypt(*split(SERVER_HANDSHAKE_RECORD))
    assert (result.plaintext, result.status) == (None, Reason.NO_SECRET)


def test_wrong_secret_is_an_authentication_failure_not_an_exception():
    wrong = KEYLOG_TEXT.replace(SERVER_HS_SECRET.hex(), CLIENT_HS_SECRET.hex()).replace(
        SERVER_AP_SECRET.hex(), CLIENT_AP_SECRET.hex())
    server = session(wrong).decryptor("server")
    for record in (SERVER_HANDSHAKE_RECORD, SERVER_TICKET_RECORD, SERVER_DATA_RECORD):
        result = server.decrypt(*split(record))
        assert (result.plaintext, result.status) == (None, Reason.AUTH_FAILED)
    assert (server.decrypted, server.failed) == (0, 3)


def test_tampered_record_fails_and_the_next_one_still_opens():
    server = session().decryptor("server")
    assert server.decrypt(*split(SERVER_HANDSHAKE_RECORD)).ok
    bad = bytearray(SERVER_TICKET_RECORD)
    bad[20] ^= 1
    assert server.decrypt(*split(bytes(bad))).status is Reason.AUTH_FAILED
    assert server.decrypt(*split(SERVER_TICKET_RECORD)).plaintext == NEW_SESSION_TICKET  # seq did not move


def test_unsupported_cipher_suite_is_a_reason():
    keylog = KeyLog()
    keylog.add_text(KEYLOG_TEXT, "k")
    keys = TlsSessionKeys(0x0304, 0x1399, CLIENT_RANDOM, SERVER_RANDOM, keylog)
    assert keys.reason is Reason.CIPHER_UNSUPPORTED and keys.detail == "cipher suite 0x1399"
    assert keys.decryptor("client").decrypt(*split(CLIENT_DATA_RECORD)).status is Reason.CIPHER_UNSUPPORTED
    ssl3 = TlsSessionKeys(0x0300, 0x002F, CLIENT_RANDOM, SERVER_RANDOM, keylog)
    assert (ssl3.reason, ssl3.detail) == (Reason.CIPHER_UNSUPPORTED, "version 0x0300")
    mixed = TlsSessionKeys(0x0303, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, keylog)  # a TLS 1.3 suite in TLS 1.2
    assert mixed.reason is Reason.CIPHER_UNSUPPORTED


def test_no_secret_in_reprs():
    keys = session()
    server = keys.decryptor("server")
    server.decrypt(*split(SERVER_HANDSHAKE_RECORD))
    keylog = KeyLog()
    keylog.add_text(KEYLOG_TEXT, "k")
    texts = [repr(keys), str(keys), repr(server), repr(keylog), str(keylog), repr(keylog.lookup(CLIENT_RANDOM)),
             repr(server._epochs), repr(keys.secrets)]
    for text in texts:
        for secret in ALL_SECRETS_HEX:
            assert secret not in text and secret[:16] not in text
