"""The intermediate form of a compiled capture filter: predicates over the frame bytes, as libpcap's code generator
sees them.

Values are unsigned 32-bit, as in the BPF machine. Every load names its byte offset from the start of the frame; an
offset may depend on the packet (the IPv4 header length, a value loaded earlier). A load past the captured bytes, or
a division by zero, makes the whole filter reject the packet: that is how the BPF machine behaves, so the evaluator
and the bytecode both treat it as a third truth value, "abort", that survives negation.

Both back ends consume this form: bpf_eval (vectorised numpy over a chunk) and bpf_bytecode (classic BPF).
"""

from __future__ import annotations

from dataclasses import dataclass

MASK32 = 0xFFFFFFFF


class Value:
    """An unsigned 32-bit value computed from a packet."""


@dataclass(frozen=True)
class Const(Value):
    value: int


@dataclass(frozen=True)
class PacketLength(Value):
    """The length of the packet on the wire (`len`)."""


@dataclass(frozen=True)
class Load(Value):
    """`size` (1, 2 or 4) big-endian bytes at `offset` from the start of the frame."""

    offset: Value
    size: int


@dataclass(frozen=True)
class IpHeaderLength(Value):
    """4 * (byte at `offset` & 0x0f): the IPv4 header length, BPF's `ldxb 4*([k]&0xf)`."""

    offset: int


@dataclass(frozen=True)
class BinOp(Value):
    op: str  # + - * / % & | ^ << >>
    left: Value
    right: Value


@dataclass(frozen=True)
class Neg(Value):
    operand: Value


class Pred:
    """A test on a packet: true, false or abort."""


@dataclass(frozen=True)
class Bool(Pred):
    value: bool


TRUE = Bool(True)
FALSE = Bool(False)


@dataclass(frozen=True)
class Test(Pred):
    """left OP right, unsigned; OP is eq, gt, ge, or set ((left & right) != 0)."""

    op: str
    left: Value
    right: Value


@dataclass(frozen=True)
class ProtoChain(Pred):
    """`protochain`: follow IPv6 extension headers (and AH) from the network header at `nl` until a protocol that is
    not one; true when it is `proto`. `version` 4 starts from the IPv4 protocol byte, 6 from the IPv6 next header.
    Followed for at most MAX_CHAIN headers (libpcap loops until the packet ends)."""

    version: int
    proto: int
    nl: int


MAX_CHAIN = 10
CHAINED = (0, 60, 43, 44)  # hop-by-hop, destination options, routing, fragment: (length + 1) * 8 bytes
IPPROTO_AH, IPPROTO_NONE = 51, 59


@dataclass(frozen=True)
class And(Pred):
    left: Pred
    right: Pred


@dataclass(frozen=True)
class Or(Pred):
    left: Pred
    right: Pred


@dataclass(frozen=True)
class Not(Pred):
    operand: Pred


# ---- constructors that fold what is certain (left-to-right short-circuit keeps abort semantics) ----------------


def and_(left: Pred, right: Pred) -> Pred:
    if left == TRUE:
        return right
    if right == TRUE or left == FALSE:
        return left
    return And(left, right)


def or_(left: Pred, right: Pred) -> Pred:
    if left == FALSE:
        return right
    if right == FALSE or left == TRUE:
        return left
    return Or(left, right)


def not_(operand: Pred) -> Pred:
    if isinstance(operand, Bool):
        return Bool(not operand.value)
    if isinstance(operand, Not):
        return operand.operand
    return Not(operand)


def all_of(*preds: Pred) -> Pred:
    out = TRUE
    for p in preds:
        out = and_(out, p)
    return out


def any_of(*preds: Pred) -> Pred:
    out = FALSE
    for p in preds:
        out = or_(out, p)
    return out


def load(offset: int | Value, size: int) -> Load:
    return Load(Const(offset) if isinstance(offset, int) else offset, size)


def eq(value: Value, constant: int) -> Test:
    return Test("eq", value, Const(constant & MASK32))


def masked_eq(value: Value, mask: int, constant: int) -> Pred:
    if mask == MASK32:
        return eq(value, constant)
    return Test("eq", BinOp("&", value, Const(mask)), Const(constant & mask))


def bits_set(value: Value, mask: int) -> Test:
    return Test("set", value, Const(mask))


def fold(op: str, left: int, right: int) -> int:
    """Constant arithmetic, as the BPF machine does it (callers rule out division by zero)."""
    if op == "+":
        return (left + right) & MASK32
    if op == "-":
        return (left - right) & MASK32
    if op == "*":
        return (left * right) & MASK32
    if op == "/":
        return left // right
    if op == "%":
        return left % right
    if op == "&":
        return left & right
    if op == "|":
        return left | right
    if op == "^":
        return left ^ right
    if op == "<<":
        return (left << right) & MASK32 if right < 32 else 0
    if op == ">>":
        return left >> right if right < 32 else 0
    raise ValueError(op)


def compare(op: str, left: int, right: int) -> bool:
    if op == "eq":
        return left == right
    if op == "gt":
        return left > right
    if op == "ge":
        return left >= right
    if op == "set":
        return (left & right) != 0
    raise ValueError(op)
