"""Load playbooks: YAML with positions -> checked rules, or every mistake at once with file:line:col and a caret.

Checks, all collected before anything runs: YAML syntax and duplicate keys, unknown keys (with "did you mean"),
missing or mistyped values, rule id form and duplicates (across every loaded playbook), parameter values and units,
display filters (syntax, unknown fields, types, fields the rule's scope cannot read), aggregate expressions,
Jinja templates (syntax, unknown filters, unknown names and flow/capture facts), `explains` targets, self-test
captures and expected ids.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from diagnose.errors import FilterError
from diagnose.fields import FieldType, all_fields, lookup
from diagnose.playbook import expressions as ex
from diagnose.playbook.aggregates import FUNCTIONS, AggregateSyntaxError, parse_aggregate
from diagnose.playbook.model import (Aggregate, Explains, Filter, GroupSpec, Param, Playbook, Reference, Rule, SelfTest,
                                     Where)
from diagnose.playbook.problems import PlaybookError, Problem
from diagnose.playbook.schema import (EXPLAINS_KEYS, GROUP_KEYS, PARAM_KEYS, PLAYBOOK_KEYS, PLAYBOOK_NAME_PATTERN,
                                      RULE_ID_PATTERN, RULE_KEYS, NAME_PATTERN, TEST_KEYS, Key)
from diagnose.playbook.templates import TEMPLATE_ROOTS, LazyTemplate, attribute_paths, environment, plain_names
from diagnose.playbook.values import ValueError_, parse_value
from diagnose.playbook.yamlpos import LineIndex, Pos, Y, load_yaml, source_offset

_PARAM_TYPES = {"duration": FieldType.RELTIME, "percent": FieldType.FLOAT, "size": FieldType.UINT,
                "bool": FieldType.BOOL, "text": FieldType.STRING}


@dataclass
class _File:
    """One playbook being loaded: its text, where problems go, and the display path."""

    path: Path
    shown: str
    text: str
    lines: LineIndex
    problems: list[Problem] = field(default_factory=list)

    def at(self, pos: Pos, message: str) -> None:
        self.problems.append(Problem(self.shown, pos.line, pos.col, message, self.lines.line_text(pos.line)))

    def at_index(self, index: int, message: str) -> None:
        self.at(self.lines.pos(index), message)

    def where(self, pos: Pos) -> Where:
        return Where(self.shown, pos.line, pos.col)

    def reference(self, target: str, kind: str, pos: Pos) -> Reference:
        return Reference(target, kind, self.shown, pos.line, pos.col, self.lines.line_text(pos.line))


def load_playbook_file(path: str | Path, *, builtin: bool = False, shown: str | None = None) -> Playbook:
    """Load and check one playbook file; PlaybookError lists every mistake."""
    playbook, problems = _load(Path(path), builtin=builtin, shown=shown)
    if problems:
        raise PlaybookError(problems)
    return playbook


def _load(path: Path, *, builtin: bool, shown: str | None) -> tuple[Playbook | None, list[Problem]]:
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(shown, 1, 1, "no such playbook file")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(shown, 1, 1, f"cannot read the playbook: {exc}")]
    f = _File(path, shown, text, LineIndex(text))
    root, yaml_problems = load_yaml(text, libyaml=builtin)
    for p in yaml_problems:
        f.at(p.pos, p.message)
    if root is None:
        return None, f.problems
    playbook = _Reader(f, builtin).playbook(root)
    return playbook, f.problems


class _Reader:
    def __init__(self, f: _File, builtin: bool):
        self.f = f
        self.builtin = builtin
        self._any_field: dict[str, bool] = {}

    def any_field(self, root: str) -> bool:
        """Whether facts of a kind (flow, capture) are registered: asked per template, the same for one file."""
        known = self._any_field.get(root)
        if known is None:
            known = self._any_field[root] = _any_field(root)
        return known

    # ---- generic checks --------------------------------------------------------------------------------------------
    def mapping(self, node: Y, keys: dict[str, Key], what: str) -> dict[str, Y]:
        """Check a mapping against a key table; returns the keys that are present and well-typed."""
        if node.kind != "mapping":
            self.f.at(node.start, f"{what} must be a mapping of keys ({', '.join(keys)})")
            return {}
        good: dict[str, Y] = {}
        for key, value in node.value.items():
            spec = keys.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(keys)})"
                self.f.at(node.key_pos[key], f"unknown key '{key}' in {what}{hint}")
                continue
            if not self.typed(value, spec, key):
                continue
            good[key] = value
        for key, spec in keys.items():
            if spec.required and key not in node.value:
                self.f.at(node.start, f"{what} lacks the required key '{key}' ({spec.doc})")
        return good

    def typed(self, value: Y, spec: Key, key: str) -> bool:
        v = value.value
        ok = any(isinstance(v, t) and not (t in (int, float) and isinstance(v, bool)) for t in spec.types)
        if not ok and str in spec.types and isinstance(v, (int, float)) and not isinstance(v, bool) \
                and spec.types != (str,):
            ok = True
        if not ok:
            self.f.at(value.start, f"'{key}' must be {spec.type_names()}, not {_describe(v)}")
            return False
        if spec.choices and v not in spec.choices:
            close = difflib.get_close_matches(str(v), spec.choices, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.f.at(value.start, f"'{key}' must be one of {' | '.join(spec.choices)}, not '{v}'{hint}")
            return False
        return True

    def strings(self, node: Y, key: str) -> list[tuple[str, Y]]:
        out = []
        for item in node.value:
            if not isinstance(item.value, str):
                self.f.at(item.start, f"every item of '{key}' must be text, not {_describe(item.value)}")
                continue
            out.append((item.value, item))
        return out

    # ---- the playbook ----------------------------------------------------------------------------------------------
    def playbook(self, root: Y) -> Playbook | None:
        top = self.mapping(root, PLAYBOOK_KEYS, "a playbook")
        name = top["playbook"].value if "playbook" in top else self.f.path.stem
        if "playbook" in top and not re.match(PLAYBOOK_NAME_PATTERN, name):
            self.f.at(top["playbook"].start, f"playbook name '{name}' must be lower case letters, digits, '-', '_'")
        pb = Playbook(name=name, title=top["title"].value if "title" in top else "", path=self.f.path,
                      description=str(top["description"].value).strip() if "description" in top else "",
                      builtin=self.builtin)
        self.pb = pb
        if "include" in top:
            for text, item in self.strings(top["include"], "include"):
                pb.include.append(text)
                pb.include_where[text] = self.f.reference(text, "include", item.start)
        if "params" in top:
            pb.params = self.params(top["params"], name)
        seen: dict[str, Y] = {}
        for node in (top["rules"].value if "rules" in top else []):
            rule = self.rule(node, pb, seen)
            if rule is not None:
                pb.rules.append(rule)
        if "tests" in top:
            pb.tests = [t for t in (self.test(node) for node in top["tests"].value) if t is not None]
        if not pb.rules and not pb.include and "rules" not in top:
            self.f.at(root.start, "a playbook needs 'rules' (or 'include' of other playbooks)")
        return pb

    def params(self, node: Y, prefix: str) -> dict[str, Param]:
        out: dict[str, Param] = {}
        for pname, value in node.value.items():
            pos = node.key_pos[pname]
            if not re.match(NAME_PATTERN, pname):
                self.f.at(pos, f"parameter name '{pname}' must be lower case letters, digits and '_'")
                continue
            description = ""
            raw_node = value
            if value.kind == "mapping":
                spec = self.mapping(value, PARAM_KEYS, f"parameter '{pname}'")
                if "default" not in spec:
                    continue
                raw_node = spec["default"]
                description = str(spec["description"].value) if "description" in spec else ""
            elif value.kind != "scalar" or value.value is None:
                self.f.at(value.start, f"parameter '{pname}' must be a value (5s, 1%, 64KB, 3) or "
                                       "{default: ..., description: ...}")
                continue
            try:
                parsed = parse_value(raw_node.value)
            except ValueError_ as exc:
                self.f.at(raw_node.start, str(exc))
                continue
            out[pname] = Param(f"{prefix}.{pname}", pname, parsed, parsed, description)
        return out

    # ---- one rule --------------------------------------------------------------------------------------------------
    def rule(self, node: Y, pb: Playbook, seen: dict[str, Y]) -> Rule | None:
        keys = self.mapping(node, RULE_KEYS, "a rule")
        if "id" not in keys:
            return None
        rid = keys["id"].value
        if not re.match(RULE_ID_PATTERN, rid):
            self.f.at(keys["id"].start, f"rule id '{rid}' must look like '{pb.name}.what-is-wrong' (lower case, "
                                        "digits, '-', dots between parts)")
        if rid in seen:
            first = seen[rid].start
            self.f.at(keys["id"].start, f"duplicate rule id '{rid}' (first defined at line {first.line})")
            return None
        seen[rid] = keys["id"]
        scope = keys["scope"].value if "scope" in keys else "flow"
        params = dict(pb.params)
        if "params" in keys:
            params.update(self.params(keys["params"], rid))
        extra = ex.ExtraNames(rid)
        for short, param in params.items():
            extra.add(f"param.{short}", _PARAM_TYPES.get(param.default.kind, _number_type(param.default.number)),
                      param.description or f"parameter {param.qualified}", _param_getter(param))
        packet_extra = extra.copy()

        aggregates: dict[str, Aggregate] = {}
        if "aggregate" in keys:
            aggregates = self.aggregates(keys["aggregate"], packet_extra)
        if scope == "packet":
            extra.add("agg.count", FieldType.UINT, "packets in the group", _agg_getter(rid, "count"))
        for agg in aggregates.values():
            extra.add(f"agg.{agg.name}", FieldType(agg.result_type), agg.text, _agg_getter(rid, agg.name))

        when_scope = {"packet": ex.PACKET, "flow": ex.FLOW, "capture": ex.CAPTURE}[scope]
        when = self.filter(keys.get("when"), when_scope, packet_extra if scope == "packet" else extra)
        evidence = self.filter(keys.get("evidence"), ex.PACKET, packet_extra) if "evidence" in keys else None
        having = None
        group_by = None
        if scope == "packet":
            if "having" in keys:
                having = self.filter(keys["having"], ex.GROUP, extra)
            group_by = self.group_by(keys["group_by"]) if "group_by" in keys else None
        else:
            for only_packet in ("having", "group_by"):
                if only_packet in keys:
                    self.f.at(node.key_pos[only_packet], f"'{only_packet}' belongs to packet rules (scope: packet); "
                                                         f"this rule has scope {scope}")
        roots_ok = self.template_roots(scope)
        message = self.template(keys.get("message"), roots_ok)
        explanation = self.template(keys.get("explanation"), roots_ok) if "explanation" in keys else None
        advice = self.template(keys.get("advice"), roots_ok) if "advice" in keys else None
        group = self.group(keys["group"], scope, node) if "group" in keys else None
        explains = self.explains(keys["explains"]) if "explains" in keys else None
        if when is None or message is None:
            return None
        limit = keys["evidence_limit"].value if "evidence_limit" in keys else 20
        evidence_frames = None
        if "evidence_frames" in keys:
            name = keys["evidence_frames"].value
            from diagnose.rules.flow_fields import FRAME_LIST_FACTS
            if scope != "flow":
                self.f.at(keys["evidence_frames"].start, "evidence_frames belongs to flow rules")
            elif not name.startswith("flow.") or name[5:] not in FRAME_LIST_FACTS:
                known = ", ".join(f"flow.{k}" for k in sorted(FRAME_LIST_FACTS))
                self.f.at(keys["evidence_frames"].start, f"'{name}' is not a flow fact listing frames ({known})")
            else:
                evidence_frames = name
        if limit < 1:
            self.f.at(keys["evidence_limit"].start, "evidence_limit must be at least 1")
        return Rule(
            id=rid, title=keys["title"].value if "title" in keys else rid,
            severity=keys["severity"].value if "severity" in keys else "warning", scope=scope, when=when,
            message=message, message_text=str(keys["message"].value), playbook=pb.name,
            where=self.f.where(node.start), evidence=evidence, evidence_limit=max(1, limit),
            evidence_frames=evidence_frames, aggregates=aggregates,
            group_by=group_by, having=having, params=params, group=group, explains=explains,
            explanation=explanation, explanation_text=str(keys["explanation"].value).strip() if explanation else "",
            advice=advice, advice_text=str(keys["advice"].value).strip() if advice else "",
            references=[t for t, _ in self.strings(keys["references"], "references")] if "references" in keys else [],
            tags=[t for t, _ in self.strings(keys["tags"], "tags")] if "tags" in keys else [],
            names=extra,
        )

    def filter(self, node: Y | None, scope: str, extra: ex.ExtraNames, *, text: str | None = None,
               offset: int = 0) -> Filter | None:
        """Compile a display filter; a mistake is reported at its column inside the YAML value."""
        if node is None:
            return None
        source = str(node.value) if text is None else text
        try:
            compiled = ex.compile_filter(source, scope, extra)
        except FilterError as exc:
            column = min(max(exc.column, 0), len(source))
            self.f.at_index(source_offset(self.f.text, node, offset + column), exc.message)
            return None
        return Filter(source, scope, compiled, self.f.where(node.start))

    def aggregates(self, node: Y, packet_extra: ex.ExtraNames) -> dict[str, Aggregate]:
        out: dict[str, Aggregate] = {}
        for name, value in node.value.items():
            if not re.match(NAME_PATTERN, name):
                self.f.at(node.key_pos[name], f"aggregate name '{name}' must be lower case letters, digits and '_'")
                continue
            if name == "count":
                self.f.at(node.key_pos[name], "'count' is reserved (agg.count is the number of packets of a "
                                              "packet rule's group); choose another name")
                continue
            if not isinstance(value.value, str):
                self.f.at(value.start, f"aggregate '{name}' must be text like count(tcp.analysis.retransmission)")
                continue
            text = value.value
            try:
                call = parse_aggregate(text)
            except AggregateSyntaxError as exc:
                self.f.at_index(source_offset(self.f.text, value, exc.offset), exc.message)
                continue
            kinds, result = FUNCTIONS[call.function]
            agg = Aggregate(name, call.function, text, [])
            ok = True
            for arg, kind in zip(call.args, kinds):
                if kind.startswith("f"):
                    compiled = self.filter(value, ex.PACKET, packet_extra, text=arg.text, offset=arg.offset)
                    ok = ok and compiled is not None
                    if compiled is not None:
                        agg.filters.append(compiled)
                elif kind.startswith("v"):
                    ftype = ex.field_type_of(arg.text, packet_extra)
                    if ftype is None:
                        from diagnose.fields import suggest
                        hint = suggest(arg.text)
                        self.f.at_index(source_offset(self.f.text, value, arg.offset),
                                        f"unknown field '{arg.text}'" + (f" (did you mean '{hint}'?)" if hint else ""))
                        ok = False
                        continue
                    agg.field = arg.text
                    if result == "field":
                        result = _agg_type(call.function, ftype)
                elif kind == "d":
                    try:
                        window = parse_value(arg.text, kind="duration")
                    except ValueError_ as exc:
                        self.f.at_index(source_offset(self.f.text, value, arg.offset), str(exc))
                        ok = False
                        continue
                    if window.number <= 0:
                        self.f.at_index(source_offset(self.f.text, value, arg.offset), "the window must be positive")
                        ok = False
                        continue
                    agg.window_ns = int(window.number)
            if call.function in ("sum", "min", "max", "first", "last", "mean", "distinct") and agg.field:
                ftype = ex.field_type_of(agg.field, packet_extra)
                numeric = ftype in (FieldType.UINT, FieldType.INT, FieldType.FLOAT, FieldType.RELTIME,
                                    FieldType.TIME, FieldType.BOOL)
                if call.function in ("sum", "mean", "min", "max") and not numeric:
                    self.f.at_index(source_offset(self.f.text, value, call.args[0].offset),
                                    f"{call.function}() needs a numeric field; '{agg.field}' is {ftype}")
                    ok = False
            if ok:
                agg.result_type = result if result != "field" else "float"
                out[name] = agg
        return out

    def group_by(self, node: Y) -> list[str]:
        names = []
        for text, item in self.strings(node, "group_by"):
            if ex.known(text):
                names.append(text)
            else:
                from diagnose.fields import suggest
                hint = suggest(text)
                self.f.at(item.start, f"unknown field '{text}'" + (f" (did you mean '{hint}'?)" if hint else ""))
        return names

    def template_roots(self, scope: str) -> set[str]:
        return set(TEMPLATE_ROOTS)

    def template(self, node: Y | None, roots: set[str]):
        if node is None:
            return None
        if not isinstance(node.value, str):
            self.f.at(node.start, f"a message template must be text, not {_describe(node.value)}")
            return None
        text = node.value
        if "{" not in text:  # plain text (most explanations and advice): no tag to parse, no name to check
            return LazyTemplate(text)
        from jinja2 import TemplateSyntaxError, meta  # here: a rule set read from the cache needs no jinja2
        from jinja2.exceptions import TemplateAssertionError

        env = environment()
        try:
            tree = env.parse(text)
            names = plain_names(tree)
            # a template that is not plain is compiled now: only the compiler knows its declared names and its
            # compile-time mistakes (a filter nobody defined, a block defined twice)
            template = LazyTemplate(text, None if names is not None else env.from_string(text))
        except (TemplateSyntaxError, TemplateAssertionError) as exc:
            self.f.at_index(self._template_index(node, text, exc.lineno or 1, exc.message or ""),
                            f"template: {exc.message}")
            return None
        if names is None:
            names = meta.find_undeclared_variables(tree)
        for name in sorted(names):
            if name not in roots:
                close = difflib.get_close_matches(name, roots, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(roots))})"
                self.f.at_index(self._name_index(node, text, name), f"template: unknown name '{name}'{hint}")
        for root in ("flow", "capture"):
            if root not in text:
                continue  # reads no fact of that kind
            if not self.any_field(root):
                continue  # facts of that kind are not registered in this build: nothing to check against
            for path, _line in attribute_paths(tree, root):
                if not _fact_exists(path):
                    hint = _suggest_fact(path)
                    self.f.at_index(self._name_index(node, text, path),
                                    f"template: unknown fact '{path}'" + (f" (did you mean '{hint}'?)" if hint else ""))
        return template

    def _template_index(self, node: Y, text: str, lineno: int, message: str) -> int:
        # the line of the error inside the template; jinja gives no column, so point at the line's first '{'
        offset = 0
        for _ in range(lineno - 1):
            nxt = text.find("\n", offset)
            if nxt < 0:
                break
            offset = nxt + 1
        line_end = text.find("\n", offset)
        line = text[offset: line_end if line_end >= 0 else len(text)]
        quoted = re.search(r"'([^']+)'", message)
        if quoted and quoted.group(1) in line:
            offset += line.index(quoted.group(1))
        elif "{" in line:
            offset += line.index("{")
        return source_offset(self.f.text, node, offset)

    def _name_index(self, node: Y, text: str, name: str) -> int:
        m = re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w])", text)
        return source_offset(self.f.text, node, m.start() if m else 0)

    def group(self, node: Y, scope: str, rule_node: Y) -> GroupSpec | None:
        keys = self.mapping(node, GROUP_KEYS, "a rule's group")
        if scope != "flow":
            self.f.at(rule_node.key_pos["group"], "'group' merges flow findings; this rule has scope " + scope)
            return None
        by = []
        if "by" in keys:
            for text, item in self.strings(keys["by"], "by"):
                if not text.startswith("flow."):
                    self.f.at(item.start, f"group.by takes flow facts (flow.*), not '{text}'")
                elif self.any_field("flow") and lookup(text) is None:
                    hint = _suggest_fact(text)
                    self.f.at(item.start, f"unknown fact '{text}'" + (f" (did you mean '{hint}'?)" if hint else ""))
                else:
                    by.append(text)
        near = None
        if "near" in keys:
            near = keys["near"].value
            if not near.startswith("flow."):
                self.f.at(keys["near"].start, f"group.near takes a numeric flow fact, not '{near}'")
                near = None
            elif self.any_field("flow") and lookup(near) is None:
                hint = _suggest_fact(near)
                self.f.at(keys["near"].start, f"unknown fact '{near}'" + (f" (did you mean '{hint}'?)" if hint else ""))
                near = None
        tolerance = None
        if "tolerance" in keys:
            try:
                tolerance = parse_value(keys["tolerance"].value)
            except ValueError_ as exc:
                self.f.at(keys["tolerance"].start, str(exc))
        min_flows = keys["min_flows"].value if "min_flows" in keys else 2
        message = self.template(keys.get("message"), set(TEMPLATE_ROOTS))
        if message is None:
            return None
        return GroupSpec(by, near, tolerance, min_flows, message, str(keys["message"].value))

    def explains(self, node: Y) -> Explains | None:
        if node.kind == "list":
            ids = self.strings(node, "explains")
            self._refer(ids, "explains")
            return Explains([t for t, _ in ids], where=self.f.where(node.start))
        keys = self.mapping(node, EXPLAINS_KEYS, "'explains'")
        if "rules" not in keys:
            return None
        ids = self.strings(keys["rules"], "rules")
        self._refer(ids, "explains")
        return Explains([t for t, _ in ids], keys["match"].value if "match" in keys else "flow",
                        keys["action"].value if "action" in keys else "attach", self.f.where(node.start))

    def _refer(self, ids: list[tuple[str, Y]], kind: str) -> None:
        for text, item in ids:
            self.pb.references.append(self.f.reference(text, kind, item.start))

    def test(self, node: Y) -> SelfTest | None:
        keys = self.mapping(node, TEST_KEYS, "a self-test")
        if "capture" not in keys or "expect" not in keys:
            return None
        expect_ids = self.strings(keys["expect"], "expect")
        self._refer(expect_ids, "expect")
        params = {}
        if "params" in keys:
            params = {k: str(v.value) for k, v in keys["params"].value.items()}
        messages = {}
        if "messages" in keys:
            messages = {k: str(v.value) for k, v in keys["messages"].value.items()}
            for k in messages:
                self.pb.references.append(self.f.reference(k, "messages", keys["messages"].key_pos[k]))
        return SelfTest(str(keys["capture"].value), [t for t, _ in expect_ids], self.f.where(node.start), params,
                        messages, str(keys["reason"].value) if "reason" in keys else "",
                        keylog=str(keys["keylog"].value) if "keylog" in keys else None,
                        ca_file=str(keys["ca_file"].value) if "ca_file" in keys else None)


class _param_getter:
    """A parameter as a filter constant: its current value (after --set), durations in ns like reltime fields.
    (A class rather than a closure so that a rule set can be pickled into the cache: playbook/cache.py.)"""

    __slots__ = ("param",)

    def __init__(self, param: Param):
        self.param = param

    def __call__(self, ctx):
        return self.param.value.number


def agg_key(rule_id: str, name: str) -> str:
    """Where the engine puts an aggregate's per-row values: ctx.extra["agg"][agg_key(rule, name)]."""
    return f"{rule_id}:{name}"


class _agg_getter:
    """An aggregate's per-row values, from where the engine put them (a class so that it pickles)."""

    __slots__ = ("key",)

    def __init__(self, rule_id: str, name: str):
        self.key = agg_key(rule_id, name)

    def __call__(self, ctx):
        return ctx.extra["agg"][self.key]


def _agg_type(function: str, ftype: FieldType) -> str:
    if function == "mean":
        return "float"
    if ftype in (FieldType.UINT, FieldType.INT, FieldType.FLOAT, FieldType.RELTIME, FieldType.TIME):
        return ftype.value if function != "sum" or ftype != FieldType.TIME else "reltime"
    if ftype == FieldType.BOOL:
        return "uint" if function == "sum" else "bool"
    if ftype in (FieldType.IPV4, FieldType.IPV6, FieldType.ETHER, FieldType.BYTES, FieldType.NONE):
        return "string"  # shown formatted (10.0.0.1); a filter compares it as text
    return ftype.value


def _number_type(value) -> FieldType:
    return FieldType.FLOAT if isinstance(value, float) else FieldType.INT


def _describe(value) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return f"text '{value}'"


def _any_field(root: str) -> bool:
    return any(f.name.startswith(root + ".") for f in all_fields())


def _fact_exists(path: str) -> bool:
    """flow.a.b exists when it is a field, or a prefix of fields (a nested group: flow.rst -> flow.rst.ttl)."""
    if lookup(path) is not None:
        return True
    from diagnose.rules.flow_fields import TEMPLATE_ONLY
    if path.startswith("flow.") and path[5:] in TEMPLATE_ONLY:
        return True
    return any(f.name.startswith(path + ".") for f in all_fields())


def _suggest_fact(path: str) -> str | None:
    root = path.split(".", 1)[0] + "."
    names = [f.name for f in all_fields() if f.name.startswith(root)]
    close = difflib.get_close_matches(path, names, n=1, cutoff=0.6)
    return close[0] if close else None

