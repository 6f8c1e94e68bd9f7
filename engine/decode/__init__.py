"""The packet decoder: fills the link, network and transport columns of a packet table from the frame bytes.

    buf = decode_chunk(buf, table, reassembler)   # once per chunk, after the capture reader filled the frame columns

The work is done by numba kernels, one small module per layer (link, ethernet, wlan, ip, transport, icmp, tunnel,
arp), tied together by the layer walk in walk.py. IP fragment reassembly (fragments.py) and checksum verification
(checksum.py) sit beside it: the first as a Python slow path, the second only when someone asks.
"""

from __future__ import annotations

import numpy as np

from ..packet import PACKET_DTYPE


from .checksum import CK_IP_BAD, CK_L4_BAD, CK_L4_UNVERIFIED, verify_rows
from .fragments import FragmentReassembler
from .walk import decode_rows

_NO_ROWS = np.zeros(0, dtype=np.int64)

__all__ = ["decode_chunk", "verify_checksums", "FragmentReassembler", "CK_IP_BAD", "CK_L4_BAD",
           "CK_L4_UNVERIFIED"]


def _check(buf: np.ndarray, table: np.ndarray) -> None:
    if buf.dtype != np.uint8 or buf.ndim != 1 or not buf.flags.c_contiguous:
        raise TypeError("buf must be a contiguous 1-D uint8 array")
    if table.dtype != PACKET_DTYPE or table.ndim != 1 or not table.flags.c_contiguous:
        raise TypeError("table must be a contiguous 1-D array of PACKET_DTYPE")


def decode_chunk(buf: np.ndarray, table: np.ndarray, reassembler: FragmentReassembler | None = None) -> np.ndarray:
    """Fill every decode column of every row in place; returns the buffer to use from now on.

    That is `buf` itself, or a longer copy when `reassembler` completed IP datagrams: their bytes are appended after
    the frames and the completing rows point into them. Without a reassembler, fragments stay ST_IP_FRAGMENT.
    """
    _check(buf, table)
    fragments = decode_rows(buf, table, _NO_ROWS, _NO_ROWS, _NO_ROWS, _NO_ROWS, _NO_ROWS)
    if fragments and reassembler is not None:
        buf = reassembler.reassemble(buf, table)
    return buf


def verify_checksums(buf: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per-row checksum verdicts (uint8 bits CK_IP_BAD, CK_L4_BAD, CK_L4_UNVERIFIED) for a decoded table."""
    _check(buf, table)
    out = np.zeros(table.shape[0], dtype=np.uint8)
    verify_rows(buf, table, out)
    return out
