"""The rule engine sorts the evidence on another thread while it judges the flows (engine._Beside): the waiting
thread gets the outcome, a failure included, and the findings are those of sorting on first read."""

from __future__ import annotations

import threading

import pytest

from diagnose.playbook import load_rule_set
from diagnose.rules import engine
from diagnose.rules.run import diagnose_capture
from oracles.fixtures import data_path


def test_wait_returns_once_done_and_raises_the_failure():
    started, release = threading.Event(), threading.Event()
    done = []

    def work():
        started.set()
        release.wait(5)
        done.append(True)

    beside = engine._Beside(work)
    started.wait(5)
    release.set()
    beside.wait()
    assert done == [True]
    beside.wait()  # again: nothing more

    def fail():
        raise MemoryError("no room")

    with pytest.raises(MemoryError, match="no room"):
        engine._Beside(fail).wait()


def test_findings_equal_sorting_on_first_read(monkeypatch):
    capture = str(data_path("lab") / "retransmissions.pcap")
    beside = diagnose_capture(capture, load_rule_set(["all"])).report
    monkeypatch.setattr(engine.RuleEngine, "_sort_evidence", lambda self: None)  # the first get_many sorts
    inline = diagnose_capture(capture, load_rule_set(["all"])).report
    assert beside.findings and [f.evidence for f in beside.all_findings()] == [f.evidence for f in inline.all_findings()]
    assert [f.message for f in beside.all_findings()] == [f.message for f in inline.all_findings()]
