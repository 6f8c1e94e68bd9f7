"""Playbook self-tests (`diagnose playbook test`): each test names a capture and the rule ids it must produce.

A test passes when the diagnosis of the capture with that playbook (and what it includes) has exactly the expected
rule ids among its top-level findings and capture-quality notes (symptoms attached to a root cause are part of the
root cause, not separate diagnoses), and each `messages` entry appears in the message of a finding of that rule
(the decisive number is really there). `expect: []` means the capture must be diagnosed clean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from diagnose.playbook.library import RuleSet, find_playbook, load_rule_set, resolve_capture
from diagnose.playbook.model import Playbook, SelfTest


@dataclass
class TestOutcome:
    playbook: str
    capture: str
    expected: list[str]
    got: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    message_failures: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    reason: str = ""
    where: str = ""

    @property
    def passed(self) -> bool:
        return self.error is None and not self.missing and not self.unexpected and not self.message_failures

    def line(self) -> str:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.playbook}: {self.capture}"
        if self.error:
            return f"{head}: {self.error}"
        got = ", ".join(self.got) or "no findings"
        text = f"{head} -> {got} ({self.elapsed_s:.2f} s)"
        problems = []
        if self.missing:
            problems.append("missing " + ", ".join(self.missing))
        if self.unexpected:
            problems.append("unexpected " + ", ".join(self.unexpected))
        problems.extend(self.message_failures)
        if problems:
            text += "\n    " + "\n    ".join(problems)
            if self.reason:
                text += f"\n    (test note: {self.reason})"
            text += f"\n    (test at {self.where})"
        return text


def run_test(rule_set: RuleSet, playbook: Playbook, test: SelfTest) -> TestOutcome:
    from diagnose.errors import DiagnoseError
    from diagnose.rules.run import diagnose_capture

    label = test.capture + (f" + {test.keylog}" if test.keylog else "") + (f" + CA {test.ca_file}" if test.ca_file
                                                                         else "")
    outcome = TestOutcome(playbook.name, label, list(test.expect), reason=test.reason, where=str(test.where))
    path = resolve_capture(playbook.path, test.capture)
    if path is None:
        outcome.error = (f"capture {test.capture} not found (relative to {playbook.path.parent}, or under "
                         f"$DIAGNOSE_LAB_DIR / the source tree's tests/data)")
        return outcome
    extra = {}
    for key in ("keylog", "ca_file"):
        name = getattr(test, key)
        if name is not None:
            found = resolve_capture(playbook.path, name)
            if found is None:
                outcome.error = f"{key} {name} not found"
                return outcome
            extra[key] = str(found)
    started = time.perf_counter()
    try:
        rule_set.reset_params()
        if test.params:
            rule_set.set_params(test.params)
        report = diagnose_capture(str(path), rule_set, keylogs=[extra["keylog"]] if "keylog" in extra else None,
                                  ca_file=extra.get("ca_file")).report
    except DiagnoseError as exc:
        outcome.error = exc.one_line()
        return outcome
    finally:
        rule_set.reset_params()
    outcome.elapsed_s = time.perf_counter() - started
    top = [*report.capture_quality, *report.findings]
    got = sorted({f.rule_id for f in top})
    outcome.got = got
    outcome.missing = [r for r in test.expect if r not in got]
    outcome.unexpected = [r for r in got if r not in test.expect]
    for rule_id, text in test.messages.items():
        messages = [f.message for top_f in top for f in top_f.walk() if f.rule_id == rule_id]
        if not any(text in m for m in messages):
            shown = messages[0] if messages else "no finding"
            outcome.message_failures.append(f"{rule_id}: message lacks {text!r} (got: {shown})")
    errors = [r for r in report.rules if r.error]
    if errors:
        outcome.error = "; ".join(f"{r.id}: {r.error}" for r in errors)
    return outcome


def run_self_tests(specs: list[str] | None = None) -> list[TestOutcome]:
    """Run the self-tests of the given playbooks (names or files; default: every built-in playbook)."""
    from diagnose.playbook.library import builtin_names

    outcomes: list[TestOutcome] = []
    for spec in specs or builtin_names():
        rule_set = load_rule_set([spec])
        path, _ = find_playbook(spec)
        playbook = next((p for p in rule_set.playbooks if p.path.resolve() == path.resolve()), rule_set.playbooks[-1])
        if not playbook.tests:
            outcomes.append(TestOutcome(playbook.name, "-", [], error="no self-tests (add a `tests:` list)"))
            continue
        for test in playbook.tests:
            outcomes.append(run_test(rule_set, playbook, test))
    return outcomes
