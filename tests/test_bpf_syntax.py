"""Capture filters: the parse tree (libpcap's precedence, qualifiers) and the errors for malformed filters.

Messages follow libpcap's where it has one ("illegal port number 70000 > 65535"), and every error carries the column
of the offending value so the CLI can put a caret under it.
"""

from __future__ import annotations

import pytest

from diagnose.errors import FilterError
from diagnose.filters import bpf_ast as ast
from diagnose.filters import compile_bpf
from diagnose.filters.bpf_parser import parse_bpf

MALFORMED = [
    ("host", 4, "end of filter"),
    ("tcp and", 7, "end of filter"),
    ("and tcp", 0, '"and" was unexpected'),
    ("tcp or or udp", 7, '"or" was unexpected'),
    ("(tcp", 4, "end of filter"),
    ("tcp)", 3, '")" was unexpected'),
    ("tcp[13", 6, "end of filter"),
    ("tcp[13] &", 9, "end of filter"),
    ("ip[2:3] = 1", 5, "data size must be 1, 2, or 4"),
    ("port 70000", 5, "illegal port number 70000 > 65535"),
    ("port foo", 5, "unknown port 'foo'"),
    ("net 10.0.0.1/8", 4, 'non-network bits set in "10.0.0.1/8"'),
    ("net 1.2.3.4/33", 4, "mask length must be <= 32"),
    ("host 1.2.3.4.5", 5, "not a valid IPv4 address"),
    ("host fe80::/64", 5, "Mask syntax for networks only"),
    ("ether host 1.2.3.4", 11, "illegal link layer address"),
    ("ip6 host 1.2.3.4", 9, "'ip6' modifier applied to ip host"),
    ("tcp host 1.2.3.4", 9, "'tcp' modifier applied to host"),
    ("vlan 5000", 5, "VLAN tag 5000 greater than maximum 4095"),
    ("mpls 1048576", 5, "MPLS label 1048576 greater than maximum 1048575"),
    ("less foo", 5, "not a number"),
    ("greater", 7, "end of filter"),
    ("ip[2:2] / 0 = 1", 0, "division by zero"),
    ("len % 0 = 1", 0, "modulus by zero"),
    ("len << 32 = 1", 0, "shift by more than 31 bits"),
    ("len = 4294967296", 6, "overflows 32 bits"),
    ("tcp and udp", 0, "expression rejects all packets"),
    ("ip6 and tcp[0] = 1", 0, "expression rejects all packets"),
    ("tcp and 80", 8, "needs a qualifier"),
    ("1.2.3.4", 0, "needs a qualifier"),
    ("portrange 5-a", 10, "unknown port in range"),
    ("ip proto foo", 9, "unknown ip proto 'foo'"),
    ("ether proto foo", 12, "unknown ether proto 'foo'"),
    ("ip6 broadcast", 0, "only link-layer/IP broadcast filters supported"),
    ("src foo", 4, "unknown host 'foo'"),
    ("tcp $", 4, 'unexpected character "$"'),
    ("tcp[tcpflags] & tcp-nope != 0", 16, "unknown name 'tcp-nope'"),
    ("inbound", 0, "inbound/outbound not supported on Ethernet when reading savefiles"),
    ("len > 1 2", 8, '"2" was unexpected'),
    ("host 10.0.0.1 mask 255.0.0.0", 5, "Mask syntax for networks only"),
    ("ether", 0, "link layer applied in wrong context"),
]


@pytest.mark.parametrize("text,column,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_filter_points_at_the_bad_column(text, column, words):
    with pytest.raises(FilterError) as caught:
        compile_bpf(text)
    error = caught.value
    assert error.column == column, error.one_line()
    assert words in error.message
    line = error.one_line()
    assert "\n" not in line and line.startswith(f"bpf:{column + 1}: error: ")
    assert error.caret().split("\n")[1] == "  " + " " * column + "^"


def test_at_least_thirty_malformed_filters_are_checked():
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize("linktype,text,message", [
    (0, "vlan", "no VLAN support for BSD loopback"),
    (113, "vlan", "no VLAN support for Linux cooked v1"),
    (276, "vlan", "no VLAN support for Linux cooked v2"),
    (101, "vlan", "no VLAN support for Raw IP"),
    (228, "ip6", "expression rejects all packets"),
    (0, "arp", "expression rejects all packets"),
    (160, "tcp", "DLT 160 link-layer type filtering not implemented"),
    (113, "ether host 1:2:3:4:5:6", "ethernet addresses supported only on ethernet"),
    (113, "broadcast", "not a broadcast link"),
    (113, "ifindex 1", "ifindex not supported on Linux cooked v1 when reading savefiles"),
])
def test_errors_that_depend_on_the_link_type(linktype, text, message):
    with pytest.raises(FilterError, match=message.replace("(", r"\(")):
        compile_bpf(text, linktype)


# ---- the tree ----------------------------------------------------------------------------------------------------


def _shape(node):
    if isinstance(node, ast.Logical):
        return (node.op, _shape(node.left), _shape(node.right))
    if isinstance(node, ast.Not):
        return ("not", _shape(node.operand))
    if isinstance(node, ast.Protocol):
        return node.name
    if isinstance(node, ast.Qualified):
        q = node.qualifiers
        return " ".join(p for p in (q.proto, q.direction, q.type) if p) + " " + _shape(node.id)
    if isinstance(node, ast.IdValue):
        return node.text
    if isinstance(node, ast.ValueTerm):
        return _shape(node.value)
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.Arithmetic):
        return (node.op, _shape(node.left), _shape(node.right))
    if isinstance(node, ast.Parens):
        return _shape(node.expr)
    return type(node).__name__


def test_and_or_have_equal_precedence_left_to_right():
    assert _shape(parse_bpf("tcp or udp and icmp")) == ("and", ("or", "tcp", "udp"), "icmp")
    assert _shape(parse_bpf("tcp and udp or icmp")) == ("or", ("and", "tcp", "udp"), "icmp")
    assert _shape(parse_bpf("!tcp && !udp || icmp")) == ("or", ("and", ("not", "tcp"), ("not", "udp")), "icmp")


def test_qualifier_order_and_keywords():
    assert _shape(parse_bpf("tcp dst port 80")) == "tcp dst port 80"
    assert _shape(parse_bpf("src or dst port 80")) == "src_or_dst port 80"
    assert _shape(parse_bpf("src and dst host 1.2.3.4")) == "src_and_dst host 1.2.3.4"
    assert _shape(parse_bpf("ip proto \\tcp")) == "ip proto tcp"


def test_bare_values_stay_bare_for_carry_over():
    tree = parse_bpf("host a and b")
    assert isinstance(tree.right, ast.ValueTerm) and tree.right.value.text == "b"


def test_arithmetic_precedence_and_the_xor_quirk():
    assert _shape(parse_bpf("len + 1 << 2 = 0").left) == ("<<", ("+", "PacketLength", "1"), "2")
    assert _shape(parse_bpf("len | 1 & 2 = 0").left) == ("|", "PacketLength", ("&", "1", "2"))
    # libpcap gives ^ no precedence: it takes the operand before it and everything after it
    assert _shape(parse_bpf("len ^ 1 | 2 = 0").left) == ("^", "PacketLength", ("|", "1", "2"))
    assert _shape(parse_bpf("len & 1 ^ 2 = 0").left) == ("&", "PacketLength", ("^", "1", "2"))


def test_loads_with_size_and_nested_index():
    tree = parse_bpf("tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420")
    assert isinstance(tree.left, ast.Load) and tree.left.proto == "tcp" and tree.left.size == 4
