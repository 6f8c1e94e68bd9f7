"""Duplicate-frame flags (facts._scan_chunk) equal a plain reference: a frame is a duplicate when all its captured
bytes equal an earlier frame's within DUPLICATE_WINDOW_NS. _scan_chunk hashes whole only frames whose key (length
and first KEY_BYTES bytes) matches a frame still in the window, so the captures here hold what could fool that:
copies across chunk boundaries, copies just outside the window, near-copies that differ in one late byte only,
frames of every alignment, and more frames in one window than the key table has slots."""

import struct

import numpy as np
import pytest

from diagnose.facts import _KEY_SLOTS, DUPLICATE_WINDOW_NS, CaptureFacts
from diagnose.pipeline import open_pass

W = DUPLICATE_WINDOW_NS


def _write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))  # nanosecond pcap, Ethernet
        for ts, data in frames:
            sec, ns = divmod(ts, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, ns, len(data), len(data)))
            f.write(data)


def _reference(frames):
    """Per frame: is it a copy of an earlier frame no more than the window before it (timestamps ascend here)."""
    last_seen: dict[bytes, int] = {}
    out = []
    for ts, data in frames:
        seen = last_seen.get(data)
        out.append(seen is not None and 0 <= ts - seen <= W)
        last_seen[data] = ts
    return out


def _flags(path, chunk_bytes):
    facts = CaptureFacts(verify_checksums=False)
    run = open_pass(str(path), chunk_bytes=chunk_bytes)
    flags, captured = [], 0
    with run.capture:
        for chunk in run.chunks(prepare=facts.prepare):
            flags.extend(chunk.extra["duplicates"].tolist())
            captured += int(chunk.extra["totals"][1])
    return flags, captured


def _frames(rng, n, gap_ns, copy_share, max_back):
    """n frames (random lengths, so every alignment in the file) at gap_ns apart; a share of them are copies or
    near-copies (one byte changed at or after KEY_BYTES) of a frame up to max_back frames before."""
    out = []
    ts = 1_700_000_000_000_000_000
    for i in range(n):
        ts += int(rng.integers(1, 2 * gap_ns))
        if out and rng.random() < copy_share:
            _, data = out[-int(rng.integers(1, min(max_back, len(out)) + 1))]
            if rng.random() < 0.4 and len(data) > 64:
                late = bytearray(data)
                late[int(rng.integers(64, len(data)))] ^= 0x01
                data = bytes(late)
            out.append((ts, data))
        else:
            length = int(rng.choice([int(rng.integers(14, 70)), int(rng.integers(60, 1600))]))
            head = bytes(rng.integers(0, 256, 64, dtype=np.uint8))
            out.append((ts, (head * 30)[:length] if rng.random() < 0.3 else bytes(rng.integers(0, 256, length,
                                                                                               dtype=np.uint8))))
    return out


@pytest.mark.parametrize(
    "seed,n,gap_ns,copy_share,max_back,chunk_bytes",
    [
        (1, 6000, W // 50, 0.2, 120, 64 << 10),  # copies within and just beyond the window, across chunks
        (2, 4000, W // 4, 0.3, 10, 32 << 10),  # sparse traffic: most copies fall outside the window
        # more frames in a window than key slots (copies come a few frames after their original: with thousands of
        # frames between them, a 64K-slot table of whole hashes, as before the key table, loses some)
        (3, 3 * _KEY_SLOTS, 150, 0.05, 6, 1 << 20),
    ],
)
def test_duplicate_flags_equal_byte_comparison(tmp_path, seed, n, gap_ns, copy_share, max_back, chunk_bytes):
    rng = np.random.default_rng(seed)
    frames = _frames(rng, n, gap_ns, copy_share, max_back)
    path = tmp_path / "dups.pcap"
    _write_pcap(path, frames)
    expected = _reference(frames)
    assert sum(expected) > 20 and len(expected) - sum(expected) > 20
    flags, captured = _flags(path, chunk_bytes)
    assert flags == expected
    assert captured == sum(len(d) for _, d in frames)


def test_a_copy_that_differs_only_in_its_last_byte_is_not_a_duplicate(tmp_path):
    frame = bytes(range(256)) * 4
    changed = frame[:-1] + bytes([frame[-1] ^ 0x80])
    t0 = 1_700_000_000_000_000_000
    frames = [(t0, frame), (t0 + 1000, changed), (t0 + 2000, frame), (t0 + 3000, changed), (t0 + W + 3001, frame)]
    _write_pcap(tmp_path / "late.pcap", frames)
    flags, _ = _flags(tmp_path / "late.pcap", 1 << 20)
    assert flags == [False, False, True, True, False]
