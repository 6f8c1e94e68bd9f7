"""Display filters: the parse tree (precedence, operators, literals) and the errors for malformed filters.

Every malformed filter must give one line naming the bad spot, with the caret under the right column; no traceback.
"""

from __future__ import annotations

import pytest

from diagnose.errors import FilterError
from diagnose.filters import compile_display_filter
from diagnose.filters import display_ast as ast
from diagnose.filters.display_parser import parse_display_filter

# (filter, 0-based column of the caret, words the message must contain)
MALFORMED = [
    ("tcp.port ==", 11, "end of filter"),
    ("tcp.port == 80 and", 18, "end of filter"),
    ("(tcp.port == 80", 15, "end of filter"),
    ("tcp.port == 80)", 14, '")" was unexpected'),
    ("tcp.port = 80", 9, 'unexpected character "="'),
    ("tcp.port in {80, }", 17, '"}" was unexpected'),
    ("tcp.port in {80,,443}", 16, '"," was unexpected'),
    ("tcp.port in {80 443}", 16, '"443" was unexpected'),
    ("tcp.port in 80", 12, '"80" was unexpected'),
    ("and tcp", 0, '"and" was unexpected'),
    ("tcp or or udp", 7, '"or" was unexpected'),
    ("tcp.port == 80 udp", 15, '"udp" was unexpected'),
    ("tcp.port == 80 $ udp", 15, 'unexpected character "$"'),
    ("frame[1:0] == 00", 8, "length must be positive"),
    ("frame[1:2:3] == 00", 6, "not a valid range"),
    ("frame[a] == 00", 6, "not a valid range"),
    ("ip.addr#0 == 1.2.3.4", 8, "numbered from 1"),
    ("tcp.flgs.syn == 1", 0, "did you mean 'tcp.flags.syn'"),
    ("tcp.port-1", 0, "neither a field nor a protocol"),
    ("tcp.port == 70000", 12, "too large for tcp.port"),
    ("tcp.port == 1.5", 12, '"1.5" is not a valid number'),
    ("ip.src == 1.2.3", 10, "not a valid IPv4 address"),
    ("ip.src == 1.2.3.4/33", 10, "prefix length"),
    ("ipv6.src == 1.2.3.4", 12, "not a valid IPv6 address"),
    ("eth.src == 00:11:22", 11, "not a valid Ethernet address"),
    ('tcp.port == "80"', 12, "not a known name of a value"),
    ("tcp.port contains 80", 0, "cannot be searched with contains"),
    ('frame.number ~ "1"', 0, "cannot be searched with matches"),
    ('frame matches "("', 14, "invalid regular expression"),
    ("frame matches 47", 14, "quoted regular expression"),
    ("len(tcp.port) == 2", 4, "len()"),
    ('lower(tcp.port) == "a"', 6, "lower()"),
    ("nosuch(tcp) == 1", 0, "function 'nosuch' does not exist"),
    ("len(tcp, udp) == 1", 0, "takes 1 argument"),
    ("eth.type == ip", 12, "not of compatible types"),
    ('ip.src > "x"', 9, "not a valid IPv4 address"),
    ("1 == 1", 0, "needs a field or a function"),
    ("frame[12:2] == 0x0800", 15, "not a valid byte string"),
    ('frame contains "\\q"', 16, "unknown escape"),
    ("tcp.flags.syn > 1", 0, "cannot be compared with >"),
    ('frame.time > "yesterday"', 13, "not a valid absolute time"),
    ("tcp.srcport[0] == 00", 0, "cannot be sliced"),
    ("tcp.port in {1..x}", 16, '"x" is not a valid number'),
    ("${tcp.stream}", 0, "field references"),
    ("count(80) == 1", 6, "neither a field nor a protocol"),
    ("not", 3, "end of filter"),
    ("{tcp.port + } == 1", 12, '"}" was unexpected'),
    ("frame.number == 'ab'", 16, "not a single character"),
    ('"GET"', 0, "needs a field"),
    ("ip.addr == 10.0.0.0/8 or", 24, "end of filter"),
]


@pytest.mark.parametrize("text,column,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_filter_points_at_the_bad_column(text, column, words):
    with pytest.raises(FilterError) as caught:
        compile_display_filter(text)
    error = caught.value
    assert error.column == column, error.one_line()
    assert words in error.message
    line = error.one_line()
    assert "\n" not in line and line.startswith(f"display filter:{column + 1}: error: ")
    expression_line, caret_line = error.caret().split("\n")
    assert expression_line == "  " + text
    assert caret_line == "  " + " " * column + "^"


def test_at_least_thirty_malformed_filters_are_checked():
    assert len(MALFORMED) >= 30


# ---- the tree ----------------------------------------------------------------------------------------------------


def _shape(node) -> object:
    """A compact picture of a tree: ('and', l, r), ('not', x), ('eq', field, value), 'name' for existence."""
    if isinstance(node, ast.Logical):
        return (node.op, _shape(node.left), _shape(node.right))
    if isinstance(node, ast.Not):
        return ("not", _shape(node.operand))
    if isinstance(node, ast.Truth):
        return _shape(node.operand)
    if isinstance(node, ast.Compare):
        return (node.quantifier or "", node.op, _shape(node.left), _shape(node.right))
    if isinstance(node, ast.Word):
        return node.text
    if isinstance(node, ast.Arithmetic):
        return (node.op, _shape(node.left), _shape(node.right))
    return type(node).__name__


def test_precedence_not_and_xor_or():
    # Wireshark's example: A and B or not C or D and not E or F
    tree = parse_display_filter("A and B or not C or D and not E or F")
    assert _shape(tree) == ("or", ("or", ("or", ("and", "A", "B"), ("not", "C")), ("and", "D", ("not", "E"))), "F")
    assert _shape(parse_display_filter("a or b xor c and d")) == ("or", "a", ("xor", "b", ("and", "c", "d")))
    assert _shape(parse_display_filter("a || b ^^ c && !d")) == ("or", "a", ("xor", "b", ("and", "c", ("not", "d"))))


def test_not_binds_tighter_than_and():
    assert _shape(parse_display_filter("not tcp.port == 80 and udp")) == \
        ("and", ("not", ("", "eq", "tcp.port", "80")), "udp")


@pytest.mark.parametrize("spelling,op", [("==", "eq"), ("eq", "eq"), ("any_eq", "eq"), ("!=", "ne"), ("ne", "ne"),
                                         ("all_ne", "ne"), ("===", "all_eq"), ("all_eq", "all_eq"),
                                         ("!==", "any_ne"), ("any_ne", "any_ne"), (">", "gt"), ("gt", "gt"),
                                         (">=", "ge"), ("ge", "ge"), ("<", "lt"), ("lt", "lt"), ("<=", "le"),
                                         ("le", "le")])
def test_both_spellings_of_every_comparison(spelling, op):
    tree = parse_display_filter(f"tcp.port {spelling} 80")
    assert isinstance(tree, ast.Compare) and tree.op == op


def test_bitwise_and_binds_tighter_than_comparison_and_looser_than_arithmetic():
    assert _shape(parse_display_filter("tcp.flags & 0x12 == 0x12")) == \
        ("", "eq", ("&", "tcp.flags", "0x12"), "0x12")
    assert _shape(parse_display_filter("a & b + c == 1")) == ("", "eq", ("&", "a", ("+", "b", "c")), "1")
    assert _shape(parse_display_filter("a bitand 2")) == ("&", "a", "2")


def test_a_dash_inside_a_word_is_not_subtraction():
    assert _shape(parse_display_filter("tcp.port-1")) == "tcp.port-1"
    assert _shape(parse_display_filter("tcp.port - 1 == 2")) == ("", "eq", ("-", "tcp.port", "1"), "2")
    assert _shape(parse_display_filter("tcp.port -1 == 2")) == ("", "eq", ("-", "tcp.port", "1"), "2")


def test_quantifiers_sets_and_ranges():
    tree = parse_display_filter("all tcp.port > 1024")
    assert tree.quantifier == "all" and tree.op == "gt"
    member = parse_display_filter("tcp.port in {80, 443, 4430..4434}")
    assert isinstance(member, ast.Member) and not member.negated
    assert isinstance(member.items[2], ast.SetRange)
    assert parse_display_filter("tcp.port not in {80}").negated
    ranged = parse_display_filter("ip.addr in {10.0.0.5 .. 10.0.0.9}")
    assert ranged.items[0].low.text == "10.0.0.5" and ranged.items[0].high.text == "10.0.0.9"


def test_slices_and_layers():
    one = parse_display_filter("frame[1:3] == 00")
    assert one.left.ranges[0].first == 1 and one.left.ranges[0].length == 3
    inclusive = parse_display_filter("frame[1-3] == 00")
    assert inclusive.left.ranges[0].first == 1 and inclusive.left.ranges[0].last == 3
    tail = parse_display_filter("frame[-4:] == 00")
    assert tail.left.ranges[0].first == -4 and tail.left.ranges[0].length is None
    many = parse_display_filter("ftp[1,3-5,9:] == 00")
    assert [(r.first, r.length, r.last) for r in many.left.ranges] == [(1, 1, None), (3, None, 5), (9, None, None)]
    layer = parse_display_filter("ip.addr#2 == 10.0.0.1")
    assert layer.left.layers[0].first == 2
    layers = parse_display_filter("tcp.port#[2-4] == 80")
    assert (layers.left.layers[0].first, layers.left.layers[0].last) == (2, 4)


def test_literals_strings_and_escapes():
    tree = parse_display_filter(r'http.host == "a\x41\101\n\u00e9"')
    assert tree.right.value == b"aAA\n" + "é".encode()
    raw = parse_display_filter(r'http.host matches r"\d+\.example"')
    assert raw.right.value == rb"\d+\.example" and raw.right.raw
    char = parse_display_filter(r"frame[0] == '\n'")
    assert char.right.value == 10


def test_spans_cover_the_source():
    text = "ip.src == 10.0.0.1 and tcp.port in {80, 443}"
    tree = parse_display_filter(text)
    assert text[tree.left.start:tree.left.end] == "ip.src == 10.0.0.1"
    assert text[tree.right.operand.start:tree.right.operand.end] == "tcp.port"
