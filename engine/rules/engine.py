"""The rule engine: fold the packets of each chunk into what the rules need, then judge flows, groups and the
capture once the pass is over.

    engine = RuleEngine(rule_set)
    for ctx in contexts:                       # one ChunkContext per chunk, TCP analysis etc. attached
        engine.feed(ctx)
    raw = engine.finish(flow_records, capture_facts)   # findings per rule, before linking and ranking

During the pass (per chunk, vectorised): packet rules evaluate `when` and fold the matching packets into groups
(default: one group per flow; `group_by` fields; `[]` = one for the capture); flow and capture rules fold their
aggregates and collect evidence frames per flow. No packet is kept: only counts, statistics and at most
`evidence_limit` frame numbers per key and rule.

At the end: flow rules run `when` on one row per conversation (flow.* facts, capture.*, param.*, agg.*), capture
rules on one row, packet rules' `having` on one row per group. Each true row becomes a finding with its message
rendered from the rule's Jinja template.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from diagnose.fields import ChunkContext, FieldType, lookup
from diagnose.findings import Finding, FlowRef
from diagnose.playbook.library import RuleSet
from diagnose.playbook.loader import agg_key
from diagnose.playbook.model import Aggregate, Rule
from diagnose.playbook.templates import environment
from diagnose.rules.accumulate import (EvidenceCollection, EvidenceFrames, KeyedCount, KeyedDistinct, KeyedFirstLast,
                                       KeyedFrames, KeyedPeak, KeyedSpan, KeyedStats, first_values)
from diagnose.rules.capture_fields import CAPTURE_FIELDS
from diagnose.rules.flow_fields import Facts, FlowColumns
from diagnose.rules.flow_records import IDENTITY_KEYS, LazyFacts

_SECONDS = (FieldType.RELTIME, FieldType.TIME)
_NUMERIC = (FieldType.UINT, FieldType.INT, FieldType.FLOAT, FieldType.RELTIME, FieldType.TIME, FieldType.BOOL)


class _AggState:
    """The running state of one aggregate of one rule."""

    def __init__(self, agg: Aggregate):
        self.agg = agg
        f = agg.function
        self.count = KeyedCount() if f in ("count", "rate", "percent") else None
        self.of = KeyedCount() if f == "percent" else None
        self.field_type = lookup(agg.field).type if agg.field and lookup(agg.field) is not None else None
        numeric = self.field_type in _NUMERIC
        self.stats = KeyedStats() if f in ("sum", "min", "max", "mean") or (f in ("first", "last") and numeric) \
            else None
        self.objects = KeyedFirstLast(lambda v, t=self.field_type: _py(v, t)) \
            if f in ("first", "last") and not numeric else None
        self.distinct = KeyedDistinct() if f == "distinct" else None
        self.peak = KeyedPeak(agg.window_ns) if f == "peak" else None

    def fold(self, ctx: ChunkContext, keys: np.ndarray, rows: np.ndarray, masks) -> None:
        agg = self.agg
        f = agg.function
        if f in ("count", "rate"):
            m = rows & masks(agg.filters[0])
            self.count.add(keys[m])
        elif f == "percent":
            of = rows & masks(agg.filters[1])
            self.of.add(keys[of])
            m = of & masks(agg.filters[0])
            self.count.add(keys[m])
        elif f == "peak":
            m = rows & masks(agg.filters[0])
            self.peak.add(keys[m], ctx.table["ts"][m], ctx.first_ts)
        else:
            m = rows & masks(agg.filters[0]) if agg.filters else rows
            if not m.any():
                return
            occurrences = lookup(agg.field).extract(ctx)
            if self.distinct is not None:
                for occ in occurrences:
                    take = m & occ.present
                    if take.any():
                        self.distinct.add(keys[take], _select(occ.values, take))
                return
            values, present = first_values(occurrences, self.field_type)
            if values is None:
                return
            take = m & present
            if take.any():
                if self.objects is not None:
                    self.objects.add(keys[take], _select(values, take))
                else:
                    self.stats.add(keys[take], np.asarray(values)[take])

    def result(self, n: int, durations_ns: np.ndarray | None) -> np.ndarray:
        """Per key values (float with NaN where the aggregate has no value, else int)."""
        f = self.agg.function
        if f == "count":
            return self.count.values(n)
        if f == "rate":
            counts = self.count.values(n).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                seconds = durations_ns / 1e9 if durations_ns is not None else np.full(n, np.nan)
                return np.where(seconds > 0, counts / seconds, np.nan)
        if f == "percent":
            hits = self.count.values(n).astype(np.float64)
            total = self.of.values(n).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(total > 0, hits / np.maximum(total, 1), np.nan)
        if f == "distinct":
            return self.distinct.result(n)
        if f == "peak":
            return self.peak.result(n)
        if self.objects is not None:
            return self.objects.result(f, n)
        return self.stats.result(f, n)


def _select(values, mask):
    if isinstance(values, np.ndarray):
        return values[mask]
    if hasattr(values, "to_objects"):
        return values.to_objects(mask)[mask]
    return np.asarray(values, dtype=object)[mask]


class _PacketGroups:
    """Groups of a packet rule: key values -> group id, with counts, time spans and evidence frames."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.by_flow = rule.group_by is None
        self.fields = [] if rule.group_by is None else list(rule.group_by)
        self.ids: dict[tuple, int] = {}
        self.keys: list[tuple] = []
        self.convs: list[set[int]] = []  # flows of each group (for flow references)
        self.count = KeyedCount()
        self.span = KeyedSpan()
        self.frames = KeyedFrames(rule.evidence_limit)

    def group_ids(self, ctx: ChunkContext, m: np.ndarray) -> np.ndarray:
        """Group id of every row selected by m (array over those rows only)."""
        conv = ctx.table["conv"][m].astype(np.int64)
        if self.by_flow:
            return conv  # -1 (a packet of no flow) is dropped by the caller
        columns = []
        for name in self.fields:
            values, present = first_values(lookup(name).extract(ctx), lookup(name).type)
            if values is None:
                columns.append([None] * int(m.sum()))
                continue
            selected = _select(values, m)
            pres = present[m]
            columns.append([_py(v, lookup(name).type) if p else None for v, p in zip(_as_list(selected), pres)])
        out = np.empty(len(conv), np.int64)
        for i, key in enumerate(zip(*columns) if columns else [()] * len(conv)):
            gid = self.ids.get(key)
            if gid is None:
                gid = self.ids[key] = len(self.keys)
                self.keys.append(key)
                self.convs.append(set())
            out[i] = gid
            if conv[i] >= 0 and len(self.convs[gid]) < 1000:
                self.convs[gid].add(int(conv[i]))
        return out


def _as_list(values) -> list:
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return [tuple(r) for r in values.tolist()]
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _py(value, ftype: FieldType):
    """A field value as the report shows it (addresses formatted, times in seconds)."""
    from diagnose.addresses import format_address

    if value is None:
        return None
    if ftype == FieldType.IPV4:
        return format_address(4, 0, int(value))
    if ftype == FieldType.IPV6 and isinstance(value, tuple):
        return format_address(6, int(value[0]), int(value[1]))
    if ftype in _SECONDS:
        return int(value) / 1e9
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class EngineResult:
    """Raw findings per rule, plus what `explain` needs to say why a rule did not fire."""

    findings: dict[str, list[Finding]]
    flow_ctx: ChunkContext | None = None
    capture_ctx: ChunkContext | None = None
    group_ctx: dict[str, ChunkContext] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)


class RuleEngine:
    def __init__(self, rule_set: RuleSet):
        self.rule_set = rule_set
        self.rules = rule_set.rules
        self._aggs: dict[str, list[_AggState]] = {r.id: [_AggState(a) for a in r.aggregates.values()]
                                                  for r in self.rules}
        # rules citing the same packets (same evidence filter and limit) share one collection; the collections of a
        # scope are fed together, once per chunk
        self._evidence: dict[str, EvidenceCollection] = {}
        self._batches: list[tuple[str, EvidenceFrames, list[tuple[Any, list[str]]]]] = []
        for scope in ("flow", "capture"):
            specs: list[tuple[Any, list[str]]] = []
            limits: list[int] = []
            shared: dict[tuple, int] = {}
            for r in self.rules:
                if r.scope != scope or r.evidence is None:
                    continue
                key = filter_key(r.evidence)
                key = (key, r.evidence_limit) if key is not None else (r.id,)
                at = shared.get(key)
                if at is None:
                    at = shared[key] = len(specs)
                    specs.append((r.evidence, []))
                    limits.append(r.evidence_limit)
                specs[at][1].append(r.id)
            if specs:
                batch = EvidenceFrames(limits)
                self._batches.append((scope, batch, specs))
                for at, (_flt, ids) in enumerate(specs):
                    for rule_id in ids:
                        self._evidence[rule_id] = batch.collection(at)
        self._mask_of: dict[int, tuple[object, Any]] = {}  # id(filter) -> (cache key, mask function)
        self._groups: dict[str, _PacketGroups] = {r.id: _PacketGroups(r) for r in self.rules if r.scope == "packet"}
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.errors: dict[str, str] = {}
        self._rule_context: dict[str, dict] = {}  # what every finding of a rule shows its templates alike
        self._record_keys = record_keys_read(self.rules)

    # ---- the pass ----------------------------------------------------------------------------------------------------
    def feed(self, ctx: ChunkContext) -> None:
        if ctx.n == 0:
            return
        if self.first_ts is None:
            self.first_ts = ctx.first_ts
        self.last_ts = int(ctx.table["ts"][-1])
        cache: dict[object, np.ndarray] = {}
        mask_of = self._mask_of

        def masks(flt) -> np.ndarray:
            """The filter's mask on this chunk, computed once per distinct filter (read only: it is shared)."""
            known = mask_of.get(id(flt))
            if known is None:
                known = mask_of[id(flt)] = _mask_function(flt)
            key, mask = known
            got = cache.get(key)
            if got is None:
                got = cache[key] = np.asarray(mask(ctx), bool)
            return got

        table = ctx.table
        conv = table["conv"]  # read in full only where aggregates need it: the evidence takes a few rows
        frames = table["frame"]
        in_flow = everything = zeros = None
        folding = self.__dict__.get("_folding")
        if folding is None:  # the rules with work per chunk besides their evidence (none in the built-in playbooks)
            folding = self._folding = [r for r in self.rules if r.scope == "packet" or self._aggs[r.id]]
        for rule in folding:
            if rule.id in self.errors:
                continue
            try:
                if rule.scope == "packet":
                    self._feed_packet_rule(rule, ctx, masks, frames)
                    continue
                if rule.scope == "flow":
                    if in_flow is None:
                        in_flow = conv >= 0
                    keys, rows = conv.astype(np.int64), in_flow
                else:
                    if zeros is None:
                        zeros, everything = np.zeros(ctx.n, np.int64), np.ones(ctx.n, bool)
                    keys, rows = zeros, everything
                for state in self._aggs[rule.id]:
                    state.fold(ctx, np.where(rows, keys, 0), rows, masks)
            except Exception as exc:  # one broken rule must not stop the diagnosis: it is reported
                self.errors[rule.id] = f"{type(exc).__name__}: {exc}"
        for scope, batch, specs in self._batches:
            chosen, which = [], []
            for at, (flt, ids) in enumerate(specs):
                live = ids if not self.errors else [rule_id for rule_id in ids if rule_id not in self.errors]
                if not live:
                    continue
                try:
                    chosen.append(masks(flt))
                except Exception as exc:  # the rules citing these packets are reported, the others go on
                    for rule_id in live:
                        self.errors[rule_id] = f"{type(exc).__name__}: {exc}"
                    continue
                which.append(at)
            if not chosen:
                continue
            # (collection, row) pairs, rows in arrival order within each collection: the masks end to end, one
            # after the other (np.nonzero of a 2-d mask costs ~10x a flat one; np.stack of ~22 masks ~20 us of Python)
            picked, rows = np.divmod(np.flatnonzero(np.concatenate(chosen)), ctx.n)
            if not len(rows):
                continue
            if len(which) < len(specs):
                picked = np.asarray(which, np.int64)[picked]
            if scope == "flow":  # only packets of a flow: conv of the few selected rows, not a pass over the table
                keys = conv[rows]
                inside = keys >= 0
                if not inside.all():
                    picked, rows, keys = picked[inside], rows[inside], keys[inside]
            else:
                keys = np.zeros(len(rows), np.int64)
            batch.add(picked, keys, frames[rows])

    def _feed_packet_rule(self, rule: Rule, ctx: ChunkContext, masks, frames) -> None:
        groups = self._groups[rule.id]
        m = masks(rule.when)
        if rule.evidence is not None:
            m = m & masks(rule.evidence)
        if not m.any():
            return
        gids = groups.group_ids(ctx, m)
        if groups.by_flow:
            keep = gids >= 0
            rows = np.flatnonzero(m)[keep]
            gids = gids[keep]
            m = np.zeros(ctx.n, bool)
            m[rows] = True
        groups.count.add(gids)
        groups.span.add(gids, ctx.table["ts"][m])
        groups.frames.add(gids, frames[m])
        keys = np.zeros(ctx.n, np.int64)
        keys[m] = gids
        for state in self._aggs[rule.id]:
            state.fold(ctx, keys, m, masks)

    # ---- judging -----------------------------------------------------------------------------------------------------
    def finish(self, records: list[dict], capture_facts: dict, convs: np.ndarray | None = None) -> EngineResult:
        """records: one flow record per conversation (diagnose.conn.record), index = conversation;
        capture_facts: diagnose.facts summary; convs: the flow table's conversations (CONV_DTYPE), optional."""
        n = len(records)
        # the evidence frames are sorted by flow on the idle core meanwhile (numpy's sort drops the GIL; ~10 ms on
        # the 1M-packet benchmark): the verdicts and the records below never read them
        sorting = _Beside(self._sort_evidence)
        try:
            return self._finish(records, capture_facts, n, sorting)
        finally:
            sorting.wait()

    def _sort_evidence(self) -> None:
        for _scope, batch, _specs in self._batches:
            batch.collection(0).get_many(())  # sorts the batch's frames by key, as its first read would

    def _finish(self, records, capture_facts: dict, n: int, sorting: _Beside) -> EngineResult:
        if hasattr(records, "prepare"):  # FlowRecords: every fact the rules read, in one sweep over the flows
            records.prepare(flow_facts_read(self.rules))
        result = EngineResult({r.id: [] for r in self.rules}, errors=self.errors, records=records)
        flow_refs = _FlowRefs(records)
        template_capture = capture_template_values(capture_facts)
        flow_ctx = _rows_context(n, self.first_ts, {"flows": FlowColumns(records), "capture_facts": capture_facts,
                                                    "agg": {}})
        capture_ctx = _rows_context(1, self.first_ts, {"capture_facts": capture_facts, "agg": {}})
        result.flow_ctx, result.capture_ctx = flow_ctx, capture_ctx
        durations = _durations(records) if _reads_durations(self.rules) else None  # for rate() only
        capture_duration = np.array([int(round(float(capture_facts.get("duration_s") or 0) * 1e9))])
        # every flow rule's verdicts first, so the records of all flagged flows are made in one go
        verdicts = {}
        for rule in self.rules:
            if rule.scope == "flow" and rule.id not in self.errors and n:
                try:
                    verdicts[rule.id] = self._flow_verdicts(rule, flow_ctx, n, durations)
                except Exception as exc:
                    self.errors[rule.id] = f"{type(exc).__name__}: {exc}"
                # the rule's own names (param.* constants as a column per flow) are not read by other rules
                flow_ctx.forget(f"{name}@{rule.id}" for name in rule.when.compiled.fields
                                if name.startswith(("param.", "agg.")))
        # the typed flow columns and the filters' cached occurrences (~40 MB on 73k flows) are not read again
        # while findings are made: `explain` rebuilds what it asks for from the records
        flow_ctx.release()
        # nor are the prepared fact columns (~19 MB on 73k flows): the records of flagged flows are made from the
        # flow analysis's own blocks, and the findings are the run's peak
        release = getattr(records, "release_columns", None)
        if release is not None:
            release()
        _load(records, sorted({c for _, fired in verdicts.values() for c in fired}), self._record_keys)
        flow_refs.take_loaded()
        sorting.wait()  # findings read the evidence
        for rule in self.rules:
            if rule.id in self.errors:
                continue
            try:
                if rule.scope == "flow":
                    result.findings[rule.id] = self._judge_flows(rule, verdicts.get(rule.id), flow_refs,
                                                                  template_capture)
                elif rule.scope == "capture":
                    result.findings[rule.id] = self._judge_capture(rule, capture_ctx, capture_duration,
                                                                    template_capture)
                else:
                    found, gctx = self._judge_groups(rule, capture_facts, flow_refs, template_capture)
                    result.findings[rule.id] = found
                    result.group_ctx[rule.id] = gctx
            except Exception as exc:
                self.errors[rule.id] = f"{type(exc).__name__}: {exc}"
        return result

    def _agg_columns(self, rule: Rule, ctx: ChunkContext, n: int, durations) -> dict[str, np.ndarray]:
        columns = {}
        for state in self._aggs[rule.id]:
            values = state.result(n, durations)
            ctx.extra["agg"][agg_key(rule.id, state.agg.name)] = values
            columns[state.agg.name] = values
        return columns

    def _flow_verdicts(self, rule, ctx, n, durations) -> tuple[dict[str, np.ndarray], list[int]]:
        """(the rule's aggregate columns, the flows its condition holds for)."""
        columns = self._agg_columns(rule, ctx, n, durations)
        return columns, np.flatnonzero(np.asarray(rule.when.evaluate(ctx), bool)).tolist()

    def _judge_flows(self, rule, verdicts, flow_refs, template_capture) -> list[Finding]:
        if verdicts is None:  # no flows
            return []
        columns, fired = verdicts
        if not fired:
            return []
        evidence = self._evidence[rule.id].get_many(fired) if rule.id in self._evidence else None
        listed_key = rule.evidence_frames[5:] if rule.evidence_frames else None
        limit = rule.evidence_limit
        aggs = [(name, values, rule.aggregates[name].result_type) for name, values in columns.items()]
        shared = self._shared(rule, template_capture)
        facts, ref, make = flow_refs.facts, flow_refs.ref, self._make_finding
        held = dict.get  # a record holds its time and duration when made (IDENTITY_KEYS): no LazyFacts.get call
        out = []
        none = []  # the frames of a rule without an evidence filter (read only: a finding sorts its own copy)
        for k, conv in enumerate(fired):
            frames, total = evidence[k] if evidence is not None else (none, 0)
            record = facts(conv)
            if listed_key is not None:
                listed = sorted({int(f) for f in (record.get(listed_key) or ())})
                # without filter frames the listed ones are the union already (sorted, distinct)
                frames = sorted(set(frames) | set(listed[:limit])) if frames else listed[:limit]
                total += len(listed)
            agg = {name: _agg_value(values[conv], result_type) for name, values, result_type in aggs} if aggs else {}
            start, duration = held(record, "ts"), held(record, "duration")
            out.append(make(rule, shared, [ref(conv, record)], frames, total, agg, record, None, template_capture,
                            start, None if start is None else start + (duration or 0.0)))
        return out

    def _judge_capture(self, rule, ctx, duration, template_capture) -> list[Finding]:
        columns = self._agg_columns(rule, ctx, 1, duration)
        mask = np.asarray(rule.when.evaluate(ctx), bool)
        if not mask.any():
            return []
        frames, total = self._evidence[rule.id].get(0) if rule.id in self._evidence else ([], 0)
        agg = {name: _agg_value(values[0], rule.aggregates[name].result_type) for name, values in columns.items()}
        return [self._finding(rule, [], frames, total, agg, None, None, template_capture,
                              start=_epoch(self.first_ts), end=_epoch(self.last_ts))]

    def _judge_groups(self, rule, capture_facts, flow_refs, template_capture):
        groups = self._groups[rule.id]
        n = int(groups.count.counts.shape[0]) if groups.by_flow else len(groups.keys)
        if groups.by_flow:
            n = len(flow_refs.records)
        ctx = _rows_context(n, self.first_ts, {"capture_facts": capture_facts, "agg": {}})
        if n == 0:
            return [], ctx
        counts = groups.count.values(n)
        ctx.extra["agg"][agg_key(rule.id, "count")] = counts
        first = np.full(n, np.nan)
        last = np.full(n, np.nan)
        span_n = min(n, len(groups.span.first))
        first[:span_n] = groups.span.first[:span_n]
        last[:span_n] = groups.span.last[:span_n]
        with np.errstate(invalid="ignore"):
            durations = np.where(counts > 0, last - first, np.nan)
        columns = self._agg_columns(rule, ctx, n, durations)
        mask = counts > 0
        if rule.having is not None:
            mask &= np.asarray(rule.having.evaluate(ctx), bool)
        out = []
        fired = np.flatnonzero(mask).tolist()
        _load(flow_refs.records, fired if groups.by_flow else [c for gid in fired for c in groups.convs[gid]],
              self._record_keys)
        for gid in fired:
            frames, total = groups.frames.get(gid)
            agg = {name: _agg_value(values[gid], rule.aggregates[name].result_type)
                   for name, values in columns.items()}
            agg["count"] = int(counts[gid])
            if groups.by_flow:
                refs = [flow_refs.ref(gid)]
                record = flow_refs.records[gid]
                key = None
            else:
                convs = sorted(groups.convs[gid])
                refs = [flow_refs.ref(c) for c in convs]
                record = flow_refs.records[convs[0]] if len(convs) == 1 else None
                key = {name: value for name, value in zip(groups.fields, groups.keys[gid])}
            out.append(self._finding(rule, refs, frames, total, agg, record, key, template_capture,
                                     start=_epoch(first[gid]), end=_epoch(last[gid])))
        return out, ctx

    # ---- one finding -------------------------------------------------------------------------------------------------
    @staticmethod
    def _render_text(rule: Rule, what: str, context: dict) -> str:
        """Explanation/advice: rendered per finding when the template reads the finding's data, once per rule when
        it is constant text (most are: thousands of findings need not render the same paragraph again)."""
        template = getattr(rule, what)
        if template is None:
            return ""
        text = getattr(rule, f"{what}_text")
        if "{" not in text:
            return " ".join(text.split()) if what == "explanation" else text.strip()
        return render(template, context, rule.id, what)

    def _finding(self, rule: Rule, flows: list[FlowRef], frames: list[int], total: int, agg: dict, record,
                 key, template_capture, *, start, end) -> Finding:
        return self._make_finding(rule, self._shared(rule, template_capture), flows, frames, total, agg, record, key,
                                  template_capture, start, end)

    def _shared(self, rule: Rule, template_capture: dict) -> dict:
        """What every finding of a rule shows its templates alike, made once per rule (thousands of findings; templates
        only read it), with what making a finding needs of the rule."""
        shared = self._rule_context.get(rule.id)
        if shared is None:
            names, phases = _template_names(rule)
            # a finding's values in the filter's order: the rule's own ones (parameters, capture facts) are the same
            # for all its findings, the flow facts are read from each finding's record into a copy of them
            with_flow = {}
            for name, kind, payload in names:
                with_flow[name] = None if kind == "flow" else \
                    template_capture.get(payload) if kind == "capture" else payload
            shared = self._rule_context[rule.id] = {
                "param": {p.name: p.value.python for p in rule.params.values()},
                "rule": {"id": rule.id, "title": rule.title, "severity": rule.severity},
                "key": {}, "symptoms": [], "flows": [],
                "references": list(rule.references),  # read only, like every reader of Finding.references
                "when": (names, phases),
                "values": (with_flow, [(name, payload) for name, kind, payload in names if kind == "flow"],
                           template_capture)}
        return shared

    def _make_finding(self, rule: Rule, shared: dict, flows: list[FlowRef], frames: list[int], total: int,
                      agg: dict, record, key, template_capture, start, end) -> Finding:
        with_flow, flow_names, capture_of_shared = shared["values"]
        if record is not None and not agg and template_capture is capture_of_shared:
            values = with_flow.copy()
            # a Facts reads a fact it lacks as None, like get, and by key without a Python call when it holds it
            read = record.__getitem__ if isinstance(record, Facts) else record.get
            for name, payload in flow_names:
                values[name] = read(payload)
            if shared["when"][1]:
                from diagnose.rules.latency import phases_of
                values["phases"] = phases_of(record)
        else:
            values = self._values(shared, agg, record, template_capture)
        finding = Finding(rule.id, rule.playbook, rule.title, rule.severity, rule.scope, "", "", "",
                          shared["references"], flows, start, end, sorted(frames), total, values, key)
        # messages are rendered once grouping has decided which findings survive (see finalize): thousands of
        # flows merged into one group need one rendering, not thousands; what the templates read is put together
        # then (template_context), from these parts
        finding._parts = (rule, record, agg, key, template_capture, shared)  # type: ignore[attr-defined]
        return finding

    @staticmethod
    def _values(shared: dict, agg: dict, record, template_capture: dict) -> dict:
        """A finding's values: its aggregates, then the names its rule's condition reads, in the filter's order."""
        values: dict[str, Any] = {f"agg.{k}": v for k, v in agg.items()} if agg else {}
        names, phases = shared["when"]
        read = None if record is None else record.__getitem__ if isinstance(record, Facts) else record.get
        for name, kind, payload in names:  # in the order the filter names them, as the report lists them
            if kind == "flow":
                if read is not None:
                    values[name] = read(payload)
            elif kind == "capture":
                values[name] = template_capture.get(payload)
            else:
                values[name] = payload
        if record is not None and phases:
            from diagnose.rules.latency import phases_of
            values["phases"] = phases_of(record)
        return values


def _template_names(rule: Rule) -> tuple[list[tuple[str, str, Any]], bool]:
    """What a finding of the rule shows of the names its `when` reads, in the filter's order: (name, "flow", fact
    key), (name, "capture", fact key) or (name, "param", the value as shown: constant per rule); and whether
    latency phases are shown."""
    names = []
    for name in rule.when.compiled.fields:
        if name.startswith("flow."):
            names.append((name, "flow", name[5:]))
        elif name.startswith("capture."):
            names.append((name, "capture", name[8:]))
        elif name.startswith("param."):
            param = rule.params.get(name[6:])
            if param is not None:
                names.append((name, "param", param.value.display()))
    phases = any(n.startswith("flow.latency_") for n in rule.when.compiled.fields)
    return names, phases


def template_context(finding: Finding) -> dict:
    """What a finding's message, explanation and advice templates read (made when rendered, not kept)."""
    parts = getattr(finding, "_parts", None)
    if parts is None:
        return {}
    _rule, record, agg, key, template_capture, shared = parts
    return {
        "flow": _as_facts(record), "capture": template_capture, "param": shared["param"], "agg": agg,
        "key": key or shared["key"], "rule": shared["rule"],
        "finding": {"evidence": finding.evidence, "evidence_total": finding.evidence_total, "start": finding.start,
                    "end": finding.end, "flows": len(finding.flows)},
        "group": None, "symptoms": shared["symptoms"], "flows": shared["flows"],
    }


def finalize(finding: Finding) -> Finding:
    """Render a finding's message, explanation and advice from the data kept when it was found (idempotent)."""
    parts = getattr(finding, "_parts", None)
    if parts is None or finding.message:
        return finding
    rule, shared = parts[0], parts[5]
    context = template_context(finding)
    finding.message = render(rule.message, context, rule.id, "message")
    finding.explanation = _rule_text(rule, "explanation", context, shared)
    finding.advice = _rule_text(rule, "advice", context, shared)
    return finding


_CONSTANT_NAMES = {"param", "rule"}  # what a template reads that is the same for every finding of a rule


def _rule_text(rule: Rule, what: str, context: dict, shared: dict) -> str:
    """Explanation/advice of a finding, rendered once per rule (kept in the rule's shared context) when the template
    reads only the rule and its parameters (hundreds of findings of one rule need not render it again), else once
    per distinct set of the values it reads when it reads them as `name.attribute` only (a refused connection's
    advice names its server: a few dozen servers, hundreds of findings)."""
    key = f"text:{what}"
    got = shared.get(key)
    if got is not None:
        return got if isinstance(got, str) else _text_of_values(rule, what, context, got)
    text = RuleEngine._render_text(rule, what, context)
    template = getattr(rule, what)
    source = getattr(rule, f"{what}_text") if template is not None else ""
    if template is None or "{" not in source:
        shared[key] = text
    else:
        from diagnose.playbook.templates import plain_names, read_attributes

        tree = template.environment.parse(source)
        names = plain_names(tree)  # without compiling it (meta compiles it: ~0.5 ms a template)
        if names is None:
            from jinja2 import meta

            names = meta.find_undeclared_variables(tree)
        if names <= _CONSTANT_NAMES:
            shared[key] = text
        else:  # rendered per finding: per distinct values read, when they are known (else each time)
            read = read_attributes(tree)
            texts: dict = {}
            shared[key] = (read, texts)
            if read is not None:
                values = _values_read(read, context)
                if values is not None:
                    texts[values] = text
    return text


def _text_of_values(rule: Rule, what: str, context: dict, memo: tuple) -> str:
    """A finding's explanation/advice whose template reads `read` (name, attribute) pairs: the text of the same
    values if rendered before, else rendered."""
    read, texts = memo
    values = None if read is None else _values_read(read, context)
    if values is None:
        return RuleEngine._render_text(rule, what, context)
    text = texts.get(values)
    if text is None:
        text = texts[values] = RuleEngine._render_text(rule, what, context)
    return text


_NOT_READ = object()
_KEY_TYPES = (str, int, bool, type(None))  # values whose equality (with their type) means equal text


def _values_read(read: tuple[tuple[str, str], ...], context: dict) -> tuple | None:
    """The values a template reading `read` gets, as the sandbox reads them (an attribute, else the item): with
    their types, floats by repr (0.0 == -0.0); None when one is not such a plain value (or not found: the
    template fails, rendered to say so)."""
    out = []
    for name, attribute in read:
        obj = context.get(name)
        if getattr(obj, attribute, _NOT_READ) is not _NOT_READ:
            return None  # an attribute of the object (a method...): not a fact
        try:
            value = obj[attribute]
        except (TypeError, LookupError):
            return None
        kind = type(value)
        if kind is float:
            out.append((kind, repr(value)))
        elif kind in _KEY_TYPES:
            out.append((kind, value))
        else:
            return None
    return tuple(out)


def render(template, context: dict, rule_id: str, what: str) -> str:
    """Render a message template; a template that fails on this data says so instead of stopping the run."""
    try:
        return " ".join(template.render(context).split()) if what == "message" else \
            template.render(context).strip()
    except Exception as exc:  # noqa: BLE001 - a user's template error becomes visible text, not a crash
        return f"[{rule_id}: the {what} template failed: {type(exc).__name__}: {exc}]"


def capture_template_values(facts: dict) -> dict:
    """The capture facts under their capture.* names (durations and times in seconds), for templates."""
    out = {}
    for name, _ftype, _description, key, _scale in CAPTURE_FIELDS:
        out[name.split(".", 1)[1]] = facts.get(key)
    out["file"] = facts.get("file")
    return out


def _as_facts(record) -> Facts | None:
    if record is None or isinstance(record, Facts):
        return record
    return Facts(record)


class _Beside:
    """A function run on another thread; wait() returns once it is done, raising what it raised."""

    def __init__(self, function):
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function,), name="diagnose-beside", daemon=True)
        self._thread.start()

    def _run(self, function) -> None:
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._failure = exc

    def wait(self) -> None:
        self._thread.join()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure


class _FlowRefs:
    def __init__(self, records: list[dict]):
        self.records = records
        self._refs: dict[int, FlowRef] = {}
        self._facts: dict[int, Facts] = {}

    def take_loaded(self) -> None:
        """The records made so far (FlowRecords.loaded: Facts already) are the flows' facts: no lookup each."""
        loaded = getattr(self.records, "loaded", None)
        if loaded is not None:
            self._facts.update(loaded())

    def facts(self, conv: int) -> Facts:
        """A flow's record as templates read it, made once for all the findings that name the flow (a busy
        capture has several findings per flagged flow, and a record holds ~150 facts)."""
        got = self._facts.get(conv)
        if got is None:
            got = self._facts[conv] = _as_facts(self.records[conv])
        return got

    def ref(self, conv: int, record=None) -> FlowRef:
        """A flow's reference; `record`: its facts(conv), when the caller has them."""
        got = self._refs.get(conv)
        if got is None:
            r = self.facts(conv) if record is None else record  # made once per flow (its findings read both)
            if type(r) is LazyFacts:  # holds these keys when made (IDENTITY_KEYS): read at once, as dict.get would
                stream, proto, client, server, first, last, orig_h, resp_h = _REF_FACTS(r)
            else:
                get = dict.get
                stream, proto, client, server, first, last, orig_h, resp_h = (get(r, k) for k in _REF_KEYS)
            got = self._refs[conv] = FlowRef(conv, stream, proto or "?", client or "?", server or "?", first, last,
                                             orig_h, resp_h)
        return got


_REF_KEYS = ("stream", "proto", "client", "server", "first_frame", "last_frame", "orig_h", "resp_h")
_REF_FACTS = itemgetter(*_REF_KEYS)


def _rows_context(n: int, first_ts: int | None, extra: dict) -> ChunkContext:
    table = np.zeros(n, dtype=[("ts", np.int64), ("conv", np.int32), ("frame", np.int64)])
    table["conv"] = np.arange(n)
    return ChunkContext(np.zeros(0, np.uint8), table, first_ts=first_ts or 0, extra=extra)


def _mask_function(flt) -> tuple[object, Any]:
    """(the key equal filters share, a function ctx -> mask that need not copy) of a playbook filter."""
    compiled = getattr(flt, "compiled", None)
    owner = getattr(getattr(compiled, "evaluate", None), "__self__", None)
    key = getattr(owner, "key", None)
    mask = getattr(owner, "mask", None)
    if key is None:
        key = ("filter", id(compiled))
    return key, (mask if mask is not None else flt.evaluate)


def filter_key(flt) -> object:
    """What a playbook filter tests (DisplayFilter.key, None when not known): equal keys, equal masks."""
    compiled = getattr(flt, "compiled", None)
    owner = getattr(getattr(compiled, "evaluate", None), "__self__", None)
    return getattr(owner, "key", None)


def flow_facts_read(rules) -> set[str]:
    """The flow facts (record keys) the rules' conditions read, and the duration when a rate() divides by it."""
    read = {name[5:] for rule in rules for name in rule.when.compiled.fields if name.startswith("flow.")}
    if _reads_durations(rules):
        read.add("duration")
    return read


def _reads_durations(rules) -> bool:
    return any(r.scope == "flow" and any(a.function == "rate" for a in r.aggregates.values()) for r in rules)


def record_keys_read(rules) -> set[str]:
    """The facts of a flagged flow's record that making its findings reads for every finding (flow references,
    times, the names a rule's condition, evidence and grouping read): a record is made with these at once, the
    rest when a template reads them."""
    keys = flow_facts_read(rules) | set(IDENTITY_KEYS)
    for rule in rules:
        if rule.evidence_frames:
            keys.add(rule.evidence_frames[5:])
        if rule.group is not None:
            keys.update(name[5:] for name in rule.group.by)
            if rule.group.near:
                keys.add(rule.group.near[5:])
    return keys


def _load(records, convs: list[int], keys: set[str] | None = None) -> None:
    """Make the records of many flows at once when they are made on demand (FlowRecords)."""
    load = getattr(records, "load", None)
    if load is not None:
        load(convs, keys)


def _durations(records) -> np.ndarray:
    if hasattr(records, "column"):  # FlowRecords
        seconds, present = records.column("duration", FieldType.FLOAT)
        return np.where(present, seconds * 1e9, np.nan)
    return np.fromiter(((r.get("duration") or 0.0) * 1e9 if r.get("duration") is not None else np.nan
                        for r in records), np.float64, len(records))


def _agg_value(value, result_type: str):
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    if result_type in ("string", "ipv4", "ipv6", "ether", "bytes"):
        return value
    if result_type in ("reltime", "time"):
        return float(value) / 1e9
    if result_type in ("uint", "int"):
        return int(value)
    if result_type == "bool":
        return bool(value)
    return float(value)


def _epoch(ns) -> float | None:
    if ns is None or (isinstance(ns, float) and (math.isnan(ns) or math.isinf(ns))):
        return None
    return float(ns) / 1e9


__all__ = ["EngineResult", "Facts", "RuleEngine", "finalize", "capture_template_values", "environment", "render"]
