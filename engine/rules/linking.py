"""From raw findings to a diagnosis: merge flows that share a cause, tie symptoms to their root cause, rank.

1. Grouping (rule key `group`): findings of one flow rule whose `by` facts are equal and whose `near` fact lies
   within ± `tolerance` become one finding listing the flows ("3 flows reset after 350.0 s ± 0.0 s idle").
2. Explaining (rule key `explains`): a finding of rule A explains findings of rules B on the same flow (or server,
   client, anywhere in the capture). `withdraw` removes them from the diagnosis (kept under `withdrawn` with the
   reason: a capture artefact, not the network), `downgrade` keeps them as info, `attach` shows them under A as
   symptoms. Withdrawals are applied first, then downgrades, then attachments, so a capture artefact wins over a
   network explanation.
3. Ranking: errors before warnings before info; within a severity, root causes (findings with symptoms) first, then
   by impact (flows affected, symptoms explained, evidence packets), then by time.
"""

from __future__ import annotations

from diagnose.findings import Finding
from diagnose.playbook.model import Rule
from diagnose.rules.engine import Facts, finalize, render, template_context

ACTION_ORDER = ("withdraw", "downgrade", "attach")


def group_findings(rule: Rule, findings: list[Finding], records: list[dict]) -> list[Finding]:
    spec = rule.group
    if spec is None or len(findings) < 2:
        return findings
    records = _RecordsOnce(records)
    buckets: dict[tuple, list[Finding]] = {}
    by = [name[5:] for name in spec.by]
    for f in findings:
        if f.flows:  # a Facts reads a fact it lacks as None: by key, without a get call per fact
            record = records[f.flows[0].conv]
            key = tuple(record[name] for name in by)
        else:
            key = (None,) * len(by)
        buckets.setdefault(key, []).append(f)
    out: list[Finding] = []
    tolerance = _tolerance_seconds(spec)
    for key, members in buckets.items():
        if spec.near is None:
            clusters = [members]
        else:
            clusters = _clusters(members, spec.near[5:], tolerance, records)
        for cluster in clusters:
            if len(cluster) < spec.min_flows:
                out.extend(cluster)
                continue
            out.append(_merge(rule, cluster, key, records))
    return out


class _RecordsOnce:
    """The flow records a grouping reads, each looked up once and as the Facts its message template reads: grouping
    reads a member's record for its key, its `near` value and the message (it was ~5 lookups and a Facts copy per
    member, 12k lookups on the benchmark). A record that already is Facts is shared, not copied (5,167 flows in
    one group on the benchmark: a copy each was a +18 MB peak)."""

    def __init__(self, records):
        self.records = records
        self.made: dict[int, Facts] = {}

    def __getitem__(self, conv: int) -> Facts:
        record = self.made.get(conv)
        if record is None:
            record = self.records[conv]
            if not isinstance(record, Facts):
                record = Facts(record)
            self.made[conv] = record
        return record


def _tolerance_seconds(spec) -> float:
    if spec.tolerance is None:
        return 0.0
    if spec.tolerance.kind == "duration":
        return spec.tolerance.number / 1e9
    return float(spec.tolerance.number)


def _near_value(f: Finding, fact: str, records: list[dict]):
    value = records[f.flows[0].conv].get(fact) if f.flows else None
    return None if value is None else float(value)


def _clusters(members: list[Finding], fact: str, tolerance: float, records: list[dict]) -> list[list[Finding]]:
    """Sort by the `near` fact; a cluster spans at most 2 × tolerance (every member within ± tolerance of the
    cluster's middle). Findings without the fact stay alone."""
    near = [(_near_value(f, fact, records), f) for f in members]
    with_value = [(v, f) for v, f in near if v is not None]
    alone = [[f] for v, f in near if v is None]
    with_value.sort(key=lambda item: item[0])
    clusters: list[list[Finding]] = []
    current: list[Finding] = []
    low = None
    for value, f in with_value:
        if current and value - low <= 2 * tolerance:
            current.append(f)
        else:
            if current:
                clusters.append(current)
            current, low = [f], value
    if current:
        clusters.append(current)
    return clusters + alone


def _merge(rule: Rule, cluster: list[Finding], key: tuple, records: list[dict]) -> Finding:
    spec = rule.group
    cluster.sort(key=lambda f: (f.start or 0.0))
    flows = [ref for f in cluster for ref in f.flows]
    flow_records = [records[ref.conv] for ref in flows]  # Facts (_RecordsOnce)
    near = [v for f in cluster if (v := _near_value(f, spec.near[5:], records)) is not None] if spec.near else []
    group = {
        "count": len(cluster),
        "by": {name: value for name, value in zip(spec.by, key)},
        "near": spec.near,
        "values": near,
        "min": min(near) if near else None,
        "max": max(near) if near else None,
        "mean": sum(near) / len(near) if near else None,
        "spread": (max(near) - min(near)) / 2 if near else None,
        "tolerance": _tolerance_seconds(spec),
    }
    first = finalize(cluster[0])
    evidence = sorted({frame for f in cluster for frame in f.evidence})
    limit = max(rule.evidence_limit, 3 * len(cluster))
    context = template_context(first)
    context.update({"group": group, "flows": flow_records, "flow": flow_records[0],
                    "finding": {"evidence": evidence[:limit], "evidence_total": sum(f.evidence_total for f in cluster),
                                "start": first.start, "end": max((f.end or 0.0) for f in cluster),
                                "flows": len(flows)}})
    merged = Finding(rule_id=rule.id, playbook=rule.playbook, title=rule.title, severity=rule.severity,
                     scope=rule.scope, message=render(spec.message, context, rule.id, "message"),
                     explanation=first.explanation, advice=first.advice, references=list(rule.references),
                     flows=flows, start=first.start, end=context["finding"]["end"], evidence=evidence[:limit],
                     evidence_total=context["finding"]["evidence_total"], values=dict(first.values),
                     group={k: v for k, v in group.items() if k != "tolerance"} | {"tolerance": group["tolerance"]})
    for name in ("min", "max", "mean", "spread"):
        merged.values[f"group.{name}"] = group[name]
    merged.values["group.count"] = len(cluster)
    merged.group["members"] = [f.flows[0].label() if f.flows else "" for f in cluster]
    return merged


# ---- explains ---------------------------------------------------------------------------------------------------------
def _matches(cause: Finding, effect: Finding, how: str) -> bool:
    if how == "capture":
        return True
    if how == "flow":
        return bool({f.conv for f in cause.flows} & {f.conv for f in effect.flows})
    attr = "server_host" if how == "server" else "client_host"
    return bool({getattr(f, attr) for f in cause.flows} & {getattr(f, attr) for f in effect.flows})


def link(rules: list[Rule], findings: dict[str, list[Finding]]) -> tuple[list[Finding], list[Finding]]:
    """Apply every rule's `explains`. Returns (top-level findings, withdrawn findings)."""
    by_id = {r.id: r for r in rules}
    alive: dict[int, Finding] = {id(f): f for fs in findings.values() for f in fs}
    withdrawn: list[Finding] = []
    attached: set[int] = set()
    index: dict[str, dict[int, list[Finding]]] = {}
    for action in ACTION_ORDER:
        for rule in rules:
            spec = rule.explains
            if spec is None or spec.action != action:
                continue
            for cause in findings.get(rule.id, []):
                if id(cause) not in alive and id(cause) not in attached:
                    continue  # the cause was itself withdrawn
                for target in spec.rules:
                    if target not in by_id:
                        continue
                    for effect in _candidates(findings, target, cause, spec.match, index):
                        if effect is cause or id(effect) in attached or id(effect) not in alive:
                            continue
                        if not _matches(cause, effect, spec.match):
                            continue
                        reason = {"rule_id": cause.rule_id, "message": cause.message, "action": action}
                        effect.explained_by = reason
                        if action == "withdraw":
                            effect.status = "withdrawn"
                            del alive[id(effect)]
                            withdrawn.append(effect)
                        elif action == "downgrade":
                            if effect.severity != "info":
                                effect.original_severity = effect.severity
                                effect.severity = "info"
                            effect.status = "downgraded"
                        else:
                            if _is_ancestor(effect, cause):
                                continue  # never make a cycle: A explains B explains A
                            cause.symptoms.append(effect)
                            attached.add(id(effect))
                            del alive[id(effect)]
    top = list(alive.values())
    return top, withdrawn


def _candidates(findings: dict[str, list[Finding]], target: str, cause: Finding, match: str,
                index: dict[str, dict[int, list[Finding]]]) -> list[Finding]:
    """The target rule's findings that can match the cause: by shared flow when matching flows (an index, so
    thousands of causes and effects stay linear), else all of them."""
    effects = findings.get(target, [])
    if match != "flow":
        return effects
    by_conv = index.get(target)
    if by_conv is None:
        by_conv = index[target] = {}
        for effect in effects:
            for ref in effect.flows:
                by_conv.setdefault(ref.conv, []).append(effect)
    seen: set[int] = set()
    out = []
    for ref in cause.flows:
        for effect in by_conv.get(ref.conv, ()):
            if id(effect) not in seen:
                seen.add(id(effect))
                out.append(effect)
    return out


def _is_ancestor(candidate: Finding, node: Finding) -> bool:
    return any(f is node for f in candidate.walk())


def rank(findings: list[Finding]) -> list[Finding]:
    for f in findings:
        f.impact = _impact(f)
        f.symptoms = rank(f.symptoms)
    return sorted(findings, key=lambda f: (-f.severity_rank, -min(len(f.symptoms), 1), -f.impact, f.start or 0.0,
                                           f.rule_id))


def _impact(f: Finding) -> float:
    flows = len({ref.conv for g in f.walk() for ref in g.flows}) or 1
    symptoms = sum(1 for _ in f.walk()) - 1
    return float(flows * (1 + symptoms)) + min(f.evidence_total, 10_000) / 10_000
