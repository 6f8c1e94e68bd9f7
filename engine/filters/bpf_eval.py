"""Evaluate a compiled capture filter (bpf_ir) over a whole chunk at once with numpy.

Each load is one gather from the chunk buffer for every row; each test one vectorised comparison. Results carry two
masks, `true` and `abort` (never both): a load past the captured bytes or a division by zero aborts, and an abort
rejects the packet whatever `not`, `and` and `or` around it say, exactly as in the BPF machine, because `and`/`or`
evaluate left to right and stop early like the program's jumps do.
"""

from __future__ import annotations

import numpy as np

from diagnose.filters import bpf_ir as ir

MASK32 = np.uint64(0xFFFFFFFF)


class _Rows:
    """The rows being evaluated: frame start, captured and wire lengths, and the chunk buffer."""

    def __init__(self, buf: np.ndarray, table: np.ndarray):
        self.buf = buf
        self.start = table["data"].astype(np.int64)
        self.caplen = table["caplen"].astype(np.int64)
        # never read past the buffer, whatever the table claims
        self.caplen = np.minimum(self.caplen, np.maximum(buf.shape[0] - self.start, 0))
        self.wirelen = table["wirelen"].astype(np.uint64)
        self.n = table.shape[0]
        self.values: dict[ir.Value, tuple[np.ndarray, np.ndarray]] = {}


def evaluate(pred: ir.Pred, buf: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of `table` that the filter accepts."""
    rows = _Rows(buf, table)
    true, _abort = _pred(pred, rows)
    return true


def _pred(p: ir.Pred, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(p, ir.Bool):
        return np.full(rows.n, p.value), np.zeros(rows.n, bool)
    if isinstance(p, ir.Test):
        a, abort_a = _value(p.left, rows)
        b, abort_b = _value(p.right, rows)
        abort = abort_a | abort_b
        if p.op == "eq":
            result = a == b
        elif p.op == "gt":
            result = a > b
        elif p.op == "ge":
            result = a >= b
        else:
            result = (a & b) != 0
        return result & ~abort, abort
    if isinstance(p, ir.ProtoChain):
        return _protochain(p, rows)
    if isinstance(p, ir.Not):
        true, abort = _pred(p.operand, rows)
        return ~true & ~abort, abort
    if isinstance(p, ir.And):
        lt, la = _pred(p.left, rows)
        rt, ra = _pred(p.right, rows)
        return lt & rt, la | (lt & ra)
    if isinstance(p, ir.Or):
        lt, la = _pred(p.left, rows)
        rt, ra = _pred(p.right, rows)
        undecided = ~lt & ~la
        return lt | (undecided & rt), la | (undecided & ra)
    raise TypeError(p)


def _protochain(p: ir.ProtoChain, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """Walk extension headers for every row at once; rows drop out as they reach a protocol that is not chained."""
    n = rows.n
    zero = np.zeros(n, bool)
    if p.version == 4:
        nxt, abort = _gather(rows, np.full(n, p.nl + 9, np.uint64), 1, zero)
        offset, header_abort = _value(ir.IpHeaderLength(p.nl), rows)
        abort = abort | header_abort
    else:
        nxt, abort = _gather(rows, np.full(n, p.nl + 6, np.uint64), 1, zero)
        offset = np.full(n, 40, np.uint64)
    result = np.zeros(n, bool)
    walking = ~abort
    for _ in range(ir.MAX_CHAIN):
        found = walking & (nxt == p.proto)
        result |= found
        chained = walking & ~found & np.isin(nxt, ir.CHAINED)
        ah = walking & ~found & (nxt == ir.IPPROTO_AH)
        walking = chained | ah
        if not walking.any():
            break
        base = np.uint64(p.nl) + offset
        next_header, a1 = _gather(rows, base, 1, ~walking)
        length, a2 = _gather(rows, base + np.uint64(1), 1, ~walking)
        step = np.where(ah, (length + np.uint64(2)) * np.uint64(4), (length + np.uint64(1)) * np.uint64(8))
        abort = abort | (walking & (a1 | a2))
        walking &= ~(a1 | a2)
        nxt = np.where(walking, next_header, nxt)
        offset = np.where(walking, offset + step, offset)
    return result & ~abort, abort


def _value(v: ir.Value, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    cached = rows.values.get(v)
    if cached is None:
        cached = rows.values[v] = _compute(v, rows)
    return cached


def _compute(v: ir.Value, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    n = rows.n
    if isinstance(v, ir.Const):
        return np.full(n, v.value, np.uint64), np.zeros(n, bool)
    if isinstance(v, ir.PacketLength):
        return rows.wirelen & MASK32, np.zeros(n, bool)
    if isinstance(v, ir.Load):
        offset, abort = _value(v.offset, rows)
        return _gather(rows, offset, v.size, abort)
    if isinstance(v, ir.IpHeaderLength):
        byte, abort = _gather(rows, np.full(n, v.offset, np.uint64), 1, np.zeros(n, bool))
        return (byte & np.uint64(0x0F)) * np.uint64(4), abort
    if isinstance(v, ir.Neg):
        a, abort = _value(v.operand, rows)
        return (np.uint64(0) - a) & MASK32, abort
    if isinstance(v, ir.BinOp):
        a, abort_a = _value(v.left, rows)
        b, abort_b = _value(v.right, rows)
        abort = abort_a | abort_b
        op = v.op
        if op in ("/", "%"):
            zero = b == 0
            safe = np.where(zero, np.uint64(1), b)
            result = a // safe if op == "/" else a % safe
            return np.where(zero, np.uint64(0), result), abort | zero
        if op in ("<<", ">>"):
            big = b >= 32
            shift = np.where(big, np.uint64(0), b)
            result = (a << shift) & MASK32 if op == "<<" else a >> shift
            return np.where(big, np.uint64(0), result), abort
        result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "&": lambda: a & b,
                  "|": lambda: a | b, "^": lambda: a ^ b}[op]()
        return result & MASK32, abort
    raise TypeError(v)


def _gather(rows: _Rows, offset: np.ndarray, size: int, abort: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Big-endian `size`-byte loads at frame offsets; out of the captured bytes -> abort."""
    ok = ~abort & (offset + np.uint64(size) <= rows.caplen.astype(np.uint64))
    position = rows.start + np.where(ok, offset, 0).astype(np.int64)
    value = np.zeros(rows.n, np.uint64)
    buf = rows.buf
    for k in range(size):
        value = (value << np.uint64(8)) | buf[np.where(ok, position + k, 0)].astype(np.uint64)
    return np.where(ok, value, np.uint64(0)), ~ok
