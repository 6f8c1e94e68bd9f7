"""Per-key accumulators fed chunk by chunk: how packet facts become per-flow (or per-group, per-capture) numbers.

A key is a small integer: the conversation index for flow rules, a group id for packet rules, 0 for the capture.
Every accumulator takes the chunk's keys and a boolean mask of the rows it should fold, with numpy operations over
the chunk (no Python loop per packet); the few loops left run once per key that has a match in the chunk.
"""

from __future__ import annotations

import numpy as np

from diagnose.fields import FieldType


def _grow(array: np.ndarray, need: int, fill) -> np.ndarray:
    if need <= len(array):
        return array
    size = max(need, 2 * len(array), 64)
    # zeros: pages the counts never reach are not even touched (np.full writes every page: 57 ms for 16 MB here)
    grown = np.zeros(size, array.dtype) if fill == 0 else np.full(size, fill, array.dtype)
    grown[: len(array)] = array
    return grown


class KeyedCount:
    def __init__(self, dtype=np.int64):
        self.counts = np.zeros(64, dtype)

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        top = int(keys.max()) + 1
        self.counts = _grow(self.counts, top, 0)
        self.counts[:top] += np.bincount(keys, minlength=top)

    def values(self, n: int) -> np.ndarray:
        return _grow(self.counts, n, 0)[:n].copy()

    def reserve(self, n: int) -> np.ndarray:
        """The counts array, grown (by doubling) to hold keys below n: add to it in place."""
        self.counts = _grow(self.counts, n, 0)
        return self.counts


class KeyedSpan:
    """First and last time per key (the time span of a packet group)."""

    def __init__(self):
        self.first = np.full(64, np.iinfo(np.int64).max, np.int64)
        self.last = np.full(64, np.iinfo(np.int64).min, np.int64)

    def add(self, keys: np.ndarray, ts: np.ndarray) -> None:
        if not len(keys):
            return
        top = int(keys.max()) + 1
        self.first = _grow(self.first, top, np.iinfo(np.int64).max)
        self.last = _grow(self.last, top, np.iinfo(np.int64).min)
        np.minimum.at(self.first, keys, ts)
        np.maximum.at(self.last, keys, ts)


class KeyedFrames:
    """The first `limit` frame numbers per key, plus the total count (evidence). The kept (key, frame) pairs are
    appended as arrays chunk by chunk, merged into one pair of arrays every few dozen chunks (each small numpy array
    costs ~100 bytes besides its data) and indexed by key on first read: a busy capture has evidence for tens of
    thousands of flows, and a Python list per key held ~5x the memory.

    Counts are int32 per key, updated with np.add.at: one-byte saturating counts saved ~4 MB over 22 collections
    but needed a sort of the chunk's keys per call (np.unique), ~0.1 s of the 1M-packet diagnosis."""

    MERGE_EVERY = 32  # parts appended before they are merged

    def __init__(self, limit: int):
        self.limit = limit
        self.counts = KeyedCount(np.int32)  # one per flow and evidence filter (2**31 matches per flow)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._keys: np.ndarray | None = None  # all kept pairs sorted by key (frames in arrival order within a key)
        self._frames: np.ndarray | None = None

    def add(self, keys: np.ndarray, frames: np.ndarray) -> None:
        """Work in proportion to the rows given, not to the number of keys (a busy capture has ~10^5 flows and a
        chunk's evidence touches a few hundred). Kept pairs stay in arrival order: `get` sorts them by key once,
        stably, so a key's frames stay in arrival order."""
        self._add(keys, frames, self.limit)

    def _add(self, keys: np.ndarray, frames: np.ndarray, limit) -> None:
        """add(), with `limit` a number or an array giving each pair's limit."""
        if not len(keys):
            return
        keys = keys.astype(np.int64, copy=False)
        counts = self.counts.reserve(int(keys.max()) + 1)
        before = counts[keys]
        np.add.at(counts, keys, np.ones(len(keys), counts.dtype))  # a scalar 1 takes a casting path: ~15x slower
        room = before < limit
        if not room.any():
            return
        if not (counts[keys[room]] <= (limit if np.ndim(limit) == 0 else limit[room])).all():
            # some key fills up within this chunk: keep its first
            order = np.argsort(keys, kind="stable")
            ordered = keys[order]
            new_key = np.empty(len(keys), bool)
            new_key[0] = True
            np.not_equal(ordered[1:], ordered[:-1], out=new_key[1:])
            starts = np.flatnonzero(new_key)
            rank = np.empty(len(keys), np.int64)
            rank[order] = np.arange(len(keys)) - np.repeat(starts, np.diff(np.append(starts, len(keys))))
            room = before + rank < limit
        kept = frames[room]
        small = len(kept) and int(kept.max()) < 2**31 and int(kept.min()) >= -2**31
        kept_keys = keys[room]
        self._parts.append((kept_keys.astype(np.int32) if int(keys.max()) < 2**31 else kept_keys,
                            kept.astype(np.int32 if small else np.int64)))
        if len(self._parts) >= self.MERGE_EVERY:
            self._parts = [_concatenate(self._parts)]
        self._keys = None

    def total(self, key: int) -> int:
        """Matches of a key so far."""
        counts = self.counts.counts
        return int(counts[key]) if 0 <= key < len(counts) else 0

    def _sorted(self) -> None:
        if self._keys is None:
            keys, frames = _concatenate(self._parts)
            self._parts = []  # the parts' arrays go before the sorted copies are made
            order = np.argsort(keys, kind="stable")
            self._keys, self._frames = keys[order], frames[order]
            self._parts = [(self._keys, self._frames)]

    def get_many(self, wanted) -> list[tuple[list[int], int]]:
        """get() of many keys: one search for all (thousands of flagged flows read their evidence)."""
        self._sorted()
        wanted = np.asarray(wanted, np.int64)
        if not len(wanted):
            return []
        keys = self._keys.astype(np.int64) if int(wanted.max()) + 1 > np.iinfo(self._keys.dtype).max else self._keys
        bounds = np.concatenate([wanted, wanted + 1]).astype(keys.dtype)
        found = keys.searchsorted(bounds)
        counts = self.counts.counts
        inside = (wanted >= 0) & (wanted < len(counts))
        totals = np.where(inside, counts[np.where(inside, wanted, 0)], 0).tolist()
        frames = self._frames
        n = len(wanted)
        return [(frames[lo:hi].tolist(), total)
                for lo, hi, total in zip(found[:n].tolist(), found[n:].tolist(), totals)]

    def get(self, key: int) -> tuple[list[int], int]:
        self._sorted()
        keys = self._keys
        if key + 1 > np.iinfo(keys.dtype).max:
            keys = keys.astype(np.int64)
        # bounds in the keys' own dtype: a list of Python ints would have searchsorted cast the whole array per call
        lo, hi = keys.searchsorted(np.array([key, key + 1], keys.dtype))
        return self._frames[lo:hi].tolist(), self.total(key)


class EvidenceFrames:
    """Several evidence collections (KeyedFrames) kept together and fed with one call per chunk: the 22 evidence
    filters of the rule library each took a KeyedFrames.add per chunk (~4,900 calls on 1M packets, each a dozen
    numpy calls on a few rows). Collection c's key k is slot k * width + c of one KeyedFrames, so a key's slots
    are next to each other and the counts grow at the end only."""

    def __init__(self, limits: list[int]):
        self.width = len(limits)
        self.limits = np.asarray(limits, np.int64)
        self.frames = KeyedFrames(max(limits, default=0))
        self._one_limit = len(set(limits)) <= 1

    def add(self, which: np.ndarray, keys: np.ndarray, frames: np.ndarray) -> None:
        """Pairs (key, frame) of collection `which` (per pair), in arrival order within each collection."""
        if not len(keys):
            return
        slots = keys.astype(np.int64) * self.width + which
        limit = self.frames.limit if self._one_limit else self.limits[which]
        self.frames._add(slots, frames, limit)

    def collection(self, which: int) -> "EvidenceCollection":
        return EvidenceCollection(self, which)


class EvidenceCollection:
    """One collection of an EvidenceFrames, read like a KeyedFrames."""

    def __init__(self, owner: EvidenceFrames, which: int):
        self.owner = owner
        self.which = which

    def total(self, key: int) -> int:
        return self.owner.frames.total(key * self.owner.width + self.which) if key >= 0 else 0

    def get(self, key: int) -> tuple[list[int], int]:
        if key < 0:
            return [], 0
        return self.owner.frames.get(key * self.owner.width + self.which)

    def get_many(self, keys) -> list[tuple[list[int], int]]:
        keys = np.asarray(keys, np.int64)
        got = self.owner.frames.get_many(np.where(keys >= 0, keys, 0) * self.owner.width + self.which)
        return [item if key >= 0 else ([], 0) for item, key in zip(got, keys.tolist())]


def _concatenate(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([k for k, _ in parts]), np.concatenate([f for _, f in parts])


class KeyedStats:
    """sum / min / max / mean / first / last of a numeric value per key."""

    def __init__(self):
        self.sum = np.zeros(64, np.float64)
        self.n = np.zeros(64, np.int64)
        self.min = np.full(64, np.inf)
        self.max = np.full(64, -np.inf)
        self.first = np.full(64, np.nan)
        self.last = np.full(64, np.nan)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if not len(keys):
            return
        top = int(keys.max()) + 1
        for name, fill in (("sum", 0.0), ("min", np.inf), ("max", -np.inf), ("first", np.nan), ("last", np.nan)):
            setattr(self, name, _grow(getattr(self, name), top, fill))
        self.n = _grow(self.n, top, 0)
        v = values.astype(np.float64)
        np.add.at(self.sum, keys, v)
        np.add.at(self.n, keys, 1)
        np.minimum.at(self.min, keys, v)
        np.maximum.at(self.max, keys, v)
        uniq, first_at = np.unique(keys, return_index=True)
        unset = np.isnan(self.first[uniq])
        self.first[uniq[unset]] = v[first_at[unset]]
        rev_uniq, rev_at = np.unique(keys[::-1], return_index=True)
        self.last[rev_uniq] = v[len(v) - 1 - rev_at]

    def result(self, function: str, n: int) -> np.ndarray:
        """Per key, NaN where the key had no value."""
        count = _grow(self.n, n, 0)[:n]
        if function == "mean":
            s = _grow(self.sum, n, 0.0)[:n]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, s / np.maximum(count, 1), np.nan)
        fill = {"sum": 0.0, "min": np.inf, "max": -np.inf, "first": np.nan, "last": np.nan}[function]
        values = _grow(getattr(self, function), n, fill)[:n].copy()
        if function == "sum":
            return values
        return np.where(count > 0, values, np.nan)


class KeyedFirstLast:
    """First and last value per key, kept as Python values (addresses, strings: what a message shows)."""

    def __init__(self, convert):
        self.convert = convert  # numpy value -> Python value
        self.first: dict[int, object] = {}
        self.last: dict[int, object] = {}

    def add(self, keys: np.ndarray, values) -> None:
        if not len(keys):
            return
        uniq, first_at = np.unique(keys, return_index=True)
        rev_uniq, rev_at = np.unique(keys[::-1], return_index=True)
        items = _as_python(values)
        for key, at in zip(uniq.tolist(), first_at.tolist()):
            if key not in self.first:
                self.first[key] = self.convert(items[at])
        for key, at in zip(rev_uniq.tolist(), rev_at.tolist()):
            self.last[key] = self.convert(items[len(items) - 1 - at])

    def result(self, function: str, n: int) -> np.ndarray:
        source = self.first if function == "first" else self.last
        out = np.empty(n, object)
        for key, value in source.items():
            if key < n:
                out[key] = value
        return out


class KeyedDistinct:
    """Distinct values per key (sets, fed only from matching rows)."""

    def __init__(self):
        self.sets: dict[int, set] = {}

    def add(self, keys: np.ndarray, values) -> None:
        if not len(keys):
            return
        for key, value in zip(keys.tolist(), _as_python(values)):
            self.sets.setdefault(key, set()).add(value)

    def result(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.int64)
        for key, values in self.sets.items():
            if key < n:
                out[key] = len(values)
        return out


class KeyedPeak:
    """The most matches per key within one time window (windows of `window_ns` from the capture start)."""

    def __init__(self, window_ns: int):
        self.window_ns = window_ns
        self.counts: dict[tuple[int, int], int] = {}

    def add(self, keys: np.ndarray, ts: np.ndarray, origin: int) -> None:
        if not len(keys):
            return
        windows = (ts - origin) // self.window_ns
        pairs = np.stack([keys.astype(np.int64), windows.astype(np.int64)], axis=1)
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        for (key, window), count in zip(uniq.tolist(), counts.tolist()):
            self.counts[(key, window)] = self.counts.get((key, window), 0) + count

    def result(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.int64)
        for (key, _window), count in self.counts.items():
            if key < n and count > out[key]:
                out[key] = count
        return out


def _as_python(values) -> list:
    if isinstance(values, np.ndarray) and values.ndim == 2:  # IPv6 halves
        return [tuple(row) for row in values.tolist()]
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values)


def first_values(occurrences, ftype: FieldType):
    """(values, present) of the first present occurrence of a field per row."""
    if not occurrences:
        return None, None
    values = occurrences[0].values
    present = occurrences[0].present.copy()
    if len(occurrences) == 1:
        return values, present
    values = values.copy() if isinstance(values, np.ndarray) else values
    for occ in occurrences[1:]:
        take = occ.present & ~present
        if take.any() and isinstance(values, np.ndarray):
            values[take] = occ.values[take]
        present |= occ.present
    return values, present
