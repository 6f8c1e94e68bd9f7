"""Typed syntax tree of a display filter, with the source span of every node.

The parser builds it from the lark tree; the type checker (display_compile) turns it into an evaluator. `start`/`end`
are 0-based character offsets into the filter text, so every error can put a caret under the right place.
Unquoted values stay `Word`s here: whether `tcp` or `10.0.0.1` is a field or a literal is the type checker's call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    start: int
    end: int


# ---- slices and layers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceRange(Node):
    """One range of a slice or layer selection: `[i:j]` (start, length), `[i-j]` (start, end inclusive), `[i]`,
    `[:j]`, `[i:]`. Negative numbers count from the end. At most one of `length` and `end` is set; neither means
    'to the end'."""

    first: int
    length: int | None = None
    last: int | None = None


# ---- values ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word(Node):
    """An unquoted token: a field or protocol name, or a literal (number, address, byte string, ...)."""

    text: str


@dataclass(frozen=True)
class Field(Node):
    """A name that must be a field: `@name` (raw bytes) or `name#layer`."""

    name: str
    raw: bool = False
    layers: tuple[SliceRange, ...] | None = None


@dataclass(frozen=True)
class StringLiteral(Node):
    value: bytes  # escapes already decoded; kept as bytes because "\xff" need not be valid UTF-8
    raw: bool = False


@dataclass(frozen=True)
class CharLiteral(Node):
    value: int


@dataclass(frozen=True)
class Slice(Node):
    operand: Node
    ranges: tuple[SliceRange, ...]


@dataclass(frozen=True)
class Call(Node):
    name: str
    name_end: int
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Arithmetic(Node):
    op: str  # + - * / % &
    left: Node
    right: Node


@dataclass(frozen=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True)
class FieldReference(Node):
    """`${field}`: the value in the packet selected in a GUI; meaningless for a capture file."""

    name: str


# ---- tests -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth(Node):
    """A value used as a test: a field exists, a slice exists, a number is non-zero, a function is true."""

    operand: Node


@dataclass(frozen=True)
class Compare(Node):
    op: str  # eq ne all_eq any_ne gt ge lt le
    left: Node
    right: Node
    quantifier: str | None = None  # 'any' | 'all' | None (the operator's own default)


@dataclass(frozen=True)
class Contains(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class Matches(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class SetRange(Node):
    low: Node
    high: Node


@dataclass(frozen=True)
class Member(Node):
    operand: Node
    items: tuple[Node, ...]  # values and SetRange
    negated: bool = False


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Logical(Node):
    op: str  # and | or | xor
    left: Node
    right: Node
