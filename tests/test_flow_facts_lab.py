"""Flow facts on the lab captures: the truths of tests/data/lab/EXPECTED.md (real kernel TCP between namespaces:
client 10.99.1.2, router 10.99.1.1, server 10.99.2.2 one hop away, so the server's packets arrive with TTL 63 and
packets forged by the router with TTL 64)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from diagnose.conn.record import collect_flow_records

LAB = Path(__file__).parent / "data" / "lab"
CLIENT, ROUTER, SERVER = "10.99.1.2", "10.99.1.1", "10.99.2.2"


@cache
def records(name: str) -> tuple[dict, ...]:
    recs, _ = collect_flow_records(str(LAB / f"{name}.pcap"))
    return tuple(recs)


def tcp_flow(name: str) -> dict:
    flows = [r for r in records(name) if r["proto"] == "tcp"]
    assert len(flows) == 1, flows
    return flows[0]


def test_syn_drop_is_s0_with_seven_syns_on_linux_linear_backoff():
    f = tcp_flow("syn_drop")
    assert (f["conn_state"], f["history"], f["handshake"]) == ("S0", "S", "no_answer")
    assert f["orig_h"] == CLIENT and f["resp_h"] == SERVER and f["resp_p"] == 8081
    assert f["syn_count"] == 7 and not f["synack_seen"] and not f["rst_seen"] and not f["icmp_unreachable"]
    assert f["syn_times"] == pytest.approx([0, 1, 2, 3, 4, 5, 7], abs=0.2)
    assert f["resp_pkts"] == 0 and f["end"] == "open"


def test_syn_rst_closed_port_is_rej_answered_by_the_server_itself():
    f = tcp_flow("syn_rst_closed_port")
    assert (f["conn_state"], f["history"], f["handshake"]) == ("REJ", "Sr", "refused")
    assert f["rst_sender"] == "server" and f["rst_phase"] == "handshake" and f["rst_frame"] == 2
    # TTL 63: one hop, like the server's own packets; a router-forged RST would arrive with 64 (0 hops)
    assert f["rst_ttl"] == 63 and f["rst_hops"] == 1
    assert f["rst_forged"] is None  # no other server packet to compare with
    assert f["icmp_errors"] == 0


def test_reject_icmp_ties_the_port_unreachable_from_the_router_to_the_flow():
    recs = records("reject_icmp")
    assert len(recs) == 1  # the ICMP error is part of the TCP flow it quotes, not a flow of its own
    f = recs[0]
    assert f["conn_state"] == "S0" and f["resp_p"] == 8083
    assert f["icmp_errors"] == 1 and f["icmp_unreachable"]
    assert (f["icmp_error_type"], f["icmp_error_code"], f["icmp_error_from"]) == (3, 3, ROUTER)
    assert f["icmp_error_frame"] == 2 and f["icmp_error_ttl"] == 64 and f["icmp_error_quotes"] == "client"
    assert f["handshake"] == "icmp_error"


def test_idle_timeout_rst_is_forged_after_nine_seconds_idle():
    f = tcp_flow("idle_timeout_rst")
    assert f["conn_state"] == "RSTR" and f["handshake"] == "completed"
    assert f["rst_sender"] == "server" and f["rst_frame"] == 11
    assert f["rst_phase"] == "after_idle" and f["rst_idle_before"] == pytest.approx(9.0, abs=0.01)
    assert f["idle_max"] == pytest.approx(9.0, abs=0.01) and f["idle_max_frame"] == 10
    assert (f["rst_ttl"], f["rst_ip_id"]) == (64, 0)
    assert (f["rst_sender_ttl_min"], f["rst_sender_ttl_max"]) == (63, 63) and f["rst_sender_packets"] == 4
    assert f["rst_ttl_mismatch"] and f["rst_ip_id_zero"] and f["rst_forged"]
    assert f["end"] == "rst_server"


def test_idle_timeout_rst_serverside_has_no_rst():
    f = tcp_flow("idle_timeout_rst_serverside")
    assert not f["rst_seen"] and f["rst_count"] == 0 and f["rst_forged"] is None
    assert f["conn_state"] == "S1" and f["end"] == "open"


def test_recurring_idle_rst_three_flows_forged_after_350s():
    flows = [r for r in records("recurring_idle_rst_350s") if r["proto"] == "tcp"]
    assert len(flows) == 3
    for f in flows:
        assert f["rst_phase"] == "after_idle" and f["rst_idle_before"] == pytest.approx(350.0, abs=0.01)
        assert f["rst_forged"] and f["rst_sender"] == "server"


def test_mid_stream_rst_server_aborts_after_100000_body_bytes():
    f = tcp_flow("mid_stream_rst")
    assert f["conn_state"] == "RSTR" and f["history"] == "ShADadr"
    assert f["rst_sender"] == "server" and f["rst_phase"] == "mid_transfer" and f["rst_frame"] == 112
    # the server had sent its ~155-byte header and 100,000 body bytes; no FIN
    assert 100_000 < f["rst_bytes_server"] < 100_200 and f["rst_bytes_server"] == f["resp_bytes"]
    assert f["rst_idle_before"] == pytest.approx(0.3, abs=0.05)
    assert f["rst_ttl"] == 63 and not f["rst_forged"] and not f["fin_server"]


def test_zero_window_client_episodes_and_window_updates():
    f = tcp_flow("zero_window")
    assert f["zero_window_episodes_client"] == 17  # each ended by one of the 17 window updates
    assert f["zero_window_episodes_server"] == 0
    assert f["zero_window_first_frame_client"] == 15
    assert 5.0 < f["zero_window_time_client"] < f["duration"]
    assert f["max_window_client"] == 2920  # SO_RCVBUF=4096
    assert f["window_limited_server"] and f["window_full_server"] == 52


def test_no_wscale_window_capped_and_reached_by_bytes_in_flight():
    client_view = tcp_flow("no_wscale")
    sender_view = tcp_flow("no_wscale_serverside")
    for f in (client_view, sender_view):
        assert f["wscale_client"] is None and f["wscale_server"] is None and f["wscale_negotiated"] is False
        assert f["max_window_client"] == 65535
        assert f["handshake_rtt"] == pytest.approx(0.051, abs=0.005)
    assert sender_view["max_bytes_in_flight_server"] == 65535
    assert sender_view["window_limited_server"] and sender_view["window_full_server"] == 1355


def test_healthy_bulk_scales_windows_and_is_not_window_limited():
    for name in ("healthy_bulk_rtt50", "healthy_bulk_rtt50_serverside"):
        f = tcp_flow(name)
        assert (f["wscale_client"], f["wscale_server"], f["wscale_negotiated"]) == (10, 10, True)
        assert f["window_limited_server"] is False and f["window_full_server"] == 0
        assert f["max_window_client"] > 4_000_000
        assert f["conn_state"] == "SF" and f["end"] == "fin_both"


def test_retransmissions_rate_per_direction():
    f = tcp_flow("retransmissions")
    assert f["retransmissions_server"] == 367 and f["data_packets_server"] == 3628
    assert f["retransmission_rate_server"] == pytest.approx(367 / 3628)
    assert f["retransmissions_client"] == 0 and f["retransmission_rate_client"] == 0.0
    assert f["lost_segments_server"] == 140
    assert f["duplicate_retransmissions_server"] == 0 and f["retransmissions_artefact"] is False
    assert f["retransmission_pattern_server"] in ("bursty", "uniform")
    assert -1.0 <= f["retransmission_burstiness_server"] <= 1.0
    assert "t" in f["history"]


def test_healthy_http_has_no_problem_facts():
    recs = records("healthy_http")
    dns = [r for r in recs if r["proto"] == "udp"]
    tcp = [r for r in recs if r["proto"] == "tcp"]
    assert dns[0]["conn_state"] == "SF" and dns[0]["history"] == "Dd"
    f = tcp[0]
    assert f["conn_state"] == "SF" and f["end"] == "fin_both" and f["handshake"] == "completed"
    assert not f["rst_seen"] and f["retransmissions_client"] == f["retransmissions_server"] == 0
    assert f["zero_window_episodes_client"] == f["zero_window_episodes_server"] == 0
    assert f["missed_bytes"] == 0 and not f["offload_suspected"]


def test_tls_expired_cert_client_aborts_after_fin():
    flows = [r for r in records("tls_expired_cert") if r["proto"] == "tcp"]
    assert [f["conn_state"] for f in flows] == ["RSTO", "RSTO"]
    for f in flows:
        assert f["rst_sender"] == "client" and f["rst_phase"] == "after_fin" and f["end"] == "rst_client"
