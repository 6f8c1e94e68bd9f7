"""The selection kernel's per-conversation scratch (rows linked per chunk, conversations waiting for Python) carries
no stale value from one chunk into the next: small chunks, so that conversations span many of them, give the same
messages, fields and flow facts whether the kernel follows HTTP exchanges or not, and whether event rounds are
resumed by the kernel or walked in Python (AppLayer._walk_in_python)."""

from __future__ import annotations

from pathlib import Path

import pytest

import test_http_kernel_path as kernel_path
from diagnose.pipeline import open_pass

DATA = Path(__file__).parent / "data"
SMALL_CHUNK = 64 << 10
CAPTURES = ["lab/retransmissions.pcap", "corpus/zeek/206_example_b.pcap", "corpus/zeek/methods.pcap"]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(kernel_path, "open_pass", lambda path: open_pass(path, chunk_bytes=SMALL_CHUNK))


@pytest.mark.parametrize("name", CAPTURES)
def test_small_chunks_agree_both_ways(name, small_chunks):
    kernel_path.same_both_ways(DATA / name)


@pytest.mark.parametrize("name", CAPTURES)
def test_small_chunks_walked_in_python_agree(name, small_chunks, monkeypatch):
    usual, _ = kernel_path.analyse(DATA / name, False)
    monkeypatch.setattr("diagnose.protocols.app.MAX_ROUNDS_BEFORE_PYTHON", 0)
    walked, _ = kernel_path.analyse(DATA / name, True)
    assert walked == usual and usual["messages"]
