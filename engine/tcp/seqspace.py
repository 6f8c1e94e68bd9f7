"""32-bit TCP sequence-number arithmetic for the analysis kernels.

Sequence numbers are held as int64 values in [0, 2**32) so numba never mixes signed and unsigned types (which it
would widen to float). Sums wrap modulo 2**32; comparisons are made on the signed 32-bit difference, as TCP does
(RFC 9293 §3.4), so 0x00000010 is "after" 0xfffffff0.
"""

from __future__ import annotations

import numba

from diagnose import jit  # noqa: F401  (chooses the numba cache directory before anything compiles)

# compiled into the calling kernel: these are called several times per packet
inline = numba.njit(inline="always", nogil=True, boundscheck=False)

MASK32 = 0xFFFFFFFF


@inline
def wrap(x):
    """x modulo 2**32."""
    return x & MASK32


@inline
def diff(a, b):
    """a - b as a signed 32-bit number."""
    d = (a - b) & MASK32
    if d >= 0x80000000:
        d -= 0x100000000
    return d


@inline
def seq_gt(a, b):
    return diff(b, a) < 0


@inline
def seq_lt(a, b):
    return diff(a, b) < 0


@inline
def seq_le(a, b):
    return diff(a, b) <= 0
