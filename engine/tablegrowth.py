"""The per-flow state tables (structured arrays indexed by conversation or stream): reserved once, grown rarely.

    table = reserved(CONN_DTYPE)          # zeroed rows filling RESERVED_BYTES of address space
    table = grown(table, need)            # at least `need` rows, twice the old length, the old rows copied
    STATE_DTYPE = state_dtype([...])      # a row type whose fields are laid out without padding

Tables are anonymous memory maps: their pages are mapped (and count as memory) only once a row on them is written,
so a small capture pays nothing for the reserved rows, and a large one (up to ~100k conversations) never grows: a
growth holds the old and the new table at once (the process's peak) and copies every row. A table's pages go back
to the system as soon as it is dropped. Rows are copied as raw bytes: numpy copies structured arrays field by
field otherwise, several times slower on the wide state dtypes.
"""

from __future__ import annotations

import math
import mmap

import numpy as np

RESERVED_BYTES = 32 << 20  # address space each table takes up front (not memory until written)
_MAPPED_BYTES = 1 << 20  # smaller tables come from numpy's allocator


def state_dtype(fields: list[tuple]) -> np.dtype:
    """An aligned row dtype (numba reads aligned records fastest) with the fields laid out widest alignment first,
    so aligning wastes no padding; the source keeps the fields in the order that explains them. Per-flow tables
    hold ~10^5 rows: the padding of a logically ordered wide row came to ~60 bytes each."""
    def alignment(field: tuple) -> int:
        return np.dtype(field[1]).alignment

    return np.dtype(sorted(fields, key=alignment, reverse=True), align=True)  # sorted is stable: order kept within


def zeroed(rows: int, dtype: np.dtype, trailing: tuple[int, ...] = ()) -> np.ndarray:
    """A zeroed table of `rows` rows (each of shape `trailing`) whose pages are touched only when written."""
    dtype = np.dtype(dtype)
    shape = (rows, *trailing)
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes < _MAPPED_BYTES:
        return np.zeros(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype, math.prod(shape)).reshape(shape)


def reserved(dtype: np.dtype, trailing: tuple[int, ...] = (), minimum: int = 16) -> np.ndarray:
    """A zeroed table with as many rows as fit RESERVED_BYTES (at least `minimum`)."""
    row = np.dtype(dtype).itemsize * math.prod(trailing)
    return zeroed(max(RESERVED_BYTES // row, minimum), dtype, trailing)


def grown(table: np.ndarray, need: int, minimum: int = 16) -> np.ndarray:
    """A zeroed table (same dtype, same trailing dimensions) of max(need, 2 * len(table), minimum) rows holding
    table's rows first."""
    out = zeroed(max(need, 2 * len(table), minimum), table.dtype, table.shape[1:])
    copy_rows(out, table)
    return out


def copy_rows(dest: np.ndarray, source: np.ndarray) -> None:
    """dest[:len(source)] = source for C-contiguous tables of one dtype, copied as bytes."""
    if not source.nbytes:
        return
    source = np.ascontiguousarray(source)
    dest.reshape(-1).view(np.uint8)[: source.nbytes] = source.reshape(-1).view(np.uint8)
