"""Display filters inside playbooks: one language with `-Y`, checked for the scope a rule runs in.

A rule's `when`, `evidence`, `having` and the filters inside its aggregates are Wireshark display filters, compiled
and type-checked by diagnose.filters. On top of the packet fields of the registry a rule can read:

  flow.*      facts of one conversation (engine/conn): in flow rules
  capture.*   facts of the whole capture (engine/facts): in flow and capture rules
  param.NAME  the rule's or playbook's thresholds (constants; --set overrides them)
  agg.NAME    the rule's aggregates: in flow/capture `when` and packet `having`

Which of these a filter may use depends on where it is evaluated (its scope): a flow rule's `when` runs on one row
per flow, so a packet field there is a mistake with its own message (count packets with an aggregate instead).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from diagnose.errors import FilterError
from diagnose.fields import Field, FieldType, Occurrence, lookup, suggest
from diagnose.filters import display_ast as ast
from diagnose.filters.display_parser import parse_display_filter
from diagnose.rules import capture_fields, flow_fields  # noqa: F401  (register capture.*, flow.* before any check)

# where a filter is evaluated
PACKET, FLOW, CAPTURE, GROUP = "packet", "flow", "capture", "group"

LANGUAGE = "display filter"
_NAME_LIKE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)+$")


def name_scope(name: str) -> str:
    """Which scope a field belongs to, from its name."""
    head = name.split(".", 1)[0]
    if head in ("flow", "capture", "param", "agg"):
        return head
    return PACKET


# which field scopes each evaluation scope may read
_ALLOWED = {
    PACKET: {PACKET, "param"},  # flow and capture facts are complete only after the last packet
    FLOW: {"flow", "capture", "param", "agg"},
    CAPTURE: {"capture", "param", "agg"},
    GROUP: {"flow", "capture", "param", "agg"},
}


@dataclass
class ExtraNames:
    """The per-rule names a filter can read besides the registry: param.* constants and agg.* columns.

    Each is a registry Field whose internal name carries the rule id (`param.limit@custom.rule`), so two rules with
    a parameter of the same name never share a cached value in a context; filters and messages use the short name.
    """

    owner: str = ""
    fields: dict[str, Field] = field(default_factory=dict)

    def add(self, name: str, ftype: FieldType, description: str, values: Callable) -> None:
        """values(ctx) -> a scalar (same on every row), None (absent) or an array with one value per row."""
        internal = f"{name}@{self.owner}" if self.owner else name
        self.fields[name] = Field(internal, ftype, description, _ExtraExtractor(ftype, values),
                                  protocol=name.split(".", 1)[0])

    def lookup(self, name: str) -> Field | None:
        return self.fields.get(name)

    def suggest(self, name: str) -> str | None:
        import difflib

        close = difflib.get_close_matches(name, list(self.fields), n=1, cutoff=0.7)
        return close[0] if close else None

    def copy(self) -> ExtraNames:
        return ExtraNames(self.owner, dict(self.fields))


class _ExtraExtractor:
    """A param.*/agg.* field's extractor: values(ctx) as one occurrence per row. A class rather than a closure so
    that a rule set (its rules' ExtraNames) can be pickled into the cache (playbook/cache.py)."""

    __slots__ = ("ftype", "values")

    def __init__(self, ftype: FieldType, values: Callable):
        self.ftype = ftype
        self.values = values

    def __call__(self, ctx) -> list[Occurrence]:
        ftype = self.ftype
        value = self.values(ctx)
        if value is None:
            return [Occurrence(np.zeros(ctx.n, _numpy_type(ftype)), np.zeros(ctx.n, bool))]
        if np.ndim(value) == 0:
            array = np.empty(ctx.n, dtype=_numpy_type(ftype))
            array[:] = value
            return [Occurrence(array, np.ones(ctx.n, bool))]
        array = np.asarray(value)
        if array.dtype == object:
            present = np.fromiter((v is not None for v in array), bool, len(array))
            filled = np.empty(len(array), object)
            filled[:] = ["" if v is None else v for v in array]
            return [Occurrence(filled, present)]
        if array.dtype.kind == "f" and ftype != FieldType.FLOAT:
            present = ~np.isnan(array)
            array = np.where(present, array, 0).astype(_numpy_type(ftype))
        elif array.dtype.kind == "f":
            present = ~np.isnan(array)
        else:
            present = np.ones(ctx.n, bool)
        return [Occurrence(array, present)]


def _numpy_type(ftype: FieldType):
    if ftype == FieldType.BOOL:
        return np.bool_
    if ftype == FieldType.FLOAT:
        return np.float64
    if ftype == FieldType.STRING:
        return object
    return np.int64


@dataclass
class Compiled:
    """A checked filter: evaluate(ctx) -> bool mask over the context's rows."""

    text: str
    scope: str
    fields: list[str]
    evaluate: Callable[[object], np.ndarray]
    tree: Any = None  # the display-filter syntax tree it was compiled from (what the rule-set cache keeps)
    extra: ExtraNames | None = None  # the param.*/agg.* names it was compiled with


class ScopeError(FilterError):
    pass


def referenced_names(node: ast.Node) -> list[tuple[str, int, bool]]:
    """(name, start, explicit) of every field-like name in the tree; explicit = written as a field (@x, x#1)."""
    found: list[tuple[str, int, bool]] = []

    def walk(n):
        if isinstance(n, ast.Field):
            found.append((n.name, n.start, True))
        elif isinstance(n, ast.Word):
            if _NAME_LIKE.match(n.text) and not _looks_literal(n.text):
                found.append((n.text, n.start, False))
        elif isinstance(n, ast.Node):
            for value in vars(n).values():
                if isinstance(value, ast.Node):
                    walk(value)
                elif isinstance(value, tuple):
                    for item in value:
                        if isinstance(item, ast.Node):
                            walk(item)
    walk(node)
    return found


def _looks_literal(text: str) -> bool:
    """Dotted words that are values, not names: 1.5, 10.0.0.1, 00:11:..., 2001:db8::1."""
    return bool(re.match(r"^[\d.]+$", text) or ":" in text)


def _resolve(name: str, extra: ExtraNames) -> Field | None:
    if name_scope(name) in ("param", "agg"):
        return extra.lookup(name)
    return lookup(name)


def check_names(text: str, tree: ast.Node, scope: str, extra: ExtraNames) -> None:
    """Unknown names (with "did you mean") and names the scope cannot read; raises FilterError at the name."""
    for name, start, explicit in referenced_names(tree):
        kind = name_scope(name)
        resolved = _resolve(name, extra)
        if resolved is None:
            hint = extra.suggest(name) if kind in ("param", "agg") else suggest(name)
            if kind == "agg" and kind not in _ALLOWED[scope]:
                raise ScopeError(text, start, _scope_message(name, kind, scope), language=LANGUAGE)
            if hint is None and kind in ("param", "agg"):
                known = ", ".join(sorted(n for n in extra.fields if n.startswith(kind + "."))) or "none defined"
                raise FilterError(text, start, f"unknown name '{name}' (known here: {known})", language=LANGUAGE)
            did_you_mean = f" (did you mean '{hint}'?)" if hint else ""
            what = "name" if kind in ("param", "agg") else "field"
            raise FilterError(text, start, f"unknown {what} '{name}'{did_you_mean}", language=LANGUAGE)
        if kind not in _ALLOWED[scope]:
            raise ScopeError(text, start, _scope_message(name, kind, scope), language=LANGUAGE)


def _scope_message(name: str, kind: str, scope: str) -> str:
    if kind == PACKET:
        return (f"'{name}' is a packet field, but this filter runs once per {scope}: count packets with an "
                f"aggregate (aggregate: {{n: count({name})}}) and test agg.n, or use a flow.* fact")
    if kind == "agg":
        return (f"'{name}' is an aggregate: a packet rule's when selects packets one by one; test aggregates "
                f"(agg.count, agg.NAME) in its having")
    if scope == PACKET and kind in ("flow", "capture"):
        return (f"'{name}' is a {kind} fact, known only once the whole capture was read: packet filters (packet "
                f"rules' when, evidence, aggregate arguments) read packet fields; test it in a flow or capture rule")
    if kind == "flow":
        return f"'{name}' is a flow fact, and a capture rule has no single flow: write a flow rule"
    return f"'{name}' cannot be used here"


def compile_filter(text: str, scope: str, extra: ExtraNames | None = None) -> Compiled:
    """Parse, check names for the scope, and compile with the display-filter compiler. FilterError on mistakes."""
    extra = extra or ExtraNames()
    tree = parse_display_filter(text)
    check_names(text, tree, scope, extra)
    return compile_tree(text, tree, scope, extra)


def compile_tree(text: str, tree: ast.Node, scope: str, extra: ExtraNames, names: list[str] | None = None) -> Compiled:
    """Compile a filter already parsed and checked (compile_filter; a rule set read from the cache, which knows the
    names it reads)."""
    if names is None:
        names = sorted({name for name, _, _ in referenced_names(tree) if _resolve(name, extra) is not None})
    compiler = _compiler()
    if compiler is None:
        return Compiled(text, scope, names, _unavailable(text), tree, extra)
    evaluate = compiler(text, extra, tree)
    return Compiled(text, scope, names, evaluate, tree, extra)


def _unavailable(text: str):
    def evaluate(ctx):
        raise RuntimeError(f"the display-filter compiler (diagnose.filters.compile_display_filter) is not available "
                           f"to evaluate {text!r}")
    return evaluate


@lru_cache(maxsize=1)
def _compiler() -> Callable[[str, ExtraNames, ast.Node], Callable] | None:
    """Adapter to diagnose.filters' compiler: (text, extra names, syntax tree) -> evaluate(ctx) -> bool mask."""
    try:
        from diagnose import filters
        compile_display_filter = getattr(filters, "compile_display_filter")
    except (ImportError, AttributeError):
        return None
    parameters = inspect.signature(compile_display_filter).parameters

    def compile_with(text: str, extra: ExtraNames, tree: ast.Node):
        if "fields" not in parameters:
            return _compile_with_overlay(compile_display_filter, text, extra).evaluate
        compiled = _compile_parsed(text, tree, _chain(extra))
        if compiled is None:
            compiled = compile_display_filter(text, fields=_chain(extra))
        return compiled.evaluate
    return compile_with


def _compile_parsed(text: str, tree: ast.Node, resolve: Callable[[str], Field | None]):
    """compile_display_filter(text, fields=resolve) without parsing the text again: the parse is most of a playbook
    filter's compile (~8 of ~10 ms for the 64 filters of the built-in playbooks), and the rule-set cache keeps trees,
    not compiled filters. Its steps are compile_display_filter's (a test holds them equal); None when the compiler's
    parts are not the ones this was written against."""
    from diagnose.filters import display_compile as dc

    checker_class, result_class = getattr(dc, "_Checker", None), getattr(dc, "DisplayFilter", None)
    if checker_class is None or result_class is None:
        return None
    checker = checker_class(text, resolve)
    test = checker.test(tree)
    return result_class(text, test, frozenset(checker.used), checker.key(tree))


def _compile_with_overlay(compile_display_filter, text: str, extra: ExtraNames):
    """The compiler resolves names through the registry only: show it the rule's param.*/agg.* names for the
    duration of one compile. The compiled filter keeps the Field objects it resolved, so nothing stays registered.
    (Replaced by the compiler's own `fields=` resolver once it has one.)"""
    from diagnose.fields import registry

    added = [name for name in extra.fields if name not in registry._FIELDS]
    for name in added:
        registry._FIELDS[name] = extra.fields[name]
    try:
        return compile_display_filter(text)
    finally:
        for name in added:
            registry._FIELDS.pop(name, None)


def _chain(extra: ExtraNames) -> Callable[[str], Field | None]:
    def find(name: str) -> Field | None:
        return extra.lookup(name) if name_scope(name) in ("param", "agg") else lookup(name)
    return find


def field_type_of(name: str, extra: ExtraNames | None = None) -> FieldType | None:
    resolved = _resolve(name, extra or ExtraNames())
    return None if resolved is None else resolved.type


def known(name: str, extra: ExtraNames | None = None) -> bool:
    return _resolve(name, extra or ExtraNames()) is not None


__all__ = ["CAPTURE", "Compiled", "ExtraNames", "FLOW", "GROUP", "PACKET", "compile_filter", "compile_tree",
           "field_type_of", "known", "name_scope", "referenced_names"]
