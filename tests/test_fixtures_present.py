"""The stored tshark fixtures cover every capture in tests/data and hold sane values.

A capture added without re-running tests/oracles/make_fixtures.py, or a half-finished regeneration, fails here
loudly instead of silently shrinking what the oracle tests compare.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from oracles.fixtures import (
    TSHARK_FIXTURES,
    capture_files,
    data_path,
    field_occurrences,
    load_tshark,
    packet_columns,
    tshark_fixture_path,
)

CAPTURES = capture_files()
REQUIRED_FIELDS = {
    "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "ip.src", "ip.dst", "ip.ttl",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.flags", "tcp.stream", "udp.stream", "tcp.analysis.ack_rtt",
    "dns.qry.name", "http.response.code", "tls.handshake.type", "x509af.utcTime",
}


def test_the_capture_set_is_the_expected_size():
    groups = {group for group, _ in CAPTURES}
    assert groups == {"lab", "corpus", "corpus-zeek"}
    assert len(CAPTURES) >= 120


def test_every_capture_has_a_fixture_and_no_fixture_is_stale():
    missing = []
    for group, name in CAPTURES:
        try:
            tshark_fixture_path(group, name)
        except FileNotFoundError:
            missing.append(f"{group}/{name}")
    assert not missing, f"run tests/oracles/make_fixtures.py for: {missing}"
    known = {f"{group}/{name}" for group, name in CAPTURES}
    stored = {re.sub(r"\.json(\.gz)?$", "", p.relative_to(TSHARK_FIXTURES).as_posix())
              for p in TSHARK_FIXTURES.rglob("*.json*")}
    assert stored == known


@pytest.mark.parametrize("group,name", CAPTURES, ids=[f"{g}/{n}" for g, n in CAPTURES])
def test_fixture_is_complete_and_consistent(group, name):
    fixture = load_tshark(group, name)
    assert fixture["capture"] == f"{group}/{name}"
    assert fixture["tshark_version"].startswith("TShark (Wireshark) 4.0.")
    table = fixture["packets"]
    assert REQUIRED_FIELDS <= set(table["fields"])
    assert all(len(row) == len(table["fields"]) for row in table["rows"])
    columns = packet_columns(fixture)
    assert columns["frame.number"] == [str(n) for n in range(1, len(table["rows"]) + 1)]
    assert "tcp.analysis.retransmission" in fixture["frame_sets"]
    for frames in fixture["frame_sets"].values():
        assert all(1 <= n <= len(table["rows"]) for n in frames)
    if not fixture["error"]:
        # Two tools, one answer: capinfos counts the same frames tshark dissected.
        count = re.search(r"^Number of packets:\s+(\d+)", fixture["capinfos"], re.M)
        assert count and int(count.group(1)) == len(table["rows"])


@pytest.mark.parametrize("group,name", [c for c in CAPTURES if c[0] == "corpus"],
                         ids=[n for g, n in CAPTURES if g == "corpus"])
def test_corpus_fixture_agrees_with_the_shared_oracle(group, name):
    """The corpus *.oracle.json files were made separately; shared filters must give the same frames."""
    oracle = json.loads(data_path("corpus", f"{name}.oracle.json").read_text())
    fixture = load_tshark(group, name)
    part = fixture["keys"]["with_keys"] if oracle.get("keylog") else fixture
    assert len(part["packets"]["rows"]) == oracle["packets"]
    shared = [f for f in part["frame_sets"] if isinstance(oracle["display_filters"].get(f), list)]
    for display_filter in shared:
        assert part["frame_sets"][display_filter] == oracle["display_filters"][display_filter], display_filter


def test_syn_drop_spot_values():
    fixture = load_tshark("lab", "syn_drop.pcap")
    columns = packet_columns(fixture)
    assert len(columns["frame.number"]) == 7
    assert len(fixture["frame_sets"]["tcp.analysis.retransmission"]) == 6
    assert set(columns["tcp.flags"]) == {"0x0002"}
    assert len(set(columns["tcp.seq_raw"])) == 1  # one SYN, retransmitted
    assert all(re.fullmatch(r"\d+\.\d{9}", t) for t in columns["frame.time_epoch"])


def test_tls_expired_cert_has_an_expired_leaf():
    fixture = load_tshark("lab", "tls_expired_cert.pcap")
    frame, chain = next(iter(fixture["certificates"].items()))
    assert int(frame) in fixture["frame_sets"]["tls.handshake.type == 11"]
    leaf = chain[0]
    assert ["2.5.4.3", "server.lab.test"] in leaf["subject"]
    captured = datetime.fromtimestamp(float(packet_columns(fixture)["frame.time_epoch"][0]), timezone.utc)
    not_after = datetime.strptime(leaf["not_after"], "%Y-%m-%d %H:%M:%S (UTC)").replace(tzinfo=timezone.utc)
    assert not_after < captured
    assert fixture["frame_sets"]["tls.alert_message"]


def test_key_logs_reveal_more():
    for group, name in [("lab", "tls_decrypt_keylog.pcap"), ("corpus", "scapy/tls_nss_example.pcap")]:
        fixture = load_tshark(group, name)
        with_keys = fixture["keys"]["with_keys"]
        assert len(with_keys["frame_sets"]["tls.handshake.type == 11"]) > \
            len(fixture["frame_sets"]["tls.handshake.type == 11"]), name


def test_http_lab_captures_have_follow_text():
    for name in ["healthy_http.pcap", "http_404_and_500.pcap", "slow_ttfb.pcap", "mid_stream_rst.pcap"]:
        fixture = load_tshark("lab", name)
        streams = {s for s in packet_columns(fixture)["tcp.stream"] if s}
        assert set(fixture["follow"]) == streams
        assert any("HTTP/1.1" in text for text in fixture["follow"].values())


def test_damaged_files_keep_tshark_error_text():
    assert "isn't a capture file" in load_tshark("corpus", "derived/tls1.2-badmagic.pcap")["error"]
    cut = load_tshark("corpus", "derived/reassembly-truncated-midrecord.pcap")
    assert "cut short" in cut["error"] and len(cut["packets"]["rows"]) == 49


def test_comma_inside_values_is_split_exactly():
    fixture = load_tshark("corpus", "zeek/tls-expired-cert.pcap")
    names = [value for frame in field_occurrences(fixture, "x509sat.printableString") for value in frame]
    assert "VeriSign, Inc." in names
