"""TLS record decryption from key log secrets: key schedules and per-direction record decryptors.

* TLS 1.2 (and 1.0/1.1 CBC): the key log's CLIENT_RANDOM line gives the master secret (extended master secret or
  not, the logged value is the one in use), the PRF expands it with both randoms into MAC keys, cipher keys and IVs
  (RFC 5246 §6.3; TLS 1.0/1.1 use the MD5+SHA-1 PRF of RFC 2246 §5). Records after each side's ChangeCipherSpec are
  protected: AES-GCM and AES-CCM (explicit 8-byte nonce, RFC 5288/6655), ChaCha20-Poly1305 (RFC 7905), or AES-CBC
  with HMAC, MAC-then-encrypt or encrypt-then-MAC (RFC 7366).
* TLS 1.3 (RFC 8446 §7): every record of type application_data is protected. Keys come from the logged traffic
  secrets with HKDF-Expand-Label; a direction starts with its handshake secret (after 0-RTT data, if the early
  secret is logged), moves to its application secret after its Finished and to the next generation after each
  KeyUpdate. The real content type is the last non-zero byte of the plaintext.

Ciphers, HMAC and HKDF come from `cryptography`. Failures are values, not exceptions: a record that cannot be
decrypted comes back with the reason (no key log line, TLS 1.3 lines missing, authentication failed, cipher
unsupported) and the decryptor goes on with the next one. Key material never appears in a repr.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import Enum
from hmac import compare_digest
from typing import NamedTuple


from diagnose.keylog import TLS13_LABELS, SessionSecrets

# record content types
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
# handshake message types that move TLS 1.3 keys
FINISHED, KEY_UPDATE, END_OF_EARLY_DATA = 20, 24, 5

SSL3, TLS10, TLS11, TLS12, TLS13 = 0x0300, 0x0301, 0x0302, 0x0303, 0x0304


class Reason(str, Enum):
    """Why records could not be decrypted (the match summary shows these)."""

    NO_SECRET = "no key log line for its client random"
    TLS13_LINES_MISSING = "TLS 1.3 key log lines missing"
    AUTH_FAILED = "authentication failed (the key log secret does not fit this session)"
    CIPHER_UNSUPPORTED = "cipher suite not supported for decryption"
    RECORDS_MISSING = "records missing from the capture (a gap in the TCP stream)"

    def __str__(self) -> str:
        return self.value


class Status(str, Enum):
    CLEAR = "clear"  # the record was not protected
    DECRYPTED = "decrypted"

    def __str__(self) -> str:
        return self.value


class RecordPlaintext(NamedTuple):
    """One record after decryption: the (inner) content type, the plaintext (None if not decrypted), and how."""

    content_type: int
    plaintext: bytes | None
    status: Status | Reason

    @property
    def ok(self) -> bool:
        return self.plaintext is not None


# -- cipher suites ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CipherSuite:
    code: int
    name: str
    tls13: bool
    cipher: str  # "AES-GCM", "AES-CCM", "CHACHA20-POLY1305" or "AES-CBC"
    key_len: int
    tag_len: int  # AEAD tag bytes; 0 for CBC
    mac: str | None  # CBC only: HMAC hash name
    prf: str  # TLS 1.2 PRF hash / TLS 1.3 HKDF hash

    @property
    def aead(self) -> bool:
        return self.cipher != "AES-CBC"


_SUITE_NAMES = {
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", 0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0040: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", 0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006A: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", 0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA", 0x008D: "TLS_PSK_WITH_AES_256_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A2: "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", 0x00A3: "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256", 0x00A9: "TLS_PSK_WITH_AES_256_GCM_SHA384",
    0x00AA: "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", 0x00AB: "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
    0x00AC: "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", 0x00AD: "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384",
    0x00AE: "TLS_PSK_WITH_AES_128_CBC_SHA256", 0x00AF: "TLS_PSK_WITH_AES_256_CBC_SHA384",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC035: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA", 0xC036: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
    0xC037: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", 0xC038: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
    0xC09C: "TLS_RSA_WITH_AES_128_CCM", 0xC09D: "TLS_RSA_WITH_AES_256_CCM",
    0xC09E: "TLS_DHE_RSA_WITH_AES_128_CCM", 0xC09F: "TLS_DHE_RSA_WITH_AES_256_CCM",
    0xC0A0: "TLS_RSA_WITH_AES_128_CCM_8", 0xC0A1: "TLS_RSA_WITH_AES_256_CCM_8",
    0xC0A2: "TLS_DHE_RSA_WITH_AES_128_CCM_8", 0xC0A3: "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    0xC0A4: "TLS_PSK_WITH_AES_128_CCM", 0xC0A5: "TLS_PSK_WITH_AES_256_CCM",
    0xC0A6: "TLS_DHE_PSK_WITH_AES_128_CCM", 0xC0A7: "TLS_DHE_PSK_WITH_AES_256_CCM",
    0xC0A8: "TLS_PSK_WITH_AES_128_CCM_8", 0xC0A9: "TLS_PSK_WITH_AES_256_CCM_8",
    0xC0AA: "TLS_PSK_DHE_WITH_AES_128_CCM_8", 0xC0AB: "TLS_PSK_DHE_WITH_AES_256_CCM_8",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", 0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xC0AE: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", 0xC0AF: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCAB: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", 0xCCAD: "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAE: "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xD001: "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256", 0xD002: "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384",
    0xD005: "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256",
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256", 0x1305: "TLS_AES_128_CCM_8_SHA256",
}

_BULK = re.compile(r"(?:AES_(?P<bits>128|256)_(?P<mode>GCM|CBC|CCM_8|CCM)|(?P<chacha>CHACHA20_POLY1305))"
                   r"(?:_(?P<hash>SHA|SHA256|SHA384))?\Z")
_HASH_NAMES = {"SHA": "sha1", "SHA256": "sha256", "SHA384": "sha384", None: "sha256"}


def _suite_from_name(code: int, name: str) -> CipherSuite:
    """The parameters are all in the IANA name: bulk cipher, key size, MAC/PRF hash."""
    tls13 = "_WITH_" not in name
    m = _BULK.match(name[len("TLS_"):] if tls13 else name.split("_WITH_", 1)[1])
    assert m, name
    hash_name = _HASH_NAMES[m["hash"]]
    if m["chacha"]:
        return CipherSuite(code, name, tls13, "CHACHA20-POLY1305", 32, 16, None, hash_name)
    key_len, mode = int(m["bits"]) // 8, m["mode"]
    if mode == "CBC":  # HMAC with the named hash; the TLS 1.2 PRF is SHA-256 unless the suite says SHA-384
        return CipherSuite(code, name, tls13, "AES-CBC", key_len, 0, hash_name,
                           "sha384" if hash_name == "sha384" else "sha256")
    if mode == "GCM":
        return CipherSuite(code, name, tls13, "AES-GCM", key_len, 16, None, hash_name)
    return CipherSuite(code, name, tls13, "AES-CCM", key_len, 8 if mode == "CCM_8" else 16, None, "sha256")


CIPHER_SUITES: dict[int, CipherSuite] = {code: _suite_from_name(code, name) for code, name in _SUITE_NAMES.items()}

_HASHES: dict = {}
# cryptography's names, bound by _load_crypto()
InvalidTag = hashes = hmac = Cipher = algorithms = modes = AESCCM = AESGCM = ChaCha20Poly1305 = HKDFExpand = None


def _load_crypto() -> None:
    """Import cryptography's primitives on first use: most captures carry no key log, and the import costs ~30 ms
    and ~7 MB of every run."""
    global InvalidTag, hashes, hmac, Cipher, algorithms, modes, AESCCM, AESGCM, ChaCha20Poly1305, HKDFExpand
    if _HASHES:
        return
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    _HASHES.update(md5=hashes.MD5, sha1=hashes.SHA1, sha256=hashes.SHA256, sha384=hashes.SHA384)
_MAC_LEN = {"md5": 16, "sha1": 20, "sha256": 32, "sha384": 48}


# -- key schedules -------------------------------------------------------------------------------------------------
def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    _load_crypto()
    h = hmac.HMAC(key, _HASHES[hash_name]())
    h.update(data)
    return h.finalize()


def _p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """P_hash of RFC 5246 §5: HMAC chained over A(i)."""
    out, a = b"", seed
    while len(out) < length:
        a = _hmac(hash_name, secret, a)
        out += _hmac(hash_name, secret, a + seed)
    return out[:length]


def tls_prf(version: int, hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS PRF: P_<hash> for TLS 1.2, P_MD5 xor P_SHA1 over the two secret halves for TLS 1.0/1.1."""
    if version >= TLS12:
        return _p_hash(hash_name, secret, label + seed, length)
    half = (len(secret) + 1) // 2
    md5 = _p_hash("md5", secret[:half], label + seed, length)
    sha = _p_hash("sha1", secret[len(secret) - half:], label + seed, length)
    return bytes(x ^ y for x, y in zip(md5, sha))


def hkdf_expand_label(hash_name: str, secret: bytes, label: str, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label of RFC 8446 §7.1."""
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + struct.pack("!B", len(context)) + context
    _load_crypto()
    return HKDFExpand(_HASHES[hash_name](), length, info).derive(secret)


def tls13_traffic_keys(suite: CipherSuite, secret: bytes) -> tuple[bytes, bytes]:
    """(write key, write iv) of a TLS 1.3 traffic secret."""
    return (hkdf_expand_label(suite.prf, secret, "key", b"", suite.key_len),
            hkdf_expand_label(suite.prf, secret, "iv", b"", 12))


def tls13_next_secret(suite: CipherSuite, secret: bytes) -> bytes:
    """application_traffic_secret_N+1 after a KeyUpdate."""
    return hkdf_expand_label(suite.prf, secret, "traffic upd", b"", _MAC_LEN[suite.prf])


@dataclass(repr=False)
class Tls12KeyBlock:
    client_mac: bytes
    server_mac: bytes
    client_key: bytes
    server_key: bytes
    client_iv: bytes
    server_iv: bytes

    def __repr__(self) -> str:
        return "Tls12KeyBlock(<keys hidden>)"


def tls12_key_block(version: int, suite: CipherSuite, master_secret: bytes, client_random: bytes,
                    server_random: bytes) -> Tls12KeyBlock:
    """RFC 5246 §6.3 key expansion (seed = server_random + client_random)."""
    mac_len = _MAC_LEN[suite.mac] if suite.mac else 0
    if suite.cipher == "CHACHA20-POLY1305":
        iv_len = 12
    elif suite.aead:
        iv_len = 4  # the salt; the other 8 nonce bytes travel in each record
    else:
        iv_len = 16 if version == TLS10 else 0  # TLS 1.0 chains CBC IVs; 1.1+ sends one per record
    size = 2 * (mac_len + suite.key_len + iv_len)
    block = tls_prf(version, suite.prf, master_secret, b"key expansion", server_random + client_random, size)
    parts, offset = [], 0
    for length in (mac_len, mac_len, suite.key_len, suite.key_len, iv_len, iv_len):
        parts.append(block[offset:offset + length])
        offset += length
    return Tls12KeyBlock(*parts)


# -- record protection of one direction and one key epoch ----------------------------------------------------------
class _Protection:
    """Opens records protected with one set of keys; `seq` counts the records opened with them."""

    def __init__(self, suite: CipherSuite, version: int, key: bytes, iv: bytes, mac_key: bytes = b"",
                 encrypt_then_mac: bool = False):
        self.suite, self.version, self.iv, self.mac_key = suite, version, iv, mac_key
        self.encrypt_then_mac = encrypt_then_mac
        self.seq = 0
        self._next_iv: bytes | None = None  # TLS 1.0 CBC: the IV of the next record, once this one checks out
        _load_crypto()
        if suite.cipher == "AES-GCM":
            self._aead = AESGCM(key)
        elif suite.cipher == "AES-CCM":
            self._aead = AESCCM(key, tag_length=suite.tag_len)
        elif suite.cipher == "CHACHA20-POLY1305":
            self._aead = ChaCha20Poly1305(key)
        else:
            self._aead = None
            self._key = key

    def __repr__(self) -> str:
        return f"_Protection({self.suite.name}, seq={self.seq})"

    def _xor_nonce(self) -> bytes:
        seq = self.seq.to_bytes(len(self.iv), "big")
        return bytes(a ^ b for a, b in zip(self.iv, seq))

    def open(self, content_type: int, version: int, fragment: bytes) -> bytes | None:
        """The plaintext, or None when authentication fails (seq then stays where it was)."""
        try:
            if self.suite.tls13:
                aad = struct.pack("!BHH", content_type, version, len(fragment))
                plain = self._aead.decrypt(self._xor_nonce(), fragment, aad)
            elif self._aead is not None:
                plain = self._open_tls12_aead(content_type, version, fragment)
            else:
                plain = self._open_cbc(content_type, version, fragment)
        except (InvalidTag, ValueError):
            return None
        if plain is not None:
            self.seq += 1
        return plain

    def _open_tls12_aead(self, content_type: int, version: int, fragment: bytes) -> bytes:
        if self.suite.cipher == "CHACHA20-POLY1305":
            nonce, body = self._xor_nonce(), fragment
        else:
            nonce, body = self.iv + fragment[:8], fragment[8:]
        length = len(body) - self.suite.tag_len
        if length < 0:
            raise ValueError("record shorter than its tag")
        aad = struct.pack("!QBHH", self.seq, content_type, version, length)
        return self._aead.decrypt(nonce, body, aad)

    def _mac(self, content_type: int, version: int, data: bytes) -> bytes:
        header = struct.pack("!QBHH", self.seq, content_type, version, len(data))
        return _hmac(self.suite.mac, self.mac_key, header + data)

    def _open_cbc(self, content_type: int, version: int, fragment: bytes) -> bytes | None:
        mac_len = _MAC_LEN[self.suite.mac]
        if self.encrypt_then_mac:  # RFC 7366: the MAC covers IV + ciphertext, check it before decrypting
            if len(fragment) < mac_len + 16:
                return None
            body, mac = fragment[:-mac_len], fragment[-mac_len:]
            if not compare_digest(self._mac(content_type, version, body), mac):
                return None
            padded = self._cbc_decrypt(body)
            if padded is None or padded[-1] + 1 > len(padded):
                return None
            return padded[: len(padded) - padded[-1] - 1]
        padded = self._cbc_decrypt(fragment)
        if padded is None:
            return None
        pad = padded[-1]
        if pad + 1 + mac_len > len(padded) or padded[len(padded) - pad - 1:] != bytes([pad]) * (pad + 1):
            return None
        content = padded[: len(padded) - pad - 1 - mac_len]
        mac = padded[len(padded) - pad - 1 - mac_len: len(padded) - pad - 1]
        return content if compare_digest(self._mac(content_type, version, content), mac) else None

    def _cbc_decrypt(self, data: bytes) -> bytes | None:
        """CBC-decrypt; TLS 1.1+ carry the IV in front, TLS 1.0 chains from the previous record's last block."""
        if self.version >= TLS11:
            iv, data = data[:16], data[16:]
        else:
            iv = self.iv
        if not data or len(data) % 16:
            return None
        dec = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        plain = dec.update(data) + dec.finalize()
        if self.version < TLS11:
            self._next_iv = data[-16:]  # applied once the MAC has checked out
        return plain

    def commit_chained_iv(self) -> None:
        if self._next_iv is not None:
            self.iv, self._next_iv = self._next_iv, None


# -- sessions and directions ---------------------------------------------------------------------------------------
CLIENT, SERVER = "client", "server"


class TlsSessionKeys:
    """Key material of one TLS session, from its hellos and the key log. Build the decryptors from it.

    `reason` says why nothing at all can be decrypted (no key log line, unsupported cipher or version), else None;
    `detail` adds what exactly (the unsupported version or suite, the TLS 1.3 labels missing).
    """

    def __init__(self, version: int, cipher_suite: int, client_random: bytes, server_random: bytes, keylog, *,
                 extended_master_secret: bool = False, encrypt_then_mac: bool = False):
        self.version = version
        self.cipher_suite = cipher_suite
        self.client_random = bytes(client_random)
        self.server_random = bytes(server_random)
        self.extended_master_secret = extended_master_secret  # the logged master secret already accounts for it
        self.encrypt_then_mac = encrypt_then_mac
        self.suite = CIPHER_SUITES.get(cipher_suite)
        self.secrets: SessionSecrets | None = keylog.lookup(self.client_random) if keylog is not None else None
        self.reason: Reason | None = None
        self.detail = ""
        self._block: Tls12KeyBlock | None = None
        if self.secrets is None:
            self.reason = Reason.NO_SECRET
        elif self.suite is None or version < TLS10 or version > TLS13:
            self.reason = Reason.CIPHER_UNSUPPORTED
            self.detail = (f"version 0x{version:04x}" if (version < TLS10 or version > TLS13)
                           else f"cipher suite 0x{cipher_suite:04x}")
        elif self.suite.tls13 != (version == TLS13) or (version < TLS12 and self.suite.aead):
            self.reason = Reason.CIPHER_UNSUPPORTED
            self.detail = f"cipher suite {self.suite.name} with version 0x{version:04x}"
        elif version == TLS13:
            missing = self.secrets.missing_tls13_labels()
            if len(missing) == len(TLS13_LABELS):
                self.reason = Reason.TLS13_LINES_MISSING
            self.detail = ", ".join(missing)
        elif self.secrets.master_secret is None:
            self.reason = Reason.NO_SECRET  # only TLS 1.3 lines for a TLS 1.2 session
            self.detail = "no CLIENT_RANDOM line (the key log has TLS 1.3 lines for it)"
        else:
            self._block = tls12_key_block(version, self.suite, self.secrets.master_secret, self.client_random,
                                          self.server_random)

    @property
    def tls13(self) -> bool:
        return self.version == TLS13

    @property
    def missing_labels(self) -> list[str]:
        """TLS 1.3 key log labels this session lacks (empty for TLS 1.2 or a complete set)."""
        return self.secrets.missing_tls13_labels() if self.tls13 and self.secrets else []

    def decryptor(self, sender: str) -> RecordDecryptor:
        """A decryptor for the records `sender` ("client" or "server") writes."""
        if sender not in (CLIENT, SERVER):
            raise ValueError(f"sender must be 'client' or 'server', not {sender!r}")
        return RecordDecryptor(self, sender)

    def _tls12_protection(self, sender: str) -> _Protection:
        b = self._block
        if sender == CLIENT:
            return _Protection(self.suite, self.version, b.client_key, b.client_iv, b.client_mac,
                               self.encrypt_then_mac)
        return _Protection(self.suite, self.version, b.server_key, b.server_iv, b.server_mac, self.encrypt_then_mac)

    def _tls13_secret(self, sender: str, stage: str) -> bytes | None:
        name = {("client", "early"): "client_early", ("client", "handshake"): "client_handshake",
                ("server", "handshake"): "server_handshake", ("client", "application"): "client_traffic",
                ("server", "application"): "server_traffic"}.get((sender, stage))
        return getattr(self.secrets, name) if name else None

    def __repr__(self) -> str:
        state = self.reason.name if self.reason else "keys ready"
        return (f"TlsSessionKeys(version=0x{self.version:04x}, suite=0x{self.cipher_suite:04x}, "
                f"client_random={self.client_random.hex()[:16]}..., {state})")


class _Epoch:
    """One TLS 1.3 key stage of a direction: early, handshake or application generation N."""

    def __init__(self, stage: str, secret: bytes | None, suite: CipherSuite, generation: int = 0):
        self.stage, self.secret, self.generation = stage, secret, generation
        self.protection = None
        if secret is not None:
            key, iv = tls13_traffic_keys(suite, secret)
            self.protection = _Protection(suite, TLS13, key, iv)

    def __repr__(self) -> str:
        return f"_Epoch({self.stage}, generation={self.generation}, keys={'yes' if self.secret else 'no'})"


class RecordDecryptor:
    """Decrypts the records one endpoint sends, in order: call `decrypt` for every record of that direction."""

    def __init__(self, keys: TlsSessionKeys, sender: str):
        self.keys, self.sender = keys, sender
        self.decrypted = 0
        self.failed = 0
        self.first_failure: Reason | None = None
        self._encrypting = False  # TLS 1.2: after this sender's ChangeCipherSpec
        self._tls12: _Protection | None = None
        self._epochs: list[_Epoch] = []
        self._current = 0
        self._handshake_buffer = b""
        if keys.tls13 and keys.reason is None:
            suite = keys.suite
            if sender == CLIENT and keys._tls13_secret(CLIENT, "early") is not None:
                self._epochs.append(_Epoch("early", keys._tls13_secret(CLIENT, "early"), suite))
            self._epochs.append(_Epoch("handshake", keys._tls13_secret(sender, "handshake"), suite))
            self._epochs.append(_Epoch("application", keys._tls13_secret(sender, "application"), suite))

    def __repr__(self) -> str:
        return f"RecordDecryptor({self.sender}, decrypted={self.decrypted}, failed={self.failed})"

    def decrypt(self, content_type: int, record_version: int, fragment: bytes) -> RecordPlaintext:
        """Open one record of this direction. Unprotected records come back as they are (status CLEAR)."""
        fragment = bytes(fragment)
        if self.keys.tls13:
            if content_type != APPLICATION_DATA:
                return RecordPlaintext(content_type, fragment, Status.CLEAR)
            return self._decrypt_tls13(record_version, fragment)
        if not self._encrypting:
            if content_type == CHANGE_CIPHER_SPEC:
                self._encrypting = True
                if self.keys.reason is None:
                    self._tls12 = self.keys._tls12_protection(self.sender)
            return RecordPlaintext(content_type, fragment, Status.CLEAR)
        if self._tls12 is None:
            return self._fail(content_type, self.keys.reason)
        plain = self._tls12.open(content_type, record_version, fragment)
        if plain is None:
            return self._fail(content_type, Reason.AUTH_FAILED)
        self._tls12.commit_chained_iv()
        self.decrypted += 1
        return RecordPlaintext(content_type, plain, Status.DECRYPTED)

    def _fail(self, content_type: int, reason: Reason) -> RecordPlaintext:
        self.failed += 1
        if self.first_failure is None:
            self.first_failure = reason
        return RecordPlaintext(content_type, None, reason)

    # -- TLS 1.3 ------------------------------------------------------------------------------------------------------
    def _decrypt_tls13(self, record_version: int, fragment: bytes) -> RecordPlaintext:
        if self.keys.reason is not None:
            return self._fail(APPLICATION_DATA, self.keys.reason)
        # Try the current key stage, then later ones: a stage change we could not see (a Finished or KeyUpdate in a
        # record we lack keys for, 0-RTT data without its secret) is found by the next record that opens.
        self._ensure_next_generation()
        for index in range(self._current, len(self._epochs)):
            epoch = self._epochs[index]
            if epoch.protection is None:
                continue
            plain = epoch.protection.open(APPLICATION_DATA, record_version, fragment)
            if plain is None:
                continue
            if index != self._current:
                self._current = index
                self._handshake_buffer = b""
            inner = plain.rstrip(b"\x00")
            if not inner:
                return self._fail(APPLICATION_DATA, Reason.AUTH_FAILED)  # all padding: not a valid record
            content_type, content = inner[-1], inner[:-1]
            if content_type == HANDSHAKE:
                self._follow_handshake(content)
            self.decrypted += 1
            return RecordPlaintext(content_type, content, Status.DECRYPTED)
        current = self._epochs[self._current]
        reason = Reason.TLS13_LINES_MISSING if current.protection is None else Reason.AUTH_FAILED
        return self._fail(APPLICATION_DATA, reason)

    def _ensure_next_generation(self) -> None:
        """Keep one application generation beyond the current one ready, for a KeyUpdate we did not see."""
        last = self._epochs[-1]
        if last.stage == "application" and last.secret is not None and self._current >= len(self._epochs) - 1:
            self._epochs.append(_Epoch("application", tls13_next_secret(self.keys.suite, last.secret),
                                       self.keys.suite, last.generation + 1))

    def _follow_handshake(self, content: bytes) -> None:
        """Move to the next key stage after this sender's Finished, EndOfEarlyData or KeyUpdate."""
        data = self._handshake_buffer + content
        offset = 0
        while len(data) - offset >= 4:
            msg_type = data[offset]
            length = int.from_bytes(data[offset + 1:offset + 4], "big")
            if len(data) - offset - 4 < length:
                break
            offset += 4 + length
            stage = self._epochs[self._current].stage
            if (msg_type == FINISHED and stage == "handshake") or (msg_type == END_OF_EARLY_DATA and stage == "early") \
                    or (msg_type == KEY_UPDATE and stage == "application"):
                self._advance()
                data, offset = data[offset:], 0
        self._handshake_buffer = data[offset:]

    def _advance(self) -> None:
        if self._current + 1 >= len(self._epochs):
            self._ensure_next_generation()
        if self._current + 1 < len(self._epochs):
            self._current += 1
        self._handshake_buffer = b""


# -- what happened to a session ------------------------------------------------------------------------------------
DECRYPTED, PARTLY_DECRYPTED, NOT_DECRYPTED, NOTHING_ENCRYPTED = (
    "decrypted", "partly decrypted", "not decrypted", "nothing encrypted")


@dataclass(frozen=True)
class Outcome:
    """A session's decryption result: status (one of the four above), why not (if not), record counts."""

    status: str
    reason: Reason | None
    decrypted: int
    failed: int

    def describe(self) -> str:
        if self.status == DECRYPTED:
            return f"decrypted ({self.decrypted} records)"
        if self.status == NOTHING_ENCRYPTED:
            return "nothing encrypted (the handshake ended before encryption)"
        text = f"{self.status}: {self.reason}"
        return text + (f" ({self.decrypted} of {self.decrypted + self.failed} records)" if self.decrypted else "")


def session_outcome(keys: TlsSessionKeys | None, decryptors: list[RecordDecryptor], *,
                    records_missing: bool = False) -> Outcome:
    """Summarise a session from its decryptors (both directions). Without a ServerHello, keys is None."""
    decrypted = sum(d.decrypted for d in decryptors)
    failed = sum(d.failed for d in decryptors)
    reasons = [d.first_failure for d in decryptors if d.first_failure is not None]
    reason = reasons[0] if reasons else None
    if records_missing and failed and reason is Reason.AUTH_FAILED:
        reason = Reason.RECORDS_MISSING  # after a hole the sequence numbers are lost: not the key log's fault
    if failed == 0:
        if decrypted:
            return Outcome(DECRYPTED, None, decrypted, 0)
        return Outcome(NOTHING_ENCRYPTED, keys.reason if keys is not None else None, 0, 0)
    return Outcome(PARTLY_DECRYPTED if decrypted else NOT_DECRYPTED, reason, decrypted, failed)


# -- the plug for the TLS parser -----------------------------------------------------------------------------------
EXT_ENCRYPT_THEN_MAC, EXT_EXTENDED_MASTER_SECRET = 0x0016, 0x0017


class SessionDecryptor:
    """Both directions of one session behind the TLS parser's interface (flow directions 0/1, not roles):
    `decrypt(direction, record_type, version, body) -> (inner_type, plaintext) | None`.

    The parser hands over only the records it considers protected (TLS 1.2: after that direction's
    ChangeCipherSpec; TLS 1.3: application_data records), so the TLS 1.2 decryptors are switched on at their first
    record. Every result is also counted, for `outcome()`.
    """

    def __init__(self, keys: TlsSessionKeys, client_direction: int):
        self.keys = keys
        self.client_direction = client_direction
        self.client = keys.decryptor(CLIENT)
        self.server = keys.decryptor(SERVER)
        self.last: RecordPlaintext | None = None

    def decrypt(self, direction: int, record_type: int, version: int, body: bytes) -> tuple[int, bytes] | None:
        decryptor = self.client if direction == self.client_direction else self.server
        if not self.keys.tls13 and not decryptor._encrypting:
            decryptor.decrypt(CHANGE_CIPHER_SPEC, version, b"\x01")  # the parser saw the CCS; we did not
        result = decryptor.decrypt(record_type, version, body)
        self.last = result
        return (result.content_type, result.plaintext) if result.plaintext is not None else None

    def outcome(self, *, records_missing: bool = False) -> Outcome:
        return session_outcome(self.keys, [self.client, self.server], records_missing=records_missing)

    def __repr__(self) -> str:
        return f"SessionDecryptor({self.keys!r})"


def keys_for_session(session, keylog) -> TlsSessionKeys | None:
    """TlsSessionKeys from a parsed session (duck-typed: client_hello/server_hello with .random, .cipher and
    .extensions as (type, length) pairs; .version = the negotiated version). None without both hellos."""
    ch, sh = getattr(session, "client_hello", None), getattr(session, "server_hello", None)
    if ch is None or sh is None or sh.cipher is None:
        return None
    extensions = {etype for etype, _ in getattr(sh, "extensions", ())}
    return TlsSessionKeys(session.version, sh.cipher, ch.random, sh.random, keylog,
                          extended_master_secret=EXT_EXTENDED_MASTER_SECRET in extensions,
                          encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in extensions)


class KeyLogDecryption:
    """The decryptor factory the TLS parser calls once a session's ServerHello is known.

    Returns a SessionDecryptor when the key log can decrypt the session, else None (the parser then skips the
    record bodies); every session is remembered in `sessions` as (parsed session, keys, decryptor or None) for the
    match summary.
    """

    def __init__(self, keylog):
        self.keylog = keylog
        self.sessions: list[tuple[object, TlsSessionKeys | None, SessionDecryptor | None]] = []

    def __call__(self, session) -> SessionDecryptor | None:
        keys = keys_for_session(session, self.keylog)
        decryptor = None
        if keys is not None and keys.reason is None and session.client_direction is not None:
            decryptor = SessionDecryptor(keys, session.client_direction)
        self.sessions.append((session, keys, decryptor))
        return decryptor

    @staticmethod
    def outcome_of(session, keys: TlsSessionKeys | None, decryptor: SessionDecryptor | None) -> Outcome:
        """The Outcome of one remembered session. A declined session did not see its records, so whether any was
        protected comes from the parser's counters (app_records per direction, ccs flags), read duck-typed."""
        if decryptor is not None:
            return decryptor.outcome()
        if keys is None:
            return Outcome(NOTHING_ENCRYPTED, None, 0, 0)
        protected = sum(getattr(session, "app_records", (0, 0))) or (
            not keys.tls13 and any(getattr(session, "ccs", ())))
        return Outcome(NOT_DECRYPTED if protected else NOTHING_ENCRYPTED, keys.reason, 0, 0)

    def __repr__(self) -> str:
        return f"KeyLogDecryption({len(self.sessions)} sessions)"
