"""The retransmission burstiness statistic (diagnose.conn.burst) on synthetic series, and end to end on built
captures: the flow record carries the statistic of exactly the gaps between its retransmissions, and a duplicated
frame is told apart from a retransmission."""

from __future__ import annotations

import random

import pytest
from scapy.all import IP, TCP, Ether, PcapWriter, Raw

from diagnose.conn import burst
from diagnose.conn.record import collect_flow_records


def geometric_gaps(p: float, n: int, seed: int) -> list[int]:
    """Gaps (in segments) between losses when each segment is lost independently with probability p."""
    rnd = random.Random(seed)
    gaps, since = [], 0
    while len(gaps) < n:
        since += 1
        if rnd.random() < p:
            gaps.append(since)
            since = 0
    return gaps


def clustered_gaps(bursts: int, per_burst: int, quiet: int) -> list[int]:
    """Losses in clumps: per_burst losses on consecutive segments, then `quiet` segments without loss."""
    return ([1] * (per_burst - 1) + [quiet]) * bursts


def test_regular_series_is_minus_one():
    assert burst.burstiness([7] * 40) == pytest.approx(-1.0)
    assert burst.pattern(41, burst.burstiness([7] * 40)) == "uniform"


@pytest.mark.parametrize("p", [0.01, 0.05, 0.2])
def test_independent_loss_is_near_zero(p):
    b = burst.burstiness(geometric_gaps(p, 4000, seed=7))
    assert abs(b) < 0.1  # theory: (sqrt(1-p) - 1) / (sqrt(1-p) + 1) ~ -p/4
    assert burst.pattern(4001, b) == "uniform"


def test_clustered_loss_is_bursty():
    b = burst.burstiness(clustered_gaps(bursts=30, per_burst=6, quiet=400))
    assert b > 0.3 and burst.pattern(181, b) == "bursty"


def test_more_clumping_is_more_bursty():
    mild = burst.burstiness(clustered_gaps(30, 2, 40))
    strong = burst.burstiness(clustered_gaps(30, 10, 400))
    assert mild < strong


def test_too_few_events_are_few():
    assert burst.burstiness([3]) is None
    assert burst.pattern(3, burst.burstiness([3, 9])) == "few"
    assert burst.pattern(0, None) is None


def test_welford_matches_numpy():
    gaps = geometric_gaps(0.1, 500, seed=3)
    import numpy as np

    mu, sigma = np.mean(gaps), np.std(gaps)
    assert burst.burstiness(gaps) == pytest.approx((sigma - mu) / (sigma + mu), rel=1e-9)


# ---- end to end ------------------------------------------------------------------------------------------------------
C, S = "10.0.0.1", "10.0.0.2"


def bulk_capture(path, segments: int, retransmit_after: set[int], duplicate_after: set[int] = frozenset()):
    """Server sends `segments` data segments of 100 bytes; after segment i in retransmit_after it sends segment i
    again 20 ms later (a retransmission: new IP ID); after i in duplicate_after the same frame appears again 0.1 ms
    later (a capture duplicate). The client ACKs every segment. Returns the data-segment indices (1-based, in send
    order) of the retransmissions."""
    pkts, t, ipid = [], 1_700_000_000.0, [0]

    def add(src, flags, seq, ack, data=b"", dt=0.001, same_as=None):
        nonlocal t
        t += dt
        if same_as is not None:
            p = same_as.copy()
        else:
            ipid[0] += 1
            sp, dp = (40000, 7000) if src == C else (7000, 40000)
            p = Ether() / IP(src=src, dst=S if src == C else C, id=ipid[0]) / TCP(
                sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=60000)
            if data:
                p = p / Raw(data)
        p.time = t
        pkts.append(p)
        return p

    add(C, "S", 100, 0)
    add(S, "SA", 500, 101)
    add(C, "A", 101, 501)
    seq, sent, retrans_at = 501, 0, []
    for i in range(1, segments + 1):
        p = add(S, "A", seq, 101, b"d" * 100)
        sent += 1
        if i in duplicate_after:
            add(S, "A", seq, 101, dt=0.0001, same_as=p)
            sent += 1
            retrans_at.append(sent)
        if i in retransmit_after:
            add(S, "A", seq, 101, b"d" * 100, dt=0.02)
            sent += 1
            retrans_at.append(sent)
        seq += 100
        add(C, "A", 101, seq)
    with PcapWriter(str(path), linktype=1) as w:
        for p in pkts:
            w.write(p)
    return retrans_at


def server_flow(path):
    recs, _ = collect_flow_records(str(path))
    assert len(recs) == 1
    return recs[0]


def test_flow_burstiness_is_that_of_its_retransmission_gaps(tmp_path):
    path = tmp_path / "bursty.pcap"
    chosen = {20, 21, 22, 23, 200, 201, 202, 203, 380, 381, 382}
    at = bulk_capture(path, 400, chosen)
    f = server_flow(path)
    assert f["retransmissions_server"] == len(chosen) and f["retransmissions_client"] == 0
    assert f["data_packets_server"] == 400 + len(chosen)
    assert f["retransmission_rate_server"] == pytest.approx(len(chosen) / (400 + len(chosen)))
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert f["retransmission_burstiness_server"] == pytest.approx(burst.burstiness(gaps))
    assert f["retransmission_pattern_server"] == "bursty"
    assert f["duplicate_retransmissions_server"] == 0 and f["retransmissions_artefact"] is False


def test_spread_retransmissions_are_not_bursty(tmp_path):
    path = tmp_path / "spread.pcap"
    at = bulk_capture(path, 400, {40 * k for k in range(1, 10)})
    f = server_flow(path)
    assert f["retransmission_pattern_server"] == "uniform"
    assert f["retransmission_burstiness_server"] == pytest.approx(burst.burstiness([b - a for a, b in zip(at, at[1:])]))
    assert f["retransmission_burstiness_server"] == pytest.approx(-1.0)  # every 40th segment: periodic


def test_duplicated_frames_are_a_capture_artefact(tmp_path):
    path = tmp_path / "dups.pcap"
    bulk_capture(path, 50, set(), duplicate_after={10, 30})
    f = server_flow(path)
    assert f["retransmissions_server"] == 2 and f["duplicate_retransmissions_server"] == 2
    assert f["retransmissions_artefact"] is True
