"""Every link type the decoder handles, around the same IPv4 and IPv6 packets built with scapy.

The expected values come from the scapy packets themselves; the IP packet always ends the frame, so its offset is
the frame length minus the packet length.
"""

from __future__ import annotations

import numpy as np
import pytest

import capbuild as cb
from diagnose.packet import (ENC_MPLS, ENC_NULL, ENC_PPPOE, ENC_QINQ, ENC_RADIOTAP, ENC_SLL, ENC_VLAN, ENC_WLAN,
                             OPT_MSS, OPT_SACK_PERM, OPT_TS, OPT_WS, ST_LINK_UNDECODED, ST_NOT_IP)

MAC = {m: int(m.replace(":", ""), 16) for m in (cb.MAC_A, cb.MAC_B, cb.MAC_C, cb.MAC_D)}

# variant -> (encap bits, vlan id, mpls label, eth_src, eth_dst) expected
LINK_EXPECTATIONS = {
    "ethernet": (0, -1, -1, cb.MAC_A, cb.MAC_B),
    "vlan": (ENC_VLAN, 42, -1, cb.MAC_A, cb.MAC_B),
    "qinq_88a8": (ENC_VLAN | ENC_QINQ, 100, -1, cb.MAC_A, cb.MAC_B),
    "qinq_9100": (ENC_VLAN | ENC_QINQ, 300, -1, cb.MAC_A, cb.MAC_B),
    "mpls": (ENC_MPLS, -1, 1000, cb.MAC_A, cb.MAC_B),
    "pppoe": (ENC_PPPOE, -1, -1, cb.MAC_A, cb.MAC_B),
    "llc_snap": (0, -1, -1, cb.MAC_A, cb.MAC_B),
    "sll": (ENC_SLL, -1, -1, cb.MAC_A, None),
    "sll2": (ENC_SLL, -1, -1, cb.MAC_A, None),
    "raw": (0, -1, -1, None, None),
    "raw_dlt12": (0, -1, -1, None, None),
    "raw_dlt14": (0, -1, -1, None, None),
    "ipv4_link": (0, -1, -1, None, None),
    "ipv6_link": (0, -1, -1, None, None),
    "loop": (ENC_NULL, -1, -1, None, None),
    # 802.11: source/destination are the frame's SA/DA, wherever the to/from-DS bits put them
    "wlan_radiotap": (ENC_RADIOTAP | ENC_WLAN, -1, -1, cb.MAC_A, cb.MAC_B),
    "wlan_qos": (ENC_RADIOTAP | ENC_WLAN, -1, -1, cb.MAC_A, cb.MAC_B),
    "wlan_4addr": (ENC_WLAN, -1, -1, cb.MAC_A, cb.MAC_B),
    "wlan_no_radiotap": (ENC_WLAN, -1, -1, cb.MAC_A, cb.MAC_B),
}


def _variants():
    out = []
    for label, ip_pkt in (("v4", cb.tcp_syn()), ("v6", cb.tcp6_data())):
        for name, frame in cb.link_variants(ip_pkt).items():
            out.append(pytest.param(name, frame, ip_pkt, id=f"{label}-{name}"))
    return out


VARIANTS = _variants()


@pytest.mark.parametrize("name,frame,ip_pkt", VARIANTS)
def test_link_variant(name, frame, ip_pkt):
    _, table = cb.decode([frame])
    r = table[0]
    cb.check_ip_tcp(r, frame, ip_pkt)
    if name.startswith("null"):
        expected = (ENC_NULL, -1, -1, None, None)
    else:
        expected = LINK_EXPECTATIONS[name]
    encap, vlan, label, src, dst = expected
    assert r["encap"] == encap
    assert r["vlan_id"] == vlan
    assert r["mpls_label"] == label
    assert r["eth_src"] == (MAC[src] if src else 0)
    assert r["eth_dst"] == (MAC[dst] if dst else 0)
    assert r["outer_l3_off"] == -1


def test_vlan_count_and_stacked_tags():
    frames = cb.link_variants(cb.tcp_syn())
    _, table = cb.decode([frames["vlan"], frames["qinq_88a8"], frames["qinq_9100"], frames["ethernet"]])
    assert table["vlan_count"].tolist() == [1, 2, 2, 0]


def test_syn_options_on_every_link():
    syn = cb.tcp_syn()
    frames = list(cb.link_variants(syn).values())
    _, table = cb.decode(frames)
    assert (table["tcp_opts"] == OPT_MSS | OPT_SACK_PERM | OPT_TS | OPT_WS).all()
    assert (table["opt_mss"] == 1460).all() and (table["opt_ws"] == 7).all()
    assert (table["opt_ts_val"] == 111).all() and (table["opt_ts_ecr"] == 0).all()


def test_unknown_link_type_is_counted_not_decoded():
    frame = cb.frame(cb.tcp_syn(), cb.LINKTYPE_USER0)
    _, table = cb.decode([frame])
    r = table[0]
    assert r["status"] == ST_LINK_UNDECODED
    assert r["ipv"] == 0 and r["l3_off"] == -1 and r["l4_off"] == -1


def test_loopback_family_that_is_not_ip():
    frame = cb.frame(cb.tcp_syn(), cb.LINKTYPE_NULL, prefix=(7).to_bytes(4, "little"))  # AF 7: not IP
    _, table = cb.decode([frame])
    assert table[0]["status"] == ST_NOT_IP and table[0]["encap"] == ENC_NULL and table[0]["ipv"] == 0


def test_wlan_frames_without_ip():
    from scapy.all import LLC, SNAP, Dot11, RadioTap

    ip = cb.tcp_syn()
    protected = cb.frame(RadioTap() / cb.Dot11(type=2, subtype=0, FCfield=0x41, addr1=cb.MAC_C, addr2=cb.MAC_A,
                                               addr3=cb.MAC_B) / LLC() / SNAP(code=0x0800) / ip)
    beacon = cb.frame(RadioTap() / Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=cb.MAC_A,
                                         addr3=cb.MAC_A) / (b"\x00" * 12))
    null_data = cb.frame(Dot11(type=2, subtype=4, FCfield=1, addr1=cb.MAC_C, addr2=cb.MAC_A, addr3=cb.MAC_B),
                         cb.LINKTYPE_IEEE802_11)
    _, table = cb.decode([protected, beacon, null_data])
    assert (table["status"] == ST_NOT_IP).all()
    assert (table["ipv"] == 0).all()
    assert (table["encap"] & ENC_WLAN == 0).all()


def test_same_frames_through_scapy_pcap_and_pcapng_writers(tmp_path):
    """The reader + decoder on files written by scapy give the same rows as the laid-out buffer."""
    frames = [v.values[1] for v in VARIANTS]
    _, expected = cb.decode(frames)
    by_link: dict[int, list[cb.Frame]] = {}
    for f in frames:
        by_link.setdefault(f.linktype, []).append(f)
    got_pcap = []
    for linktype, group in by_link.items():
        rows = cb.read_and_decode(cb.write_pcap(tmp_path / f"lt{linktype}.pcap", group))
        assert len(rows) == len(group)
        got_pcap.append(rows)
    got_ng = cb.read_and_decode(cb.write_pcapng(tmp_path / "all.pcapng", frames))
    assert len(got_ng) == len(frames)
    columns = [n for n in expected.dtype.names if n not in ("frame", "ts", "data", "iface", "conv", "stream", "dir")]
    order = [f for group in by_link.values() for f in group]
    index = {id(f): i for i, f in enumerate(frames)}
    pcap_rows = np.concatenate(got_pcap)
    for col in columns:
        want = expected[col][[index[id(f)] for f in order]]
        assert np.array_equal(pcap_rows[col], want), col
        assert np.array_equal(got_ng[col], expected[col]), col
