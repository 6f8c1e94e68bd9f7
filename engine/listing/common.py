"""Shared pieces of the tcpdump-style listing: truncation, byte access, address text, hex dumps.

Every printer of the listing has the shape `print_x(out, pkt, off, length, ctx)`: it appends text to `out` (a list of
strings joined at the end), reads the captured frame `pkt` (bytes) from offset `off`, and knows `length`, the bytes
this layer has on the wire (which may exceed what was captured). When a field it needs was not captured it raises
`Truncated(proto)`; the listing then ends the line with ` [|proto]` after what was printed so far, like tcpdump.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field


class Truncated(Exception):
    """A header or field lies beyond the captured bytes; `proto` names the layer (`[|tcp]`)."""

    def __init__(self, proto: str, suffix: str = ""):
        super().__init__(proto)
        self.proto = proto
        self.suffix = suffix  # printed after the marker (tcpdump adds '>' inside TCP options)


@dataclass
class ListingState:
    """What the listing remembers between packets and chunks.

    tcp_bases: for each TCP conversation (both endpoints, order-independent), the sequence number each endpoint had
    when the conversation was first seen with ACK set (or last seen with SYN+ACK): tcpdump prints sequence and
    acknowledgement numbers relative to these. first_us / prev_us: timestamps (microseconds) for relative and delta
    time stamps.
    """

    tcp_bases: dict = field(default_factory=dict)
    first_us: int | None = None
    prev_us: int | None = None


@dataclass
class Context:
    state: ListingState
    hex_ascii: bool = False
    link_hdr: int | None = None  # bytes of link-layer header in the current frame (where the -X dump starts)


def need(pkt: bytes, off: int, n: int, proto: str) -> None:
    """Raise Truncated(proto) unless n bytes from off were captured."""
    if off + n > len(pkt):
        raise Truncated(proto)


def be16(pkt: bytes, off: int, proto: str) -> int:
    need(pkt, off, 2, proto)
    return (pkt[off] << 8) | pkt[off + 1]


def ipv4_text(pkt: bytes, off: int) -> str:
    return f"{pkt[off]}.{pkt[off + 1]}.{pkt[off + 2]}.{pkt[off + 3]}"


def ipv6_text(pkt: bytes, off: int) -> str:
    # the C library's inet_ntop is what tcpdump uses: same zero compression and IPv4-mapped forms
    return socket.inet_ntop(socket.AF_INET6, pkt[off : off + 16])


def mac_text(pkt: bytes, off: int) -> str:
    return ":".join(f"{b:02x}" for b in pkt[off : off + 6])


def printable_ascii(data: bytes) -> str:
    """Bytes as ASCII, '.' for anything not graphic, space included (the right column of a hex dump)."""
    return "".join(chr(b) if 32 < b < 127 else "." for b in data)


def hex_ascii_lines(data: bytes) -> list[str]:
    """tcpdump's -X layout: tab, offset, 16 bytes in 2-byte groups, two spaces, ASCII."""
    lines = []
    for start in range(0, len(data), 16):
        row = data[start : start + 16]
        groups = " ".join(row[i : i + 2].hex() for i in range(0, len(row), 2))
        lines.append(f"\t0x{start:04x}:  {groups:<39}  {printable_ascii(row)}")
    return lines


def c_char(b: int) -> str:
    """One byte the way tcpdump shows bytes of names: M- for the high bit, ^X for control characters."""
    text = ""
    if b >= 0x80:
        text = "M-"
        b &= 0x7F
    if b < 0x20 or b == 0x7F:
        return text + "^" + chr(b ^ 0x40)
    return text + chr(b)
