"""On every real capture of the corpus, `diagnose --playbook all` produces exactly the reviewed findings of
tests/data/playbooks/corpus_golden.yaml: same rule, same flow (or key, or capture), the decisive number in the
message, same place (top level, under its cause, or withdrawn). Each golden entry says why an engineer agrees."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from diagnose.playbook import load_rule_set
from diagnose.rules.run import diagnose_capture
from oracles.fixtures import data_path

GOLDEN = yaml.safe_load(data_path("playbooks", "corpus_golden.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rule_set():
    return load_rule_set(["all"])


def _actual(report):
    out = []

    def add(f, parent):
        out.append((f.rule_id, f.about(), parent, None, f.message))
        for s in f.symptoms:
            add(s, f.rule_id)
    for f in (*report.capture_quality, *report.findings):
        add(f, None)
    for f in report.withdrawn:
        out.append((f.rule_id, f.about(), None, f.explained_by["rule_id"], f.message))
    return out


def test_golden_covers_the_corpus():
    captures = {p.relative_to(data_path()).as_posix() for group in ("corpus", "corpus-zeek")
                for p in data_path(group).rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap", ".gz")}
    unreadable = {"corpus/derived/tls1.2-badmagic.pcap"}  # not a capture: exit 2, no report
    assert set(GOLDEN) == captures - unreadable
    assert all(entry["why"] and entry["why"] != "TODO" for entries in GOLDEN.values() for entry in entries)


@pytest.mark.parametrize("capture", sorted(GOLDEN))
def test_corpus_findings_match_golden(rule_set, capture):
    report = diagnose_capture(str(data_path(capture)), rule_set).report
    actual = _actual(report)
    expected = [(e["rule"], e["about"], e.get("under"), e.get("withdrawn_by")) for e in GOLDEN[capture]]
    assert Counter(a[:4] for a in actual) == Counter(expected), [a[:4] for a in actual]
    for entry in GOLDEN[capture]:
        messages = [a[4] for a in actual if a[:2] == (entry["rule"], entry["about"])]
        assert any(entry["decisive"] in m for m in messages), (entry["decisive"], messages)
