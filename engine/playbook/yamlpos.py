"""YAML with positions: every mapping, list and scalar of a playbook remembers where it was written.

PyYAML's composer already knows each node's start and end mark; its constructor forgets them. Here the node tree
is turned into plain Python values wrapped in `Y` (value + span), duplicate keys are reported instead of silently
overwritten, and `source_offset` maps a character of a scalar's value back to the file, so an error inside a
`when:` expression (even a folded or quoted one) points at the right line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class Pos:
    """A place in a file: 0-based index into the text, 1-based line and column (as editors and compilers show)."""

    index: int
    line: int
    col: int


@dataclass
class Y:
    """A YAML value with its span. Mappings hold `dict[str, Y]` (plus the position of each key), lists `list[Y]`."""

    value: Any
    start: Pos
    end: Pos
    style: str | None = None  # scalar style: None (plain), "'", '"', "|", ">"
    key_pos: dict[str, Pos] = field(default_factory=dict)  # mappings: where each key was written

    @property
    def kind(self) -> str:
        if isinstance(self.value, dict):
            return "mapping"
        if isinstance(self.value, list):
            return "list"
        return "scalar"

    def plain(self) -> Any:
        """The value without positions (recursively)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


@dataclass
class YamlProblem:
    message: str
    pos: Pos


class _Converter:
    def __init__(self, text: str):
        self.text = text
        self.problems: list[YamlProblem] = []
        self._constructor = yaml.SafeLoader("")

    def pos(self, mark) -> Pos:
        return Pos(mark.index, mark.line + 1, mark.column + 1)

    def convert(self, node: yaml.Node) -> Y:
        start, end = self.pos(node.start_mark), self.pos(node.end_mark)
        if isinstance(node, yaml.MappingNode):
            values: dict[str, Y] = {}
            keys: dict[str, Pos] = {}
            self._constructor.flatten_mapping(node)  # `<<` merge keys, as safe_load does
            for key_node, value_node in node.value:
                key_pos = self.pos(key_node.start_mark)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(YamlProblem("a mapping key must be a plain name", key_pos))
                    continue
                key = str(self._constructor.construct_object(key_node))
                if key in values:
                    first = keys[key]
                    self.problems.append(YamlProblem(
                        f"duplicate key '{key}' (first written at line {first.line}, column {first.col})", key_pos))
                    continue
                keys[key] = key_pos
                values[key] = self.convert(value_node)
            return Y(values, start, end, key_pos=keys)
        if isinstance(node, yaml.SequenceNode):
            return Y([self.convert(item) for item in node.value], start, end)
        value = self._constructor.construct_object(node, deep=True)
        if isinstance(value, (bytes, bytearray)):
            value = value.decode("latin-1")
        return Y(value, start, end, style=node.style or None)  # libyaml says '' for plain, PyYAML None


def load_yaml(text: str, *, libyaml: bool = False) -> tuple[Y | None, list[YamlProblem]]:
    """Parse one YAML document into `Y` values. Syntax errors and duplicate keys come back as problems.

    `libyaml`: compose with PyYAML's C parser when it is built in (9x faster). Only for the built-in playbooks,
    whose node trees a test compares with the pure-Python parser's: libyaml accepts a few things PyYAML refuses
    (a tab after `key:`) and words its errors differently, and a user's file gets PyYAML's checks and messages."""
    loader = yaml.CSafeLoader if libyaml and getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Pos(mark.index, mark.line + 1, mark.column + 1) if mark else Pos(0, 1, 1)
        message = exc.problem or exc.context or "not valid YAML"
        return None, [YamlProblem(f"YAML syntax: {message}", where)]
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for text input
        return None, [YamlProblem(f"YAML: {exc}", Pos(0, 1, 1))]
    if node is None:
        return None, [YamlProblem("the file is empty", Pos(0, 1, 1))]
    converter = _Converter(text)
    try:
        root = converter.convert(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = Pos(mark.index, mark.line + 1, mark.column + 1) if mark else Pos(0, 1, 1)
        return None, converter.problems + [YamlProblem(f"YAML: {exc.problem}", where)]
    return root, converter.problems


class LineIndex:
    """Index -> (line, column) for one text."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0]
        newline = text.find("\n")
        while newline >= 0:
            self.starts.append(newline + 1)
            newline = text.find("\n", newline + 1)

    def pos(self, index: int) -> Pos:
        import bisect

        index = max(0, min(index, len(self.text)))
        line = bisect.bisect_right(self.starts, index) - 1
        return Pos(index, line + 1, index - self.starts[line] + 1)

    def line_text(self, line: int) -> str:
        if line < 1 or line > len(self.starts):
            return ""
        start = self.starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]


def source_offset(text: str, scalar: Y, offset: int) -> int:
    """Index in `text` of character `offset` of `scalar`'s string value.

    The value and its source differ by quotes, escapes, indentation of block scalars and line folding; walking both
    together (equal characters advance both, source-only whitespace and quotes advance the source) finds the place.
    """
    value = str(scalar.value)
    i = scalar.start.index
    end = max(scalar.end.index, i)
    if scalar.style in ("|", ">"):
        # skip the indicator line (`|`, `>-`, `|2` ...)
        newline = text.find("\n", i)
        i = end if newline < 0 else newline + 1
    elif scalar.style in ("'", '"'):
        i += 1
    k = 0
    while k < offset and i < end:
        if k < len(value) and text[i] == value[k]:
            i += 1
            k += 1
        elif k < len(value) and value[k] in " \n" and text[i] in "\r\n":
            # a folded line break: the value's space/newline stands for the source's line break and indentation
            i += 1
            while i < end and text[i] in " \t":
                i += 1
            k += 1
        elif k < len(value) and value[k] == "\n" and text[i] == "\\":  # an escaped "\n" in a double-quoted string
            i += 2
            k += 1
        else:
            i += 1  # indentation, a quote escape, a backslash: source-only characters
    if k < len(value):
        while i < end and text[i] != value[k]:  # land on the character itself, not on indentation before it
            i += 1
    return i
