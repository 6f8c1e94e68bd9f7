"""`diagnose playbook explain RULE [--capture FILE]`: what a rule checks, and on a capture why it did (or did not)
fire — each condition of `when` with its truth and the values it read, for the flows that came closest.
"""

from __future__ import annotations

import numpy as np

from diagnose.filters import display_ast as ast
from diagnose.filters.display_parser import parse_display_filter
from diagnose.playbook import expressions as ex
from diagnose.playbook.library import RuleSet
from diagnose.playbook.model import Rule

CLOSEST = 3  # flows shown when a flow rule did not fire


def describe_rule(rule: Rule, rule_set: RuleSet) -> str:
    lines = [f"{rule.id} — {rule.title}",
             f"  playbook {rule.playbook} ({rule.where}), severity {rule.severity}, scope {rule.scope}",
             f"  when:      {rule.when.text.strip()}"]
    if rule.evidence is not None:
        lines.append(f"  evidence:  {rule.evidence.text.strip()}")
    if rule.group_by is not None:
        lines.append(f"  group_by:  {', '.join(rule.group_by) or '(the whole capture)'}")
    if rule.having is not None:
        lines.append(f"  having:    {rule.having.text.strip()}")
    for name, agg in rule.aggregates.items():
        lines.append(f"  agg.{name} = {agg.text}")
    for param in rule.params.values():
        default = "" if param.value == param.default else f" (default {param.default.display()})"
        lines.append(f"  param.{param.name} = {param.value.display()}{default}   --set {param.qualified}=..."
                     + (f"  {param.description}" if param.description else ""))
    if rule.explains is not None:
        lines.append(f"  explains:  {', '.join(rule.explains.rules)} (same {rule.explains.match}; "
                     f"{rule.explains.action})")
    explained_by = [r.id for r in rule_set.rules if r.explains and rule.id in r.explains.rules]
    if explained_by:
        lines.append(f"  explained by: {', '.join(explained_by)}")
    if rule.group is not None:
        near = f", {rule.group.near} within ± {rule.group.tolerance.display() if rule.group.tolerance else 0}" \
            if rule.group.near else ""
        lines.append(f"  group:     flows with equal {', '.join(rule.group.by) or '(anything)'}{near}, "
                     f"at least {rule.group.min_flows}")
    lines.append(f"  message:   {' '.join(rule.message_text.split())}")
    if rule.explanation_text:
        lines.append(f"  why:       {' '.join(rule.explanation_text.split())}")
    if rule.advice_text:
        lines.append(f"  fix:       {' '.join(rule.advice_text.split())}")
    if rule.references:
        lines.append(f"  references: {', '.join(rule.references)}")
    from diagnose.fields import lookup

    names = sorted(set(rule.when.compiled.fields) | set(rule.evidence.compiled.fields if rule.evidence else ()))
    for name in names:
        field = lookup(name) if name_scope_is_registry(name) else rule.names.lookup(name)
        if field is not None:
            lines.append(f"  reads {name} ({field.type}): {field.description}")
    return "\n".join(lines)


def name_scope_is_registry(name: str) -> bool:
    return ex.name_scope(name) not in ("param", "agg")


def conjuncts(rule: Rule) -> list[str]:
    """The top-level `&&` parts of a rule's `when`, as texts."""
    return _split(rule.when.text)


def why(rule: Rule, diagnosis) -> str:
    """Did the rule fire on this capture; if not, which conditions were false and with which values."""
    report, result = diagnosis.report, diagnosis.result
    fired = [f for top in (*report.capture_quality, *report.findings) for f in top.walk() if f.rule_id == rule.id]
    withdrawn = [f for f in report.withdrawn if f.rule_id == rule.id]
    error = result.errors.get(rule.id)
    if error:
        return f"{rule.id} could not be evaluated on this capture: {error}"
    if fired or withdrawn:
        lines = [f"{rule.id} fired {len(fired)} time(s)" + (f", {len(withdrawn)} withdrawn" if withdrawn else "")
                 + ":"]
        for f in fired[:10]:
            lines.append(f"  [{f.severity}] {f.message}")
        for f in withdrawn[:5]:
            lines.append(f"  [withdrawn, {f.explained_by['rule_id']}] {f.message}")
        return "\n".join(lines)
    if rule.scope == "flow":
        ctx = result.flow_ctx
        labels = [f"{r.get('proto')} {r.get('client')} → {r.get('server')} (stream {r.get('stream')})"
                  for r in result.records]
        what = "flow"
    elif rule.scope == "capture":
        ctx = result.capture_ctx
        labels = ["the capture"]
        what = "capture"
    else:
        ctx = result.group_ctx.get(rule.id)
        if ctx is None or not ctx.n or not np.any(ctx.extra["agg"].get(f"{rule.id}:count", [])):
            return f"{rule.id} did not fire: its when ({rule.when.text.strip()}) matched no packet"
        if rule.having is None:
            return f"{rule.id} did not fire"
        return _conditions(rule, ctx, [f"group {i}" for i in range(ctx.n)], "group", rule.having.text,
                           ex.GROUP)
    if ctx is None or not ctx.n:
        return f"{rule.id} did not fire: the capture has no {what} to judge"
    return _conditions(rule, ctx, labels, what, rule.when.text, rule.when.scope)


def _conditions(rule: Rule, ctx, labels: list[str], what: str, text: str, scope: str) -> str:
    parts = _split(text)
    compiled = [ex.compile_filter(p, scope, rule.names) for p in parts]
    truth = np.stack([np.asarray(c.evaluate(ctx), bool) for c in compiled]) if compiled else np.zeros((0, ctx.n))
    score = truth.sum(axis=0)
    order = np.argsort(-score, kind="stable")[:CLOSEST]
    lines = [f"{rule.id} did not fire: no {what} met every condition. Closest:"]
    for row in order.tolist():
        lines.append(f"  {labels[row]}: {int(score[row])} of {len(parts)} conditions true")
        for part, c, ok in zip(parts, compiled, truth[:, row]):
            values = ", ".join(f"{name} = {_value(ctx, rule, name, row)}" for name in c.fields)
            lines.append(f"    {'✓' if ok else '✗'} {part}" + (f"    ({values})" if values else ""))
    return "\n".join(lines)


def _split(text: str) -> list[str]:
    tree = parse_display_filter(text)
    parts: list[ast.Node] = []

    def flatten(node):
        if isinstance(node, ast.Logical) and node.op == "and":
            flatten(node.left)
            flatten(node.right)
        else:
            parts.append(node)
    flatten(tree)
    return [text[p.start:p.end].strip() for p in parts]


def _value(ctx, rule: Rule, name: str, row: int) -> str:
    from diagnose.fields import lookup

    if name.startswith("param."):
        param = rule.params.get(name[6:])
        return param.value.display() if param else "?"
    field = rule.names.lookup(name) if name.startswith("agg.") else lookup(name)
    if field is None:
        return "?"
    try:
        occurrences = field.extract(ctx)
    except Exception as exc:  # noqa: BLE001 - explain must not crash on one odd field
        return f"<{type(exc).__name__}>"
    for occ in occurrences:
        if occ.present[row]:
            value = occ.values[row]
            if field.type.value in ("reltime",):
                return f"{int(value) / 1e9:g} s"
            if isinstance(value, np.generic):
                value = value.item()
            return repr(value) if isinstance(value, str) else str(value)
    return "absent"
