"""The chunk context: what field extractors and filters see of one chunk of packets.

It holds the chunk buffer and packet table, the capture-wide state some fields need (the first packet's time for
frame.time_relative, the previous packet's for frame.time_delta) and a cache so a field used twice in a filter or
rule set is extracted once per chunk. Later stages attach their own per-chunk data (sparse application-layer
columns, TCP analysis results) under `extra`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np


_MISSING = object()


class Releasable:
    """Per-context data (under ChunkContext.extra) that can drop what it cached when the context is released."""

    def forget(self, keys: Iterable[str]) -> None:
        """Drop some cached values (a rule's constants broadcast over 10^5 flow rows, once the rule is judged)."""
        for key in keys:
            self._cache.pop(key, None)

    def release(self) -> None:
        raise NotImplementedError


class ChunkContext:
    def __init__(self, buf: np.ndarray, table: np.ndarray, *, first_ts: int | None = None,
                 prev_ts: int | None = None, file_big_endian: bool = False, capture_format: str | None = None,
                 extra: dict[str, Any] | None = None):
        self.buf = buf
        self.table = table
        self.n = int(table.shape[0])
        # capture-wide times: without them the chunk's own first packet stands in
        self.first_ts = int(table["ts"][0]) if first_ts is None and self.n else (first_ts or 0)
        self.prev_ts = prev_ts
        self.file_big_endian = file_big_endian  # byte order of the file (DLT_NULL headers use the writer's order)
        self.capture_format = capture_format  # "pcap" or "pcapng" (frame.interface_id exists only in pcapng)
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self._cache: dict[str, Any] = {}

    # ---- caching -------------------------------------------------------------------------------------------------
    def cached(self, key: str, compute):
        """compute() once per chunk per key."""
        value = self._cache.get(key, _MISSING)  # (not try/except: a raised KeyError costs ~1 us per first use)
        if value is _MISSING:
            value = self._cache[key] = compute()
        return value

    def forget(self, keys: Iterable[str]) -> None:
        """Drop some cached values (a rule's constants broadcast over 10^5 flow rows, once the rule is judged)."""
        for key in keys:
            self._cache.pop(key, None)

    def release(self) -> None:
        """Forget what was computed for this context (it is recomputed on demand): for a context kept beyond its
        use, such as the flow rows a diagnosis keeps for `explain`."""
        self._cache.clear()
        for value in self.extra.values():
            if isinstance(value, Releasable):
                value.release()

    # ---- frame geometry ------------------------------------------------------------------------------------------
    def geometry(self):
        """Where each frame and its main transport header lie (diagnose.fields.geometry.Geometry), found in one pass
        over the table; None when the table is not a packet table."""
        got = self._cache.get("@geometry", _MISSING)
        if got is _MISSING:
            from diagnose.fields.geometry import compute_geometry
            got = self._cache["@geometry"] = compute_geometry(self.table, self.buf.shape[0])
        return got

    @property
    def frame_start(self) -> np.ndarray:
        geometry = self.geometry()
        if geometry is not None:
            return geometry.frame_start
        return self.cached("@frame_start", lambda: self.table["data"].astype(np.int64))

    @property
    def frame_end(self) -> np.ndarray:
        """Absolute end of the captured bytes of each frame (never past the buffer)."""
        geometry = self.geometry()
        if geometry is not None:
            return geometry.frame_end

        def compute():
            end = self.frame_start + self.table["caplen"]  # int32 widens in the addition
            return np.minimum(end, self.buf.shape[0])
        return self.cached("@frame_end", compute)

    def column(self, name: str) -> np.ndarray:
        return self.table[name]

    # ---- reading the frame bytes, vectorised ---------------------------------------------------------------------
    def read_be(self, offsets: np.ndarray, size: int, valid: np.ndarray, *, limit: np.ndarray | None = None):
        """Big-endian unsigned integers of `size` bytes at absolute `offsets` (int64 array).

        Returns (values int64, ok): ok is `valid` and the bytes lie within the captured frame (or `limit`)."""
        end = self.frame_end if limit is None else limit
        ok = valid & (offsets >= 0) & (offsets + size <= end)
        pos = np.where(ok, offsets, 0)
        buf = self.buf
        value = np.zeros(self.n, np.int64)
        for k in range(size):
            value = (value << 8) | buf[pos + k].astype(np.int64)
        return np.where(ok, value, 0), ok

    def read_u64(self, offsets: np.ndarray, valid: np.ndarray):
        """Eight bytes as a big-endian uint64 (half an IPv6 address)."""
        ok = valid & (offsets >= 0) & (offsets + 8 <= self.frame_end)
        pos = np.where(ok, offsets, 0)
        value = np.zeros(self.n, np.uint64)
        for k in range(8):
            value = (value << np.uint64(8)) | self.buf[pos + k].astype(np.uint64)
        return np.where(ok, value, np.uint64(0)), ok


def iter_contexts(chunks: Iterable, *, file_big_endian: bool = False,
                  capture_format: str | None = None) -> Iterator[ChunkContext]:
    """ChunkContexts for successive chunks (anything with .buf and .table), carrying the capture-wide times."""
    first_ts = None
    prev_ts = None
    for chunk in chunks:
        table = chunk.table
        if not table.shape[0]:
            continue
        if first_ts is None:
            first_ts = int(table["ts"][0])
        ctx = ChunkContext(chunk.buf, table, first_ts=first_ts, prev_ts=prev_ts, file_big_endian=file_big_endian,
                           capture_format=capture_format)
        prev_ts = int(table["ts"][-1])
        yield ctx
