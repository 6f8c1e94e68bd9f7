"""Lab truths (tests/data/lab/EXPECTED.md): what the application layer must find in the lab captures."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from diagnose.pipeline import open_pass
from diagnose.protocols.app import AppLayer
from diagnose.protocols.tls import ALERT_NAMES
from oracles.fixtures import data_path

ROOT = str(data_path("lab", "pki", "root.crt"))


@lru_cache(maxsize=None)
def run(name: str, ca_file: str | None = ROOT):
    """({kind: {frame: [objects]}}, AppSummary) of a lab capture."""
    per_frame: dict[str, dict[int, list]] = {}
    app = AppLayer(ca_file=ca_file, use_system_store=False)
    run_ = open_pass(str(data_path("lab", name)))
    with run_.capture:
        for chunk in run_.chunks():
            out = app.update(chunk.buf, chunk.table, run_.flows.conversations)
            for kind in ("dns", "http", "tls"):
                for frame, objects in out.by_frame(kind).items():
                    per_frame.setdefault(kind, {}).setdefault(frame, []).extend(objects)
    return per_frame, app.finish()


def tls_sessions(name: str):
    _, summary = run(name)
    return [f.tls.session for f in summary.flows.values() if f.tls is not None], summary


def test_http_404_and_500_requests_and_statuses():
    per_frame, summary = run("http_404_and_500.pcap")
    requests = {f: m[0].uri for f, m in per_frame["http"].items() if m[0].is_request}
    responses = {f: m[0].code for f, m in per_frame["http"].items() if not m[0].is_request}
    assert requests == {4: "/", 10: "/missing", 15: "/error"}
    assert responses == {8: 200, 13: 404, 18: 500}
    (flow,) = [f for f in summary.flows.values() if f.http is not None]
    pairs = [(t.request.uri, t.response.code, t.request.frame) for t in flow.http.transactions]
    assert pairs == [("/", 200, 4), ("/missing", 404, 10), ("/error", 500, 15)]
    assert all(per_frame["http"][f][0].request.frame == r for f, r in ((8, 4), (13, 10), (18, 15)))


def test_slow_ttfb_http_time_and_time_to_first_byte():
    per_frame, summary = run("slow_ttfb.pcap")
    (response,) = [m for ms in per_frame["http"].values() for m in ms if not m.is_request]
    assert response.code == 200 and 2.49 < response.time_ns / 1e9 < 2.52
    (flow,) = [f for f in summary.flows.values() if f.http is not None]
    (tx,) = flow.http.transactions
    assert 2.49 < tx.ttfb_ns / 1e9 < 2.52  # request sent -> first response byte (frame 10)
    assert response.first_frame == 10 and response.frame == 12
    dns = [m for ms in per_frame["dns"].values() for m in ms]
    assert all(m.time_ns < 1_000_000 for m in dns if m.response)  # DNS 0.3 ms: the delay is the server's


def test_dns_nxdomain():
    per_frame, summary = run("dns_nxdomain.pcap")
    messages = {f: m[0] for f, m in per_frame["dns"].items()}
    assert sorted(messages) == [1, 2, 3, 4]
    assert [messages[f].rcode for f in (3, 4)] == [3, 3]
    assert all(messages[f].qname == "missing.lab.test" for f in messages)
    assert [messages[f].response_to for f in (3, 4)] == [1, 2]
    (facts,) = summary.dns.values()
    assert facts.queries == 2 and facts.responses == 2 and facts.errors == 2 and not facts.unanswered
    assert sorted(facts.errors_seen) == [(3, "missing.lab.test", 3), (4, "missing.lab.test", 3)]


def test_tls_expired_cert_chain_and_alert():
    sessions, summary = tls_sessions("tls_expired_cert.pcap")
    tls12 = [s for s in sessions if s.version == 0x0303][0]
    leaf, intermediate = tls12.certificates
    assert leaf.not_after == dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
    assert leaf.common_name == "server.lab.test" and intermediate.common_name == "Lab Intermediate CA"
    flow = [f for f in summary.flows.values() if f.tls is not None and f.tls.session is tls12][0]
    chain = flow.chain
    assert chain.length == 2 and chain.ordered and chain.complete and chain.expired == [0]
    assert chain.verified is False  # expired at capture time, even though the root is trusted
    for s in sessions:  # both handshakes (TLS 1.2 and 1.3) end with the client's fatal alert 45
        alerts = [(a.level, a.description, a.direction == s.client_direction) for a in s.alerts]
        assert alerts == [(2, 45, True)] and ALERT_NAMES[45] == "certificate_expired"


def test_tls_wrong_host_sni_against_san():
    sessions, summary = tls_sessions("tls_wrong_host.pcap")
    with_chain = [f for f in summary.flows.values() if f.chain is not None]
    assert len(with_chain) == 2  # the TLS 1.3 certificate is encrypted
    for flow in with_chain:
        session = flow.tls.session
        assert session.sni == "server.lab.test"
        assert session.certificates[0].san_dns == ["other.lab.test"]
        assert flow.chain.hostname_matches is False and flow.chain.verified is False
        assert flow.chain.expired == [] and flow.chain.complete
    bad_certificate = [a for s in sessions for a in s.alerts if a.description == 42]
    assert len(bad_certificate) == 1 and bad_certificate[0].level == 2  # openssl s_client -verify_hostname


def test_tls_version_mismatch_client_at_most_tls12_and_alert_70():
    (session,), _ = tls_sessions("tls_version_mismatch.pcap")
    hello = session.client_hello
    assert hello.version == 0x0303 and 0x0304 not in hello.supported_versions
    assert session.server_hello is None
    assert [(a.level, a.description, a.direction != session.client_direction) for a in session.alerts] == \
        [(2, 70, True)]
    assert session.history_text == "Cl"


def test_mid_stream_rst_response_truncated():
    per_frame, summary = run("mid_stream_rst.pcap")
    assert not any(not m.is_request for ms in per_frame["http"].values() for m in ms)  # never complete: no PDU
    (flow,) = [f for f in summary.flows.values() if f.http is not None]
    (tx,) = flow.http.transactions
    assert tx.truncated and tx.response.code == 200
    assert tx.response.body_bytes == 100_000 and tx.response.content_length == 1_000_000
    assert flow.facts()["http.truncated"] == [{"frame": 6, "received": 100_000, "content_length": 1_000_000}]


def test_good_chain_verifies_against_the_lab_root():
    """tls_decrypt_keylog's TLS 1.2 session shows the good chain in clear: it verifies with --ca-file root.crt and
    not without a trust store."""
    _, summary = run("tls_decrypt_keylog.pcap")
    (flow,) = [f for f in summary.flows.values() if f.chain is not None]
    assert flow.chain.verified is True and flow.chain.hostname_matches is True and flow.chain.expired == []
    _, untrusted = run("tls_decrypt_keylog.pcap", ca_file=None)
    (flow,) = [f for f in untrusted.flows.values() if f.chain is not None]
    assert flow.chain.verified is None  # no store given, none used: not judged
