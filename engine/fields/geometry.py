"""Where each frame and its main transport header lie in the chunk buffer, for every row, in one pass.

Nearly every field and filter starts from the same few facts about a row: the frame's bytes, whether its main
transport header was decoded and what protocol it is, where that header starts and where its bytes end. Each numpy
expression of one of them reads a column of the packet table, striding over whole 320-byte rows (the table of a
4 MB chunk is larger than a core's L2 cache), and releases the GIL for the loop; a dozen of them per chunk cost more
than the fields they serve. One kernel reads the few columns of each row once and writes them all, with the TCP
flags word that the tcp.flags.* fields (in most playbook rules) test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnose.jit import kernel
from diagnose.packet import PACKET_DTYPE, ST_IP_FRAGMENT, ST_REASSEMBLED

IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6 = 6, 17, 1, 58
NO_TRANSPORT = -1  # l4_proto of a row without a decoded main transport header
TCP_FLAGS_END = 14  # the TCP flags exist when the first 14 bytes of the header were captured
TCP_FLAGS_PRESENT = 1 << 16  # bit of Geometry.tcp_flags set where the main TCP header's flags exist


@dataclass
class Geometry:
    frame_start: np.ndarray  # int64: first byte of the frame in the chunk buffer
    frame_end: np.ndarray  # int64: end of its captured bytes (never past the buffer)
    l4_abs: np.ndarray  # int64: frame_start + l4_off (meaningless where l4_off < 0)
    l4_end: np.ndarray  # int64: end of the main transport segment's bytes (IP length, within the captured bytes)
    l4_proto: np.ndarray  # int16: ip_proto where the main transport header was decoded (IP, l4_off >= 0, not a
    #                       non-first fragment), NO_TRANSPORT elsewhere
    tcp_flags: np.ndarray  # int32: the main TCP header's flags | TCP_FLAGS_PRESENT where they exist, else 0 (the
    #                        most read fields of all: tcp.flags.*, from the row's cache line the pass reads anyway)
    status_seen: int  # every status bit set on some row
    has_outer: bool  # some row has a tunnel's outer IP header


@kernel
def _geometry(table, buf_len, frame_start, frame_end, l4_abs, l4_end, l4_proto, tcp_flags):
    status_seen = 0
    has_outer = False
    for i in range(table.shape[0]):
        r = table[i]
        start = np.int64(r.data)
        end = min(start + r.caplen, buf_len)
        status = r.status
        status_seen |= status
        if r.outer_l3_off >= 0:
            has_outer = True
        l4 = start + r.l4_off
        cap = buf_len if (status & ST_REASSEMBLED) != 0 else end
        frame_start[i] = start
        frame_end[i] = end
        l4_abs[i] = l4
        l4_end[i] = min(l4 + max(r.l4_len, 0), cap)
        decoded = r.ipv != 0 and r.l4_off >= 0 and (status & ST_IP_FRAGMENT) == 0
        l4_proto[i] = r.ip_proto if decoded else NO_TRANSPORT
        if decoded and r.ip_proto == IPPROTO_TCP and l4 + TCP_FLAGS_END <= l4_end[i]:
            tcp_flags[i] = r.tcp_flags | TCP_FLAGS_PRESENT
        else:
            tcp_flags[i] = 0
    return status_seen, has_outer


def compute_geometry(table: np.ndarray, buf_len: int) -> Geometry | None:
    """The chunk's geometry; None for a table that is not a contiguous packet table (a test's hand-made columns):
    its readers then use their own numpy expressions."""
    n = table.shape[0]
    if table.dtype != PACKET_DTYPE or not table.flags.c_contiguous or n == 0:
        return None
    out = Geometry(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
                   np.empty(n, np.int16), np.empty(n, np.int32), 0, False)
    seen, outer = _geometry(table, buf_len, out.frame_start, out.frame_end, out.l4_abs, out.l4_end, out.l4_proto,
                            out.tcp_flags)
    out.status_seen, out.has_outer = int(seen), bool(outer)
    return out
