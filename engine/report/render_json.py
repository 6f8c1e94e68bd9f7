"""The report as JSON: the versioned schema of docs/report-schema.md (Report.to_dict).

The text is exactly what `json.dumps(..., indent=2, ensure_ascii=False, default=_default)` gives, written by a
plain recursive encoder: with `indent`, the standard library falls back to its pure-Python encoder, whose nested
generators pass every token up through each level of the report (0.16 s for a report of 2,400 findings); here each
token is appended once, and runs of scalars are joined by one C-level call.

A report is written as it is encoded (write_json): the findings stay objects until their turn (no dict tree of the
whole report) and the text goes to the stream a few hundred kB at a time (not one string of the whole report).
"""

from __future__ import annotations

import io
import shlex
from json.encoder import c_make_encoder, encode_basestring

from diagnose.findings import Finding, Report, frame_set

_INDENT = "  "
_SCALARS = frozenset((str, int, float, bool, type(None)))
_all_scalars = _SCALARS.issuperset  # _all_scalars(map(type, items)): every item is exactly one of _SCALARS
_all_ints = frozenset((int,)).issuperset
_all_str = frozenset((str,)).issuperset
_ENCODED_KEPT = 8192  # distinct texts of findings noted (a busy report repeats a few dozen, encoded when repeated)
_UNSEEN = object()


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
    out = io.StringIO()
    write_json(report, out)
    return out.getvalue()


def write_json(report: Report, stream) -> None:
    """The report's JSON text (the same as dumps_indented(report.to_dict()) + newline), written to `stream` in
    pieces as it is encoded."""
    encoder = _Encoder([], _default, stream=stream, capture=report.capture.get("file"))
    encoder.value(report.to_dict(finding=_itself), 0)
    encoder.out.append("\n")
    encoder.flush()


def _itself(finding: Finding) -> Finding:
    return finding


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


_FLUSH_PIECES = 8192  # write the text to the stream once this many pieces are pending (a few hundred kB)


class _Encoder:
    def __init__(self, out: list[str], default, *, stream=None, capture: str | None = None):
        self.out = out
        self.default = default
        self.breaks = ["\n"]  # breaks[level]: a line break and the indentation of that level
        self.flat: list = []  # flat[level]: the C encoder of a flat list or mapping at that level, and its breaks
        self.stream = stream
        self.capture = capture  # the capture file named in each finding's evidence command
        self.command_head = f"diagnose list {shlex.quote(capture)} -Y " if capture else None
        self.heads: dict[int, dict[str, str]] = {}  # heads[level]: the key heads of a finding at that level
        self.ref_heads: dict[int, tuple[str, ...]] = {}  # the same of a flow reference
        self.encoded: dict[str, str | None] = {}  # a finding's texts seen: encoded once repeated (title, advice, ...)
        self.reference_texts: dict[tuple, tuple] = {}  # (id(list), level) -> (the list, its items, its text)

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.write("".join(self.out))
            self.out.clear()

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
        elif isinstance(value, Finding):
            self.finding(value, level)
        else:
            self.value(self.default(value), level)

    def sequence(self, items, level: int) -> None:
        out = self.out
        if not items:
            out.append("[]")
            return
        if _all_scalars(map(type, items)):  # C-level: no generator step per item
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
        if _all_scalars(map(type, items.values())):
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
            inner = self._break(len(flat) + 1)
            flat.append((c_make_encoder(None, self.default, encode_basestring, None, ": ", "," + inner, False, False,
                                        True), inner, self._break(len(flat))))
        encode, inner, outer = flat[level]
        text = "".join(encode(items, 0))
        return text[0] + inner + text[1:-1] + outer + text[-1]

    # ---- findings ----------------------------------------------------------------------------------------------------
    def _finding_heads(self, level: int) -> dict[str, str]:
        """'"key": ' preceded by the separator and indentation of a finding's keys at this level."""
        heads = self.heads.get(level)
        if heads is None:
            inner = self._break(level + 1)
            keys = ("rule", "playbook", "title", "severity", "status", "scope", "message", "about", "flows", "start",
                    "end", "evidence", "values", "key", "group", "explanation", "advice", "references", "symptoms",
                    "impact", "original_severity", "explained_by")
            heads = {key: "," + inner + encode_basestring(key) + ": " for key in keys}
            heads["rule"] = "{" + inner + '"rule": '
            inner2 = self._break(level + 2)
            heads["evidence.frames"] = "{" + inner2 + '"frames": '
            heads["evidence.total"] = "," + inner2 + '"total": '
            heads["evidence.filter"] = "," + inner2 + '"filter": '
            heads["evidence.command"] = "," + inner2 + '"command": '
            heads["evidence.end"] = inner + "}"
            heads["texts"] = tuple(heads[key] for key in keys[:6])  # rule .. scope: text, one after the other
            heads["evidence.none"] = "".join((heads["evidence.filter"], "null", heads["evidence.command"], "null",
                                              heads["evidence.end"], heads["values"]))
            heads["known"] = {}  # (rule .. scope) and (explanation, advice) texts -> their encoded parts
            heads["close"] = self._break(level) + "}"
            heads["list"] = "[" + inner2
            heads["list.sep"] = "," + inner2
            heads["list.end"] = inner + "]"
            inner3 = self._break(level + 3)
            heads["frames"] = "[" + inner3
            heads["frames.sep"] = "," + inner3
            heads["frames.end"] = inner2 + "]"
            self.heads[level] = heads
        return heads

    def _items(self, items, encode, heads: dict) -> None:
        """A finding's list of objects (symptoms) at the finding's indentation: '[]' when empty."""
        out = self.out
        if not items:
            out.append("[]")
            return
        out.append(heads["list"])
        for i, item in enumerate(items):
            if i:
                out.append(heads["list.sep"])
            encode(item)
        out.append(heads["list.end"])

    def _references(self, references, level: int) -> str:
        """sequence(list(references), level) as one string, kept by list and level: a rule's findings share its
        list."""
        key = (id(references), level)
        got = self.reference_texts.get(key)
        if got is not None and got[0] is references and got[1] == references:
            return got[2]
        text = self._text(list(references), level)
        self.reference_texts[key] = (references, list(references), text)
        return text

    def _text(self, value, level: int) -> str:
        """What value(value, level) writes, as one string (for the rare value a finding's fast paths do not know)."""
        out = self.out
        self.out = []
        try:
            self.value(value, level)
            return "".join(self.out)
        finally:
            self.out = out

    def _ref_heads(self, level: int) -> tuple[str, ...]:
        """The key heads of a flow reference's mapping at this level, and its closing."""
        heads = self.ref_heads.get(level)
        if heads is None:
            inner = self._break(level + 1)
            keys = ("stream", "proto", "client", "server", "first_frame", "last_frame")
            heads = self.ref_heads[level] = (*(("{" if i == 0 else ",") + inner + encode_basestring(key) + ": "
                                               for i, key in enumerate(keys)), self._break(level) + "}")
        return heads

    def _ref(self, ref, level: int) -> str:
        """mapping(ref.to_dict(), level) as one string: formatted at once when its fields are of the plain types
        a FlowRef is made of (the thousands of flows of a grouped finding), else by the generic encoder."""
        stream, first, last = ref.stream, ref.first_frame, ref.last_frame
        proto, client, server = ref.proto, ref.client, ref.server
        if type(proto) is str and type(client) is str and type(server) is str and \
                (stream is None or type(stream) is int) and (first is None or type(first) is int) and \
                (last is None or type(last) is int):
            h = self._ref_heads(level)
            return "".join((h[0], "null" if stream is None else int.__repr__(stream), h[1], encode_basestring(proto),
                            h[2], encode_basestring(client), h[3], encode_basestring(server), h[4],
                            "null" if first is None else int.__repr__(first), h[5],
                            "null" if last is None else int.__repr__(last), h[6]))
        return self._text(ref.to_dict(), level)

    def _strings(self, value, level: int) -> str:
        """A finding's text field: the encoded string (the same title, explanation and advice come back for every
        finding of a rule: encoded once), or any other value as value() writes it."""
        if type(value) is not str:
            return self._text(value, level)
        got = self.encoded.get(value, _UNSEEN)
        if got is None:  # seen once before: it comes back, keep it encoded
            got = self.encoded[value] = encode_basestring(value)
        elif got is _UNSEEN:  # a message-like text of one finding is not kept, only noted
            got = encode_basestring(value)
            if len(self.encoded) < _ENCODED_KEPT:
                self.encoded[value] = None
        return got

    def finding(self, f: Finding, level: int) -> None:
        """What mapping(f.to_dict(capture), level) writes, without making the dict: the keys, their order and the
        optional ones are Finding.to_dict's."""
        out = self.out
        append = out.append
        heads = self.heads.get(level)
        if heads is None:
            heads = self._finding_heads(level)
        inner_level = level + 1
        # rule .. scope: the same few combinations for all the findings of a rule, encoded once each
        texts = (f.rule_id, f.playbook, f.title, f.severity, f.status, f.scope)
        got = heads["known"].get(texts)
        if got is None:
            strings = self._strings
            got = "".join([part for head, text in zip(heads["texts"], texts)
                           for part in (head, strings(text, inner_level))])
            if _all_str(map(type, texts)):
                heads["known"][texts] = got
        message, about = f.message, f.about()
        append("".join((got, heads["message"],
                        encode_basestring(message) if type(message) is str else self._text(message, inner_level),
                        heads["about"],
                        encode_basestring(about) if type(about) is str else self._text(about, inner_level),
                        heads["flows"])))
        if f.flows:
            ref = self._ref
            append(heads["list"] + heads["list.sep"].join([ref(r, level + 2) for r in f.flows]) + heads["list.end"])
        else:
            append("[]")
        start, end = f.start, f.end
        append("".join((heads["start"], _scalar(start) if type(start) in _SCALARS else self._text(start, inner_level),
                        heads["end"], _scalar(end) if type(end) in _SCALARS else self._text(end, inner_level),
                        heads["evidence"], heads["evidence.frames"])))
        evidence = f.evidence
        if evidence and _all_ints(map(type, evidence)):
            append(heads["frames"] + heads["frames.sep"].join(map(int.__repr__, evidence)) + heads["frames.end"])
        else:
            self.sequence(list(evidence), level + 2)
        total = f.evidence_total
        append(heads["evidence.total"])
        append(int.__repr__(total) if type(total) is int else self._text(total, level + 2))
        if evidence:
            evidence_filter = f"frame.number in {frame_set(evidence)}"
            # shlex.quote of a filter (it has a space: always quoted)
            command = None if self.command_head is None else \
                self.command_head + "'" + evidence_filter.replace("'", "'\"'\"'") + "'"
            append("".join((heads["evidence.filter"], encode_basestring(evidence_filter), heads["evidence.command"],
                            "null" if command is None else encode_basestring(command), heads["evidence.end"],
                            heads["values"])))
        else:
            append(heads["evidence.none"])
        self.value(f.values, inner_level)
        append(heads["key"])
        if f.key is None:
            append("null")
        else:
            self.value(f.key, inner_level)
        append(heads["group"])
        if f.group is None:
            append("null")
        else:
            self.value(f.group, inner_level)
        explanation, advice = f.explanation, f.advice
        got = heads["known"].get((explanation, advice))
        if got is None:
            strings = self._strings
            got = "".join((heads["explanation"], strings(explanation, inner_level), heads["advice"],
                           strings(advice, inner_level), heads["references"]))
            if type(explanation) is str and type(advice) is str and len(heads["known"]) < _ENCODED_KEPT:
                heads["known"][(explanation, advice)] = got
        append(got)
        append(self._references(f.references, inner_level))
        append(heads["symptoms"])
        if f.symptoms:
            self._items(f.symptoms, lambda symptom: self.finding(symptom, level + 2), heads)
        else:
            append("[]")
        append(heads["impact"])
        impact = f.impact
        append(_scalar(impact) if type(impact) in _SCALARS else self._text(impact, inner_level))
        if f.original_severity is not None:
            append(heads["original_severity"])
            self.value(f.original_severity, inner_level)
        if f.explained_by is not None:
            append(heads["explained_by"])
            self.value(dict(f.explained_by), inner_level)
        append(heads["close"])
        if self.stream is not None and len(out) >= _FLUSH_PIECES:
            self.flush()
