"""The unacknowledged-segment lists (diagnose.tcp.unacked) give exactly what Wireshark's newest-first list walked in
full gives, whatever the order of segments and ACKs: the early stops and the cached span are only shortcuts.

The model below is a literal, slow rendering of Wireshark's list; random operation sequences (in order, with
retransmissions, with wrap-around, with far-away ACKs) must give the same matches, list contents and spans.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose.jit import kernel
from diagnose.tcp.analysis import DIRECTION_STATE_DTYPE, _init_direction
from diagnose.tcp.unacked import SegmentPool, acknowledge, append, span

M = 0xFFFFFFFF
APPEND, ACK, SPAN = 0, 1, 2


def _gt(a, b):
    d = (b - a) & M
    return d >= 0x80000000


def _le(a, b):
    d = (a - b) & M
    return d == 0 or d >= 0x80000000


class WiresharkList:
    """Newest first; every ACK walks the whole list; the last exact match found (the oldest) is reported."""

    def __init__(self, base):
        self.items = []  # [seq, nextseq, frame]
        self.base = base

    def append(self, seq, nextseq, frame):
        self.items.insert(0, [seq, nextseq, frame])

    def ack(self, ack):
        match = 0
        kept = []
        for item in self.items:
            seq, nextseq, frame = item
            if ack == nextseq:
                match = frame
                continue
            if _gt(ack, seq) and _le(ack, nextseq):
                item[0] = ack
                kept.append(item)
                continue
            if _gt(nextseq, ack):
                kept.append(item)
                continue
        self.items = kept
        return match

    def span(self):
        first = (self.items[0][0] - self.base) & M
        last = (self.items[0][1] - self.base) & M
        for seq, nextseq, _ in self.items:
            first = min(first, (seq - self.base) & M)
            last = max(last, (nextseq - self.base) & M)
        return first, last


@kernel
def _run(ops, entries, free_head, dirs, base, out):
    f = dirs[0]
    _init_direction(f)
    for i in range(ops.shape[0]):
        kind = ops[i, 0]
        if kind == APPEND:
            append(entries, free_head, f, ops[i, 1], ops[i, 2], ops[i, 3], 0, base)
        elif kind == ACK:
            matched, frame, ts = acknowledge(entries, free_head, f, ops[i, 1], base)
            out[i, 0] = frame if matched else 0
        elif f.seg_head >= 0:
            first, last = span(entries, f, base)
            out[i, 0] = first
            out[i, 1] = last
    # list contents, oldest first, after the last operation
    k = f.seg_head
    n = 0
    while k >= 0:
        out[ops.shape[0] + n, 0] = entries[k].seq
        out[ops.shape[0] + n, 1] = entries[k].nextseq
        out[ops.shape[0] + n, 2] = entries[k].frame
        n += 1
        k = entries[k].link
    return n


def check(ops, base):
    ops = np.array(ops, dtype=np.int64).reshape(-1, 4)
    model = WiresharkList(base)
    expected = []
    for kind, a, b, frame in ops.tolist():
        if kind == APPEND:
            model.append(a, b, frame)
            expected.append(None)
        elif kind == ACK:
            expected.append(model.ack(a))
        else:
            expected.append(model.span() if model.items else None)
    pool = SegmentPool(capacity=len(ops) + 1)
    dirs = np.zeros(1, DIRECTION_STATE_DTYPE)
    out = np.zeros((2 * len(ops) + 1, 3), np.int64)
    n = _run(ops, pool.entries, pool.free_head, dirs, base, out)
    for i, want in enumerate(expected):
        if ops[i, 0] == ACK:
            assert out[i, 0] == want, f"op {i}: matched frame"
        elif ops[i, 0] == SPAN and want is not None:
            assert tuple(out[i, :2]) == want, f"op {i}: span"
    ours = [tuple(row) for row in out[len(ops): len(ops) + n].tolist()]
    assert ours == [tuple(item) for item in reversed(model.items)]
    assert dirs[0]["seg_count"] == n


@st.composite
def scenarios(draw):
    """A sender's segments (mostly in order, some resent, some reordered) interleaved with ACKs and span reads."""
    start = draw(st.integers(0, M))
    base = (start - draw(st.integers(0, 3000))) & M
    ops, frame, nxt = [], 1, start
    for _ in range(draw(st.integers(1, 60))):
        what = draw(st.sampled_from(["send", "send", "send", "resend", "ack", "ack", "far ack", "opposite ack",
                                     "span"]))
        if what == "send":
            length = draw(st.integers(1, 1500))
            ops.append((APPEND, nxt, (nxt + length) & M, frame))
            nxt = (nxt + length) & M
        elif what == "resend":
            back = draw(st.integers(1, 5000))
            seq = (nxt - back) & M
            ops.append((APPEND, seq, (seq + draw(st.integers(1, 1500))) & M, frame))
        elif what == "ack":
            ops.append((ACK, (nxt - draw(st.integers(-200, 6000))) & M, 0, 0))
        elif what == "far ack":
            ops.append((ACK, draw(st.integers(0, M)), 0, 0))
        elif what == "opposite ack":  # half the sequence space away: "before" some segments, "after" others
            ops.append((ACK, (nxt + 0x80000000 - draw(st.integers(0, 6000))) & M, 0, 0))
        else:
            ops.append((SPAN, 0, 0, 0))
        frame += 1
        ops.append((SPAN, 0, 0, 0))
    return ops, base


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_lists_match_wiresharks_full_walks(case):
    ops, base = case
    check(ops, base)


def test_in_order_then_resent_then_in_order_again():
    ops = [(APPEND, 100, 200, 1), (APPEND, 200, 300, 2), (APPEND, 300, 400, 3),
           (APPEND, 200, 300, 4),  # resent: the list is out of order
           (SPAN, 0, 0, 0), (ACK, 300, 0, 0),  # matches frame 2 (the older of 2 and 4)
           (APPEND, 400, 500, 5), (SPAN, 0, 0, 0), (ACK, 450, 0, 0), (SPAN, 0, 0, 0), (ACK, 500, 0, 0)]
    check(ops, 99)


def test_wraparound():
    check([(APPEND, M - 99, 100, 1), (APPEND, 100, 300, 2), (SPAN, 0, 0, 0), (ACK, 100, 0, 0), (SPAN, 0, 0, 0),
           (ACK, 300, 0, 0)], M - 200)
