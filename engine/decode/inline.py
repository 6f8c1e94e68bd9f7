"""Decorator for the per-layer helpers of the decode kernels: compiled into their caller (numba IR inlining).

A call between separately compiled numba functions goes through numba's calling convention, which takes and drops a
reference on every array argument (an atomic operation) and checks an error status; with a dozen layer calls per
packet that doubled the decode time. The entry kernels stay `@kernel` (cached); inlined helpers are cached as part
of them.
"""

from __future__ import annotations

import numba

from .. import jit  # noqa: F401  (sets the numba cache directory before anything is compiled)

inline = numba.njit(inline="always", nogil=True, boundscheck=False)
