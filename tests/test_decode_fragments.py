"""IP fragment reassembly: the row whose fragment completes a datagram decodes it whole (ST_REASSEMBLED), from
bytes appended to the buffer; the other fragments stay ST_IP_FRAGMENT; memory stays bounded."""

from __future__ import annotations

from itertools import zip_longest

import numpy as np
from scapy.all import IP, TCP, UDP, Ether, IPv6, IPv6ExtHdrFragment, fragment, fragment6

import capbuild as cb
from diagnose.decode import FragmentReassembler, decode_chunk, verify_checksums
from diagnose.packet import ST_IP_FRAGMENT, ST_REASSEMBLED

ETH = Ether(src=cb.MAC_A, dst=cb.MAC_B)


def udp_datagram(size=3000, ident=0x77):
    return IP(src="10.0.0.1", dst="10.0.0.2", id=ident, ttl=33) / UDP(sport=5000, dport=6000) / (b"0123456789" * (
        size // 10))


def frames_of(fragments, t0=cb.BASE_TS, step=0.001):
    return [cb.frame(ETH / f, ts=t0 + i * step) for i, f in enumerate(fragments)]


def transport_bytes(buf, r) -> bytes:
    start = int(r["data"]) + int(r["l4_off"])
    return bytes(buf[start:start + int(r["l4_len"])])


def test_ipv4_in_order():
    dgram = IP(bytes(udp_datagram()))
    frags = fragment(dgram, fragsize=1000)
    n = len(frags)
    assert n >= 3
    frames = frames_of(frags)
    ra = FragmentReassembler()
    buf, table = cb.decode(frames, ra)
    assert table["status"].tolist() == [ST_IP_FRAGMENT] * (n - 1) + [ST_REASSEMBLED]
    r = table[-1]
    assert len(buf) > sum(len(f.data) for f in frames)  # the datagram was appended
    assert r["l3_off"] > r["caplen"]  # its headers point into the appended bytes
    assert (r["sport"], r["dport"], r["ip_proto"]) == (5000, 6000, 17)
    assert r["udp_len"] == len(dgram[UDP]) and r["payload_len"] == len(dgram[UDP].payload)
    assert r["l4_len"] == len(dgram[UDP])
    assert transport_bytes(buf, r) == bytes(dgram[UDP])
    # the IP columns keep the last fragment's own header, as Wireshark shows it
    assert r["frag_off"] == frags[-1].frag and r["ip_len"] == len(frags[-1]) and r["ip_ttl"] == 33
    for other in table[:-1]:
        assert other["l4_off"] == -1 and other["sport"] == 0
    assert ra.pending == 0
    assert verify_checksums(buf, table)[-1] == 0  # the reassembled UDP checksum verifies


def test_ipv4_out_of_order_completes_on_the_frame_that_fills_the_last_hole():
    frags = fragment(IP(bytes(udp_datagram())), fragsize=1000)
    order = [len(frags) - 1] + list(range(len(frags) - 2, -1, -1))  # last first, then backwards
    _, table = cb.decode(frames_of([frags[i] for i in order]), FragmentReassembler())
    assert table["status"].tolist() == [ST_IP_FRAGMENT] * (len(frags) - 1) + [ST_REASSEMBLED]
    assert table[-1]["dport"] == 6000 and table[-1]["frag_off"] == 0


def test_tcp_over_fragments():
    seg = IP(bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=5) / TCP(sport=1, dport=2, seq=99, flags="PA")
                   / (b"x" * 2500)))
    buf, table = cb.decode(frames_of(fragment(seg, fragsize=800)), FragmentReassembler())
    r = table[-1]
    assert r["status"] == ST_REASSEMBLED
    assert (r["tcp_seq"], r["tcp_flags"], r["payload_len"]) == (99, 0x18, 2500)
    payload_at = int(r["data"]) + int(r["payload_off"])
    assert bytes(buf[payload_at:payload_at + 2500]) == b"x" * 2500


def test_ipv6_fragments():
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=7) / IPv6ExtHdrFragment(id=0xABC) / UDP(
        sport=53, dport=5353) / (b"a" * 2000)
    frags = fragment6(pkt, 800)
    buf, table = cb.decode(frames_of(frags), FragmentReassembler())
    assert (table["status"][:-1] == ST_IP_FRAGMENT).all() and table["status"][-1] == ST_REASSEMBLED
    r = table[-1]
    assert (r["ipv"], r["sport"], r["dport"], r["payload_len"]) == (6, 53, 5353, 2000)
    assert transport_bytes(buf, r) == bytes(pkt)[40 + 8:]  # UDP header and data, behind the fragment header
    assert verify_checksums(buf, table)[-1] == 0


def test_datagram_spanning_chunks():
    frags = fragment(IP(bytes(udp_datagram(size=5000))), fragsize=1000)
    frames = frames_of(frags)
    ra = FragmentReassembler()
    buf1, t1 = cb.decode(frames[:3], ra)
    assert (t1["status"] == ST_IP_FRAGMENT).all() and ra.pending == 1
    buf2, t2 = cb.decode(frames[3:], ra)
    assert t2["status"][-1] == ST_REASSEMBLED and t2[-1]["payload_len"] == 5000
    assert ra.pending == 0


def test_no_reassembler_leaves_fragments_alone():
    frames = frames_of(fragment(IP(bytes(udp_datagram())), fragsize=1000))
    buf, table = cb.layout(frames)
    out = decode_chunk(buf, table)
    assert out is buf and (table["status"] == ST_IP_FRAGMENT).all()


def test_fragment_cut_by_snaplen_never_completes():
    frags = fragment(IP(bytes(udp_datagram())), fragsize=1000)
    frames = frames_of(frags)
    frames[1] = cb.frame(ETH / frags[1], ts=frames[1].ts, snaplen=200)
    ra = FragmentReassembler()
    _, table = cb.decode(frames, ra)
    assert (table["status"] == ST_IP_FRAGMENT).all()


def test_overlap_keeps_the_bytes_that_arrived_first():
    base = IP(src="10.0.0.1", dst="10.0.0.2", id=9, proto=17)
    udp = bytes(UDP(sport=1, dport=2, len=8 + 24, chksum=0))
    first = base.copy()
    first.flags, first.frag = "MF", 0
    dup = base.copy()
    dup.flags, dup.frag = "MF", 2
    last = base.copy()
    last.flags, last.frag = 0, 3
    frames = frames_of([first / (udp + b"A" * 8), dup / (b"B" * 8), dup / (b"C" * 8), last / (b"D" * 8)])
    buf, table = cb.decode(frames, FragmentReassembler())
    r = table[-1]
    assert r["status"] == ST_REASSEMBLED
    start = int(r["data"]) + int(r["payload_off"])
    assert bytes(buf[start:start + 24]) == b"A" * 8 + b"B" * 8 + b"D" * 8


def test_timeout_drops_an_old_incomplete_datagram():
    frags = fragment(IP(bytes(udp_datagram())), fragsize=1000)
    frames = frames_of(frags[:2]) + frames_of(frags[2:], t0=cb.BASE_TS + 120)
    ra = FragmentReassembler(timeout_ns=30_000_000_000)
    _, table = cb.decode(frames, ra)
    assert (table["status"] == ST_IP_FRAGMENT).all()
    assert ra.dropped == 1


def test_pending_memory_is_bounded():
    ra = FragmentReassembler(max_pending_bytes=10_000)
    frames = []
    for ident in range(50):  # 50 datagrams, each missing its last fragment
        frames += frames_of(fragment(IP(bytes(udp_datagram(ident=ident))), fragsize=1000)[:2])
    cb.decode(frames, ra)
    assert ra._pending_bytes <= 10_000
    assert ra.pending < 50 and ra.dropped >= 40


def test_many_datagrams_interleaved():
    streams = [fragment(IP(bytes(udp_datagram(size=1500 + 100 * k, ident=100 + k))), fragsize=600)
               for k in range(5)]
    interleaved = [f for group in zip_longest(*streams) for f in group if f is not None]
    buf, table = cb.decode(frames_of(interleaved), FragmentReassembler())
    done = table[table["status"] == ST_REASSEMBLED]
    assert sorted(done["payload_len"].tolist()) == [1500 + 100 * k for k in range(5)]
    assert np.unique(done["ip_id"]).size == 5
