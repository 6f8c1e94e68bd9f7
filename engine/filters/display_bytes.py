"""Byte-string values of a chunk, in any of their three shapes, and the operations filters need on them.

Shapes: ByteRanges (slices of the chunk buffer: protocols, payloads), a 2-D uint8 array (fixed-width fields turned
into bytes: eth.src[0:3], ip.src[0:2]) and a 1-D object array of bytes (application-layer values). Equality and
`contains` on buffer slices run vectorised or in a small kernel; rarer operations convert to Python bytes for the
rows that need them.
"""

from __future__ import annotations

import numpy as np

from diagnose.fields.values import ByteRanges
from diagnose.filters.display_ast import SliceRange
from diagnose.jit import kernel


@kernel
def _contains_kernel(buf, start, length, present, needle, out):
    m = needle.shape[0]
    for i in range(start.shape[0]):
        if not present[i]:
            continue
        s = start[i]
        last = s + length[i] - m
        p = s
        while p <= last:
            k = 0
            while k < m and buf[p + k] == needle[k]:
                k += 1
            if k == m:
                out[i] = True
                break
            p += 1


def length(values) -> np.ndarray:
    if isinstance(values, ByteRanges):
        return values.length
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return np.full(values.shape[0], values.shape[1], np.int64)
    return np.fromiter((0 if v is None else len(v) for v in values), np.int64, len(values))


def to_objects(values, present: np.ndarray) -> np.ndarray:
    if isinstance(values, ByteRanges):
        return values.to_objects(present)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        out = np.empty(values.shape[0], dtype=object)
        for i in np.nonzero(present)[0]:
            out[i] = values[i].tobytes()
        return out
    return values


def equals(values, constant: bytes, present: np.ndarray) -> np.ndarray:
    m = len(constant)
    if isinstance(values, ByteRanges):
        ok = present & (values.length == m)
        for k, byte in enumerate(constant):
            ok &= values.buf[np.where(ok, values.start + k, 0)] == byte
        return ok
    if isinstance(values, np.ndarray) and values.ndim == 2:
        if values.shape[1] != m:
            return np.zeros(values.shape[0], bool)
        return present & (values == np.frombuffer(constant, np.uint8)).all(axis=1)
    return present & np.fromiter((v == constant for v in values), bool, len(values))


def contains(values, needle: bytes, present: np.ndarray) -> np.ndarray:
    if isinstance(values, ByteRanges):
        values = values.searchable()
        out = np.zeros(len(values), bool)
        if len(needle) == 0:
            return present.copy()
        _contains_kernel(values.buf, values.start, values.length, present, np.frombuffer(needle, np.uint8), out)
        return out
    objects = to_objects(values, present)
    return present & np.fromiter((v is not None and needle in v for v in objects), bool, len(objects))


def compare_objects(values, present: np.ndarray, constant: bytes, op) -> np.ndarray:
    objects = to_objects(values, present)
    return present & np.fromiter((v is not None and op(v, constant) for v in objects), bool, len(objects))


def bitwise_and(values, mask: bytes, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values & mask, byte by byte, for the values as long as the mask (Wireshark requires equal lengths)."""
    m = len(mask)
    ok = present & (length(values) == m)
    out = np.zeros((ok.shape[0], m), np.uint8)
    if isinstance(values, ByteRanges):
        for k in range(m):
            out[:, k] = values.buf[np.where(ok, values.start + k, 0)]
    elif isinstance(values, np.ndarray) and values.ndim == 2:
        if values.shape[1] == m:
            out[:] = values
    else:
        for i in np.nonzero(ok)[0]:
            out[i] = np.frombuffer(values[i], np.uint8)
    out &= np.frombuffer(mask, np.uint8)
    out[~ok] = 0
    return out, ok


def from_integers(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width big-endian bytes of integer values (an address as its wire bytes), one row per packet."""
    values = values.astype(np.uint64)
    out = np.empty((values.shape[0], width), np.uint8)
    for k in range(width):
        out[:, k] = (values >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)
    return out


def from_ipv6(values: np.ndarray) -> np.ndarray:
    return np.concatenate([from_integers(values[:, 0], 8), from_integers(values[:, 1], 8)], axis=1)


def _bounds(item: SliceRange, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) of a slice range per row; rows where it does not fit get stop < start."""
    first = np.where(item.first < 0, size + item.first, item.first)
    if item.length is not None:
        stop = first + item.length
    elif item.last is not None:
        stop = np.where(item.last < 0, size + item.last, item.last) + 1
    else:
        stop = size
    ok = (first >= 0) & (stop <= size) & (stop > first)
    return first, np.where(ok, stop, -1)


def slice_bytes(values, ranges: tuple[SliceRange, ...], present: np.ndarray):
    """The sliced values and where the slice exists (Wireshark: a slice past the end does not exist)."""
    size = length(values)
    if len(ranges) == 1:
        first, stop = _bounds(ranges[0], size)
        ok = present & (stop > first)
        if isinstance(values, ByteRanges):
            return ByteRanges(values.buf, values.start + np.where(ok, first, 0), np.where(ok, stop - first, 0)), ok
        item = ranges[0]
        if isinstance(values, np.ndarray) and values.ndim == 2 and item.first >= 0 and \
                (item.last is None or item.last >= 0):
            width = values.shape[1]
            lo = item.first
            hi = lo + item.length if item.length is not None else (item.last + 1 if item.last is not None else width)
            if hi <= width:
                return values[:, lo:hi], present
            return values[:, :0], np.zeros_like(present)
    # several ranges (concatenated) or odd shapes: Python bytes for the rows present
    objects = to_objects(values, present)
    out = np.empty(len(objects), dtype=object)
    ok = present.copy()
    for i in np.nonzero(present)[0]:
        data = objects[i]
        pieces = []
        for item in ranges:
            first, stop = _bounds(item, np.array([len(data)]))
            if stop[0] <= first[0]:
                ok[i] = False
                break
            pieces.append(data[int(first[0]):int(stop[0])])
        else:
            out[i] = b"".join(pieces)
    return out, ok
