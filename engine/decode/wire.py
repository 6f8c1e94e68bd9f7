"""Reading integers out of the chunk buffer at absolute positions.

Kernels run with bounds checking off, so every caller checks `position + size <= end` before reading. Results are
int64 (uint64 for 48/64-bit values) so arithmetic never mixes signed and unsigned types (numba would turn that into
floating point).
"""

from __future__ import annotations

import numpy as np

from ..jit import kernel


@kernel
def be16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@kernel
def le16(buf, p):
    return (np.int64(buf[p + 1]) << 8) | np.int64(buf[p])


@kernel
def be32(buf, p):
    return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])


@kernel
def le32(buf, p):
    return (np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 1]) << 8) | np.int64(buf[p])


@kernel
def be48(buf, p):
    """A MAC address as the low 48 bits of a uint64."""
    v = np.uint64(0)
    for k in range(6):
        v = (v << np.uint64(8)) | np.uint64(buf[p + k])
    return v


@kernel
def be64(buf, p):
    """Eight bytes as a big-endian uint64 (one half of an IPv6 address)."""
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(buf[p + k])
    return v
