"""The duplicate-frame hash (facts._frame_hash) depends on a frame's bytes only: not on where the frame lies in the
chunk buffer (its alignment, the buffer's end, a buffer that cannot be viewed as words)."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.facts import _frame_hash, _frame_key, _words
from diagnose.jit import kernel


@kernel
def _hash_at(buf, words, start, length):
    return _frame_hash(buf, words, start, length)


def hashes_everywhere(frame: bytes) -> set[int]:
    n = len(frame)
    out = set()
    for lead in range(9):
        for tail in (0, 1, 7, 8, 9, 40):
            buf = np.zeros(lead + n + tail, np.uint8)
            buf[lead: lead + n] = np.frombuffer(frame, np.uint8)
            out.add(int(_hash_at(buf, _words(buf), lead, n)))
            out.add(int(_hash_at(buf, np.empty(0, np.uint64), lead, n)))  # byte by byte
    return out


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 31, 32, 33, 60, 64, 65, 1514])
def test_a_frame_hashes_alike_wherever_it_lies(length):
    frame = bytes(np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8))
    assert len(hashes_everywhere(frame)) == 1


def test_any_changed_byte_or_length_changes_the_hash():
    rng = np.random.default_rng(7)
    frame = bytearray(rng.integers(0, 256, 99, dtype=np.uint8).tobytes())
    seen = {hashes_everywhere(bytes(frame)).pop()}
    for i in range(len(frame)):
        changed = bytearray(frame)
        changed[i] ^= 0x01
        seen.add(hashes_everywhere(bytes(changed)).pop())
    seen.add(hashes_everywhere(bytes(frame) + b"\0").pop())  # a zero byte more is another frame
    assert len(seen) == len(frame) + 2



@kernel
def _key_at(buf, words, start, length):
    return _frame_key(buf, words, start, length)


@pytest.mark.parametrize("length", [1, 7, 8, 15, 16, 17, 40, 63, 64, 65, 200])
def test_a_frame_key_is_alike_wherever_the_frame_lies(length):
    """The duplicate test first compares keys (facts._frame_key): a copy must get its original's key."""
    frame = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
    keys = set()
    for lead in range(16):
        for tail in (0, 3, 8, 40):  # near the buffer's end the key reads bytes, elsewhere words
            buf = np.concatenate([np.zeros(lead, np.uint8), frame, np.zeros(tail, np.uint8)])
            keys.add(int(_key_at(buf, _words(buf), lead, length)))
            keys.add(int(_key_at(buf, np.empty(0, np.uint64), lead, length)))
    assert len(keys) == 1
