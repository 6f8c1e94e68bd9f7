"""`diagnose playbook list | validate | explain | test` as library calls the CLI wires up; each returns the text to
print and the exit code (0 fine, 1 a self-test failed, 2 a playbook or usage mistake — raised as DiagnoseError)."""

from __future__ import annotations

from diagnose.errors import UsageError
from diagnose.playbook.library import builtin_dir, builtin_names, find_playbook, load_rule_set, resolve_capture


def playbook_list() -> tuple[str, int]:
    """Built-in playbooks with their titles and rule counts."""
    lines = []
    for name in builtin_names():
        rule_set = load_rule_set([name])
        playbook = next(p for p in rule_set.playbooks if p.name == name)
        own = len(playbook.rules)
        included = f", includes {', '.join(playbook.include)}" if playbook.include else ""
        lines.append(f"{name:<10} {own:>3} rules  {playbook.title}{included}")
        for rule in playbook.rules:
            lines.append(f"    {rule.severity:<7} {rule.id:<34} {rule.title}")
    lines.append(f"(built-in playbooks in {builtin_dir()}; a YAML file of your own works wherever a name does)")
    return "\n".join(lines) + "\n", 0


def playbook_validate(paths: list[str]) -> tuple[str, int]:
    """Load the playbooks (every mistake raises one PlaybookError listing all of them) and check that their
    self-test captures exist."""
    if not paths:
        raise UsageError("playbook validate needs at least one playbook file or name")
    rule_set = load_rule_set(paths)
    lines = []
    missing = 0
    for playbook in rule_set.playbooks:
        for test in playbook.tests:
            if resolve_capture(playbook.path, test.capture) is None:
                missing += 1
                lines.append(f"{test.where}: warning: self-test capture {test.capture} not found")
        lines.append(f"{playbook.path}: ok ({len(playbook.rules)} rules, {len(playbook.tests)} self-tests)")
    return "\n".join(lines) + "\n", 0


def playbook_explain(rule_id: str, playbooks: list[str] | None = None, capture: str | None = None,
                     params: list[str] | None = None) -> tuple[str, int]:
    """What the rule checks; with a capture, whether it fired there and, if not, which condition was false."""
    from diagnose.rules.explain import describe_rule, why

    rule_set = load_rule_set(playbooks or ["all"], params)
    rule = rule_set.rule(rule_id)
    if rule is None:
        import difflib

        close = difflib.get_close_matches(rule_id, [r.id for r in rule_set.rules], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"no rule '{rule_id}' in playbooks {', '.join(p.name for p in rule_set.playbooks)}{hint}")
    text = describe_rule(rule, rule_set)
    if capture is not None:
        from diagnose.rules.run import diagnose_capture

        diagnosis = diagnose_capture(capture, rule_set)
        text += "\n\nOn " + capture + ":\n" + why(rule, diagnosis)
    return text + "\n", 0


def playbook_test(specs: list[str] | None = None) -> tuple[str, int]:
    """Run the self-tests of the given playbooks (default: all built-in ones); exit 1 if any fails."""
    from diagnose.playbook.selftest import run_self_tests

    for spec in specs or []:
        find_playbook(spec)  # an unknown name is a usage error before anything runs
    outcomes = run_self_tests(specs)
    failed = [o for o in outcomes if not o.passed]
    lines = [o.line() for o in outcomes]
    lines.append(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return "\n".join(lines) + "\n", 1 if failed else 0
