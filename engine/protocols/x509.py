"""X.509 certificates from TLS handshakes: what Wireshark shows of them, and whether a chain holds.

Two readers work together:
* a small DER walker reads the fields in encoding order with their ASN.1 string types, because Wireshark's flat
  fields depend on them (x509sat.printableString vs x509sat.uTF8String, x509af.utcTime vs generalizedTime, issuer
  before subject) and because a damaged certificate must still give what can be read;
* the `cryptography` library parses the certificate for its meaning (key type and size, extensions) and verifies
  chains (`--ca-file` and the system store), judged at the capture's time, never the wall clock.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

OID_NAMES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
             "2.5.4.5": "serialNumber", "2.5.4.9": "street", "2.5.4.15": "businessCategory",
             "1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "DC",
             "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC"}
OID_COUNTRY = "2.5.4.6"
COUNTRY_OIDS = frozenset({OID_COUNTRY, "1.3.6.1.4.1.311.60.2.1.3"})  # countryName, EV jurisdictionCountryName
# attributes Wireshark shows under their own field rather than as a DirectoryString
SPECIAL_ATTRIBUTE_FIELDS = {"2.5.4.5": "x509sat.SerialNumber", "1.2.840.113549.1.9.1": "pkcs-9.emailAddress"}
OID_SAN = "2.5.29.17"
OID_IAN, OID_AKI, OID_CRLDP, OID_AIA = "2.5.29.18", "2.5.29.35", "2.5.29.31", "1.3.6.1.5.5.7.1.1"
OID_BASIC_CONSTRAINTS = "2.5.29.19"

# ASN.1 universal string tags -> Wireshark's x509sat field for a DirectoryString of that kind
STRING_FIELDS = {0x13: "x509sat.printableString", 0x0C: "x509sat.uTF8String", 0x16: "x509sat.IA5String",
                 0x14: "x509sat.teletexString", 0x1E: "x509sat.bMPString", 0x1C: "x509sat.universalString"}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class DerError(ValueError):
    pass


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at pos."""
    if pos + 2 > end:
        raise DerError("element cut")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in certificates")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise DerError("bad length")
        n = int.from_bytes(data[pos: pos + k], "big")
        pos += k
    if pos + n > end:
        raise DerError("element runs past its container")
    return tag, pos, pos + n


def _children(data: bytes, start: int, end: int):
    pos = start
    while pos < end:
        tag, c0, c1 = _tlv(data, pos, end)
        yield tag, c0, c1
        pos = c1


der_element = _tlv  # (tag, content start, content end): for other DER readers (OCSP in TLS)
der_children = _children


def _oid(raw: bytes) -> str:
    if not raw:
        raise DerError("empty OID")
    parts = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    first = parts[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


def _string(tag: int, raw: bytes) -> str:
    if tag == 0x1E:
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:
        return raw.decode("utf-32-be", "replace")
    if tag == 0x0C:
        return raw.decode("utf-8", "replace")
    return raw.decode("latin-1")


def _time(tag: int, raw: bytes) -> tuple[dt.datetime | None, str]:
    """(UTC datetime, Wireshark's text) of a UTCTime or GeneralizedTime."""
    text = raw.decode("ascii", "replace")
    try:
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
            year = int(text[0:2])
            year += 2000 if year < 50 else 1900
            rest = text[2:]
        else:  # GeneralizedTime YYYYMMDDHHMMSSZ
            year = int(text[0:4])
            rest = text[4:]
        month, day, hour, minute = int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8])
        second = int(rest[8:10]) if rest[8:10].isascii() and rest[8:10].isdigit() else 0
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)
    except (ValueError, IndexError):
        return None, text
    if tag == 0x17:
        shown = f"{when:%Y-%m-%d %H:%M:%S} (UTC)"
    else:
        shown = f"{MONTHS[month - 1]} {day:2d}, {year} {hour:02d}:{minute:02d}:{second:02d}.000000000 UTC"
    return when, shown


@dataclass
class CertInfo:
    """One certificate as read from the handshake."""

    der: bytes
    subject: list[tuple[str, str]] = field(default_factory=list)  # (dotted OID, value) in encoding order
    issuer: list[tuple[str, str]] = field(default_factory=list)
    serial_hex: str = ""  # hex of the INTEGER's bytes, as Wireshark shows x509af.serialNumber
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    not_before_text: str = ""
    not_after_text: str = ""
    san_dns: list[str] = field(default_factory=list)
    san_ip: list[str] = field(default_factory=list)
    key_type: str | None = None  # RSA, EC, Ed25519, Ed448, DSA, DH
    key_bits: int | None = None
    curve: str | None = None
    signature_algorithm: str | None = None
    is_ca: bool | None = None
    flat: list[tuple[str, str]] = field(default_factory=list)  # Wireshark's flat fields in encoding order
    malformed: str | None = None

    @property
    def subject_text(self) -> str:
        return name_text(self.subject)

    @property
    def issuer_text(self) -> str:
        return name_text(self.issuer)

    @property
    def common_name(self) -> str | None:
        for oid, value in self.subject:
            if oid == "2.5.4.3":
                return value
        return None

    @property
    def self_issued(self) -> bool:
        return self.subject == self.issuer

    def valid_at(self, when: dt.datetime) -> bool | None:
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_before <= when <= self.not_after

    def names(self) -> list[str]:
        """Host names the certificate is for: SAN dNSNames, else the subject CN (RFC 6125 fallback)."""
        if self.san_dns:
            return list(self.san_dns)
        cn = self.common_name
        return [cn] if cn else []


def name_text(rdns: list[tuple[str, str]]) -> str:
    """A readable distinguished name, most significant first as written: "C=US, O=DigiCert Inc, CN=..."."""
    return ", ".join(f"{OID_NAMES.get(oid, oid)}={value}" for oid, value in rdns)


def _name(data: bytes, start: int, end: int, flat: list) -> list[tuple[str, str]]:
    rdns = []
    for tag, s0, s1 in _children(data, start, end):  # SET OF AttributeTypeAndValue
        for _, a0, a1 in _children(data, s0, s1):
            parts = list(_children(data, a0, a1))
            if len(parts) < 2 or parts[0][0] != 0x06:
                raise DerError("bad attribute")
            oid = _oid(data[parts[0][1]: parts[0][2]])
            vtag, v0, v1 = parts[1]
            value = _string(vtag, data[v0:v1])
            rdns.append((oid, value))
            if oid in COUNTRY_OIDS:
                flat.append(("x509sat.CountryName", value))
            elif oid in SPECIAL_ATTRIBUTE_FIELDS:
                flat.append((SPECIAL_ATTRIBUTE_FIELDS[oid], value))
            elif vtag in STRING_FIELDS:
                flat.append((STRING_FIELDS[vtag], value))
    return rdns


def _walk(info: CertInfo) -> None:
    """Fill info from the DER, in encoding order; raises DerError where the encoding breaks."""
    data = info.der
    tag, c0, c1 = _tlv(data, 0, len(data))
    if tag != 0x30:
        raise DerError("not a SEQUENCE")
    tag, t0, t1 = _tlv(data, c0, c1)  # TBSCertificate
    if tag != 0x30:
        raise DerError("no TBSCertificate")
    items = list(_children(data, t0, t1))
    i = 0
    if items and items[0][0] == 0xA0:  # [0] version
        i += 1
    if i >= len(items) or items[i][0] != 0x02:
        raise DerError("no serial number")
    info.serial_hex = data[items[i][1]: items[i][2]].hex()
    i += 2  # serial, signature algorithm
    if i >= len(items):
        raise DerError("no issuer")
    info.issuer = _name(data, items[i][1], items[i][2], info.flat)
    i += 1
    if i >= len(items):
        raise DerError("no validity")
    times = list(_children(data, items[i][1], items[i][2]))
    for k, (ttag, v0, v1) in enumerate(times[:2]):
        when, text = _time(ttag, data[v0:v1])
        info.flat.append(("x509af.utcTime" if ttag == 0x17 else "x509af.generalizedTime", text))
        if k == 0:
            info.not_before, info.not_before_text = when, text
        else:
            info.not_after, info.not_after_text = when, text
    i += 1
    if i >= len(items):
        raise DerError("no subject")
    info.subject = _name(data, items[i][1], items[i][2], info.flat)
    i += 2  # subject, subjectPublicKeyInfo
    for tag, e0, e1 in items[i:]:
        if tag != 0xA3:
            continue
        for _, x0, x1 in _children(data, *_tlv(data, e0, e1)[1:]):
            parts = list(_children(data, x0, x1))
            if not parts or parts[0][0] != 0x06:
                raise DerError("bad extension")
            oid = _oid(data[parts[0][1]: parts[0][2]])
            value = parts[-1]
            if value[0] == 0x04:
                _extension(data, oid, value[1], value[2], info)


def _extension(data: bytes, oid: str, start: int, end: int, info: CertInfo) -> None:
    """The names inside the extensions Wireshark shows name fields for, in encoding order."""
    if start >= end:
        return
    tag, c0, c1 = _tlv(data, start, end)
    if oid in (OID_SAN, OID_IAN):
        _general_names(data, c0, c1, info, san=oid == OID_SAN)
    elif oid == OID_AKI:
        for t, g0, g1 in _children(data, c0, c1):
            if t == 0xA1:  # authorityCertIssuer
                _general_names(data, g0, g1, info)
    elif oid == OID_CRLDP:
        for _, p0, p1 in _children(data, c0, c1):  # DistributionPoint
            for t, q0, q1 in _children(data, p0, p1):
                if t == 0xA0:  # distributionPoint: fullName [0]
                    for t2, r0, r1 in _children(data, q0, q1):
                        if t2 == 0xA0:
                            _general_names(data, r0, r1, info)
                elif t == 0xA2:  # cRLIssuer
                    _general_names(data, q0, q1, info)
    elif oid == OID_AIA:
        for _, p0, p1 in _children(data, c0, c1):  # AccessDescription: method, location
            parts = list(_children(data, p0, p1))
            if len(parts) == 2:
                _general_name(data, parts[1], info)


def _general_names(data: bytes, start: int, end: int, info: CertInfo, san: bool = False) -> None:
    for element in _children(data, start, end):
        _general_name(data, element, info, san)


def _general_name(data: bytes, element: tuple[int, int, int], info: CertInfo, san: bool = False) -> None:
    gtag, v0, v1 = element
    if gtag == 0x82:  # [2] dNSName
        name = data[v0:v1].decode("latin-1")
        if san:
            info.san_dns.append(name)
        info.flat.append(("x509ce.dNSName", name))
    elif gtag == 0x87:  # [7] iPAddress
        raw = data[v0:v1]
        if len(raw) == 4:
            text = ".".join(str(b) for b in raw)
        elif len(raw) == 16:
            import ipaddress
            text = str(ipaddress.ip_address(raw))
        else:
            text = raw.hex()
        if san:
            info.san_ip.append(text)
        info.flat.append(("x509ce.iPAddress", text))
    elif gtag == 0x86:  # [6] uniformResourceIdentifier
        info.flat.append(("x509ce.uniformResourceIdentifier", data[v0:v1].decode("latin-1")))
    elif gtag == 0x81:  # [1] rfc822Name
        info.flat.append(("x509ce.rfc822Name", data[v0:v1].decode("latin-1")))
    elif gtag == 0xA4:  # [4] directoryName (explicit Name)
        ntag, n0, n1 = _tlv(data, v0, v1)
        if ntag == 0x30:
            _name(data, n0, n1, info.flat)


def _meaning(info: CertInfo):
    """Key, signature and CA facts from the cryptography library (None when it refuses the certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        cert = x509.load_der_x509_certificate(info.der)
    except Exception as exc:  # cryptography raises ValueError and others on odd encodings
        if info.malformed is None:
            info.malformed = f"certificate not parsable: {exc}"
        return None
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            info.key_type, info.key_bits = "RSA", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            info.key_type, info.key_bits, info.curve = "EC", key.key_size, key.curve.name
        elif isinstance(key, ed25519.Ed25519PublicKey):
            info.key_type, info.key_bits = "Ed25519", 256
        elif isinstance(key, ed448.Ed448PublicKey):
            info.key_type, info.key_bits = "Ed448", 456
        elif isinstance(key, dsa.DSAPublicKey):
            info.key_type, info.key_bits = "DSA", key.key_size
        else:
            info.key_type = type(key).__name__
    except Exception:  # unsupported or explicit curve parameters (CurveBall) and the like
        info.key_type = info.key_type or "unsupported"
    try:
        info.signature_algorithm = cert.signature_algorithm_oid._name
    except Exception:
        pass
    try:
        info.is_ca = cert.extensions.get_extension_for_oid(x509.ExtensionOID.BASIC_CONSTRAINTS).value.ca
    except Exception:
        info.is_ca = None
    return cert


def parse_certificate(der: bytes) -> CertInfo:
    """Everything we show of one DER certificate. Never raises; `malformed` says what broke."""
    info = CertInfo(der=bytes(der))
    try:
        _walk(info)
    except (DerError, IndexError, ValueError) as exc:
        info.malformed = f"DER: {exc}"
    _meaning(info)
    return info


# ---- chains --------------------------------------------------------------------------------------------------------

@dataclass
class ChainReport:
    """What a client would conclude about a server's chain (at the capture's time)."""

    length: int = 0
    ordered: bool = True  # each certificate is issued by the next one
    complete: bool = False  # ends in a self-issued certificate or in one issued by a trusted root
    expired: list[int] = field(default_factory=list)  # positions not valid at the capture's time
    not_yet_valid: list[int] = field(default_factory=list)
    hostname: str | None = None
    hostname_matches: bool | None = None
    verified: bool | None = None  # None: not checked (no trust store available)
    verify_error: str | None = None


def hostname_matches(hostname: str, names: list[str]) -> bool:
    """RFC 6125 matching: exact (case-insensitive) or a left-most '*' label standing for exactly one label."""
    host = hostname.rstrip(".").lower()
    for name in names:
        pattern = name.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            if host.split(".", 1)[1] == pattern[2:] and host.split(".", 1)[0]:
                return True
    return False


@lru_cache(maxsize=8)
def _load_roots(ca_file: str | None, use_system: bool) -> tuple:
    from cryptography import x509

    roots = []
    paths = []
    if ca_file:
        paths.append(ca_file)
    if use_system:
        import ssl  # only to find the system store: ~10 ms of start-up otherwise

        default = ssl.get_default_verify_paths()
        for path in (default.cafile, default.openssl_cafile):
            if path and path not in paths:
                paths.append(path)
    for path in paths:
        try:
            with open(path, "rb") as fh:
                pem = fh.read()
        except OSError:
            continue
        try:
            with warnings.catch_warnings():  # system stores carry old roots cryptography frowns upon
                warnings.simplefilter("ignore")
                roots.extend(x509.load_pem_x509_certificates(pem))
        except ValueError:
            try:
                roots.append(x509.load_der_x509_certificate(pem))
            except ValueError:
                pass
    return tuple(roots)


def check_chain(chain: list[CertInfo], *, when: dt.datetime, hostname: str | None = None,
                ca_file: str | None = None, use_system: bool = True) -> ChainReport:
    """Order, completeness, validity at `when`, host name and (with a trust store) signature verification."""
    report = ChainReport(length=len(chain), hostname=hostname)
    if not chain:
        return report
    for k in range(len(chain) - 1):
        if chain[k].issuer != chain[k + 1].subject:
            report.ordered = False
    for k, cert in enumerate(chain):
        if cert.not_after is not None and when > cert.not_after:
            report.expired.append(k)
        if cert.not_before is not None and when < cert.not_before:
            report.not_yet_valid.append(k)
    if hostname:
        report.hostname_matches = hostname_matches(hostname, chain[0].names())
    roots = _load_roots(ca_file, use_system)
    subjects = {tuple(c.subject) for c in chain}
    last = chain[-1]
    report.complete = last.self_issued or (tuple(last.issuer) in subjects and report.ordered)
    if not report.complete and roots:
        issuer = last.issuer
        report.complete = any(_rdn_list(r.subject) == issuer for r in roots)
    if roots:
        report.verified, report.verify_error = _verify(chain, roots, when, hostname)
    return report


def _rdn_list(name) -> list[tuple[str, str]]:
    return [(attr.oid.dotted_string, attr.value if isinstance(attr.value, str) else attr.value.hex())
            for rdn in name.rdns for attr in rdn]


def _verify(chain: list[CertInfo], roots: tuple, when: dt.datetime, hostname: str | None):
    """Path validation with cryptography's verifier at the capture's time (host name included when known)."""
    from cryptography import x509
    from cryptography.x509 import DNSName
    from cryptography.x509.verification import PolicyBuilder, Store

    try:
        leaf = x509.load_der_x509_certificate(chain[0].der)
        intermediates = [x509.load_der_x509_certificate(c.der) for c in chain[1:]]
    except Exception as exc:
        return False, f"certificate not parsable: {exc}"
    try:
        builder = PolicyBuilder().store(Store(list(roots))).time(when.replace(tzinfo=None))
        if hostname:
            verifier = builder.build_server_verifier(DNSName(hostname))
        else:
            verifier = builder.build_client_verifier()
        verifier.verify(leaf, intermediates)
        return True, None
    except Exception as exc:  # VerificationError and malformed-name errors alike: report, never crash
        return False, str(exc)
