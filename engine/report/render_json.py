"""The report as JSON: the versioned schema of docs/report-schema.md (Report.to_dict).

The text is exactly what `json.dumps(..., indent=2, ensure_ascii=False, default=_default)` gives, written by a
plain recursive encoder: with `indent`, the standard library falls back to its pure-Python encoder, whose nested
generators pass every token up through each level of the report (0.16 s for a report of 2,400 findings); here each
token is appended once, and runs of scalars are joined by one C-level call.
"""

from __future__ import annotations

from json.encoder import c_make_encoder, encode_basestring

from diagnose.findings import Report

_INDENT = "  "
_SCALARS = frozenset((str, int, float, bool, type(None)))


def _default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def render_json(report: Report) -> str:
    return dumps_indented(report.to_dict()) + "\n"


def dumps_indented(value, default=_default) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False, default=default)`, faster."""
    out: list[str] = []
    _Encoder(out, default).value(value, 0)
    return "".join(out)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _scalar(value) -> str:
    """A value of exactly one of the types in _SCALARS (subclasses such as numpy.float64 take the long way)."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    return _float(value)


def _key(key) -> str:
    # json.dumps's conversion of non-text keys
    if isinstance(key, str):
        return encode_basestring(key)
    if isinstance(key, float):
        return encode_basestring(_float(key))
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return encode_basestring(int.__repr__(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")


class _Encoder:
    def __init__(self, out: list[str], default):
        self.out = out
        self.default = default
        self.breaks = ["\n"]  # breaks[level]: a line break and the indentation of that level
        self.flat: list = []  # flat[level]: the C encoder of a flat list or mapping at that level

    def _break(self, level: int) -> str:
        while len(self.breaks) <= level:
            self.breaks.append("\n" + _INDENT * len(self.breaks))
        return self.breaks[level]

    def value(self, value, level: int) -> None:
        out = self.out
        if type(value) in _SCALARS:
            out.append(_scalar(value))
        elif isinstance(value, str):
            out.append(encode_basestring(value))
        elif value is None:
            out.append("null")
        elif value is True:
            out.append("true")
        elif value is False:
            out.append("false")
        elif isinstance(value, int):
            out.append(int.__repr__(value))
        elif isinstance(value, float):
            out.append(_float(value))
        elif isinstance(value, (list, tuple)):
            self.sequence(value, level)
        elif isinstance(value, dict):
            self.mapping(value, level)
        else:
            self.value(self.default(value), level)

    def sequence(self, items, level: int) -> None:
        out = self.out
        if not items:
            out.append("[]")
            return
        if all(type(item) in _SCALARS for item in items):
            out.append(self._flat(items, level))
            return
        inner = self._break(level + 1)
        out.append("[" + inner)
        first = True
        for item in items:
            if not first:
                out.append("," + inner)
            first = False
            self.value(item, level + 1)
        out.append(self._break(level) + "]")

    def mapping(self, items: dict, level: int) -> None:
        out = self.out
        if not items:
            out.append("{}")
            return
        if all(type(value) in _SCALARS for value in items.values()):
            out.append(self._flat(items, level))
            return
        inner = self._break(level + 1)
        separator = "," + inner
        out.append("{" + inner)
        first = True
        for key, value in items.items():
            head = _key(key) + ": "
            if first:
                first = False
            else:
                head = separator + head
            if type(value) in _SCALARS:
                out.append(head + _scalar(value))
            else:
                out.append(head)
                self.value(value, level + 1)
        out.append(self._break(level) + "}")

    def _flat(self, items, level: int) -> str:
        """A non-empty list or mapping of plain scalars, by the C encoder: its item separator carries the line
        break and indentation of this level, and only the brackets need theirs added."""
        flat = self.flat
        while len(flat) <= level:
            flat.append(c_make_encoder(None, self.default, encode_basestring, None, ": ",
                                       "," + self._break(len(flat) + 1), False, False, True))
        text = "".join(flat[level](items, 0))
        return text[0] + self._break(level + 1) + text[1:-1] + self._break(level) + text[-1]
