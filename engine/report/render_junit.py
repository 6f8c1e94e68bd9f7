"""JUnit XML for CI: one test suite per playbook, one test case per rule. A rule with findings at or above warning
fails (its findings are the failure text), info findings are written as system-out, a rule that could not run is
an error, withdrawn findings are a note."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from diagnose.findings import Report
from diagnose.report.text_safety import clean


def render_junit(report: Report) -> str:
    by_rule: dict[str, list] = {}
    for f in report.all_findings():
        by_rule.setdefault(f.rule_id, []).append(f)
    root = ET.Element("testsuites", name=f"diagnose {clean(report.capture.get('file') or '')}")
    suites: dict[str, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for rule in report.rules:
        suite = suites.get(rule.playbook)
        if suite is None:
            suite = suites[rule.playbook] = ET.SubElement(root, "testsuite", name=rule.playbook)
            suite.attrib.update(tests="0", failures="0", errors="0", skipped="0")
        case = ET.SubElement(suite, "testcase", classname=f"diagnose.{rule.playbook}", name=rule.id)
        suite.set("tests", str(int(suite.get("tests")) + 1))
        totals["tests"] += 1
        findings = by_rule.get(rule.id, [])
        failing = [f for f in findings if f.severity in ("warning", "error")]
        if rule.error:
            node = ET.SubElement(case, "error", message=clean(f"rule could not be evaluated: {rule.error}"))
            node.text = clean(rule.error)
            suite.set("errors", str(int(suite.get("errors")) + 1))
            totals["errors"] += 1
        elif failing:
            worst = max(failing, key=lambda f: f.severity_rank)
            node = ET.SubElement(case, "failure", message=clean(worst.message), type=worst.severity)
            node.text = "\n".join(_describe(f, report) for f in failing)
            suite.set("failures", str(int(suite.get("failures")) + 1))
            totals["failures"] += 1
        notes = [f for f in findings if f.severity not in ("warning", "error")]  # the others: `failing`
        if notes or rule.withdrawn:
            out = ET.SubElement(case, "system-out")
            lines = [_describe(f, report) for f in notes]
            if rule.withdrawn:
                lines.append(f"{rule.withdrawn} finding(s) withdrawn: explained by the capture, not the network")
            out.text = "\n".join(lines)
    root.attrib.update({k: str(v) for k, v in totals.items()})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _describe(f, report: Report) -> str:
    command = f.list_command(report.capture.get("file") or "")
    text = f"[{f.severity}] {f.message}"
    if command:
        text += f"\n  evidence: {command}"
    return clean(text)
