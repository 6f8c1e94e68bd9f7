"""Segments sent but not yet acknowledged: one linked list per flow direction, all lists in one pool of arrays.

Wireshark keeps, per direction, the list of data segments (and SYN/FIN) that no ACK has covered yet; ACK RTT
(`tcp.analysis.acks_frame`, `ack_rtt`), bytes in flight and the RTO of a retransmission are read from it. Here the
lists live in numpy arrays shared by all flows: entry k has a sequence range [seq, nextseq), the frame and time it
was sent, and `link` to the next newer entry; free entries are chained from `free_head`. A direction's state record
holds its list's `seg_head` (oldest), `seg_tail` (newest), `seg_count`, `seg_sorted` and the cached span
(`span_first`, `span_last`, `span_valid`: offsets from the direction's base sequence number). Memory is O(segments
awaiting an ACK), bounded per direction by MAX_UNACKED like Wireshark's own cap.

Wireshark walks the whole list for every packet. The results only depend on the set of segments, so the work here
is smaller without changing them: when the list is in sequence order (what a sender without loss produces) an ACK
touches only a prefix and the span comes from the two ends; the span is kept up to date as segments are added, and
a full walk (needed while retransmitted segments are listed) re-derives it and notices when order is restored.
"""

from __future__ import annotations

import numpy as np

from diagnose.tablegrowth import copy_rows

from .seqspace import MASK32, diff, inline, seq_gt, seq_le, wrap

MAX_UNACKED = 10000  # per direction; Wireshark stops remembering segments beyond this (TCP_MAX_UNACKED_SEGMENTS)

SEGMENT_DTYPE = np.dtype(
    [
        ("seq", np.int64),  # first sequence number not yet acknowledged (moves up on a partial ACK)
        ("nextseq", np.int64),  # sequence number after the segment (SYN and FIN count one)
        ("frame", np.int64),
        ("ts", np.int64),
        ("link", np.int64),  # next newer entry of the same list, or the next free entry; -1 ends
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
        copy_rows(grown, self.entries)
        # chain the new entries in front of whatever is still free
        grown["link"][old:new - 1] = np.arange(old + 1, new)
        grown["link"][new - 1] = self.free_head[0]
        self.free_head[0] = old
        self.entries = grown

    @property
    def capacity(self) -> int:
        return len(self.entries)


@inline
def _in_order(entries, f):
    """True when f's list is in increasing, non-overlapping sequence order over less than 2**30 (the usual case):
    then an ACK only touches a prefix of it and its ends give its span."""
    if f.seg_sorted == 0 or f.seg_head < 0:
        return False
    reach = diff(entries[f.seg_tail].nextseq, entries[f.seg_head].seq)
    return 0 <= reach < 0x40000000


@inline
def _span_from_ends(entries, f, base):
    """Cache the span of an in-order list from its two ends, unless the offsets from base wrap inside it."""
    first = wrap(entries[f.seg_head].seq - base)
    last = wrap(entries[f.seg_tail].nextseq - base)
    f.span_valid = 1 if first <= last else 0
    f.span_first = first
    f.span_last = last


@inline
def append(entries, free_head, f, seq, nextseq, frame, ts, base):
    """Add a segment as the newest of direction f's list; the caller made sure an entry is free."""
    k = free_head[0]
    free_head[0] = entries[k].link
    e = entries[k]
    e.seq = seq
    e.nextseq = nextseq
    e.frame = frame
    e.ts = ts
    e.link = -1
    lo = wrap(seq - base)
    hi = wrap(nextseq - base)
    if f.seg_tail >= 0:
        if diff(seq, entries[f.seg_tail].nextseq) < 0:
            f.seg_sorted = 0  # overlaps or precedes the newest: a retransmission or reordering
        entries[f.seg_tail].link = k
        if lo < f.span_first:
            f.span_first = lo
        if hi > f.span_last:
            f.span_last = hi
    else:
        f.seg_head = k
        f.seg_sorted = 1
        f.span_first = lo
        f.span_last = hi
        f.span_valid = 1
    f.seg_tail = k
    f.seg_count += 1


@inline
def acknowledge(entries, free_head, f, ack, base):
    """Apply an ACK number to direction f's list the way Wireshark does: segments it covers are dropped, one it
    cuts is shortened. Returns (matched, frame, ts) of the oldest segment whose end equals the ACK exactly."""
    # stop early only when the list is in order and the ACK is near it (sequence comparisons stay consistent)
    in_order = _in_order(entries, f) and abs(diff(ack, entries[f.seg_head].seq)) < 0x40000000
    matched = False
    frame = np.int64(0)
    ts = np.int64(0)
    prev = np.int64(-1)
    # a full walk also re-derives the span and whether the survivors are back in order
    first = np.int64(MASK32)
    last = np.int64(0)
    ordered = True
    changed = False
    k = f.seg_head
    while k >= 0:
        e = entries[k]
        keep = False
        if ack == e.nextseq:
            if not matched:
                matched = True
                frame = e.frame
                ts = e.ts
        elif seq_gt(ack, e.seq) and seq_le(ack, e.nextseq):
            e.seq = ack  # partly acknowledged
            changed = True
            keep = True
        elif seq_gt(e.nextseq, ack):
            keep = True
        if keep:
            if in_order:
                break  # every newer segment starts at or after this one's end: the ACK cannot reach it
            if prev >= 0 and diff(e.seq, entries[prev].nextseq) < 0:
                ordered = False
            lo = wrap(e.seq - base)
            hi = wrap(e.nextseq - base)
            if lo < first:
                first = lo
            if hi > last:
                last = hi
            prev = k
            k = e.link
            continue
        changed = True
        after = e.link
        e.link = free_head[0]
        free_head[0] = k
        if prev < 0:
            f.seg_head = after
        else:
            entries[prev].link = after
        if f.seg_tail == k:
            f.seg_tail = prev
        f.seg_count -= 1
        k = after
    if f.seg_head < 0:
        f.seg_tail = -1
        f.seg_sorted = 1
        f.span_valid = 0
    elif in_order:
        if changed:
            _span_from_ends(entries, f, base)
    else:
        f.seg_sorted = 1 if ordered else 0
        f.span_first = first
        f.span_last = last
        f.span_valid = 1
    return matched, frame, ts


@inline
def span(entries, f, base):
    """(lowest start, highest end) of direction f's non-empty list, as unsigned offsets from base (Wireshark's
    bytes-in-flight arithmetic)."""
    if f.span_valid == 0:
        if _in_order(entries, f):
            _span_from_ends(entries, f, base)
        if f.span_valid == 0:
            k = f.seg_head
            first = wrap(entries[k].seq - base)
            last = wrap(entries[k].nextseq - base)
            while k >= 0:
                lo = wrap(entries[k].seq - base)
                hi = wrap(entries[k].nextseq - base)
                if hi > last:
                    last = hi
                if lo < first:
                    first = lo
                k = entries[k].link
            f.span_first = first
            f.span_last = last
            f.span_valid = 1
    return f.span_first, f.span_last
