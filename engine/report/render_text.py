"""The terminal report (rich): root causes first, each with its numbers, flows, evidence command, why and what to
do; symptoms under their cause; capture-quality notes before the findings; withdrawn findings at the end.

Colour only when asked (a terminal); text from packets is shown through rich Text objects, never parsed as markup,
and stripped of control characters.
"""

from __future__ import annotations

import io
import textwrap

from rich.console import Console
from rich.text import Text

from diagnose.findings import Finding, Report
from diagnose.report.text_safety import clean

STYLE = {"error": "bold red", "warning": "bold yellow", "info": "bold blue"}
PER_RULE_SHOWN = 10  # findings of one rule shown in full; the rest are counted (JSON has all)


def _fmt_time(seconds) -> str:
    if seconds is None:
        return "n/a"
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def write_text(report: Report, stream, *, color: bool = False, width: int | None = None) -> None:
    console = Console(file=stream, force_terminal=color, no_color=not color, color_system="auto" if color else None,
                      width=width or (None if color else 100), highlight=False, markup=False, emoji=False,
                      soft_wrap=True)
    _Writer(console, report).write()


def render_text(report: Report, *, color: bool = False, width: int | None = None) -> str:
    out = io.StringIO()
    write_text(report, out, color=color, width=width)
    return out.getvalue()


class _Writer:
    def __init__(self, console: Console, report: Report):
        self.c = console
        self.r = report
        self.capture = report.capture.get("file") or ""
        self.explained: set[str] = set()

    def line(self, *parts: tuple[str, str] | str, indent: int = 0) -> None:
        text = Text(" " * indent)
        for part in parts:
            if isinstance(part, tuple):
                text.append(clean(part[0]), style=part[1])
            else:
                text.append(clean(part))
        self.c.print(text)

    def para(self, label: str, body: str, indent: int) -> None:
        width = max(40, (self.c.width or 100) - indent - len(label) - 1)
        lines = textwrap.wrap(clean(" ".join(body.split())), width=width) or [""]
        self.line((label, "dim"), " " + lines[0], indent=indent)
        for rest in lines[1:]:
            self.line(" " * len(label) + " " + rest, indent=indent)

    def write(self) -> None:
        r = self.r
        cap = r.capture
        self.line(("diagnose", "bold"), f" — {cap.get('file')}")
        span = f"{cap.get('duration_s') or 0:.3f} s" if cap.get("packets") else "empty"
        self.line(f"{cap.get('packets') or 0:,} packets, {span}, from {_fmt_time(cap.get('first_time_epoch'))}; "
                  f"{cap.get('tcp_streams') or 0:,} TCP / {cap.get('udp_streams') or 0:,} UDP streams; "
                  f"playbooks: {', '.join(r.playbooks)}")
        if r.capture_quality:
            self.c.print()
            self.line(("Capture quality (checked first: what the capture itself explains)", "bold"))
            for f in r.capture_quality:
                self.finding(f, None, 2)
        self.c.print()
        counts = r.counts()
        if not r.findings:
            self.line(("No problems found", "bold green"),
                      f" by {len(r.rules)} rules." if not r.capture_quality else " beyond the capture notes above.")
        else:
            summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in reversed(list(counts.items())) if n)
            self.line(("Findings", "bold"), f" ({summary}), root causes first:")
            shown: dict[str, int] = {}
            hidden: dict[str, int] = {}
            number = 0
            for f in r.findings:
                shown[f.rule_id] = shown.get(f.rule_id, 0) + 1
                if shown[f.rule_id] > PER_RULE_SHOWN:
                    hidden[f.rule_id] = hidden.get(f.rule_id, 0) + 1
                    continue
                number += 1
                self.c.print()
                self.finding(f, number, 1)
            for rule_id, n in hidden.items():
                self.c.print()
                self.line(f"… and {n:,} more {rule_id} finding{'s' if n != 1 else ''} (all of them: --format json)",
                          indent=1)
        if r.withdrawn:
            self.c.print()
            self.line(("Withdrawn", "bold"), " (explained by the capture, not the network):")
            for f in r.withdrawn[:20]:
                by = f.explained_by or {}
                self.line(f"- {f.rule_id} on {f.about()}: {f.message}", indent=2)
                self.line((f"because {by.get('rule_id')}: {by.get('message')}", "dim"), indent=4)
            if len(r.withdrawn) > 20:
                self.line(f"… and {len(r.withdrawn) - 20:,} more", indent=2)
        for w in r.warnings:
            self.line(("warning: ", "yellow"), w)

    def finding(self, f: Finding, number: int | None, indent: int, parent: Finding | None = None) -> None:
        badge = f.severity.upper()
        head = [(f"{number}. " if number else "", ""), (f"{badge:<7}", STYLE[f.severity]), (f" {f.title}", "bold"),
                (f"  [{f.rule_id}]", "dim")]
        if f.status == "downgraded" and f.original_severity:
            head.append((f" (was {f.original_severity}: {f.explained_by.get('rule_id')} explains it)", "dim"))
        self.line(*head, indent=indent)
        pad = indent + 3
        self.para("", f.message, pad)
        same_flows = parent is not None and [r.conv for r in f.flows] == [r.conv for r in parent.flows]
        if f.flows and not same_flows:
            if len(f.flows) == 1:
                self.line(("flow: ", "dim"), f.flows[0].label(), indent=pad)
            else:
                labels = ", ".join(ref.label() for ref in f.flows[:5])
                more = f" and {len(f.flows) - 5} more" if len(f.flows) > 5 else ""
                self.line((f"flows ({len(f.flows)}): ", "dim"), labels + more, indent=pad)
        if f.start is not None and parent is None:
            self.line(("when: ", "dim"), _fmt_time(f.start) + (f" → {_fmt_time(f.end)}" if f.end and f.end != f.start
                                                                else ""), indent=pad)
        command = f.list_command(self.capture)
        if command:
            total = f"{f.evidence_total:,} packet{'s' if f.evidence_total != 1 else ''}"
            shown = f", first {len(f.evidence)}" if f.evidence_total > len(f.evidence) else ""
            self.line(("evidence: ", "dim"), f"{total}{shown}: ", (command, "cyan"), indent=pad)
        if f.rule_id not in self.explained and parent is None:
            self.explained.add(f.rule_id)
            if f.explanation:
                self.para("why:", f.explanation, pad)
            if f.advice:
                self.para("fix:", f.advice, pad)
        if f.symptoms:
            self.line((f"explains {len(f.symptoms)} symptom{'s' if len(f.symptoms) != 1 else ''}:", "dim"),
                      indent=pad)
        for s in f.symptoms:
            self.finding(s, None, pad + 2, parent=f)
