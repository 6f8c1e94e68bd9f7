"""Hand-made chunks for filter and field tests: frame bytes in a buffer plus a packet table filled by hand
(packet.py contract), so tests do not depend on the decoder."""

from __future__ import annotations

import numpy as np

from diagnose.packet import new_table

ETH_IPV4 = bytes.fromhex("0200000000020200000000010800")


def chunk(frames: list[bytes], *, linktype: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(buf, table) with the frame columns filled: frame numbers from 1, one second apart, data/caplen/wirelen."""
    buf = np.frombuffer(b"".join(frames), np.uint8).copy()
    table = new_table(len(frames))
    offset = 0
    for i, data in enumerate(frames):
        table[i]["frame"] = i + 1
        table[i]["data"] = offset
        table[i]["caplen"] = table[i]["wirelen"] = len(data)
        table[i]["linktype"] = linktype
        table[i]["ts"] = 1_000_000_000 * (i + 10) + 5
        offset += len(data)
    return buf, table


def tcp_row(table, i, *, src, dst, sport, dport, flags, hlen=20, payload=0, ttl=64):
    """Decode columns of an Ethernet/IPv4/TCP row (IPv4 at 14, TCP at 34)."""
    r = table[i]
    r["ipv"], r["eth_type"], r["l3_off"], r["l4_off"] = 4, 0x0800, 14, 34
    r["src_lo"], r["dst_lo"] = src, dst
    r["ip_proto"], r["ip_hl"], r["ip_len"], r["ip_ttl"] = 6, 20, 20 + hlen + payload, ttl
    r["sport"], r["dport"], r["tcp_flags"], r["tcp_hlen"] = sport, dport, flags, hlen
    r["l4_len"], r["payload_len"] = hlen + payload, payload
    if payload:
        r["payload_off"] = 34 + hlen


def udp_row(table, i, *, src, dst, sport, dport, payload=0):
    r = table[i]
    r["ipv"], r["eth_type"], r["l3_off"], r["l4_off"] = 4, 0x0800, 14, 34
    r["src_lo"], r["dst_lo"] = src, dst
    r["ip_proto"], r["ip_hl"], r["ip_len"], r["ip_ttl"] = 17, 20, 28 + payload, 64
    r["sport"], r["dport"], r["udp_len"] = sport, dport, 8 + payload
    r["l4_len"], r["payload_len"] = 8 + payload, payload
