"""Printing addresses held in the packet table (two uint64 halves, see packet.py)."""

from __future__ import annotations

import ipaddress


def format_address(ipv: int, hi: int, lo: int) -> str:
    if ipv == 4:
        return str(ipaddress.IPv4Address(int(lo) & 0xFFFFFFFF))
    if ipv == 6:
        return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
    return "-"


def format_mac(value: int) -> str:
    v = int(value)
    return ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def parse_address(text: str) -> tuple[int, int, int]:
    """(ipv, hi, lo) of an IPv4/IPv6 address string."""
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return 4, 0, int(a)
    n = int(a)
    return 6, n >> 64, n & 0xFFFFFFFFFFFFFFFF
