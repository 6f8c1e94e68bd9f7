"""Typed syntax tree of a capture filter (pcap-filter(7)), with the source span of every node.

Qualifier carry-over (`host a and b`) is not resolved here: a bare value stays a `ValueTerm`/`BareId` and the code
generator (bpf_lower) gives it the qualifiers of the primitive before it, in textual order, as libpcap does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    start: int
    end: int


# ---- qualifiers and ids ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Qualifiers(Node):
    proto: str | None = None  # ether ip ip6 arp tcp ...
    direction: str | None = None  # src | dst | src_or_dst | src_and_dst
    type: str | None = None  # host net port portrange gateway proto protochain


@dataclass(frozen=True)
class IdValue(Node):
    text: str
    kind: str  # word | address (has colons: MAC or IPv6) | escaped (\name)


@dataclass(frozen=True)
class IdPrefix(Node):
    address: str
    prefix: str


@dataclass(frozen=True)
class IdMasked(Node):
    address: str
    mask: str


@dataclass(frozen=True)
class IdNot(Node):
    operand: Node


@dataclass(frozen=True)
class IdLogical(Node):
    op: str  # and | or
    left: Node
    right: Node


# ---- terms -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Empty(Node):
    """The empty filter: every packet."""


@dataclass(frozen=True)
class Logical(Node):
    op: str  # and | or
    left: Node
    right: Node


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Qualified(Node):
    qualifiers: Qualifiers
    id: Node


@dataclass(frozen=True)
class BareId(Node):
    """A value without a keyword: takes the qualifiers of the primitive before it."""

    id: Node


@dataclass(frozen=True)
class ValueTerm(Node):
    """An arithmetic value used as a term: a bare number/name (carry-over) or a parenthesised expression."""

    value: Node


@dataclass(frozen=True)
class Protocol(Node):
    name: str


@dataclass(frozen=True)
class Primitive(Node):
    """A keyword primitive: less, greater, vlan, mpls, pppoes, pppoed, geneve, broadcast, multicast, inbound,
    outbound, ifindex."""

    kind: str
    argument: str | None = None
    argument_start: int = 0
    proto: str | None = None


@dataclass(frozen=True)
class Relation(Node):
    op: str  # eq ne gt ge lt le
    left: Node
    right: Node


# ---- arithmetic --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number(Node):
    text: str  # a number or a named constant (tcp-syn, icmptype, ...); resolved by the code generator


@dataclass(frozen=True)
class PacketLength(Node):
    pass


@dataclass(frozen=True)
class Load(Node):
    proto: str
    index: Node
    size: int = 1
    size_start: int = 0


@dataclass(frozen=True)
class Arithmetic(Node):
    op: str  # + - * / % & | ^ << >>
    left: Node
    right: Node


@dataclass(frozen=True)
class Negative(Node):
    operand: Node


@dataclass(frozen=True)
class Parens(Node):
    """( expr ): a boolean expression, or an arithmetic value when used inside arithmetic."""

    expr: Node
