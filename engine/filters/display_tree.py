"""Parse a Wireshark display filter into the typed tree of display_ast (grammar/display_filter.lark).

One transformer method per grammar alias. Escapes in strings, slice ranges and layer selections are decoded here so
the type checker only sees clean values; mistakes in them raise FilterError at their own column.
"""

from __future__ import annotations

import re

from lark import Token, Transformer, v_args
from lark.exceptions import VisitError

from diagnose.errors import FilterError
from diagnose.filters import display_ast as ast
from diagnose.filters.display_parser import GRAMMAR_FILE, LANGUAGE
from diagnose.filters.grammar import parse as parse_with_grammar


def parse_display_filter(text: str) -> ast.Node:
    """The typed tree of a display filter; FilterError (with column) when it is not well-formed."""
    if not text.strip():
        raise FilterError(text, 0, "empty display filter", language=LANGUAGE)
    tree = parse_with_grammar(GRAMMAR_FILE, text, LANGUAGE)
    try:
        return _ToAst(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, FilterError):
            raise exc.orig_exc from None
        raise


def _span(meta) -> tuple[int, int]:
    return meta.start_pos, meta.end_pos


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def _error(self, column: int, message: str) -> FilterError:
        return FilterError(self.text, column, message, language=LANGUAGE)

    # ---- logic ---------------------------------------------------------------------------------------------------
    def or_test(self, meta, children):
        return ast.Logical(*_span(meta), "or", children[0], children[1])

    def xor_test(self, meta, children):
        return ast.Logical(*_span(meta), "xor", children[0], children[1])

    def and_test(self, meta, children):
        return ast.Logical(*_span(meta), "and", children[0], children[1])

    def not_test(self, meta, children):
        return ast.Not(*_span(meta), children[0])

    # ---- relations -----------------------------------------------------------------------------------------------
    def truth(self, meta, children):
        return ast.Truth(*_span(meta), children[0])

    def compare(self, meta, children):
        left, op, right = children
        return ast.Compare(*_span(meta), op, left, right)

    def quantified_compare(self, meta, children):
        quantifier, left, op, right = children
        return ast.Compare(*_span(meta), op, left, right, quantifier)

    def contains(self, meta, children):
        return ast.Contains(*_span(meta), children[0], children[1])

    def matches(self, meta, children):
        return ast.Matches(*_span(meta), children[0], children[1])

    def member(self, meta, children):
        return ast.Member(*_span(meta), children[0], children[1])

    def not_member(self, meta, children):
        return ast.Member(*_span(meta), children[0], children[1], negated=True)

    def set(self, meta, children):
        return tuple(children)

    def set_range(self, meta, children):
        return ast.SetRange(*_span(meta), children[0], children[1])

    def quantifier_any(self, meta, children):
        return "any"

    def quantifier_all(self, meta, children):
        return "all"

    def op_eq(self, meta, children):
        return "eq"

    def op_ne(self, meta, children):
        return "ne"

    def op_all_eq(self, meta, children):
        return "all_eq"

    def op_any_ne(self, meta, children):
        return "any_ne"

    def op_gt(self, meta, children):
        return "gt"

    def op_ge(self, meta, children):
        return "ge"

    def op_lt(self, meta, children):
        return "lt"

    def op_le(self, meta, children):
        return "le"

    # ---- arithmetic ----------------------------------------------------------------------------------------------
    def bitwise_and(self, meta, children):
        return ast.Arithmetic(*_span(meta), "&", children[0], children[1])

    def add(self, meta, children):
        return ast.Arithmetic(*_span(meta), "+", children[0], children[1])

    def subtract(self, meta, children):
        return ast.Arithmetic(*_span(meta), "-", children[0], children[1])

    def multiply(self, meta, children):
        return ast.Arithmetic(*_span(meta), "*", children[0], children[1])

    def divide(self, meta, children):
        return ast.Arithmetic(*_span(meta), "/", children[0], children[1])

    def modulo(self, meta, children):
        return ast.Arithmetic(*_span(meta), "%", children[0], children[1])

    def negate(self, meta, children):
        return ast.Negate(*_span(meta), children[0])

    # ---- values --------------------------------------------------------------------------------------------------
    def slice(self, meta, children):
        operand, token = children
        return ast.Slice(*_span(meta), operand, self._ranges(token, token.start_pos + 1, str(token)[1:-1]))

    def word(self, meta, children):
        (token,) = children
        return ast.Word(*_span(meta), str(token))

    def layered_field(self, meta, children):
        name, layer = children
        return ast.Field(*_span(meta), self._field_name(name), layers=self._layers(layer))

    def raw_field(self, meta, children):
        (name,) = children
        return ast.Field(*_span(meta), self._field_name(name), raw=True)

    def raw_layered_field(self, meta, children):
        name, layer = children
        return ast.Field(*_span(meta), self._field_name(name), raw=True, layers=self._layers(layer))

    def string(self, meta, children):
        (token,) = children
        return ast.StringLiteral(*_span(meta), _unescape(str(token)[1:-1], token.start_pos + 1, self._error))

    def raw_string(self, meta, children):
        (token,) = children
        return ast.StringLiteral(*_span(meta), str(token)[2:-1].encode("utf-8"), raw=True)

    def char(self, meta, children):
        (token,) = children
        value = _unescape(str(token)[1:-1], token.start_pos + 1, self._error)
        if len(value) != 1:
            raise self._error(token.start_pos, f"{token} is not a single character")
        return ast.CharLiteral(*_span(meta), value[0])

    def call(self, meta, children):
        name, *args = children
        args = tuple(a for a in args if a is not None)
        return ast.Call(*_span(meta), str(name), name.end_pos, args)

    def field_reference(self, meta, children):
        (name,) = children
        return ast.FieldReference(*_span(meta), str(name))

    # ---- helpers -------------------------------------------------------------------------------------------------
    def _field_name(self, token: Token) -> str:
        name = str(token)
        return name[1:] if name.startswith(".") else name

    def _layers(self, token: Token) -> tuple[ast.SliceRange, ...]:
        text = str(token)[1:]
        if text.startswith("["):
            ranges = self._ranges(token, token.start_pos + 2, text[1:-1])
        else:
            ranges = self._ranges(token, token.start_pos + 1, text)
        for item in ranges:
            if item.first == 0 or (item.last is not None and item.last == 0):
                raise self._error(item.start, "layers are numbered from 1")
        return ranges

    def _ranges(self, token: Token, offset: int, body: str) -> tuple[ast.SliceRange, ...]:
        ranges = []
        position = offset
        for part in body.split(","):
            ranges.append(_parse_range(part, position, self._error))
            position += len(part) + 1
        return tuple(ranges)


_NUM = r"\s*(-?\d+)\s*"
_RANGE_LENGTH = re.compile(rf"^(?:{_NUM})?:(?:{_NUM})?$")
_RANGE_END = re.compile(rf"^{_NUM}-{_NUM}$")
_RANGE_ONE = re.compile(rf"^{_NUM}$")


def _parse_range(part: str, column: int, error) -> ast.SliceRange:
    start, end = column, column + len(part)
    if match := _RANGE_END.match(part):
        first, last = int(match[1]), int(match[2])
        if (first >= 0) == (last >= 0) and last < first:
            raise error(column, f"range [{part.strip()}] ends before it starts")
        return ast.SliceRange(start, end, first, last=last)
    if match := _RANGE_LENGTH.match(part):
        first = int(match[1]) if match[1] is not None else 0
        if match[2] is None:
            return ast.SliceRange(start, end, first)
        length = int(match[2])
        if length <= 0:
            raise error(column + part.index(":") + 1, "a slice length must be positive")
        return ast.SliceRange(start, end, first, length=length)
    if match := _RANGE_ONE.match(part):
        return ast.SliceRange(start, end, int(match[1]), length=1)
    stripped = part.strip()
    where = column + (part.index(stripped) if stripped else 0)
    raise error(where, f"{stripped or 'empty range'!s} is not a valid range (use i, i:len, i-j, :len or i:)")


_SIMPLE_ESCAPES = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, '"': 34, "'": 39, "?": 63}


def _unescape(body: str, column: int, error) -> bytes:
    """C-style escapes of Wireshark strings: \\n \\t ... \\xNN, \\NNN (octal), \\uNNNN, \\UNNNNNNNN."""
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(body):
            raise error(column + i, "a string cannot end with a lone backslash")
        nxt = body[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt == "x":
            digits = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2:])
            if not digits:
                raise error(column + i, "\\x must be followed by hex digits")
            out.append(int(digits[0], 16))
            i += 2 + len(digits[0])
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:])[0]
            value = int(digits, 8)
            if value > 255:
                raise error(column + i, f"octal escape \\{digits} is larger than a byte")
            out.append(value)
            i += 1 + len(digits)
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            digits = body[i + 2:i + 2 + width]
            if not re.fullmatch(rf"[0-9A-Fa-f]{{{width}}}", digits):
                raise error(column + i, f"\\{nxt} must be followed by {width} hex digits")
            try:
                out += chr(int(digits, 16)).encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                raise error(column + i, f"\\{nxt}{digits} is not a valid character") from None
            i += 2 + width
        else:
            raise error(column + i, f"unknown escape \\{nxt}")
    return bytes(out)
