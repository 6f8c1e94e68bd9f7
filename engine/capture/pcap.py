"""Classic libpcap files: the 24-byte file header (parsed in Python) and a kernel that walks packet records.

Magic numbers tell byte order and timestamp resolution: a1b2c3d4 (microseconds), a1b23c4d (nanoseconds), and the
"modified" a1b2cd34 format with 24-byte record headers (extra ifindex/protocol/type fields we skip).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from diagnose.capture.binary import u32
from diagnose.capture.rows import start_row
from diagnose.jit import kernel

HEADER_LEN = 24
# Records longer than this are not real packets but a damaged file (libpcap uses a similar cap).
MAX_RECORD = 0x4000000

MAGICS = {
    0xA1B2C3D4: ("us", 16),
    0xA1B23C4D: ("ns", 16),
    0xA1B2CD34: ("us", 24),
}

# walker status codes
NEED_MORE = 0  # the next record is not complete in the buffer
TABLE_FULL = 1
CORRUPT = 2


@dataclass
class PcapHeader:
    swapped: bool  # file is big-endian (relative to little-endian reads)
    resolution: str  # "us" or "ns"
    record_header_len: int
    version: tuple[int, int]
    snaplen: int
    linktype: int
    fcs_bits: int  # bits 26-31 of the link-type field: FCS length information


def magic_of(head: bytes) -> tuple[bool, str, int] | None:
    """(big_endian, resolution, record_header_len) for a pcap magic, else None."""
    if len(head) < 4:
        return None
    le = struct.unpack("<I", head[:4])[0]
    be = struct.unpack(">I", head[:4])[0]
    if le in MAGICS:
        return (False, *MAGICS[le])
    if be in MAGICS:
        return (True, *MAGICS[be])
    return None


def parse_header(head: bytes) -> PcapHeader:
    swapped, resolution, rec_len = magic_of(head)  # type: ignore[misc]
    order = ">" if swapped else "<"
    major, minor, _zone, _sigfigs, snaplen, network = struct.unpack(order + "HHiIII", head[4:24])
    return PcapHeader(swapped, resolution, rec_len, (major, minor), snaplen, network & 0xFFFF, network >> 26)


@kernel
def walk_records(buf, pos, end, swapped, ns_per_unit, rec_hdr_len, linktype, table, first_row, frame0):
    """Fill table rows from pos while whole records are in buf[:end].

    Returns (new_pos, rows_filled, status, bad_offset).
    """
    row = first_row
    cap = table.shape[0]
    while True:
        if row >= cap:
            return pos, row - first_row, TABLE_FULL, -1
        if pos + rec_hdr_len > end:
            return pos, row - first_row, NEED_MORE, -1
        sec = np.int64(u32(buf, pos, swapped))
        frac = np.int64(u32(buf, pos + 4, swapped))
        incl = np.int64(u32(buf, pos + 8, swapped))
        orig = np.int64(u32(buf, pos + 12, swapped))
        if incl > MAX_RECORD:
            return pos, row - first_row, CORRUPT, pos
        if pos + rec_hdr_len + incl > end:
            return pos, row - first_row, NEED_MORE, -1
        start_row(table[row], frame0 + (row - first_row), sec * 1_000_000_000 + frac * ns_per_unit, incl, orig, 0,
                  linktype, pos + rec_hdr_len)
        pos += rec_hdr_len + incl
        row += 1
