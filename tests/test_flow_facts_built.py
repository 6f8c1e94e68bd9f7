"""Flow facts on captures built with scapy, where every expected value is set by the builder: zero-window episode
times, idle gaps, RST forgery by TTL, segmentation offload, ICMP errors about UDP flows, handshake timings."""

from __future__ import annotations

import pytest
from scapy.all import ICMP, IP, TCP, UDP, UDPerror, IPerror, Ether, PcapWriter, Raw

from diagnose.conn.record import collect_flow_records

C, S, R = "10.0.0.1", "10.0.0.2", "10.0.0.254"
T0 = 1_700_000_000.0


def write(tmp_path, pkts):
    path = tmp_path / "built.pcap"
    with PcapWriter(str(path), linktype=1) as w:
        for t, p in pkts:
            p.time = T0 + t
            w.write(p)
    recs, _ = collect_flow_records(str(path))
    return recs


def tcp(t, from_client, flags, seq, ack=0, data=b"", win=1000, ttl=None, ipid=1, options=()):
    src, dst = (C, S) if from_client else (S, C)
    sp, dp = (40000, 7000) if from_client else (7000, 40000)
    ip = IP(src=src, dst=dst, ttl=ttl if ttl is not None else (64 if from_client else 60), id=ipid)
    p = Ether() / ip / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=win, options=list(options))
    return t, (p / Raw(data) if data else p)


def handshake(mss_c=1460, mss_s=1460, ws_c=7, ws_s=None):
    copts = [("MSS", mss_c), ("SAckOK", b"")] + ([("WScale", ws_c)] if ws_c is not None else [])
    sopts = [("MSS", mss_s)] + ([("WScale", ws_s)] if ws_s is not None else [])
    return [tcp(0.0, True, "S", 100, options=copts), tcp(0.030, False, "SA", 500, 101, options=sopts),
            tcp(0.031, True, "A", 101, 501)]


def test_handshake_timings_and_options(tmp_path):
    f = write(tmp_path, handshake(ws_s=3))[0]
    assert f["synack_rtt"] == pytest.approx(0.030) and f["handshake_rtt"] == pytest.approx(0.031)
    assert f["handshake_ack_rtt"] == pytest.approx(0.001)
    assert (f["mss_client"], f["mss_server"], f["wscale_client"], f["wscale_server"]) == (1460, 1460, 7, 3)
    assert f["wscale_negotiated"] and f["sack_client"] and not f["sack_server"] and not f["sack_negotiated"]
    assert f["timestamps_negotiated"] is False and f["end"] == "open" and f["conn_state"] == "S1"


def test_one_sided_window_scale_is_not_negotiated(tmp_path):
    f = write(tmp_path, handshake(ws_s=None))[0]
    assert f["wscale_client"] == 7 and f["wscale_server"] is None and f["wscale_negotiated"] is False


def test_zero_window_episodes_are_timed_per_advertising_side(tmp_path):
    pkts = handshake() + [
        tcp(0.1, False, "A", 501, 101, b"x" * 100),
        tcp(0.2, True, "A", 101, 601, win=0),  # client's window closes
        tcp(0.5, False, "A", 600, 101),  # probe
        tcp(0.6, True, "A", 101, 601, win=0),  # still closed: same episode
        tcp(1.2, True, "A", 101, 601, win=500),  # window update after 1.0 s
        tcp(1.3, False, "A", 601, 101, b"y" * 100),
        tcp(1.4, True, "A", 101, 701, win=0),  # second episode, open at the end
        tcp(1.9, False, "A", 700, 101),
    ]
    f = write(tmp_path, pkts)[0]
    assert f["zero_window_episodes_client"] == 2 and f["zero_window_episodes_server"] == 0
    assert f["zero_window_time_client"] == pytest.approx(1.0 + 0.5)  # the open one counts until the last packet
    assert f["zero_window_open_at_end_client"] and f["zero_window_first_frame_client"] == 5
    assert "W" in f["history"] or "w" in f["history"]


def test_forged_rst_after_idle_and_genuine_rst(tmp_path):
    base = handshake() + [tcp(0.1, True, "PA", 101, 501, b"GET", ipid=2), tcp(0.11, False, "PA", 501, 104, b"OK",
                                                                             ipid=7)]
    forged = base + [tcp(30.11, True, "PA", 104, 503, b"GET", ipid=3),
                     tcp(30.1101, False, "R", 503, ttl=64, ipid=0)]  # 4 hops closer than the server, IP ID 0
    f = write(tmp_path, forged)[0]
    assert f["idle_max"] == pytest.approx(30.0) and f["idle_max_frame"] == 6
    assert f["rst_phase"] == "after_idle" and f["rst_idle_before"] == pytest.approx(30.0)
    assert f["rst_ttl"] == 64 and f["rst_sender_ttl_min"] == f["rst_sender_ttl_max"] == 60
    assert f["rst_ttl_mismatch"] and f["rst_ip_id_zero"] and f["rst_forged"] and f["rst_hops"] == 0
    assert (f["rst_bytes_client"], f["rst_bytes_server"]) == (6, 2)

    genuine = base + [tcp(0.2, False, "R", 503, ttl=60, ipid=8)]
    f = write(tmp_path, genuine)[0]
    assert f["rst_phase"] == "mid_transfer" and f["rst_forged"] is False and f["rst_ip_id_zero"] is False
    assert f["rst_hops"] == 4 and f["end"] == "rst_server"


def test_segments_longer_than_the_peer_mss_mean_offload(tmp_path):
    pkts = handshake(mss_c=536) + [tcp(0.1, False, "PA", 501, 101, b"z" * 1400)]
    f = write(tmp_path, pkts)[0]
    assert f["oversize_segments_server"] == 1 and f["oversize_segments_client"] == 0 and f["offload_suspected"]


def test_icmp_port_unreachable_about_a_udp_flow(tmp_path):
    query = Ether() / IP(src=C, dst=S) / UDP(sport=40000, dport=53) / Raw(b"q" * 20)
    error = Ether() / IP(src=R, dst=C, ttl=255) / ICMP(type=3, code=3) / IPerror(src=C, dst=S) / UDPerror(
        sport=40000, dport=53) / Raw(b"q" * 20)
    recs = write(tmp_path, [(0.0, query), (0.001, error)])
    assert len(recs) == 1
    f = recs[0]
    assert f["proto"] == "udp" and f["conn_state"] == "S0"
    assert f["icmp_unreachable"] and (f["icmp_error_type"], f["icmp_error_code"]) == (3, 3)
    assert f["icmp_error_from"] == R and f["icmp_error_ttl"] == 255 and f["icmp_error_quotes"] == "client"
