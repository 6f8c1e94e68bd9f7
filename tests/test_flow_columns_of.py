"""The columns of chosen flows (FlowAnalysis.columns_of: what FlowRecords.load makes the records of flagged flows
from) hold exactly what the blocks of every flow hold for them: the same records, facts from the side tables (RSTs,
ICMP errors, repeated SYNs) included, for any subset of flows."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from capbuild import frame, write_pcap
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6

from diagnose.conn.record import analyse_flows, column_records
from diagnose.rules.flow_records import FlowRecords

DATA = Path(__file__).parent / "data"
# captures whose flows have RSTs, ICMP errors, repeated SYNs, and more than one kind of flow
CAPTURES = ["lab/reject_icmp.pcap", "lab/syn_drop.pcap", "lab/mid_stream_rst.pcap", "lab/tls_decrypt_keylog.pcap",
            "lab/recurring_idle_rst_350s.pcap", "lab/dns_nxdomain.pcap"]


def _many_flows(path: Path) -> Path:
    """Flows of every kind side by side: TCP with repeated SYNs and a RST, UDP answered by an ICMP error, IPv6,
    TCP closed by FINs."""
    frames, ts = [], 1_700_000_000.0
    for i in range(48):
        ts += 0.01
        client, port = f"10.0.{i}.1", 40000 + i
        if i % 4 == 0:
            for k in range(1 + i % 3):
                frames.append(frame(Ether() / IP(src=client, dst="10.9.0.1") / TCP(sport=port, dport=80, seq=7,
                                                                                   flags="S"), ts=ts + k))
            ts += 3
            frames.append(frame(Ether() / IP(src="10.9.0.1", dst=client, ttl=50) / TCP(sport=80, dport=port,
                                                                                       seq=99, ack=8, flags="SA"), ts=ts))
            frames.append(frame(Ether() / IP(src=client, dst="10.9.0.1") / TCP(sport=port, dport=80, seq=8, ack=100,
                                                                               flags="PA") / (b"x" * 30), ts=ts + 0.01))
            frames.append(frame(Ether() / IP(src="10.9.0.1", dst=client, ttl=50) / TCP(sport=80, dport=port,
                                                                                       seq=100, flags="R"), ts=ts + 0.2))
        elif i % 4 == 1:
            query = IP(src=client, dst="10.9.0.53") / UDP(sport=port, dport=53) / (b"q" * 20)
            frames.append(frame(Ether() / query, ts=ts))
            frames.append(frame(Ether() / IP(src="10.9.0.254", dst=client) / ICMP(type=3, code=3) / bytes(query)[:28],
                                ts=ts + 0.001))
        elif i % 4 == 2:
            frames.append(frame(Ether() / IPv6(src=f"2001:db8::{i}", dst="2001:db8::99") / TCP(sport=port, dport=443,
                                                                                               flags="A") / b"y", ts=ts))
        else:
            for flags, src, dst, sp, dp in (("S", client, "10.9.0.2", port, 22), ("SA", "10.9.0.2", client, 22, port),
                                            ("A", client, "10.9.0.2", port, 22), ("FA", client, "10.9.0.2", port, 22),
                                            ("FA", "10.9.0.2", client, 22, port)):
                ts += 0.001
                frames.append(frame(Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags), ts=ts))
    return write_pcap(path / "many_flows.pcap", frames)


@pytest.mark.parametrize("capture", [*CAPTURES, "many"])
def test_columns_of_chosen_flows_read_like_their_blocks(capture, tmp_path):
    analysis = analyse_flows(str(_many_flows(tmp_path) if capture == "many" else DATA / capture))
    whole = [rec for cols in analysis.iter_columns(block=7) for rec in column_records(cols)]
    assert len(whole) == len(analysis) >= 1
    chooser = random.Random(capture)
    subsets = [list(range(len(whole))), [0], [len(whole) - 1], list(range(1, len(whole), 2))]
    subsets += [sorted(chooser.sample(range(len(whole)), chooser.randint(1, len(whole)))) for _ in range(5)]
    for rows in subsets:
        got = column_records(analysis.columns_of(np.array(rows, np.int64)))
        assert got == [whole[r] for r in rows]
        assert [list(r) for r in got] == [list(whole[r]) for r in rows]  # keys in the same order


def test_the_many_flows_use_every_side_table(tmp_path):
    """The built capture's flows have what the chosen rows are looked up in the side tables for."""
    records = analyse_flows(str(_many_flows(tmp_path))).records()
    assert len(records) == 48
    assert sum(1 for r in records if r.get("rst_count")) == 12
    assert sum(1 for r in records if r.get("icmp_errors")) == 12
    assert sum(1 for r in records if len(r.get("syn_times") or ()) > 1) == 8
    assert sum(1 for r in records if ":" in r["client"].rsplit(":", 1)[0]) == 12


@pytest.mark.parametrize("capture", [*CAPTURES, "many"])
def test_blocks_with_lazy_zeek_texts_read_the_same(capture, tmp_path):
    """Blocks whose conn_state and history are decided when first read (the rules' sweep) give the same records,
    and the rules' prepared text columns (Zeek's texts read before and after the others) the records' texts."""
    analysis = analyse_flows(str(_many_flows(tmp_path) if capture == "many" else DATA / capture))
    whole = [rec for cols in analysis.iter_columns(block=5) for rec in column_records(cols)]
    lazy = [rec for cols in analysis.iter_columns(block=5, lazy_texts=True) for rec in column_records(cols)]
    assert lazy == whole and [list(r) for r in lazy] == [list(r) for r in whole]
    assert all(cols.matrix is None for cols in analysis.iter_columns(block=5, lazy_texts=True))
    for keys in (["conn_state", "end", "handshake", "history", "proto", "rst_sender"], ["end", "history"]):
        records = FlowRecords(analysis)
        records.prepare(keys)  # in a block, the texts of the keys before history are read before Zeek's are decided
        for key in keys:
            values, present = records.prepared(key)
            want = [rec.get(key) for rec in whole]
            assert [v if p else None for v, p in zip(values.tolist(), present.tolist())] == want
    assert any(rec["conn_state"] for rec in whole) and any(rec["history"] for rec in whole)


def test_a_failure_making_the_flagged_block_reaches_load(monkeypatch):
    """load makes the flagged flows' block on another thread: what goes wrong there is raised by load."""
    analysis = analyse_flows(str(DATA / "lab/mid_stream_rst.pcap"))
    records = FlowRecords(analysis)

    def broken(rows):
        raise MemoryError("no room for the block")

    monkeypatch.setattr(analysis, "columns_of", broken)
    with pytest.raises(MemoryError, match="no room for the block"):
        records.load([0])
