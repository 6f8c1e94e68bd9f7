"""TLS 1.3 key stage changes: KeyUpdate (seen and unseen) and 0-RTT early data.

Python's ssl cannot send a KeyUpdate, so the records are sealed here, independently of the product: RFC 8446's
HKDF-Expand-Label written out byte by byte and AES-GCM from `cryptography`, starting from RFC 8448's server
application traffic secret (the records of RFC 8448 itself are checked in test_tls_decrypt_rfc8448.py).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from diagnose.keylog import KeyLog
from diagnose.protocols.tls_decrypt import Reason, Status, TlsSessionKeys

CLIENT_RANDOM = bytes.fromhex("cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7")
SERVER_RANDOM = bytes(32)
SERVER_HS = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
SERVER_AP = bytes.fromhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
CLIENT_HS = bytes.fromhex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
CLIENT_AP = bytes.fromhex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")


def expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    # struct HkdfLabel { uint16 length; opaque label<7..255> = "tls13 " + label; opaque context<0..255> = "" }
    info = length.to_bytes(2, "big") + bytes([6 + len(label)]) + b"tls13 " + label + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


class Sealer:
    """The sending side of one direction: seals inner plaintexts into TLS 1.3 records."""

    def __init__(self, secret: bytes):
        self.set_secret(secret)

    def set_secret(self, secret: bytes) -> None:
        self.secret = secret
        self.key, self.iv, self.seq = expand_label(secret, b"key", 16), expand_label(secret, b"iv", 12), 0

    def key_update(self) -> None:
        self.set_secret(expand_label(self.secret, b"traffic upd", 32))

    def seal(self, content_type: int, content: bytes, padding: int = 0) -> tuple[int, int, bytes]:
        inner = content + bytes([content_type]) + bytes(padding)
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        header = bytes([23, 3, 3]) + (len(inner) + 16).to_bytes(2, "big")
        self.seq += 1
        return 23, 0x0303, AESGCM(self.key).encrypt(nonce, inner, header)


KEY_UPDATE_NOT_REQUESTED = bytes([24, 0, 0, 1, 0])
KEY_UPDATE_REQUESTED = bytes([24, 0, 0, 1, 1])


def keylog(*lines: tuple[str, bytes]) -> KeyLog:
    log = KeyLog()
    log.add_text("".join(f"{label} {CLIENT_RANDOM.hex()} {secret.hex()}\n" for label, secret in lines), "test.keys")
    return log


FULL = keylog(("SERVER_HANDSHAKE_TRAFFIC_SECRET", SERVER_HS), ("SERVER_TRAFFIC_SECRET_0", SERVER_AP),
              ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", CLIENT_HS), ("CLIENT_TRAFFIC_SECRET_0", CLIENT_AP))


def server_records(*, updates: int, drop_key_update: bool = False) -> tuple[list, list[bytes]]:
    """Handshake flight, then data records with `updates` KeyUpdates in between."""
    hs, ap = Sealer(SERVER_HS), Sealer(SERVER_AP)
    finished = bytes([20, 0, 0, 32]) + os.urandom(32)
    records = [hs.seal(22, bytes([8, 0, 0, 2, 0, 0]) + finished, padding=7)]
    payloads = []
    for generation in range(updates + 1):
        for i in range(3):
            payload = f"generation {generation} record {i}".encode()
            payloads.append(payload)
            records.append(ap.seal(23, payload))
        if generation < updates:
            update = ap.seal(22, KEY_UPDATE_REQUESTED if generation % 2 else KEY_UPDATE_NOT_REQUESTED)
            if not drop_key_update:
                records.append(update)
            ap.key_update()
    return records, payloads


def test_key_updates_switch_to_the_next_generation():
    records, payloads = server_records(updates=3)
    decryptor = TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, FULL).decryptor("server")
    results = [decryptor.decrypt(*r) for r in records]
    assert all(r.status is Status.DECRYPTED for r in results)
    assert [r.plaintext for r in results if r.content_type == 23] == payloads
    assert [r.plaintext for r in results if r.content_type == 22][1:] == [
        KEY_UPDATE_NOT_REQUESTED, KEY_UPDATE_REQUESTED, KEY_UPDATE_NOT_REQUESTED]


def test_a_key_update_missing_from_the_capture_is_found_by_the_next_record():
    records, payloads = server_records(updates=2, drop_key_update=True)
    decryptor = TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, FULL).decryptor("server")
    results = [decryptor.decrypt(*r) for r in records]
    assert [r.plaintext for r in results if r.content_type == 23] == payloads
    assert decryptor.failed == 0


def test_key_update_in_a_record_with_other_handshake_messages_and_split_messages():
    hs, ap = Sealer(SERVER_HS), Sealer(SERVER_AP)
    finished = bytes([20, 0, 0, 32]) + bytes(32)
    records = [hs.seal(22, finished[:10]), hs.seal(22, finished[10:])]  # Finished split over two records
    ticket = bytes([4, 0, 0, 3, 1, 2, 3])
    records.append(ap.seal(22, ticket + KEY_UPDATE_NOT_REQUESTED))  # ticket and KeyUpdate in one record
    ap.key_update()
    records.append(ap.seal(23, b"after update"))
    decryptor = TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, FULL).decryptor("server")
    results = [decryptor.decrypt(*r) for r in records]
    assert results[-1].plaintext == b"after update" and decryptor.failed == 0


def test_early_data_with_and_without_its_secret():
    early_secret = os.urandom(32)
    early, hs, ap = Sealer(early_secret), Sealer(CLIENT_HS), Sealer(CLIENT_AP)
    records = [early.seal(23, b"0-RTT request"), early.seal(22, bytes([5, 0, 0, 0])),  # EndOfEarlyData
               hs.seal(22, bytes([20, 0, 0, 32]) + bytes(32)), ap.seal(23, b"1-RTT request")]

    with_early = keylog(("CLIENT_EARLY_TRAFFIC_SECRET", early_secret), ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", CLIENT_HS),
                        ("CLIENT_TRAFFIC_SECRET_0", CLIENT_AP))
    decryptor = TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, with_early).decryptor("client")
    results = [decryptor.decrypt(*r) for r in records]
    assert [r.plaintext for r in results if r.content_type == 23] == [b"0-RTT request", b"1-RTT request"]

    decryptor = TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, FULL).decryptor("client")
    results = [decryptor.decrypt(*r) for r in records]
    assert [r.status for r in results[:2]] == [Reason.AUTH_FAILED, Reason.AUTH_FAILED]
    assert [r.plaintext for r in results[2:]] == [bytes([20, 0, 0, 32]) + bytes(32), b"1-RTT request"]


def test_padding_is_removed_and_the_inner_type_kept():
    hs = Sealer(SERVER_HS)
    record = hs.seal(21, b"\x02\x2a", padding=100)  # a padded fatal alert under handshake keys
    result = TlsSessionKeys(0x0304, 0x1301, CLIENT_RANDOM, SERVER_RANDOM, FULL).decryptor("server").decrypt(*record)
    assert (result.content_type, result.plaintext) == (21, b"\x02\x2a")
