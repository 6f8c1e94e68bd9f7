"""TCP reassembly per direction: order, retransmissions, overlaps, holes (reported, never glued), skipping, wrap."""

from __future__ import annotations

import random

import pytest

from diagnose.reassembly import SEQ_MOD, Direction, StreamConsumer


class Recorder(StreamConsumer):
    """Remembers what it gets: ("data", bytes, row), ("skip", n, row), ("gap", n, row), ("cut", n, row)."""

    def __init__(self, skippable: int = 0):
        self.events = []
        self.skippable = skippable

    def feed(self, data, n, row):
        if data is None:
            self.events.append(("skip", n, row))
            self.skippable -= n
        else:
            self.events.append(("data", bytes(data), row))

    def gap(self, n, row):
        self.events.append(("gap", n, row))

    def uncaptured(self, n, row):
        self.events.append(("cut", n, row))

    def close(self, row, reason):
        self.events.append(("close", reason, row))

    @property
    def stream(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")


def make(base=1000, **kw):
    rec = Recorder(**kw)
    return Direction(base, rec), rec


def test_in_order_segments_are_delivered_as_they_come():
    d, rec = make()
    d.segment(1000, b"abc", 3, 1)
    d.segment(1003, b"def", 3, 2)
    assert rec.events == [("data", b"abc", 1), ("data", b"def", 2)]
    assert d.next_off == 6 and d.delivered == 6


def test_retransmission_is_counted_not_delivered_again():
    d, rec = make()
    d.segment(1000, b"abcdef", 6, 1)
    d.segment(1000, b"abcdef", 6, 2)
    d.segment(1002, b"cdefgh", 6, 3)  # overlaps the end: only "gh" is new
    assert rec.stream == b"abcdefgh"
    assert rec.events[-1] == ("data", b"gh", 3)
    assert d.retransmitted == 6 + 4


def test_out_of_order_is_held_then_delivered_by_the_packet_that_fills_the_hole():
    d, rec = make()
    d.segment(1006, b"ghi", 3, 1)
    d.segment(1003, b"def", 3, 2)
    assert rec.events == [] and d.pending
    d.segment(1000, b"abc", 3, 3)
    assert rec.stream == b"abcdefghi"
    assert {e[2] for e in rec.events} == {3}  # what the filler made readable belongs to the filler's packet
    assert not d.pending


def test_hole_is_never_glued_only_reported():
    d, rec = make()
    d.segment(1000, b"abc", 3, 1)
    d.segment(1010, b"xyz", 3, 2)  # 1003..1009 never captured
    assert rec.stream == b"abc"
    d.acked(1013, 3)  # the peer received everything: the hole is lost, not waiting any more
    assert rec.events[1:] == [("gap", 7, 3), ("data", b"xyz", 3)]
    assert d.gaps == 1 and d.gap_bytes == 7


def test_ack_inside_a_hole_declares_only_the_acknowledged_part_lost():
    d, rec = make()
    d.segment(1000, b"a", 1, 1)
    d.segment(1010, b"k", 1, 2)
    d.acked(1005, 3)
    assert rec.events[-1] == ("gap", 4, 3) and d.pending  # 1005..1009 may still come
    d.segment(1005, b"fghij", 5, 4)
    assert rec.stream == b"afghijk"


def test_close_reports_what_is_left_behind_holes():
    d, rec = make()
    d.segment(1005, b"f", 1, 1)
    d.close(9, "end")
    assert rec.events == [("gap", 5, 9), ("data", b"f", 9), ("close", "end", 9)]
    d.segment(1006, b"g", 1, 10)  # closed: ignored
    assert rec.stream == b"f"


def test_conflicting_overlap_keeps_the_first_copy_and_counts_it():
    d, rec = make()
    d.segment(1004, b"EFGH", 4, 1)
    d.segment(1004, b"efgh", 4, 2)
    assert d.conflicts == 1
    d.segment(1000, b"abcd", 4, 3)
    assert rec.stream == b"abcdEFGH"


def test_longer_copy_of_a_held_segment_replaces_it():
    d, rec = make()
    d.segment(1004, b"ef", 2, 1)
    d.segment(1004, b"efgh", 4, 2)
    d.segment(1000, b"abcd", 4, 3)
    assert rec.events == [("data", b"abcd", 3), ("data", b"efgh", 3)]


def test_snaplen_cut_is_reported_as_uncaptured():
    d, rec = make()
    d.segment(1000, b"ab", 5, 1)  # 5 bytes on the wire, 2 captured
    d.segment(1005, b"fg", 2, 2)
    assert rec.events == [("data", b"ab", 1), ("cut", 3, 1), ("data", b"fg", 2)]


def test_skippable_bytes_are_counted_not_copied():
    d, rec = make(skippable=5)
    d.segment(1000, b"abcdefgh", 8, 1)
    assert rec.events == [("skip", 5, 1), ("data", b"fgh", 1)]
    assert d.skipped == 5 and d.delivered == 3


def test_a_hole_inside_skippable_bytes_loses_nothing():
    d, rec = make(skippable=100)
    d.segment(1000, b"x" * 10, 10, 1)
    d.segment(1050, b"y" * 10, 10, 2)
    d.acked(1060, 3)
    assert [e[0] for e in rec.events] == ["skip", "skip", "skip"] and d.skipped == 60
    assert not [e for e in rec.events if e[0] == "gap"]


def test_skip_ahead_from_the_kernel():
    d, rec = make(skippable=10)
    d.skip_ahead(10, 7)
    assert rec.events == [("skip", 10, 7)] and d.next_off == 10 and d.next_seq() == 1010


def test_sequence_numbers_wrap():
    base = SEQ_MOD - 3
    d, rec = make(base=base)
    d.segment(base, b"abc", 3, 1)
    d.segment(0, b"def", 3, 2)
    d.segment(6, b"jkl", 3, 3)
    d.segment(3, b"ghi", 3, 4)
    assert rec.stream == b"abcdefghijkl"
    assert d.next_seq() == 9


def test_pending_is_bounded():
    rec = Recorder()
    d = Direction(0, rec, max_pending=100)
    d.segment(10, b"x" * 60, 60, 1)
    d.segment(80, b"y" * 60, 60, 2)  # over the cap: the first hole is given up
    assert rec.events[0] == ("gap", 10, 2)
    assert d.pending_bytes <= 100


@pytest.mark.parametrize("seed", range(20))
def test_any_arrival_order_with_duplicates_gives_the_stream(seed):
    """Segments in random order, some repeated, some overlapping: the delivered bytes are the stream, once."""
    rng = random.Random(seed)
    stream = bytes(rng.randrange(256) for _ in range(3000))
    cuts = sorted(rng.sample(range(1, 3000), 40))
    pieces = [(a, b) for a, b in zip([0] + cuts, cuts + [3000])]
    arrivals = pieces + rng.sample(pieces, 10)
    arrivals += [(max(0, a - 7), min(3000, b + 5)) for a, b in rng.sample(pieces, 5)]
    rng.shuffle(arrivals)
    rec = Recorder()
    d = Direction(77, rec, max_pending=1 << 20)
    for row, (a, b) in enumerate(arrivals):
        d.segment(77 + a, stream[a:b], b - a, row)
    assert rec.stream == stream
    assert not d.pending and d.gaps == 0


def test_shared_budget_bounds_all_directions_together():
    from diagnose.reassembly import PendingBudget
    budget = PendingBudget(cap=150)
    recs = [Recorder() for _ in range(3)]
    dirs = [Direction(0, r, budget=budget) for r in recs]
    for k, d in enumerate(dirs):
        d.segment(10, b"z" * 60, 60, k)  # each holds 60 bytes behind a 10-byte hole
    assert budget.used <= 150
    assert [e[0] for e in recs[2].events[:2]] == ["gap", "data"]  # the third went over: its hole given up
    dirs[0].segment(0, b"a" * 10, 10, 9)
    assert budget.used <= 60 and recs[0].stream == b"a" * 10 + b"z" * 60
