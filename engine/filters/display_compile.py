"""Type-check a display filter against the field registry and compile it into a vectorised evaluator.

Compilation happens once: every unquoted word is resolved (field or literal of the right type), literals are
converted, regexes compiled, and unknown fields or type mismatches are FilterErrors with a column. The result
evaluates a whole chunk with array operations, extracting only the fields the filter names.

Semantics follow Wireshark 4.x:
* A field used in a comparison must exist: `ip.dst != 1.2.3.4` is false for non-IP packets.
* Multi-occurrence fields: `==` is "any equal", `!=` "all not equal" (= not `==`), `===` "all equal", `!==` "any not
  equal"; `any`/`all` prefix any comparison. Two fields compare every pair of occurrences.
* `matches` is case-insensitive unless the pattern starts with (?-i); `contains` is case-sensitive.
* A slice that runs past the end of its value does not exist.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field as dataclass_field
from typing import Any

import numpy as np

from diagnose.errors import FilterError
from diagnose.fields import ChunkContext, Field, FieldType, Occurrence, lookup, suggest
from diagnose.fields.values import BYTES_LIKE_TYPES, INTEGER_TYPES, NUMERIC_TYPES, ByteRanges
from diagnose.filters import display_ast as ast
from diagnose.filters import display_bytes as B
from diagnose.filters.display_functions import FUNCTIONS, FunctionSpec
from diagnose.filters.display_literals import (LiteralError, Network4, Network6, literal_for, lookup_value_name,
                                               parse_bytes, parse_time)
from diagnose.filters.display_parser import LANGUAGE, parse_display_filter

T = FieldType
Test = Callable[[ChunkContext], np.ndarray]
ORDERED_TYPES = NUMERIC_TYPES | {T.IPV4, T.IPV6, T.ETHER, T.STRING, T.BYTES, T.NONE}
SEARCHABLE_TYPES = {T.STRING, T.BYTES, T.NONE, T.ETHER}
SLICEABLE_TYPES = BYTES_LIKE_TYPES | {T.STRING}
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)+|[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Expr:
    """A value computed from the packets: a field, a slice, arithmetic, a function result."""

    type: FieldType
    start: int
    end: int
    compute: Callable[[ChunkContext], list[Occurrence]]
    field: Field | None = None  # set for a plain field reference
    fields: frozenset[str] = frozenset()  # every field it reads

    def occurrences(self, ctx: ChunkContext) -> list[Occurrence]:
        return self.compute(ctx)


@dataclass
class Const:
    """A literal, already converted for the type it is compared with."""

    type: FieldType
    value: Any
    start: int
    end: int


@dataclass
class DisplayFilter:
    """A compiled display filter: `evaluate(ctx)` gives the boolean mask of matching rows of a chunk."""

    text: str
    _test: Test = dataclass_field(repr=False)
    fields: frozenset[str] = frozenset()  # the fields it reads (only these are extracted)
    # what the filter tests, independent of how it is written down (None: not comparable): filters with equal keys
    # give equal masks on a context, and tests shared by several filters are computed once per context
    key: Any = None

    def evaluate(self, ctx: ChunkContext) -> np.ndarray:
        if ctx.n == 0:
            return np.zeros(0, bool)
        return self._test(ctx).copy()  # tests cached on the context are shared: the caller may write its own

    def mask(self, ctx: ChunkContext) -> np.ndarray:
        """evaluate() without the copy, for callers that only read the mask: it may be the very array other
        filters' tests share on this context (a rule engine reads ~20 evidence masks per chunk)."""
        if ctx.n == 0:
            return np.zeros(0, bool)
        return self._test(ctx)


def compile_display_filter(text: str, *, fields: Callable[[str], Field | None] | None = None) -> DisplayFilter:
    """Parse and type-check a display filter; FilterError (one line, with column) when it is wrong.

    `fields` resolves names instead of the registry (a playbook adds its rule's param.*/agg.* names this way)."""
    tree = parse_display_filter(text)
    checker = _Checker(text, fields or lookup)
    test = checker.test(tree)
    return DisplayFilter(text, test, frozenset(checker.used), checker.key(tree))


class _Checker:
    def __init__(self, text: str, resolve: Callable[[str], Field | None]):
        self.text = text
        self.resolve = resolve
        self.used: set[str] = set()
        self._flag_forms: dict[int, _FlagForm | None] = {}  # id(node) -> its flag form (see flag_form)

    def error(self, column: int, message: str) -> FilterError:
        return FilterError(self.text, column, message, language=LANGUAGE)

    # ==== tests =======================================================================================================
    def test(self, node: ast.Node) -> Test:
        """The node's test; a test with a key caches its mask on the context (ctx.cached), so the same comparison
        in several filters of a rule set is computed once per chunk."""
        test = self._test(node)
        form = self.flag_form(node)
        if form is not None:
            test = form.test(test)
        key = self.key(node)
        if key is None:
            return test
        key = ("?test", key)  # field caches are keyed by name (a str): no clash

        def cached_test(ctx):  # ctx.cached, inlined: a rule set's filters run ~100 tests per chunk
            cache = ctx._cache
            got = cache.get(key)
            if got is None:
                got = cache[key] = test(ctx)
            return got
        return cached_test

    def key(self, node: ast.Node):
        """A hashable description of a test or value with the fields resolved (param.* names are per rule), or
        None for forms that are not shared (slices, functions, arithmetic, searches)."""
        if isinstance(node, ast.Logical):
            left, right = self.key(node.left), self.key(node.right)
            return None if left is None or right is None else (node.op, left, right)
        if isinstance(node, ast.Not):
            inner = self.key(node.operand)
            return None if inner is None else ("not", inner)
        if isinstance(node, ast.Truth):
            inner = self.value_key(node.operand)
            return None if inner is None or inner[0] != "field" else ("truth", inner)
        if isinstance(node, ast.Compare):
            left, right = self.value_key(node.left), self.value_key(node.right)
            if left is None or right is None or "field" not in (left[0], right[0]):
                return None
            return ("cmp", node.op, node.quantifier, left, right)
        return None

    def value_key(self, node: ast.Node):
        if isinstance(node, (ast.Word, ast.Field)):
            name = node.text if isinstance(node, ast.Word) else node.name
            found = self.field_of(name)
            if found is None:
                return ("word", node.text) if isinstance(node, ast.Word) else None
            # the Field object's identity too: a rule's param.* fields share a name across rule sets
            if isinstance(node, ast.Field):
                return ("field", found.name, id(found), node.raw,
                        node.layers and tuple((r.first, r.length, r.last) for r in node.layers))
            return ("field", found.name, id(found), False, None)
        if isinstance(node, ast.StringLiteral):
            return ("string", node.value, node.raw)
        if isinstance(node, ast.CharLiteral):
            return ("char", node.value)
        if isinstance(node, ast.Negate):
            inner = self.value_key(node.operand)
            return None if inner is None or inner[0] == "field" else ("negate", inner)
        return None

    def flag_form(self, node: ast.Node) -> _FlagForm | None:
        """The test as one mask of a word of flag bits (see diagnose.fields.registry.FlagBits), for the tests of
        flag fields that playbooks write most (`tcp.flags.syn == 1 && tcp.flags.ack == 0`, `tcp.analysis.zero_window
        || tcp.analysis.window_update`): two array operations per chunk instead of extracting and comparing each
        field. None for any other test. Called after the node compiled, so its errors are already raised."""
        known = self._flag_forms.get(id(node), _UNSET)
        if known is _UNSET:
            known = self._flag_forms[id(node)] = self._flag_form(node)
        return known

    def _flag_form(self, node: ast.Node) -> _FlagForm | None:
        if isinstance(node, ast.Truth):
            found = self._flag_field(node.operand)
            return None if found is None else _FlagForm(found.flag.word, found.flag.present, 0, True)
        if isinstance(node, ast.Compare):
            return self._flag_compare(node)
        if isinstance(node, ast.Logical) and node.op in ("and", "or"):
            left, right = self.flag_form(node.left), self.flag_form(node.right)
            if left is None or right is None or left.word is not right.word:
                return None
            return left.both(right) if node.op == "and" else left.either(right)
        return None

    def _flag_field(self, node: ast.Node) -> Field | None:
        """The field a node names as a whole (no layer selection, not its raw bytes), if it is a flag field."""
        if isinstance(node, ast.Word):
            found = self.field_of(node.text)
        elif isinstance(node, ast.Field) and not node.raw and not node.layers:
            found = self.field_of(node.name)
        else:
            return None
        return found if found is not None and found.flag is not None else None

    def _flag_compare(self, node: ast.Compare) -> _FlagForm | None:
        """A bool flag field against true/false: on its single occurrence, every operator and quantifier of
        equality is "present and equal" (==, ===, any/all ==) or "present and different" (!=, !==)."""
        if node.op not in ("eq", "ne", "all_eq", "any_ne"):
            return None
        found, other = self._flag_field(node.left), node.right
        if found is None:
            found, other = self._flag_field(node.right), node.left
        if found is None or found.type != T.BOOL or not found.flag.value or self.try_value(other) is not None:
            return None
        constant = self.literal(other, Expr(found.type, node.start, node.end, found.extract, found)).value
        if not isinstance(constant, (bool, int)):
            return None
        flag = found.flag
        wanted = bool(constant) == (node.op in ("eq", "all_eq"))
        return _FlagForm(flag.word, flag.present | flag.value, flag.present | (flag.value if wanted else 0), False)

    def _test(self, node: ast.Node) -> Test:
        if isinstance(node, ast.Logical):
            left, right = self.test(node.left), self.test(node.right)
            if node.op == "and":
                return lambda ctx: _and(left, right, ctx)
            if node.op == "or":
                return lambda ctx: _or(left, right, ctx)
            return lambda ctx: left(ctx) ^ right(ctx)
        if isinstance(node, ast.Not):
            inner = self.test(node.operand)
            return lambda ctx: ~inner(ctx)
        if isinstance(node, ast.Truth):
            return self.truth(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Contains):
            return self.contains(node)
        if isinstance(node, ast.Matches):
            return self.matches(node)
        if isinstance(node, ast.Member):
            return self.member(node)
        raise self.error(node.start, "not a test")  # pragma: no cover

    def truth(self, node: ast.Node) -> Test:
        """A value standing alone: a field/protocol exists, a slice exists, a number is non-zero."""
        if isinstance(node, ast.Call):
            expr = self.call(node)
            if expr.type != T.BOOL:
                raise self.error(node.start, f"{node.name}() does not give true or false, so it cannot be a test "
                                             "by itself (compare its result)")
            return lambda ctx: _any(ctx, [o.where(o.values.astype(bool)) for o in expr.occurrences(ctx)])
        value = self.value(node)
        if isinstance(value, Const):
            raise self.error(node.start, self._not_a_field_message(node))
        if value.field is not None or isinstance(node, ast.Slice):
            return lambda ctx: _any_shared(ctx, value.occurrences(ctx))
        if value.type in NUMERIC_TYPES or value.type == T.BOOL:
            return lambda ctx: _any(ctx, [o.where(o.values != 0) for o in value.occurrences(ctx)])
        if isinstance(node, ast.Arithmetic):  # a byte mask: true when any byte is non-zero
            return lambda ctx: _any(ctx, [o.where(np.asarray(o.values).any(axis=1)) for o in value.occurrences(ctx)])
        return lambda ctx: _any(ctx, value.occurrences(ctx))

    def _not_a_field_message(self, node: ast.Node) -> str:
        text = getattr(node, "text", None)
        if text is None:
            return "a literal value cannot be a test by itself"
        hint = suggest(text.lstrip("."))
        message = f'"{text}" is neither a field nor a protocol name'
        return message + (f" (did you mean '{hint}'?)" if hint else "")

    # ---- comparisons -------------------------------------------------------------------------------------------------
    def sides(self, left_node: ast.Node, right_node: ast.Node, what: str) -> tuple[Expr | Const, Expr | Const]:
        """Resolve both sides; a literal takes its type from the other side."""
        left = self.try_value(left_node)
        right = self.try_value(right_node)
        if left is None and right is None:
            for node in (left_node, right_node):
                self.raise_if_unknown_field(node)
            raise self.error(left_node.start, f"{what} needs a field or a function on one side")
        if left is None:
            left = self.literal(left_node, right)
        if right is None:
            right = self.literal(right_node, left)
        return left, right

    def compare(self, node: ast.Compare) -> Test:
        left, right = self.sides(node.left, node.right, "a comparison")
        if isinstance(left, Const) and isinstance(right, Const):
            raise self.error(node.start, "a comparison needs a field or a function on one side")
        if isinstance(left, Const):  # keep the field on the left: mirror the operator
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(node.op, node.op)
        else:
            op = node.op
        self.check_comparable(left, right, op, node)
        if isinstance(right, Expr) and left.type != right.type and T.ETHER in (left.type, right.type):
            left, right = _bytes_view(left), _bytes_view(right)  # a MAC against a byte string: compare bytes
        quantifier = node.quantifier
        if op in ("ne", "any_ne", "all_eq"):
            eq = _comparator(left.type, right, "eq")
            if op == "all_eq" or (op == "any_ne" and quantifier == "all"):
                cmp_all = eq if op == "all_eq" else (lambda a, b: ~eq(a, b))
                return lambda ctx: _quantified(ctx, left, right, cmp_all, "all")
            if op == "any_ne" or quantifier == "any":  # `any x != y` asks for one occurrence that differs
                return lambda ctx: _quantified(ctx, left, right, lambda a, b: ~eq(a, b), "any")
            # != is "all not equal": the negation of ==, for packets that have the field
            return lambda ctx: _exists(ctx, left, right) & ~_quantified(ctx, left, right, eq, "any")
        cmp = _comparator(left.type, right, op)
        quantifier = quantifier or "any"
        if quantifier == "any" and isinstance(right, Const):
            return lambda ctx: _any_constant(ctx, left, right.value, cmp)
        if quantifier == "any":
            return lambda ctx: _any_pair(ctx, left, right, cmp)
        return lambda ctx: _quantified(ctx, left, right, cmp, quantifier)

    def check_comparable(self, left: Expr, right: Expr | Const, op: str, node: ast.Node) -> None:
        lt, rt = left.type, right.type
        if not _compatible(lt, rt):
            raise self.error(right.start, f"{_describe(left, self.text)} and {_describe(right, self.text)} are not "
                                          f"of compatible types ({lt} and {rt})")
        if op in ("gt", "ge", "lt", "le") and (lt not in ORDERED_TYPES or rt not in ORDERED_TYPES):
            raise self.error(node.start, f"{_describe(left, self.text)} ({lt}) cannot be compared with "
                                         f"{_OP_SYMBOL[op]}")

    def contains(self, node: ast.Contains) -> Test:
        left, right = self.sides(node.left, node.right, "contains")
        if isinstance(left, Const):
            raise self.error(node.left.start, "the left side of contains must be a field or a function")
        if left.type not in SEARCHABLE_TYPES:
            raise self.error(node.left.start, f"{_describe(left, self.text)} is a {left.type} and cannot be "
                                              "searched with contains (only strings and byte strings)")
        if isinstance(right, Const):
            needle = right.value
            if left.type == T.STRING:
                needle_text = needle.decode("utf-8", "replace") if isinstance(needle, bytes) else str(needle)
                return lambda ctx: _any(ctx, [o.where(_str_test(o, lambda v: needle_text in v))
                                              for o in left.occurrences(ctx)])
            needle_bytes = _as_bytes(needle, left.type)
            return lambda ctx: _any(ctx, [o.where(_bytes_contains(o, needle_bytes, left.type))
                                          for o in left.occurrences(ctx)])
        return lambda ctx: _quantified(ctx, left, right, _object_test(operator.contains, left.type), "any")

    def matches(self, node: ast.Matches) -> Test:
        left = self.value(node.left)
        if isinstance(left, Const):
            raise self.error(node.left.start, "the left side of matches must be a field or a function")
        if left.type not in (T.STRING, T.BYTES, T.NONE):
            raise self.error(node.left.start, f"{_describe(left, self.text)} ({left.type}) cannot be searched "
                                              "with matches (only strings and byte strings)")
        if not isinstance(node.right, ast.StringLiteral):
            raise self.error(node.right.start, "matches needs a quoted regular expression on its right")
        pattern = node.right.value.decode("utf-8", "replace")
        flags = re.IGNORECASE | re.DOTALL
        if pattern.startswith("(?-i)"):
            pattern, flags = pattern[5:], re.DOTALL
        try:
            regex = re.compile(pattern, flags)
            regex_bytes = re.compile(pattern.encode("utf-8"), flags)
        except re.error as exc:
            raise self.error(node.right.start, f"invalid regular expression: {exc}") from None
        if left.type == T.STRING:
            return lambda ctx: _any(ctx, [o.where(_str_test(o, lambda v: regex.search(v) is not None))
                                          for o in left.occurrences(ctx)])
        return lambda ctx: _any(ctx, [o.where(_bytes_test(o, lambda v: regex_bytes.search(v) is not None, left.type))
                                      for o in left.occurrences(ctx)])

    def member(self, node: ast.Member) -> Test:
        operand = self.try_value(node.operand)
        if operand is None:
            self.raise_if_unknown_field(node.operand)
            raise self.error(node.operand.start, "the left side of in must be a field or a function")
        if isinstance(operand, Const):
            raise self.error(node.operand.start, "the left side of in must be a field or a function")
        tests: list[Callable[[Any], np.ndarray]] = []
        for item in node.items:
            if isinstance(item, ast.SetRange):
                low = self.set_value(item.low, operand)
                high = self.set_value(item.high, operand)
                if operand.type not in ORDERED_TYPES:
                    raise self.error(item.start, f"a range needs ordered values, not {operand.type}")
                ge = _comparator(operand.type, low, "ge")
                le = _comparator(operand.type, high, "le")
                tests.append(lambda v, ge=ge, le=le, lo=low.value, hi=high.value: ge(v, lo) & le(v, hi))
            else:
                constant = self.set_value(item, operand)
                eq = _comparator(operand.type, constant, "eq")
                tests.append(lambda v, eq=eq, c=constant.value: eq(v, c))

        def in_set(values, _unused=None):
            result = tests[0](values)
            for t in tests[1:]:
                result = result | t(values)
            return result
        if node.negated:
            return lambda ctx: _exists(ctx, operand, None) & ~_quantified(ctx, operand, None, in_set, "any")
        return lambda ctx: _quantified(ctx, operand, None, in_set, "any")

    def set_value(self, node: ast.Node, operand: Expr) -> Const:
        value = self.literal(node, operand)
        if not isinstance(value, Const):
            raise self.error(node.start, "set members must be values, not fields")
        self.check_comparable(operand, value, "eq", node)
        return value

    # ==== values ======================================================================================================
    def try_value(self, node: ast.Node) -> Expr | Const | None:
        """The expression for a node, or None when it is a word that is not a field (a literal: typed later)."""
        if isinstance(node, ast.Word) and self.field_of(node.text) is None:
            return None
        if isinstance(node, (ast.StringLiteral, ast.CharLiteral)):
            return None
        if isinstance(node, ast.Negate) and self.try_value(node.operand) is None:
            return None
        return self.value(node)

    def value(self, node: ast.Node) -> Expr | Const:
        if isinstance(node, ast.Word):
            found = self.field_of(node.text)
            if found is None:
                raise self.error(node.start, self._not_a_field_message(node))
            return self.field_expr(found, node)
        if isinstance(node, ast.Field):
            found = self.field_of(node.name)
            if found is None:
                hint = suggest(node.name)
                raise self.error(node.start, f"unknown field '{node.name}'" +
                                 (f" (did you mean '{hint}'?)" if hint else ""))
            return self.field_expr(found, node)
        if isinstance(node, ast.Slice):
            return self.slice(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Arithmetic):
            return self.arithmetic(node)
        if isinstance(node, ast.Negate):
            return self.negate(node)
        if isinstance(node, ast.FieldReference):
            raise self.error(node.start, "field references (${...}) need a packet selected in a GUI; "
                                         "they cannot be used on a capture file")
        raise self.error(node.start, "a literal needs a field to compare with")

    def field_of(self, text: str) -> Field | None:
        return self.resolve(text[1:] if text.startswith(".") else text)

    def raise_if_unknown_field(self, node: ast.Node) -> None:
        text = getattr(node, "text", None)
        if isinstance(node, ast.Word) and text and _FIELD_NAME.fullmatch(text.lstrip(".")) and \
                not re.fullmatch(r"[0-9a-fA-F]+|true|false", text):
            raise self.error(node.start, self._not_a_field_message(node))

    def field_expr(self, found: Field, node: ast.Node) -> Expr:
        self.used.add(found.name)
        layers = getattr(node, "layers", None)
        raw = getattr(node, "raw", False)

        def compute(ctx: ChunkContext) -> list[Occurrence]:
            occurrences = found.extract(ctx)
            if layers is not None:
                occurrences = [_select_layers(o, layers, occurrences) for o in occurrences]
            return occurrences
        expr = Expr(found.type, node.start, node.end, compute, found, frozenset({found.name}))
        if raw:
            return self.raw_bytes(expr, found, node)
        return expr

    def raw_bytes(self, expr: Expr, found: Field, node: ast.Node) -> Expr:
        """@field: the field's bytes as on the wire."""
        if found.type in (T.BYTES, T.NONE):
            return Expr(T.BYTES, expr.start, expr.end, expr.compute, None, expr.fields)
        width = {T.ETHER: 6, T.IPV4: 4, T.IPV6: 16}.get(found.type)
        if width is None and found.type in INTEGER_TYPES | {T.BOOL}:
            width = max(1, (found.bits + 7) // 8) if found.bits else 4
        if width is None:
            raise self.error(node.start, f"@{found.name}: a {found.type} has no raw byte form here")

        def compute(ctx):
            return [Occurrence(_fixed_bytes(o.values, found.type, width), o.present, o.layer)
                    for o in expr.occurrences(ctx)]
        return Expr(T.BYTES, expr.start, expr.end, compute, None, expr.fields)

    def literal(self, node: ast.Node, other: Expr | Const) -> Const:
        """A literal typed by what it is compared with."""
        ftype = other.type
        names = other.field.value_names if isinstance(other, Expr) and other.field is not None else None
        try:
            if isinstance(node, ast.Word):
                text = node.text[1:] if node.text.startswith(":") and not node.text.startswith("::") else node.text
                value = literal_for(ftype, text, names)
                if ftype in INTEGER_TYPES:
                    self._check_width(value, other, node)
                return Const(ftype, value, node.start, node.end)
            if isinstance(node, ast.StringLiteral):
                return Const(ftype, self.string_literal(node, ftype, names), node.start, node.end)
            if isinstance(node, ast.CharLiteral):
                if ftype in INTEGER_TYPES:
                    return Const(ftype, node.value, node.start, node.end)
                if ftype in (T.BYTES, T.NONE):
                    return Const(ftype, bytes([node.value]), node.start, node.end)
                raise LiteralError(f"a character cannot be compared with a {ftype}")
            if isinstance(node, ast.Negate):
                inner = self.literal(node.operand, other)
                if ftype not in NUMERIC_TYPES:
                    raise LiteralError(f"a {ftype} cannot be negative")
                return Const(ftype, -inner.value, node.start, node.end)
        except LiteralError as exc:
            text = getattr(node, "text", "").lstrip(".")
            if "." in text and _FIELD_NAME.fullmatch(text) and _known_prefix(text.split(".")[0]):
                raise self.error(node.start, self._not_a_field_message(node)) from None  # a misspelt field
            raise self.error(node.start, str(exc)) from None
        raise self.error(node.start, "expected a value here")

    def string_literal(self, node: ast.StringLiteral, ftype: FieldType, names):
        raw = node.value
        if ftype == T.STRING:
            return raw.decode("utf-8", "replace")
        if ftype in (T.BYTES, T.NONE):
            return raw
        text = raw.decode("utf-8", "replace")
        if ftype in INTEGER_TYPES:
            found = lookup_value_name(names, text) if names else None
            if found is None:
                raise LiteralError(f'"{text}" is not a known name of a value of this field')
            return found
        if ftype == T.TIME:
            return parse_time(text)
        return literal_for(ftype, text, names)

    def _check_width(self, value: int, other, node) -> None:
        bits = other.field.bits if isinstance(other, Expr) and other.field is not None else 0
        if bits and other.type == T.UINT and value > (1 << bits) - 1:
            raise LiteralError(f"{value} is too large for {other.field.name} ({bits} bits)")

    # ---- slices, arithmetic, functions -------------------------------------------------------------------------------
    def slice(self, node: ast.Slice) -> Expr:
        operand = self.value(node.operand)
        if isinstance(operand, Const):
            raise self.error(node.operand.start, "only a field or a function result can be sliced")
        if operand.type not in SLICEABLE_TYPES:
            raise self.error(node.operand.start, f"{_describe(operand, self.text)} is a {operand.type} and cannot "
                                                 "be sliced into a sequence of bytes")
        ranges = node.ranges
        if operand.type == T.STRING:
            def compute_str(ctx):
                return [_slice_strings(o, ranges) for o in operand.occurrences(ctx)]
            return Expr(T.STRING, node.start, node.end, compute_str, None, operand.fields)
        width = {T.ETHER: 6, T.IPV4: 4, T.IPV6: 16}.get(operand.type)

        def compute(ctx):
            out = []
            for o in operand.occurrences(ctx):
                values = o.values if width is None else _fixed_bytes(o.values, operand.type, width)
                sliced, present = B.slice_bytes(values, ranges, o.present)
                out.append(Occurrence(sliced, present, o.layer))
            return out
        return Expr(T.BYTES, node.start, node.end, compute, None, operand.fields)

    def arithmetic(self, node: ast.Arithmetic) -> Expr:
        left, right = self.sides(node.left, node.right, "arithmetic")
        if isinstance(left, Const) and isinstance(right, Const):
            raise self.error(node.start, "arithmetic needs a field or a function on one side")
        for side in (left, right):
            allowed = INTEGER_TYPES | {T.BOOL} if node.op == "&" else NUMERIC_TYPES
            if side.type not in allowed and not (node.op == "&" and side.type in (T.BYTES, T.NONE)):
                raise self.error(side.start, f"{_describe(side, self.text)} ({side.type}) cannot be used with "
                                             f"{node.op}")
        result_type = _arith_type(node.op, left.type, right.type)
        op = node.op
        if isinstance(right, Const) and op in ("/", "%") and right.value == 0:
            raise self.error(right.start, "division by zero")

        if result_type in (T.BYTES, T.NONE):
            if not (isinstance(right, Const) and isinstance(left, Expr)):
                raise self.error(node.start, "a byte string can only be masked with a constant byte string")
            mask = right.value

            def compute_mask(ctx):
                out = []
                for o in left.occurrences(ctx):
                    values, ok = B.bitwise_and(o.values, mask, o.present)
                    out.append(Occurrence(values, ok, o.layer))
                return out
            return Expr(T.BYTES, node.start, node.end, compute_mask, None, left.fields)

        def compute(ctx):
            out = []
            for a_values, b_values, present, layer in _pairs(ctx, left, right):
                values, ok = _arith(op, a_values, b_values, left.type)
                out.append(Occurrence(values, present & ok, layer))
            return out
        fields = _fields_of(left) | _fields_of(right)
        return Expr(result_type, node.start, node.end, compute, None, fields)

    def negate(self, node: ast.Negate) -> Expr:
        operand = self.value(node.operand)
        if isinstance(operand, Const) or operand.type not in NUMERIC_TYPES:
            raise self.error(node.start, "only a number can be negated")

        def compute(ctx):
            return [Occurrence(-o.values, o.present, o.layer) for o in operand.occurrences(ctx)]
        return Expr(operand.type if operand.type != T.UINT else T.INT, node.start, node.end, compute, None,
                    operand.fields)

    def call(self, node: ast.Call) -> Expr:
        spec: FunctionSpec | None = FUNCTIONS.get(node.name)
        if spec is None:
            raise self.error(node.start, f"function '{node.name}' does not exist")
        if not spec.min_args <= len(node.args) <= spec.max_args:
            expected = str(spec.min_args) if spec.min_args == spec.max_args else \
                f"{spec.min_args} to {spec.max_args if spec.max_args < 99 else 'any number of'}"
            raise self.error(node.start, f"{node.name}() takes {expected} argument(s), not {len(node.args)}")
        args = []
        for arg in node.args:
            value = self.value(arg)
            if isinstance(value, Const):
                raise self.error(arg.start, f"the argument of {node.name}() must be a field or a function")
            if spec.needs_field and value.field is None:
                raise self.error(arg.start, f"the argument of {node.name}() must be a field")
            problem = spec.check(value.type)
            if problem:
                raise self.error(arg.start, f"{node.name}(): {problem}")
            args.append(value)
        result_type = spec.result_type(args[0].type)

        def compute(ctx):
            return spec.apply(ctx, [a.occurrences(ctx) for a in args], [a.type for a in args])
        fields = frozenset().union(*(a.fields for a in args))
        return Expr(result_type, node.start, node.end, compute, None, fields)


_UNSET = object()


@dataclass(frozen=True)
class _FlagForm:
    """A test as a mask of a flag word: `(word & mask) == value`, or `(word & mask) != 0` when `any_of`."""

    word: Callable[[ChunkContext], Any]
    mask: int
    value: int
    any_of: bool

    def _as_equal(self) -> tuple[int, int] | None:
        if not self.any_of:
            return self.mask, self.value
        return (self.mask, self.mask) if _one_bit(self.mask) else None  # one bit set: "not zero" is "equal to it"

    def _as_any(self) -> int | None:
        if self.any_of:
            return self.mask
        return self.mask if self.mask == self.value and _one_bit(self.mask) else None

    def both(self, other: _FlagForm) -> _FlagForm | None:
        """a && b: one comparison of the bits both test, unless they want a shared bit both set and clear."""
        a, b = self._as_equal(), other._as_equal()
        if a is None or b is None:
            return None
        shared = a[0] & b[0]
        if a[1] & shared != b[1] & shared:
            return None
        return _FlagForm(self.word, a[0] | b[0], a[1] | b[1], False)

    def either(self, other: _FlagForm) -> _FlagForm | None:
        """a || b: any of their bits, when each is "any of these bits"."""
        a, b = self._as_any(), other._as_any()
        return None if a is None or b is None else _FlagForm(self.word, a | b, 0, True)

    def test(self, fallback: Test) -> Test:
        """The test on a chunk; `fallback` (the test compiled field by field) where the word is not known."""
        word_of, mask, value = self.word, self.mask, self.value
        if self.any_of:
            def any_of(ctx):
                word = word_of(ctx)
                return fallback(ctx) if word is None else (word & mask) != 0
            return any_of

        def equal(ctx):
            word = word_of(ctx)
            return fallback(ctx) if word is None else (word & mask) == value
        return equal


def _one_bit(mask: int) -> bool:
    return mask > 0 and mask & (mask - 1) == 0


_OP_SYMBOL = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_NAME_SCOPES = ("param", "agg", "flow")  # playbook names that are fields, not literals


def _known_prefix(prefix: str) -> bool:
    """Whether fields live under this first name component (tcp.*, flow.*): then an unknown dotted word after it is a
    misspelt field, not a literal."""
    from diagnose.fields import all_fields
    return prefix in _NAME_SCOPES or any(f.name.startswith(prefix + ".") for f in all_fields())


def _describe(side: Expr | Const, text: str) -> str:
    return f'"{text[side.start:side.end]}"'


def _fields_of(side: Expr | Const) -> frozenset[str]:
    return side.fields if isinstance(side, Expr) else frozenset()


def _compatible(a: FieldType, b: FieldType) -> bool:
    if a == b:
        return True
    numeric = NUMERIC_TYPES - {T.TIME}
    if a in numeric and b in numeric:
        return True
    if {a, b} <= {T.BYTES, T.NONE, T.ETHER} or {a, b} <= {T.BYTES, T.NONE}:
        return True
    if {a, b} == {T.BOOL, T.UINT} or {a, b} == {T.BOOL, T.INT}:
        return True
    return False


def _arith_type(op: str, a: FieldType, b: FieldType) -> FieldType:
    if op == "&":
        return a if a != T.BOOL else T.UINT
    if a == T.TIME and b == T.TIME and op == "-":
        return T.RELTIME
    if T.FLOAT in (a, b) and a not in (T.TIME, T.RELTIME):
        return T.FLOAT
    if a == T.UINT and b == T.INT:
        return T.INT
    return a


def _arith(op: str, a, b, left_type: FieldType):
    """Element-wise arithmetic; the second result says where the value exists (not after a division by zero)."""
    ok = True
    if op in ("/", "%"):
        zero = np.asarray(b) == 0
        ok = ~zero
        b = np.where(zero, 1, b)
        if (np.asarray(a).dtype.kind in "iub" and np.asarray(b).dtype.kind in "iub") or \
                (isinstance(b, int) and np.asarray(a).dtype.kind in "iub"):
            values = a // b if op == "/" else a % b
        else:
            values = a / b if op == "/" else np.fmod(a, b)
        return values, ok
    if op == "&":
        return np.bitwise_and(np.asarray(a).astype(np.int64), b), ok
    return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](a, b), ok


# ==== evaluation helpers ==============================================================================================


def _and(left: Test, right: Test, ctx) -> np.ndarray:
    mask = left(ctx)
    if not mask.any():
        return mask
    return mask & right(ctx)


def _or(left: Test, right: Test, ctx) -> np.ndarray:
    mask = left(ctx)
    if mask.all():
        return mask
    return mask | right(ctx)


def _any(ctx: ChunkContext, occurrences: list[Occurrence]) -> np.ndarray:
    out = np.zeros(ctx.n, bool)
    for o in occurrences:
        out |= o.present
    return out


def _any_shared(ctx: ChunkContext, occurrences: list[Occurrence]) -> np.ndarray:
    """_any, returning the single occurrence's own presence mask instead of a copy (for a test's result, which
    nobody writes to)."""
    if len(occurrences) == 1 and occurrences[0].present.dtype == np.bool_:
        return occurrences[0].present
    return _any(ctx, occurrences)


def _layer_of(o: Occurrence, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(o.layer), (n,))


def _select_layers(o: Occurrence, layers: tuple[ast.SliceRange, ...], all_occurrences) -> Occurrence:
    n = o.present.shape[0]
    layer = _layer_of(o, n)
    count = np.zeros(n, np.int64)  # layers present per row, for negative layer numbers
    for other in all_occurrences:
        count = np.maximum(count, np.where(other.present, _layer_of(other, n), 0))
    keep = np.zeros(n, bool)
    for item in layers:
        first = np.where(item.first < 0, count + item.first + 1, item.first)
        if item.length is not None:
            last = first + item.length - 1
        elif item.last is not None:
            last = np.where(item.last < 0, count + item.last + 1, item.last)
        else:
            last = count
        keep |= (layer >= first) & (layer <= last)
    return o.where(keep)


def _pairs(ctx, left: Expr | Const, right: Expr | Const | None):
    """(left values, right values or constant, both present, layer) for every pair of occurrences."""
    if isinstance(left, Const):
        for b in right.occurrences(ctx):
            yield left.value, b.values, b.present, b.layer
        return
    for a in left.occurrences(ctx):
        if right is None:
            yield a.values, None, a.present, a.layer
        elif isinstance(right, Const):
            yield a.values, right.value, a.present, a.layer
        else:
            for b in right.occurrences(ctx):
                yield a.values, b.values, a.present & b.present, a.layer


def _exists(ctx, left: Expr, right: Expr | Const | None) -> np.ndarray:
    out = _any(ctx, left.occurrences(ctx))
    if isinstance(right, Expr):
        out &= _any(ctx, right.occurrences(ctx))
    return out


def _any_constant(ctx, left: Expr, value, cmp) -> np.ndarray:
    """_quantified(..., "any") of a value against a constant, without the pair generator for the usual single
    occurrence."""
    occurrences = left.occurrences(ctx)
    if len(occurrences) == 1:
        o = occurrences[0]
        if not o.present.any():
            return np.zeros(ctx.n, bool)
        return np.asarray(o.present & cmp(o.values, value), bool)
    out = np.zeros(ctx.n, bool)
    for o in occurrences:
        if o.present.any():
            out |= o.present & cmp(o.values, value)
    return out


def _any_pair(ctx, left: Expr, right: Expr, cmp) -> np.ndarray:
    """_quantified(..., "any") of two values, without the pair generator for the usual single occurrences
    (`tcp.time_delta >= param.min_idle`)."""
    a, b = left.occurrences(ctx), right.occurrences(ctx)
    if len(a) != 1 or len(b) != 1:
        return _quantified(ctx, left, right, cmp, "any")
    present = a[0].present & b[0].present
    if not present.any():
        return present
    return present & cmp(a[0].values, b[0].values)


def _quantified(ctx, left: Expr, right, cmp, quantifier: str) -> np.ndarray:
    if quantifier == "any":
        out = np.zeros(ctx.n, bool)
        for a, b, present, _ in _pairs(ctx, left, right):
            if present.any():
                out |= present & cmp(a, b)
        return out
    out = _exists(ctx, left, right if isinstance(right, Expr) else None)
    for a, b, present, _ in _pairs(ctx, left, right):
        if present.any():
            out &= ~present | cmp(a, b)
    return out


def _comparator(ftype: FieldType, other: Expr | Const, op: str):
    """cmp(a, b) -> bool array for values of `ftype`; b is the other side's values or constant."""
    if op in ("lt", "le"):  # only applied where both sides exist, so "less" is "not greater or equal"
        opposite = _comparator(ftype, other, "ge" if op == "lt" else "gt")
        return lambda a, b: ~opposite(a, b)
    if ftype == T.IPV4:
        return _ipv4_comparator(op)
    if ftype == T.IPV6:
        return _ipv6_comparator(op)
    if ftype in (T.BYTES, T.NONE):
        return _bytes_comparator(op, ftype)
    if ftype == T.STRING:
        fn = {"eq": operator.eq, "gt": operator.gt, "ge": operator.ge}[op]
        return lambda a, b: _object_compare(a, b, fn)
    fn = {"eq": np.equal, "gt": np.greater, "ge": np.greater_equal}[op]
    if ftype == T.BOOL:
        return lambda a, b: fn(np.asarray(a).astype(bool), np.asarray(b).astype(bool)) if op == "eq" else \
            fn(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64))
    return lambda a, b: fn(a, b)


def _ipv4_comparator(op: str):
    def cmp(a, b):
        if isinstance(b, Network4):
            if op == "eq":
                return (np.asarray(a) & b.mask) == b.address
            target = b.address
        else:
            target = b
        return np.greater(a, target) if op == "gt" else np.greater_equal(a, target) if op == "ge" else \
            np.equal(a, target)
    return cmp


def _ipv6_comparator(op: str):
    def cmp(a, b):
        hi, lo = a[:, 0], a[:, 1]
        if isinstance(b, Network6):
            mh, ml = b.masks()
            h, l = b.halves()
            if op == "eq":
                return ((hi & np.uint64(mh)) == np.uint64(h)) & ((lo & np.uint64(ml)) == np.uint64(l))
            bh, bl = np.uint64(h), np.uint64(l)
        else:
            bh, bl = b[:, 0], b[:, 1]
        if op == "eq":
            return (hi == bh) & (lo == bl)
        if op == "gt":
            return (hi > bh) | ((hi == bh) & (lo > bl))
        return (hi > bh) | ((hi == bh) & (lo >= bl))
    return cmp


def _bytes_comparator(op: str, ftype: FieldType):
    fn = {"eq": operator.eq, "gt": operator.gt, "ge": operator.ge}[op]

    def cmp(a, b):
        n = len(a) if not isinstance(a, np.ndarray) else a.shape[0]
        everywhere = np.ones(n, bool)
        if isinstance(b, (bytes, str)):  # a constant
            constant = _as_bytes(b, ftype)
            if op == "eq":
                return B.equals(a, constant, everywhere)
            return B.compare_objects(a, everywhere, constant, fn)
        left = B.to_objects(a, everywhere)
        right = B.to_objects(b, everywhere)
        return np.fromiter((x is not None and y is not None and fn(x, y) for x, y in zip(left, right)), bool, n)
    return cmp


def _as_bytes(value, ftype: FieldType) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int) and ftype == T.ETHER:
        return value.to_bytes(6, "big")
    return bytes(value)


def _bytes_contains(o: Occurrence, needle: bytes, ftype: FieldType) -> np.ndarray:
    values = o.values
    if ftype == T.ETHER:
        values = B.from_integers(values, 6)
    return B.contains(values, needle, o.present)


def _bytes_test(o: Occurrence, predicate, ftype: FieldType) -> np.ndarray:
    values = o.values
    if isinstance(values, ByteRanges):  # search the buffer in place: no copy of each packet
        values = values.searchable()
        view = memoryview(values.buf)
        out = np.zeros(o.present.shape[0], bool)
        for i in np.nonzero(o.present)[0]:
            start = int(values.start[i])
            out[i] = predicate(view[start:start + int(values.length[i])])
        return out
    objects = B.to_objects(values, o.present)
    return np.fromiter((v is not None and predicate(v) for v in objects), bool, len(objects))


def _str_test(o: Occurrence, predicate) -> np.ndarray:
    out = np.zeros(o.present.shape[0], bool)
    for i in np.nonzero(o.present)[0]:
        value = o.values[i]
        out[i] = value is not None and predicate(value)
    return out


def _object_compare(a, b, fn) -> np.ndarray:
    a = np.asarray(a, dtype=object)
    if fn is operator.eq and isinstance(b, str):  # numpy compares each object in C (None == b is False too)
        return np.asarray(a == b, bool)
    if isinstance(b, np.ndarray):
        return np.fromiter((x is not None and y is not None and fn(x, y) for x, y in zip(a, b)), bool, a.shape[0])
    return np.fromiter((x is not None and fn(x, b) for x in a), bool, a.shape[0])


def _object_test(fn, ftype):
    def cmp(a, b):
        everywhere = np.ones(len(a) if not isinstance(a, np.ndarray) else a.shape[0], bool)
        left = B.to_objects(a, everywhere) if ftype != T.STRING else a
        right = B.to_objects(b, everywhere) if ftype != T.STRING else b
        return np.fromiter((x is not None and y is not None and fn(x, y) for x, y in zip(left, right)), bool,
                           everywhere.shape[0])
    return cmp


def _bytes_view(expr: Expr) -> Expr:
    if expr.type != T.ETHER:
        return expr

    def compute(ctx):
        return [Occurrence(B.from_integers(np.asarray(o.values), 6), o.present, o.layer)
                for o in expr.occurrences(ctx)]
    return Expr(T.BYTES, expr.start, expr.end, compute, None, expr.fields)


def _fixed_bytes(values, ftype: FieldType, width: int) -> np.ndarray:
    if ftype == T.IPV6:
        return B.from_ipv6(values)
    return B.from_integers(np.asarray(values).astype(np.int64), width)


def _slice_strings(o: Occurrence, ranges) -> Occurrence:
    out = np.empty(o.present.shape[0], dtype=object)
    present = o.present.copy()
    for i in np.nonzero(o.present)[0]:
        text = o.values[i]
        pieces = []
        for item in ranges:
            size = len(text)
            first = item.first + size if item.first < 0 else item.first
            if item.length is not None:
                stop = first + item.length
            elif item.last is not None:
                stop = (item.last + size if item.last < 0 else item.last) + 1
            else:
                stop = size
            if first < 0 or stop > size or stop <= first:
                present[i] = False
                break
            pieces.append(text[first:stop])
        else:
            out[i] = "".join(pieces)
    return Occurrence(out, present, o.layer)


__all__ = ["DisplayFilter", "compile_display_filter", "ByteRanges"]
