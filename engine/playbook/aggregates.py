"""Aggregate expressions of a rule: `count(F)`, `percent(F, OF)`, `distinct(FIELD, F)`, `peak(F, 1s)`, ...

An aggregate folds the packets of a finding's scope (one flow, one packet group, or the whole capture) into one
number a rule can test as `agg.NAME` and show in its message. The arguments are display filters (which packets) or
field names (which value), so an aggregate reads like a spreadsheet formula over the capture.

  count(F)              packets matching F
  rate(F)               count(F) per second of the scope's duration
  percent(F, OF)        count(F && OF) / count(OF), a fraction like every rate (0.047 = 4.7 %)
  distinct(FIELD[, F])  different values of FIELD (in packets matching F)
  sum|min|max|mean(FIELD[, F])   numeric FIELD over the packets (matching F)
  first|last(FIELD[, F])         FIELD of the first / last such packet
  peak(F, DURATION)     the most packets matching F within any one time window of DURATION (windows aligned to
                        the capture start)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FUNCTIONS = {
    # name: (argument kinds, result) ; kinds: f = filter, v = field name, d = duration
    "count": (("f",), "uint"),
    "rate": (("f",), "float"),
    "percent": (("f", "f"), "float"),
    "distinct": (("v", "f?"), "uint"),
    "sum": (("v", "f?"), "field"),
    "min": (("v", "f?"), "field"),
    "max": (("v", "f?"), "field"),
    "mean": (("v", "f?"), "float"),
    "first": (("v", "f?"), "field"),
    "last": (("v", "f?"), "field"),
    "peak": (("f", "d"), "uint"),
}

_CALL = re.compile(r"^\s*([a-z_]+)\s*\(")


@dataclass(frozen=True)
class Arg:
    text: str
    offset: int  # where the argument starts in the aggregate's text (for error carets)


@dataclass(frozen=True)
class AggregateCall:
    function: str
    args: tuple[Arg, ...]


class AggregateSyntaxError(ValueError):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset
        self.message = message


def parse_aggregate(text: str) -> AggregateCall:
    """Split `fn(arg, arg)` into its function and argument texts (commas inside (), {}, [] or quotes do not split)."""
    m = _CALL.match(text)
    if not m:
        raise AggregateSyntaxError(len(text) - len(text.lstrip()),
                                   f"an aggregate is FUNCTION(ARGS) with FUNCTION one of {', '.join(FUNCTIONS)}")
    name = m.group(1)
    if name not in FUNCTIONS:
        import difflib

        close = difflib.get_close_matches(name, FUNCTIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (one of {', '.join(FUNCTIONS)})"
        raise AggregateSyntaxError(m.start(1), f"unknown aggregate function '{name}'{hint}")
    body_start = m.end()
    close_at = _matching_paren(text, body_start - 1)
    if close_at is None:
        raise AggregateSyntaxError(len(text), f"'{name}(' is never closed")
    if text[close_at + 1:].strip():
        raise AggregateSyntaxError(close_at + 1, "unexpected text after the aggregate's closing parenthesis")
    args = _split_args(text, body_start, close_at)
    kinds, _ = FUNCTIONS[name]
    required = sum(1 for k in kinds if not k.endswith("?"))
    if not (required <= len(args) <= len(kinds)):
        expected = required if required == len(kinds) else f"{required} or {len(kinds)}"
        raise AggregateSyntaxError(m.start(1), f"{name}() takes {expected} argument(s), got {len(args)}")
    for arg, kind in zip(args, kinds):
        if not arg.text.strip():
            raise AggregateSyntaxError(arg.offset, f"empty argument to {name}()")
        if kind.startswith("v") and not re.fullmatch(r"[A-Za-z_][\w.\-]*", arg.text.strip()):
            raise AggregateSyntaxError(arg.offset, f"{name}() wants a field name here, not a filter")
    return AggregateCall(name, tuple(args))


def _outside_quotes(text: str, start: int, end: int):
    """(index, character, bracket depth after it) of every character of text[start:end] outside string literals."""
    depth = 0
    quote = None
    i = start
    while i < end:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        else:
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            yield i, ch, depth
        i += 1


def _matching_paren(text: str, open_at: int) -> int | None:
    for i, ch, depth in _outside_quotes(text, open_at, len(text)):
        if ch in ")]}" and depth == 0:
            return i
    return None


def _split_args(text: str, start: int, end: int) -> list[Arg]:
    args: list[Arg] = []
    piece_start = start
    for i, ch, depth in _outside_quotes(text, start, end):
        if ch == "," and depth == 0:
            args.append(_arg(text, piece_start, i))
            piece_start = i + 1
    if text[piece_start:end].strip() or args:
        args.append(_arg(text, piece_start, end))
    return args


def _arg(text: str, start: int, end: int) -> Arg:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return Arg(piece.strip(), start + lead)
