"""The decoder's columns equal tshark's fields, for every capture with a stored tshark fixture.

Compared per frame: IPv4/IPv6 addresses, TTL/hop limit, protocol, IPv4 length/id/header length/DF/MF/offset, ports,
TCP flags, raw sequence and acknowledgement numbers, raw window, header length, tcp.len, MSS/window-scale/timestamp
options, UDP length, ICMP/ICMPv6 type and code, ARP opcode, Ethernet addresses, outermost VLAN id, and the header
quoted by ICMP errors.

Intentional differences (where tshark prints several occurrences of a field, we keep one layer):
* Tunnels (GRE, VXLAN, IP-in-IP, Teredo, GTP-U): tshark lists the outer and the inner header's values; our columns
  describe the inner packet, so we compare with tshark's last occurrence, and skip fields that only the outer
  header has (e.g. ip.* of an IPv4 tunnel around IPv6, udp.* of a VXLAN/Teredo/GTP tunnel around TCP).
* ICMP errors: tshark lists the error's own header first and the quoted header second; our main columns hold the
  first and the q_* columns the second (quoted transport: ports and TCP sequence number only).
* eth.src/eth.dst and vlan.id: we keep the outermost; compared with tshark's first occurrence, on Ethernet frames
  only (tshark names the addresses of other link types differently: sll.src.eth, wlan.sa, ...). vlan.id is not
  compared on frames with an 802.1ad or stacked tag: tshark names an 802.1ad tag ieee8021ad.id, while our
  vlan_id is the outermost tag of either kind.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from oracles.fixtures import capture_files, data_path, field_occurrences, load_tshark, tshark_fixture_path
from diagnose.capture import open_capture
from diagnose.decode import FragmentReassembler, decode_chunk
from diagnose.errors import CaptureError
from diagnose.packet import ENC_QINQ, ST_ICMP_ERROR, ST_IP_FRAGMENT

LINKTYPE_ETHERNET = 1


def _with_fixture():
    out = []
    for group, name in capture_files():
        try:
            tshark_fixture_path(group, name)
        except FileNotFoundError:
            continue
        out.append((group, name))
    return out


CAPTURES = _with_fixture()


def decoded_rows(path) -> list[np.void]:
    """Every packet's decoded row (copied out of the reused chunk table); stops quietly at a damaged record."""
    rows = []
    reassembler = FragmentReassembler()
    try:
        with open_capture(str(path)) as cap:
            for chunk in cap.chunks():
                decode_chunk(chunk.buf, chunk.table, reassembler)
                rows.extend(chunk.table.copy())
    except CaptureError:
        pass
    return rows


def _addr(hi, lo, ipv) -> int:
    return int(lo) if ipv == 4 else (int(hi) << 64) | int(lo)


def _parse(field: str, text: str) -> int:
    if field.endswith((".src", ".dst")) and not field.startswith("eth."):
        return int(ipaddress.ip_address(text))
    if field.startswith("eth."):
        return int(text.replace(":", ""), 16)
    return int(text, 0)


def expected_cells(r) -> list[tuple[str, int | None, str]]:
    """(tshark field, our value or None when we say absent, which occurrence: 'first' | 'last' | 'only')."""
    out: list[tuple[str, int | None, str]] = []
    tunnel = r["outer_l3_off"] >= 0
    icmp_error = bool(r["status"] & ST_ICMP_ERROR)
    pick = "last" if tunnel else ("first" if icmp_error else "only")
    ipv = int(r["ipv"])
    if r["linktype"] == LINKTYPE_ETHERNET and (r["eth_src"] or r["eth_dst"]):
        out += [("eth.src", int(r["eth_src"]), "first"), ("eth.dst", int(r["eth_dst"]), "first")]
        if not r["encap"] & ENC_QINQ:  # tshark calls an 802.1ad tag ieee8021ad.id, not vlan.id
            out.append(("vlan.id", int(r["vlan_id"]) if r["vlan_id"] >= 0 else None, "first"))
    if ipv == 4:
        out += [("ip.src", _addr(0, r["src_lo"], 4), pick), ("ip.dst", _addr(0, r["dst_lo"], 4), pick),
                ("ip.ttl", int(r["ip_ttl"]), pick), ("ip.proto", int(r["ip_proto"]), pick),
                ("ip.len", int(r["ip_len"]), pick), ("ip.id", int(r["ip_id"]), pick),
                ("ip.hdr_len", int(r["ip_hl"]), pick), ("ip.flags.df", int(r["ip_flags"] >> 1 & 1), pick),
                ("ip.flags.mf", int(r["ip_flags"] & 1), pick), ("ip.frag_offset", int(r["frag_off"]), pick)]
    elif ipv == 6:
        out += [("ipv6.src", _addr(r["src_hi"], r["src_lo"], 6), pick),
                ("ipv6.dst", _addr(r["dst_hi"], r["dst_lo"], 6), pick),
                ("ipv6.hlim", int(r["ip_ttl"]), pick), ("ipv6.plen", int(r["ip_len"]) - 40, pick)]
    if icmp_error and r["q_ipv"]:
        fam = "ip" if r["q_ipv"] == 4 else "ipv6"
        if fam == ("ip" if ipv == 4 else "ipv6"):
            out += [(f"{fam}.src", _addr(r["q_src_hi"], r["q_src_lo"], r["q_ipv"]), "last"),
                    (f"{fam}.dst", _addr(r["q_dst_hi"], r["q_dst_lo"], r["q_ipv"]), "last")]
        if r["q_proto"] in (6, 17) and (r["q_sport"] or r["q_dport"]):
            tp = "tcp" if r["q_proto"] == 6 else "udp"
            out += [(f"{tp}.srcport", int(r["q_sport"]), "only"), (f"{tp}.dstport", int(r["q_dport"]), "only")]
        if r["q_proto"] == 6 and r["q_tcp_seq"]:
            out.append(("tcp.seq", int(r["q_tcp_seq"]), "only"))  # tshark: no relative numbers inside ICMP
        return out
    if r["status"] & ST_IP_FRAGMENT or r["l4_off"] < 0:
        return out
    proto = int(r["ip_proto"])
    if proto == 6:
        out += [("tcp.srcport", int(r["sport"]), pick), ("tcp.dstport", int(r["dport"]), pick)]
        if r["tcp_hlen"]:
            out += [("tcp.seq_raw", int(r["tcp_seq"]), pick), ("tcp.ack_raw", int(r["tcp_ack"]), pick),
                    ("tcp.flags", int(r["tcp_flags"]), pick), ("tcp.window_size_value", int(r["tcp_win"]), pick),
                    ("tcp.hdr_len", int(r["tcp_hlen"]), pick)]
            if r["tcp_hlen"] >= 20:
                out.append(("tcp.len", int(r["payload_len"]), pick))
            opts = int(r["tcp_opts"])
            out += [("tcp.options.mss_val", int(r["opt_mss"]) if opts & 1 else None, pick),
                    ("tcp.options.wscale.shift", int(r["opt_ws"]) if opts & 2 else None, pick),
                    ("tcp.options.timestamp.tsval", int(r["opt_ts_val"]) if opts & 16 else None, pick),
                    ("tcp.options.timestamp.tsecr", int(r["opt_ts_ecr"]) if opts & 16 else None, pick)]
    elif proto == 17:
        out += [("udp.srcport", int(r["sport"]), pick), ("udp.dstport", int(r["dport"]), pick)]
        if r["udp_len"]:
            out.append(("udp.length", int(r["udp_len"]), pick))
    elif proto == 1 and r["icmp_type"] >= 0:
        out += [("icmp.type", int(r["icmp_type"]), pick), ("icmp.code", int(r["icmp_code"]), pick)]
    elif proto == 58 and r["icmp_type"] >= 0:
        out += [("icmpv6.type", int(r["icmp_type"]), pick), ("icmpv6.code", int(r["icmp_code"]), pick)]
    if r["arp_op"]:
        out.append(("arp.opcode", int(r["arp_op"]), "only"))
    return out


def _choose(occurrences: list[str], which: str) -> str | None:
    if not occurrences:
        return None
    if which == "last":
        return occurrences[-1]
    return occurrences[0]


def mismatches(group: str, name: str) -> list[tuple]:
    fixture = load_tshark(group, name)
    fields = fixture["packets"]["fields"]
    occurrences = {f: field_occurrences(fixture, f) for f in fields}
    rows = decoded_rows(data_path(group, name))
    problems = []
    n_theirs = len(fixture["packets"]["rows"])
    if len(rows) != n_theirs and not fixture.get("error"):
        problems.append((0, "frame count", len(rows), n_theirs))
    for i, r in enumerate(rows[:n_theirs]):
        for field, ours, which in expected_cells(r):
            if field not in occurrences:
                continue
            theirs_text = _choose(occurrences[field][i], which)
            theirs = None if theirs_text is None else _parse(field, theirs_text)
            if ours != theirs:
                problems.append((i + 1, field, ours, theirs_text))
    return problems


@pytest.mark.parametrize("group,name", CAPTURES, ids=[f"{g}/{n}" for g, n in CAPTURES])
def test_decoded_fields_equal_tshark(group, name):
    problems = mismatches(group, name)
    assert not problems, f"(frame, field, ours, tshark) {len(problems)}: {problems[:12]}"


def test_parity_covers_the_corpus():
    """The comparison above must not silently shrink: every stored fixture takes part."""
    assert len(CAPTURES) >= 60
