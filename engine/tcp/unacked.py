"""Segments sent but not yet acknowledged: one linked list per flow direction, all lists in one pool of arrays.

Wireshark keeps, per direction, the list of data segments (and SYN/FIN) that no ACK has covered yet, newest first;
ACK RTT (`tcp.analysis.acks_frame`, `ack_rtt`), bytes in flight and the RTO of a retransmission are read from it.
Here the lists live in numpy arrays shared by all flows: entry k has a sequence range [seq, nextseq), the frame
and time it was sent, and `link` to the next (older) entry; free entries are chained from `free_head`. Memory is
O(segments awaiting an ACK), bounded per direction by MAX_UNACKED like Wireshark's own cap.
"""

from __future__ import annotations

import numpy as np

from .seqspace import inline

MAX_UNACKED = 10000  # per direction; Wireshark stops remembering segments beyond this (TCP_MAX_UNACKED_SEGMENTS)

SEGMENT_DTYPE = np.dtype(
    [
        ("seq", np.int64),  # first sequence number not yet acknowledged (moves up on a partial ACK)
        ("nextseq", np.int64),  # sequence number after the segment (SYN and FIN count one)
        ("frame", np.int64),
        ("ts", np.int64),
        ("link", np.int64),  # next older entry of the same list, or the next free entry; -1 ends
    ]
)


class SegmentPool:
    """The pool's arrays; grown by the Python side when a kernel reports it is full."""

    def __init__(self, capacity: int = 4096):
        self.entries = np.zeros(0, SEGMENT_DTYPE)
        self.free_head = np.full(1, -1, np.int64)  # an array so kernels can update it in place
        self.grow(capacity)

    def grow(self, capacity: int | None = None) -> None:
        old = len(self.entries)
        new = capacity if capacity is not None else max(4096, old * 2)
        grown = np.zeros(new, SEGMENT_DTYPE)
        grown[:old] = self.entries
        # chain the new entries in front of whatever is still free
        grown["link"][old:new - 1] = np.arange(old + 1, new)
        grown["link"][new - 1] = self.free_head[0]
        self.free_head[0] = old
        self.entries = grown

    @property
    def capacity(self) -> int:
        return len(self.entries)


@inline
def take(entries, free_head, seq, nextseq, frame, ts, older):
    """A new entry in front of list `older`; the caller made sure one is free."""
    k = free_head[0]
    free_head[0] = entries[k].link
    e = entries[k]
    e.seq = seq
    e.nextseq = nextseq
    e.frame = frame
    e.ts = ts
    e.link = older
    return k


@inline
def release(entries, free_head, k):
    """Return entry k to the free chain; gives the entry that followed it in its list."""
    after = entries[k].link
    entries[k].link = free_head[0]
    free_head[0] = k
    return after
