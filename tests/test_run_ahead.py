"""The pass reads and decodes one chunk ahead on a worker thread (diagnose.ahead, Capture.chunks(held=...)): items
arrive in order, the producer is never more than one item ahead, errors surface at their item, leaving early stops
the worker, and a chunk the consumer still holds is never overwritten by the read-ahead."""

from __future__ import annotations

import threading
import time

import pytest

import pcapbuild as pb
from diagnose.ahead import run_ahead
from diagnose.capture import open_capture


def test_items_arrive_in_order_and_all_of_them():
    assert list(run_ahead(lambda: iter(range(500)))) == list(range(500))
    assert list(run_ahead(lambda: iter(()))) == []


def test_the_producer_works_one_item_ahead_and_never_two():
    received = []  # items the consumer got
    finished = []  # items the consumer is done with
    starts = []

    def produce():
        for k in range(30):
            starts.append((k, len(received), len(finished)))
            time.sleep(0.001)
            yield k

    for item in run_ahead(produce):
        received.append(item)
        time.sleep(0.003)  # a slow consumer: the producer would race ahead if it could
        finished.append(item)
    assert received == list(range(30))
    # item k starts only once the consumer got item k - 1, i.e. asked for it and so is done with item k - 2
    assert all(k <= got for k, got, _ in starts)
    # and some start while the consumer is still busy with item k - 1
    assert sum(1 for k, _, done in starts if k >= 1 and done == k - 1) > 10


def test_an_error_reaches_the_consumer_after_the_items_before_it():
    def produce():
        yield 1
        yield 2
        raise ValueError("bad block at 42")

    got = []
    with pytest.raises(ValueError, match="bad block at 42"):
        for item in run_ahead(produce):
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_worker_and_closes_the_producer():
    closed = threading.Event()

    def produce():
        try:
            for k in range(10**9):
                yield k
        finally:
            closed.set()

    before = threading.active_count()
    for item in run_ahead(produce):
        if item == 3:
            break
    assert closed.is_set()
    assert threading.active_count() == before


@pytest.mark.parametrize("chunk_bytes,max_rows", [(256, 3), (300, 7), (4096, 5)])
def test_a_held_chunk_is_not_overwritten_by_the_read_ahead(tmp_path, chunk_bytes, max_rows):
    """Records of many sizes, some longer than a block: the previous chunk's bytes and rows must still be what they
    were when it arrived, after the next chunk was read (with a read-ahead that reuses too few buffers they are not)."""
    frames = [bytes([i % 251]) * (20 + (i * 97) % 900) for i in range(300)]
    f = tmp_path / "x.pcap"
    f.write_bytes(pb.pcap([(i, 0, d) for i, d in enumerate(frames)]))
    got = []
    previous = None
    with open_capture(str(f), chunk_bytes=chunk_bytes, max_rows=max_rows) as cap:
        for chunk in cap.chunks(held=1):
            if previous is not None:
                held, snapshot = previous
                assert [held.buf[r["data"]: r["data"] + r["caplen"]].tobytes() for r in held.table] == snapshot[0]
                assert held.table["frame"].tolist() == snapshot[1]
            frames_now = [chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes() for r in chunk.table]
            got += frames_now
            previous = (chunk, (frames_now, chunk.table["frame"].tolist()))
    assert got == frames


def test_prepare_runs_ahead_on_the_worker_and_capture_facts_agree_with_the_inline_way():
    from diagnose.facts import CaptureFacts
    from diagnose.pipeline import open_pass
    from oracles.fixtures import data_path

    capture = str(data_path("corpus/zeek/tls13-ech.pcap"))  # holds duplicated frames: the hashes matter
    threads = set()

    def summary(ahead: bool) -> dict:
        facts = CaptureFacts()
        run = open_pass(capture, chunk_bytes=4096, max_rows=16)  # many chunks

        def prepare(chunk):
            threads.add(threading.current_thread().name)
            facts.prepare(chunk)

        with run.capture:
            for chunk in run.chunks(prepare=prepare if ahead else None):
                facts.update(chunk.buf, chunk.table, run.flows.count, chunk.extra)
        return facts.summary(run.capture.info, run.flows.conversations)

    ahead = summary(True)
    assert ahead == summary(False) and ahead["duplicates"] == 2
    assert threads and threading.main_thread().name not in threads
