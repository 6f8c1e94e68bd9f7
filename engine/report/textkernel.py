"""Writing fixed-width text rows in a kernel: large tables (hundreds of thousands of rows) print in milliseconds.

Python prepares the distinct strings once (addresses, protocol names) as a byte matrix; kernels copy them and
render integers digit by digit into a byte buffer.
"""

from __future__ import annotations

import numpy as np

from diagnose.jit import kernel


def string_table(strings: list[str], errors: str = "strict") -> tuple[np.ndarray, np.ndarray]:
    """(bytes matrix, lengths) holding each string's UTF-8 in a row (`errors` as for str.encode)."""
    encoded = [s.encode("utf-8", errors) for s in strings]
    width = max((len(e) for e in encoded), default=1) or 1
    table = np.zeros((max(len(encoded), 1), width), np.uint8)
    lengths = np.zeros(max(len(encoded), 1), np.int64)
    for i, e in enumerate(encoded):
        table[i, : len(e)] = np.frombuffer(e, np.uint8)
        lengths[i] = len(e)
    return table, lengths


@kernel
def digits(value):
    n = 1
    v = value if value >= 0 else -value
    while v >= 10:
        v //= 10
        n += 1
    return n + (1 if value < 0 else 0)


@kernel
def put_int(out, pos, value):
    """Write value in decimal at pos; returns the position after it."""
    n = digits(value)
    v = value
    if v < 0:
        out[pos] = 45  # '-'
        v = -v
    end = pos + n
    k = end - 1
    while True:
        out[k] = 48 + v % 10
        v //= 10
        k -= 1
        if v == 0:
            break
    return end


@kernel
def put_fixed6(out, pos, micros):
    """Write a duration given in microseconds as seconds with 6 decimals (e.g. 12.000340)."""
    pos = put_int(out, pos, micros // 1_000_000)
    out[pos] = 46  # '.'
    frac = micros % 1_000_000
    for k in range(6):
        out[pos + 6 - k] = 48 + frac % 10
        frac //= 10
    return pos + 7


@kernel
def fixed6_len(micros):
    return digits(micros // 1_000_000) + 7


@kernel
def put_bytes(out, pos, table, row, length):
    for k in range(length):
        out[pos + k] = table[row, k]
    return pos + length


@kernel
def pad(out, pos, count):
    for k in range(count):
        out[pos + k] = 32
    return pos + max(count, 0)
