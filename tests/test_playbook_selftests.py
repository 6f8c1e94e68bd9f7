"""Every built-in playbook's self-tests (`diagnose playbook test`) pass: each lab capture yields its diagnoses
(EXPECTED.md), the healthy captures yield none, and the messages carry the decisive numbers."""

from __future__ import annotations

import pytest

from diagnose.playbook import builtin_names
from diagnose.playbook.commands import playbook_list, playbook_test, playbook_validate
from diagnose.playbook.selftest import run_self_tests

EXPECTED_PLAYBOOKS = {"all", "capture", "dns", "http", "latency", "tcp", "tls"}


def test_builtin_playbooks_present():
    assert set(builtin_names()) == EXPECTED_PLAYBOOKS


@pytest.mark.parametrize("name", sorted(EXPECTED_PLAYBOOKS))
def test_self_tests_pass(name):
    outcomes = run_self_tests([name])
    assert outcomes, f"{name} has no self-tests"
    failures = [o.line() for o in outcomes if not o.passed]
    assert not failures, "\n".join(failures)


def test_all_covers_every_lab_capture():
    """`all` has a self-test for every lab capture in tests/data/lab."""
    from diagnose.playbook import load_rule_set
    from oracles.fixtures import data_path

    (playbook,) = [p for p in load_rule_set(["all"]).playbooks if p.name == "all"]
    tested = {t.capture.split("/")[-1] for t in playbook.tests}
    lab = {p.name for p in data_path("lab").glob("*.pcap")}
    assert lab <= tested, sorted(lab - tested)


def test_playbook_commands():
    text, code = playbook_list()
    assert code == 0 and "tcp.rst-after-idle" in text and "tls.certificate-expired" in text
    text, code = playbook_validate(["all"])
    assert code == 0 and "warning" not in text
    text, code = playbook_test(["dns"])
    assert code == 0 and text.strip().endswith("passed, 0 failed")


def test_failing_self_test_exits_1(tmp_path):
    from oracles.fixtures import data_path

    path = tmp_path / "wrong.yaml"
    path.write_text(f"""playbook: wrong
title: expects the wrong thing
rules:
  - id: wrong.any-syn
    title: a SYN was seen
    severity: info
    scope: packet
    when: tcp.flags.syn == 1
    message: syn
tests:
  - capture: {data_path('lab', 'dns_nxdomain.pcap')}
    expect: [wrong.any-syn]
""")
    text, code = playbook_test([str(path)])
    assert code == 1
    assert "FAIL wrong" in text and "missing wrong.any-syn" in text
