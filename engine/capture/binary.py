"""Little/big-endian integer reads from a uint8 buffer, usable inside numba kernels."""

from __future__ import annotations

import numpy as np

from diagnose.jit import kernel


@kernel
def u16(b, i, swapped):
    if swapped:
        return (np.uint32(b[i]) << 8) | np.uint32(b[i + 1])
    return np.uint32(b[i]) | (np.uint32(b[i + 1]) << 8)


@kernel
def u32(b, i, swapped):
    if swapped:
        return (np.uint32(b[i]) << 24) | (np.uint32(b[i + 1]) << 16) | (np.uint32(b[i + 2]) << 8) | np.uint32(b[i + 3])
    return np.uint32(b[i]) | (np.uint32(b[i + 1]) << 8) | (np.uint32(b[i + 2]) << 16) | (np.uint32(b[i + 3]) << 24)
