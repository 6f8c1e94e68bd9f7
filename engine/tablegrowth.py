"""Growing the per-flow state tables (structured arrays indexed by conversation or stream) as a capture is read.

    table = grown(table, need)        # at least `need` rows, twice the old length, the old rows copied

Doubling with np.zeros: the pages of rows not yet written stay unmapped (not resident), so the spare capacity
costs no memory and little is copied in all. The old rows are copied as raw bytes: numpy copies a structured
array field by field otherwise, which is several times slower on the wide state dtypes.
"""

from __future__ import annotations

import numpy as np


def grown(table: np.ndarray, need: int, minimum: int = 16) -> np.ndarray:
    """A zeroed table (same dtype, same trailing dimensions) of max(need, 2 * len(table), minimum) rows holding
    table's rows first."""
    rows = max(need, 2 * len(table), minimum)
    out = np.zeros((rows, *table.shape[1:]), table.dtype)
    copy_rows(out, table)
    return out


def copy_rows(dest: np.ndarray, source: np.ndarray) -> None:
    """dest[:len(source)] = source for C-contiguous tables of one dtype, copied as bytes."""
    if not source.nbytes:
        return
    source = np.ascontiguousarray(source)
    dest.reshape(-1).view(np.uint8)[: source.nbytes] = source.reshape(-1).view(np.uint8)
