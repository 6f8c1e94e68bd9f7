"""X.509: what we read from certificates (Wireshark's flat fields, validity, SAN, key) and chain judgements
(order, completeness, validity at the capture's time, host name, verification with --ca-file)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from diagnose.protocols.x509 import check_chain, hostname_matches, parse_certificate
from oracles.fixtures import data_path

PKI = data_path("lab", "pki")
UTC = dt.timezone.utc


def load(name: str):
    pem = (PKI / name).read_bytes()
    return [parse_certificate(c.public_bytes(serialization.Encoding.DER)) for c in x509.load_pem_x509_certificates(pem)]


def test_lab_leaf_certificate():
    (leaf,) = load("good.crt")
    assert leaf.subject == [("2.5.4.3", "server.lab.test")] and leaf.issuer == [("2.5.4.3", "Lab Intermediate CA")]
    assert leaf.san_dns == ["server.lab.test"] and leaf.names() == ["server.lab.test"]
    assert leaf.not_before == dt.datetime(2026, 11, 23, 19, 41, 16, tzinfo=UTC)
    assert leaf.not_after_text == "2027-11-24 19:41:16 (UTC)"
    assert leaf.key_type in ("RSA", "EC") and leaf.key_bits >= 256 and leaf.malformed is None
    assert leaf.flat[:2] == [("x509sat.uTF8String", "Lab Intermediate CA"), ("x509af.utcTime",
                                                                              "2026-11-23 19:41:16 (UTC)")]
    assert leaf.flat[-1] == ("x509ce.dNSName", "server.lab.test")


def test_chain_judgements_at_capture_time():
    good = load("good_chain.pem")
    expired = load("expired_chain.pem")
    wrong = load("wronghost_chain.pem")
    when = dt.datetime(2026, 11, 24, 20, 0, tzinfo=UTC)  # when the lab captures were made
    root = str(PKI / "root.crt")
    ok = check_chain(good, when=when, hostname="server.lab.test", ca_file=root, use_system=False)
    assert ok.ordered and ok.complete and ok.expired == [] and ok.hostname_matches and ok.verified
    old = check_chain(expired, when=when, hostname="server.lab.test", ca_file=root, use_system=False)
    assert old.expired == [0] and old.verified is False and old.verify_error
    other = check_chain(wrong, when=when, hostname="server.lab.test", ca_file=root, use_system=False)
    assert other.hostname_matches is False and other.verified is False and other.expired == []
    # the same good chain judged in 2030 (after the leaf's notAfter): expired, whatever today's date is
    later = check_chain(good, when=dt.datetime(2030, 1, 1, tzinfo=UTC), hostname="server.lab.test", ca_file=root,
                        use_system=False)
    assert later.expired == [0] and later.verified is False
    incomplete = check_chain(good[:1], when=when, hostname="server.lab.test", use_system=False)
    assert not incomplete.complete and incomplete.verified is None  # no trust store: not judged
    unordered = check_chain(list(reversed(good)), when=when, use_system=False)
    assert not unordered.ordered


@pytest.mark.parametrize("host,names,ok", [
    ("server.lab.test", ["server.lab.test"], True),
    ("SERVER.lab.test.", ["server.lab.test"], True),
    ("a.example.com", ["*.example.com"], True),
    ("a.b.example.com", ["*.example.com"], False),
    ("example.com", ["*.example.com"], False),
    ("server.lab.test", ["other.lab.test"], False),
])
def test_hostname_rules(host, names, ok):
    assert hostname_matches(host, names) is ok


def _self_signed(**kw) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(0x1234).not_valid_before(kw.get("before", dt.datetime(2020, 1, 1)))
               .not_valid_after(kw.get("after", dt.datetime(2060, 1, 1)))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.test"), x509.IPAddress(
                   __import__("ipaddress").ip_address("192.0.2.7"))]), critical=False))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_generalized_time_country_and_ip_san():
    c = parse_certificate(_self_signed())
    assert c.not_after == dt.datetime(2060, 1, 1, tzinfo=UTC)
    assert c.not_after_text == "Jan  1, 2060 00:00:00.000000000 UTC"  # GeneralizedTime from 2050 on
    assert ("x509af.generalizedTime", c.not_after_text) in c.flat
    assert [v for k, v in c.flat if k == "x509sat.CountryName"] == ["SE", "SE"]  # issuer, then subject
    assert c.san_dns == ["a.test"] and c.san_ip == ["192.0.2.7"] and c.serial_hex == "1234"
    assert c.key_type == "EC" and c.curve == "secp256r1" and c.self_issued
    assert c.subject_text == "C=SE, O=Test Org, CN=test"


def test_damaged_certificate_is_malformed_not_an_error():
    der = _self_signed()
    for cut in (1, 10, 100, len(der) // 2, len(der) - 1):
        c = parse_certificate(der[:cut])
        assert c.malformed
    garbage = parse_certificate(b"\x30\x82\xff\xff" + b"\x00" * 20)
    assert garbage.malformed and garbage.subject == []
