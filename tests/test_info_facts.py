"""`diagnose info` facts: built captures with a known number of each artefact report exactly that number, and the
real lab captures (offload off, nothing dropped, nothing duplicated) report none."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, Ether, Raw, wrpcap  # test-only: builds the captures

import pcapbuild as pb
from diagnose.report.info import collect_info

DATA = Path(__file__).parent / "data"
LAB = sorted((DATA / "lab").glob("*.pcap"))

CLIENT, SERVER = "192.0.2.10", "198.51.100.20"


def handshake(mss_server=1460):
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    syn = e / IP(src=CLIENT, dst=SERVER, id=1) / TCP(sport=40000, dport=80, flags="S", seq=1000,
                                                     options=[("MSS", 1460)])
    synack = e / IP(src=SERVER, dst=CLIENT, id=2) / TCP(sport=80, dport=40000, flags="SA", seq=5000, ack=1001,
                                                        options=[("MSS", mss_server)])
    ack = e / IP(src=CLIENT, dst=SERVER, id=3) / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5001)
    return [syn, synack, ack]


def data_segment(i, size, ip_id):
    return (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=CLIENT, dst=SERVER, id=ip_id)
            / TCP(sport=40000, dport=80, flags="PA", seq=1001 + i * size, ack=5001) / Raw(b"x" * size))


def stamp(packets, start=1_700_000_000.0, step=0.001):
    for i, p in enumerate(packets):
        p.time = start + i * step
    return packets


def info_of(path):
    return collect_info(str(path))


def test_duplicates_counted_exactly(tmp_path):
    packets = handshake() + [data_segment(i, 500, 10 + i) for i in range(6)]
    packets = stamp(packets)
    dups = []
    for p in (packets[3], packets[5], packets[7]):  # a SPAN port copies three segments 40 us later
        d = p.copy()
        d.time = p.time + 0.00004
        dups.append(d)
    f = tmp_path / "dups.pcap"
    wrpcap(str(f), sorted(packets + dups, key=lambda p: p.time))
    s = info_of(f)
    assert s["duplicates"] == 3
    assert s["packets"] == 12 and s["oversize_segments"] == 0


def test_same_bytes_long_after_is_not_a_duplicate(tmp_path):
    packets = stamp(handshake() + [data_segment(0, 100, 10)])
    again = packets[3].copy()
    again.time = packets[3].time + 1.0  # an application resending identical bytes a second later
    f = tmp_path / "late.pcap"
    wrpcap(str(f), packets + [again])
    assert info_of(f)["duplicates"] == 0


def test_offload_super_segments(tmp_path):
    # the capture host hands 2,920-byte segments to its NIC (TSO): longer than the peer's MSS and the MTU
    packets = stamp(handshake() + [data_segment(0, 1000, 10)] + [data_segment(1 + i, 2920, 11 + i) for i in range(4)])
    f = tmp_path / "tso.pcap"
    wrpcap(str(f), packets)
    s = info_of(f)
    assert s["oversize_segments"] == 4
    assert s["oversize_sources"] == {CLIENT: 4}


def test_segments_above_a_small_mss_count_even_under_the_mtu(tmp_path):
    packets = stamp(handshake(mss_server=536) + [data_segment(i, 536, 10 + i) for i in range(2)]
                    + [data_segment(2 + i, 1000, 20 + i) for i in range(3)])
    f = tmp_path / "mss.pcap"
    wrpcap(str(f), packets)
    assert info_of(f)["oversize_segments"] == 3


def test_snaplen_cuts(tmp_path):
    packets = stamp(handshake() + [data_segment(i, 400, 10 + i) for i in range(5)])
    records = []
    for p in packets:
        raw = bytes(p)
        records.append((int(p.time), int((p.time % 1) * 1e6), raw[:96], len(raw)))
    f = tmp_path / "snap.pcap"
    f.write_bytes(pb.pcap(records, snaplen=96))
    s = info_of(f)
    assert s["snaplen_cut"] == 5 and s["snaplen"] == 96


def test_interface_drops_from_pcapng_statistics(tmp_path):
    raw = [bytes(p) for p in handshake()]
    data = pb.shb() + pb.idb(1, tsresol=6) + pb.idb(1, tsresol=6)
    data += b"".join(pb.epb(0, 1_700_000_000_000_000 + i, r) for i, r in enumerate(raw))
    data += pb.isb(0, 1000, 5) + pb.isb(1, 10, 0) + pb.isb(0, 2000, 17)  # counters are cumulative: last one wins
    f = tmp_path / "drops.pcapng"
    f.write_bytes(data)
    s = info_of(f)
    assert s["interface_drops"] == 17
    assert [i["dropped"] for i in s["interfaces"]] == [17, 0]


def test_bad_checksums_from_one_host_mean_offload(tmp_path):
    packets = stamp(handshake() + [data_segment(i, 300, 10 + i) for i in range(4)])
    frames = [bytes(p) for p in packets]
    # zero the TCP checksum of the client's data segments, as a capture on a checksum-offloading host shows them
    broken = []
    for raw in frames[3:]:
        b = bytearray(raw)
        b[14 + 20 + 16: 14 + 20 + 18] = b"\x00\x00"
        broken.append(bytes(b))
    frames = frames[:3] + broken
    f = tmp_path / "csum.pcap"
    f.write_bytes(pb.pcap([(1_700_000_000, i, fr) for i, fr in enumerate(frames)]))
    s = info_of(f)
    assert s["bad_checksums"] == 4
    assert s["checksum_offload_host"] == CLIENT


def test_bad_checksums_from_both_hosts_are_not_called_offload(tmp_path):
    frames = [bytearray(bytes(p)) for p in stamp(handshake())]
    for b in frames[:2]:
        b[14 + 20 + 16: 14 + 20 + 18] = b"\x00\x01"
    f = tmp_path / "csum2.pcap"
    f.write_bytes(pb.pcap([(1_700_000_000, i, bytes(fr)) for i, fr in enumerate(frames)]))
    s = info_of(f)
    assert s["bad_checksums"] == 2 and s["checksum_offload_host"] is None


def test_one_sided_flow(tmp_path):
    # only the client's side of a transfer: it acknowledges server data that the capture never saw
    e = Ether()
    acks = [e / IP(src=CLIENT, dst=SERVER) / TCP(sport=40001, dport=443, flags="A", seq=7, ack=1000 + 1448 * i)
            for i in range(5)]
    lone_syn = [e / IP(src=CLIENT, dst=SERVER) / TCP(sport=40002, dport=443, flags="S", seq=1)]
    f = tmp_path / "oneway.pcap"
    wrpcap(str(f), stamp(acks + lone_syn))
    s = info_of(f)
    assert s["one_sided_flows"] == 1 and s["one_sided_streams"] == [0]


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.name)
def test_lab_captures_have_no_artefacts(path):
    s = info_of(path)
    assert (s["duplicates"], s["oversize_segments"], s["snaplen_cut"], s["interface_drops"], s["bad_checksums"]) \
        == (0, 0, 0, 0, 0)
    assert s["truncated_file"] is False and not s["warnings"]
