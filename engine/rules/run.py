"""Run a diagnosis: one streaming pass over the capture with every analysis the rules read, then the rules, then
the report.

    report = diagnose_capture("syn_drop.pcap", load_rule_set(["tcp"])).report
    code = run_diagnosis("syn_drop.pcap", ["tcp"], ["tcp.syn-unanswered.min_syns=3"], "json", "-", "error")

The pass: read + decode + flow table (diagnose.pipeline), Wireshark-style TCP analysis attached to each chunk's
context (tcp.analysis.* fields), Zeek connection states and flow facts, capture facts, then the rule engine folds
the chunk. After the last chunk the flow records and the capture summary are final and the rules judge them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from diagnose.findings import Report, RuleResult
from diagnose.footprint import release_compiler_pages, release_unused_memory
from diagnose.playbook.library import RuleSet, load_rule_set
from diagnose.rules.engine import EngineResult, RuleEngine, flow_facts_read
from diagnose.rules.linking import group_findings, link, rank

if TYPE_CHECKING:
    from diagnose.rules.flow_records import FlowRecords

CAPTURE_PLAYBOOK = "capture"
# Chunks twice the reader's default: the rules and the application layer cost some Python per chunk whatever its
# size, and a diagnosis runs many of them (~0.1 s less on the 1M-packet benchmark, ~2 MB more at its peak).
CHUNK_BYTES = 4 << 20


@dataclass
class Diagnosis:
    report: Report
    result: EngineResult
    rule_set: RuleSet


class AnalysisPass:
    """Everything computed per chunk for the rules, in dependency order. `contexts()` yields each chunk's context;
    afterwards `records()` and `summary()` are final."""

    def __init__(self, path: str, *, tick: Callable[[], None] | None = None, verify_checksums: bool = True,
                 keylogs: list[str] | None = None, ca_file: str | None = None, use_environment: bool = True,
                 dns_answers: bool = True):
        from diagnose.conn.facts import FlowFacts
        from diagnose.conn.zeek import ConnStates
        from diagnose.facts import CaptureFacts
        from diagnose.keylog import KeyLog
        from diagnose.pipeline import open_pass
        from diagnose.protocols.app import AppLayer
        from diagnose.protocols.tls_decrypt import KeyLogDecryption
        from diagnose.tcp.analysis import TcpAnalyzer

        self.keylog = KeyLog.load(keylogs or (), use_environment=use_environment)  # bad --keylog: exit 2 before reading
        self.run = open_pass(path, chunk_bytes=CHUNK_BYTES)
        self.app = AppLayer(decryptor_factory=KeyLogDecryption(self.keylog), ca_file=ca_file)
        self.app_flows: dict = {}
        from diagnose.rules.latency import DnsAnswers
        self.dns_answers = DnsAnswers()
        self.want_dns_answers = dns_answers  # decoding every DNS answer costs time: only when latency rules run
        self.tcp = TcpAnalyzer(self.run.flows)
        self.states = ConnStates()
        self.flow_facts = FlowFacts()
        self.capture_facts = CaptureFacts(verify_checksums=verify_checksums)
        self.tick = tick
        self.per_iface: dict[int, int] = {}

    def contexts(self):
        from concurrent.futures import ThreadPoolExecutor, wait

        from diagnose.fields import ChunkContext
        from diagnose.tcp import fields as tcp_fields

        first_ts = prev_ts = None
        info = self.run.capture.info
        secrets_seen = 0
        # The flow analyses are kernels that drop the GIL and write only their own state: they run on a second
        # thread while the application layer (Python) reads the same chunk here. The rules wait only for the TCP
        # analysis; Zeek's states and the flow and capture facts go on beside them, done before the next chunk's
        # flows.update.
        with self.run.capture, ThreadPoolExecutor(1, thread_name_prefix="diagnose-flows") as beside:
            for chunk in self.run.chunks(prepare=self.capture_facts.prepare):
                if len(info.secrets) > secrets_seen:  # decryption secrets blocks come before their packets
                    self.keylog.add_secrets(info.secrets[secrets_seen:])
                    secrets_seen = len(info.secrets)
                table = chunk.table
                n = int(table.shape[0])
                if not n:
                    continue
                if first_ts is None:
                    first_ts = int(table["ts"][0])
                tcp_rows = beside.submit(self.tcp.update, table, chunk.buf)
                flow_facts = beside.submit(self._flow_facts, chunk, tcp_rows)  # after it: one thread, in order
                try:
                    app_chunk = self.app.update(chunk.buf, table, self.run.flows.conversations)
                    if self.want_dns_answers:
                        self.dns_answers.update(app_chunk)
                    for iface, count in zip(*np.unique(table["iface"], return_counts=True)):
                        self.per_iface[int(iface)] = self.per_iface.get(int(iface), 0) + int(count)
                    rows = tcp_rows.result()
                except BaseException:
                    wait((flow_facts,))  # not running on when the caller stops; this error is the one to report
                    raise
                ctx = ChunkContext(chunk.buf, table, first_ts=first_ts, prev_ts=prev_ts,
                                   file_big_endian=getattr(info, "big_endian", False),
                                   capture_format=getattr(info, "format", None))
                tcp_fields.attach(ctx, rows)
                ctx.extra["app"] = _LazyDns(app_chunk)
                first_chunk = prev_ts is None
                prev_ts = int(table["ts"][-1])
                yield ctx
                flow_facts.result()
                if first_chunk:  # every stage, the rules' too, has loaded its kernels: LLVM's start-up pages can go
                    release_unused_memory()
                else:  # a kernel used for the first time (a table grew, a rare packet) read LLVM pages back
                    release_compiler_pages()
                if self.tick is not None:
                    self.tick()
        self.app_flows = self.app.finish()
        self.tcp.release()  # the records read only its per-stream completeness (~6 MB on 1M packets)

    def _flow_facts(self, chunk, tcp_rows) -> None:
        """Zeek's connection states, the flow and capture facts of one chunk (after its TCP analysis, tcp_rows)."""
        table, buf, flows = chunk.table, chunk.buf, self.run.flows
        self.states.update(buf, table, flows.count)
        self.flow_facts.update(table, flows.count, flows.tcp_streams, tcp_rows.result())
        self.capture_facts.update(buf, table, flows.count, chunk.extra)

    def records(self, rule_facts: Iterable[str] = ()) -> FlowRecords:
        """One record per conversation: diagnose.conn's flow facts plus the application layer's (app_facts), made
        on demand (FlowRecords): the rules read columns, and only flagged flows become dicts."""
        from diagnose.conn.record import FlowAnalysis
        from diagnose.rules.app_facts import add_app_facts
        from diagnose.rules.flow_records import FlowRecords
        from diagnose.rules.latency import LATENCY_INPUTS, add_latency_facts

        records = FlowRecords(FlowAnalysis(self.run.flows, self.states, self.flow_facts, self.tcp.completeness))
        # the flow facts the rules and the latency split read: computed in one sweep over the flows
        records.prepare({*rule_facts, *LATENCY_INPUTS})
        add_app_facts(records, self.app_flows)
        add_latency_facts(records, self.dns_answers)
        return records

    def drop_pass_state(self) -> None:
        """Once the records and the summary are made: the DNS answers (read by the latency facts) and the capture
        facts' duplicate and MSS tables (~5 MB on 1M packets) are not needed by the rules' finish, the run's peak."""
        self.dns_answers = None
        self.capture_facts = None

    def summary(self) -> dict:
        flows = self.run.flows
        summary = self.capture_facts.summary(self.run.capture.info, flows.conversations)
        for entry in summary["interfaces"]:
            entry["packets"] = self.per_iface.get(entry["index"], 0)
        summary["tcp_streams"] = flows.tcp_streams
        summary["udp_streams"] = flows.udp_streams
        summary["conversations"] = flows.count
        if not any(i["dropped"] is not None for i in summary["interfaces"]):
            summary["interface_drops"] = None  # not recorded: unknown, not zero
        return summary


class _LazyDns:
    """The chunk's AppChunk as field extractors see it, except that asking for HTTP or TLS PDUs does not decode
    the chunk's UDP DNS messages too (AppChunk.items decodes them all on any access; most rules never read DNS
    fields, and decoding every DNS message costs more than everything else the rules do)."""

    def __init__(self, chunk):
        self._chunk = chunk
        self.items = _LazyItems(chunk)

    def rows(self, kind: str) -> list:
        return self.items.get(kind, [])

    def __getattr__(self, name):
        return getattr(self._chunk, name)


class _LazyItems:
    def __init__(self, chunk):
        self._chunk = chunk

    def get(self, kind: str, default=None):
        source = self._chunk.items if kind == "dns" else self._chunk.emitted
        return source.get(kind, default)

    def __getitem__(self, kind: str):
        found = self.get(kind)
        if found is None:
            raise KeyError(kind)
        return found


def diagnose_capture(path: str, rule_set: RuleSet, *, tick: Callable[[], None] | None = None,
                     on_finding: Callable | None = None, keylogs: list[str] | None = None,
                     ca_file: str | None = None) -> Diagnosis:
    """Run the rules over one capture and build the ranked report."""
    started = time.perf_counter()
    latency = any(key.startswith("latency_") for key in flow_facts_read(rule_set.rules))
    analysis = AnalysisPass(path, tick=tick, keylogs=keylogs, ca_file=ca_file, dns_answers=latency)
    engine = RuleEngine(rule_set)
    for ctx in analysis.contexts():
        engine.feed(ctx)
    # Findings and the records of flagged flows (thousands on a busy capture) live to the end: the cyclic collector
    # would rescan them again and again while they are built (none forms a cycle), so it waits until the report is done.
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        records = analysis.records(flow_facts_read(rule_set.rules))
        release_unused_memory()  # again: loading the records' kernels read some back
        summary = analysis.summary()
        analysis.drop_pass_state()
        result = engine.finish(records, summary)
        report = build_report(rule_set, result, summary, records)
    finally:
        if was_enabled:
            gc.enable()
    report.elapsed_s = round(time.perf_counter() - started, 3)
    if on_finding is not None:
        for finding in (*report.capture_quality, *report.findings):
            on_finding(finding)
    return Diagnosis(report, result, rule_set)


def build_report(rule_set: RuleSet, result: EngineResult, summary: dict, records) -> Report:
    from diagnose import __version__

    from diagnose.collector import settle
    from diagnose.rules.engine import finalize

    # the report is the run's peak of memory: the pages finishing the rules freed (the flow columns, the sweep's
    # blocks, the evidence's unsorted parts) go back first (~9 MB of RSS on the benchmark, ~1 ms)
    release_unused_memory()
    grouped = {}
    for rule in rule_set.rules:
        grouped[rule.id] = [finalize(f) for f in group_findings(rule, result.findings.get(rule.id, []), records)]
    top, withdrawn = link(rule_set.rules, grouped)
    quality = rank([f for f in top if f.playbook == CAPTURE_PLAYBOOK])
    for f in quality:
        f.capture_quality = True
    findings = rank([f for f in top if f.playbook != CAPTURE_PLAYBOOK])
    report = Report(
        capture=_capture_section(summary),
        playbooks=[p.name for p in rule_set.playbooks],
        params={name: ps[0].value.display() for name, ps in sorted(rule_set.params.items())},
        findings=findings, capture_quality=quality, withdrawn=withdrawn,
        warnings=list(summary.get("warnings", [])), tool_version=__version__,
    )
    counted: dict[str, int] = {}
    for f in report.all_findings():
        counted[f.rule_id] = counted.get(f.rule_id, 0) + 1
    pulled: dict[str, int] = {}
    for f in withdrawn:
        pulled[f.rule_id] = pulled.get(f.rule_id, 0) + 1
    for rule in rule_set.rules:
        report.rules.append(RuleResult(rule.id, rule.title, rule.severity, rule.playbook, counted.get(rule.id, 0),
                                       pulled.get(rule.id, 0), result.errors.get(rule.id)))
        if rule.id in result.errors:
            report.warnings.append(f"rule {rule.id} could not be evaluated: {result.errors[rule.id]}")
    # the report and the records it was made from live until it is written: no young collection should traverse
    # them all once diagnose_capture turns the collector back on (~0.1 s on the benchmark, collector.py)
    settle()
    return report


def _capture_section(summary: dict) -> dict:
    keys = ("file", "format", "packets", "first_time", "last_time", "first_time_epoch", "last_time_epoch",
            "duration_s", "data_bytes", "link_types", "snaplen", "snaplen_cut", "interface_drops", "duplicates",
            "oversize_segments", "bad_checksums", "checksum_offload_host", "one_sided_flows", "tcp_streams",
            "udp_streams", "conversations", "truncated_file")
    return {k: summary.get(k) for k in keys}


def run_diagnosis(capture: str, playbooks: list[str] | None = None, params: list[str] | None = None,
                  fmt: str = "text", out: str | None = None, fail_on: str | None = "error",
                  color: bool | None = None, keylogs: list[str] | None = None, ca_file: str | None = None) -> int:
    """The main command as a library call: returns the exit code (0 clean, 1 findings at or above fail_on).

    Playbook mistakes raise PlaybookError and a bad --set/--format UsageError (both exit 2) before the capture is
    opened; an unreadable capture raises CaptureError (exit 2)."""
    from diagnose.errors import UsageError
    from diagnose.report.render import FORMATS, write_report

    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    if fail_on not in (None, "never", "none", "info", "warning", "error"):
        raise UsageError(f"--fail-on {fail_on}: use info, warning, error or never")
    rule_set = load_rule_set(playbooks, params)
    stream = None
    if fmt == "ndjson":
        stream = sys.stdout if out in (None, "-") else open(out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        from diagnose.report.render_ndjson import NdjsonWriter

        writer = NdjsonWriter(stream, capture) if stream is not None else None
        diagnosis = diagnose_capture(capture, rule_set, on_finding=writer.finding if writer else None,
                                     keylogs=keylogs, ca_file=ca_file)
        if writer is not None:
            writer.summary(diagnosis.report)
        else:
            extras = None
            if fmt == "html":
                from diagnose.report.chart_data import collect_chart_data
                extras = collect_chart_data(capture, diagnosis.report)
            write_report(diagnosis.report, fmt, out, color=color, extras=extras)
    finally:
        if stream is not None and stream is not sys.stdout:
            stream.close()
    return diagnosis.report.exit_code(fail_on)
