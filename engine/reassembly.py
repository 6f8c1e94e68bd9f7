"""TCP reassembly, one direction at a time: segments in, contiguous bytes out, holes reported and never glued.

A `Direction` turns the segments of one direction of one connection into an ordered byte stream for a
`StreamConsumer` (a protocol parser). It handles
* retransmissions and overlaps: bytes already delivered are dropped (counted); a new segment that overlaps buffered
  ones keeps the bytes that arrived first and counts the ones that differ (`conflicts`);
* out-of-order segments: held (bounded by `max_pending` bytes) until the hole before them is filled;
* missing data: a hole becomes a `gap` delivered to the consumer when it can no longer be filled (the peer
  acknowledged past it, the buffer cap was reached, or the capture ended); bytes are never glued across a hole;
* bytes not captured (snaplen): delivered as a gap of the missing length;
* bytes the consumer does not need (bodies it skips by length): passed as a count without copying.

Offsets are 64-bit positions from stream byte 0 (the byte after the SYN, or the first byte seen when the SYN was not
captured), so 32-bit sequence wrap-around is invisible to consumers.
"""

from __future__ import annotations

from bisect import insort

SEQ_MOD = 1 << 32
HALF = 1 << 31
DEFAULT_MAX_PENDING = 2 << 20  # out-of-order bytes held per direction before the hole is declared lost


class PendingBudget:
    """Out-of-order bytes held by all the directions that share it (one per capture): past `cap`, a direction
    gives up its hole instead of holding more, so memory stays bounded whatever the number of broken flows."""

    __slots__ = ("used", "cap")

    def __init__(self, cap: int = 64 << 20):
        self.used = 0
        self.cap = cap


class StreamConsumer:
    """What a protocol parser implements to receive a direction's bytes.

    `skippable`: how many of the next bytes the consumer does not need to see (a body of known length); the
    reassembler may then call feed(None, n, row) instead of passing the bytes. `feed` gets contiguous data;
    `gap` gets the length of bytes that will never come; `close` is the end of the direction (FIN, RST, capture end).
    Rows identify packets: the consumer attributes a completed PDU to the row whose bytes completed it.
    """

    skippable = 0

    def feed(self, data: bytes | None, n: int, row: int) -> None:
        raise NotImplementedError

    def gap(self, n: int, row: int) -> None:
        raise NotImplementedError

    def uncaptured(self, n: int, row: int) -> None:
        """Bytes the packet carried beyond the capture's snapshot length: lost like a gap unless told apart."""
        self.gap(n, row)

    def close(self, row: int, reason: str) -> None:
        pass


class Direction:
    """One direction of one TCP connection."""

    __slots__ = ("base", "next_off", "consumer", "pending", "pending_bytes", "max_pending", "budget", "retransmitted",
                 "conflicts", "gaps", "gap_bytes", "delivered", "skipped", "closed", "started")

    def __init__(self, base_seq: int, consumer: StreamConsumer, *, max_pending: int = DEFAULT_MAX_PENDING,
                 budget: PendingBudget | None = None):
        self.base = base_seq % SEQ_MOD  # sequence number of stream byte 0
        self.next_off = 0  # next byte the consumer expects
        self.consumer = consumer
        self.pending: list[tuple[int, int, bytes, int]] = []  # (offset, end, data, wire length), sorted
        self.pending_bytes = 0
        self.max_pending = max_pending
        self.budget = budget
        self.retransmitted = 0  # bytes that arrived again after being delivered
        self.conflicts = 0  # overlapping bytes that differ from the copy kept
        self.gaps = 0
        self.gap_bytes = 0
        self.delivered = 0  # bytes handed over as data
        self.skipped = 0  # bytes handed over as counts
        self.closed = False
        self.started = False

    # ---- positions -------------------------------------------------------------------------------------------------
    def offset_of(self, seq: int) -> int:
        """The 64-bit stream offset of sequence number `seq` (the one nearest the current position)."""
        rel = (seq - self.base - self.next_off) % SEQ_MOD
        if rel >= HALF:
            rel -= SEQ_MOD
        return self.next_off + rel

    def next_seq(self) -> int:
        return (self.base + self.next_off) % SEQ_MOD

    @property
    def hole(self) -> bool:
        return bool(self.pending)

    # ---- input -----------------------------------------------------------------------------------------------------
    def segment(self, seq: int, data: bytes, wire_len: int, row: int) -> None:
        """A segment carrying `wire_len` payload bytes from `seq`, of which `data` (a prefix) was captured."""
        if wire_len <= 0 or self.closed:
            return
        self.started = True
        next_off = self.next_off
        rel = (seq - self.base - next_off) % SEQ_MOD  # offset_of, inlined: this runs for every segment
        if rel >= HALF:
            rel -= SEQ_MOD
        off = next_off + rel
        if not rel and not self.pending and len(data) == wire_len and not self.consumer.skippable:
            self.consumer.feed(data, wire_len, row)  # the usual segment: in order, captured whole, all needed
            self.delivered += wire_len
            self.next_off += wire_len
            if self.pending:
                self._drain(row)
            return
        end = off + wire_len
        if end <= self.next_off:
            self.retransmitted += wire_len
            return
        if off < self.next_off:  # starts with bytes we already have
            cut = self.next_off - off
            self.retransmitted += cut
            data = data[cut:] if cut < len(data) else b""
            wire_len -= cut
            off = self.next_off
        if off > self.next_off or self.pending:
            self._hold(off, data, wire_len, row)
            self._drain(row)
            return
        self._deliver(data, wire_len, row)
        if self.pending:
            self._drain(row)

    def _deliver(self, data: bytes, wire_len: int, row: int) -> None:
        """Hand `wire_len` bytes at next_off to the consumer (`data` = the captured prefix)."""
        consumer = self.consumer
        captured = len(data)
        pos = 0
        while pos < wire_len:
            skip = consumer.skippable
            if skip > 0:
                n = min(skip, wire_len - pos)
                consumer.feed(None, n, row)
                self.skipped += n
                pos += n
                continue
            if pos >= captured:  # the rest was not captured (snapshot length)
                self._gap(wire_len - pos, row, uncaptured=True)
                pos = wire_len
                break
            piece = data[pos:] if pos else data
            consumer.feed(piece, len(piece), row)
            self.delivered += len(piece)
            pos = captured
        self.next_off += wire_len

    def _gap(self, n: int, row: int | None, uncaptured: bool = False) -> None:
        self.gaps += 1
        self.gap_bytes += n
        skip = self.consumer.skippable
        if skip >= n:  # a hole inside bytes nobody needed: count it, nothing is lost
            self.consumer.feed(None, n, row)
            self.skipped += n
            return
        if uncaptured:
            self.consumer.uncaptured(n, row)
        else:
            self.consumer.gap(n, row)

    def _hold(self, off: int, data: bytes, wire_len: int, row: int) -> None:
        end = off + wire_len
        for k, (p_off, p_end, p_data, p_len) in enumerate(self.pending):  # overlaps: the first copy wins
            if p_off < end and off < p_end:
                lo, hi = max(off, p_off), min(end, p_end)
                a = data[lo - off: hi - off]
                b = p_data[lo - p_off: hi - p_off]
                n = min(len(a), len(b))
                if a[:n] != b[:n]:
                    self.conflicts += 1
                if p_off <= off and end <= p_end:
                    self.retransmitted += wire_len
                    return
                if p_off == off and end > p_end and len(p_data) == p_len:  # a longer copy of a held segment:
                    del self.pending[k]  # keep one segment (the held bytes, then the new ones)
                    self.pending_bytes -= p_len
                    if self.budget is not None:
                        self.budget.used -= len(p_data)
                    self.retransmitted += p_len
                    data = p_data + data[p_len:]
                    break
        insort(self.pending, (off, end, bytes(data), wire_len))
        self.pending_bytes += wire_len
        budget = self.budget
        if budget is not None:
            budget.used += len(data)
        if self.pending_bytes > self.max_pending or (budget is not None and budget.used > budget.cap):
            self.flush_hole(row)

    def _drain(self, row: int | None) -> None:
        """Deliver held segments that are now contiguous; what they complete belongs to `row`, the packet that
        made them contiguous."""
        while self.pending and self.pending[0][0] <= self.next_off:
            off, end, data, wire_len = self.pending.pop(0)
            self.pending_bytes -= wire_len
            if self.budget is not None:
                self.budget.used -= len(data)
            if end <= self.next_off:
                self.retransmitted += wire_len
                continue
            cut = self.next_off - off
            if cut:
                self.retransmitted += cut
                data = data[cut:]
                wire_len -= cut
            self._deliver(data, wire_len, row)

    # ---- holes and the end -----------------------------------------------------------------------------------------
    def acked(self, ack_seq: int, row: int | None) -> None:
        """The peer acknowledged up to `ack_seq`: the part of a hole below it was received but not captured, so it
        is lost (reported as a gap); bytes above the acknowledgment may still come."""
        acked = self.offset_of(ack_seq)
        while self.pending and acked > self.next_off:
            first_off = self.pending[0][0]
            if acked < first_off:
                self._gap(acked - self.next_off, row)
                self.next_off = acked
                return
            self.flush_hole(row)

    def flush_hole(self, row: int | None) -> None:
        """Declare the first hole lost: report it as a gap and deliver what follows."""
        if not self.pending:
            return
        first_off = self.pending[0][0]
        if first_off > self.next_off:
            n = first_off - self.next_off
            self._gap(n, row)
            self.next_off = first_off
        self._drain(row)

    def skip_ahead(self, n: int, row: int = -1) -> None:
        """`n` bytes were consumed elsewhere (the fast path skipped them by length); `row` is the packet holding
        the last of them when they end what the consumer skips (-1: they end nothing)."""
        if n > 0:
            self.consumer.feed(None, n, row)
            self.skipped += n
            self.next_off += n

    def close(self, row: int, reason: str) -> None:
        """End of this direction: lost holes are reported, then the consumer is closed."""
        if self.closed:
            return
        while self.pending:
            self.flush_hole(row)
        self.closed = True
        self.consumer.close(row, reason)
