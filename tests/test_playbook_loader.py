"""Playbook loader: a user playbook with one mistake of each kind gets every mistake reported, each at its own line
and column with a caret, before any packet is read (the CLI exits 2)."""

from __future__ import annotations

import textwrap

import pytest

from diagnose.playbook import PlaybookError, load_playbook_file, load_rule_set
from diagnose.playbook.values import parse_value

BROKEN = textwrap.dedent("""\
    playbook: custom
    title: Checks written by a user, with one mistake of each kind
    rules:
      - id: custom.syn-storm
        title: Many SYNs
        severity: warning
        scope: packet
        when: tcp.flgs.syn == 1 && tcp.flags.ack == 0
        message: "{{ agg.count }} SYNs"
      - id: custom.syn-storm
        title: the same id again
        severity: info
        scope: packet
        when: tcp.flags.syn == 1
        message: duplicate
      - id: custom.resets
        title: Resets
        severity: warning
        scope: packet
        when: tcp.flags.reset == 1
        evidnce: tcp.flags.reset == 1
        message: "{{ agg.count | secnds }} resets"
      - id: custom.flow-reads-packets
        title: A flow rule reading a packet field
        severity: info
        scope: flow
        when: >
          capture.packets > 0 &&
          tcp.port == 80
        message: fine
        message: twice
      - id: custom.bad-template
        title: Broken Jinja
        severity: error
        scope: packet
        when: frame.len > 0
        message: "{% if agg.count %}never closed"
      - id: custom.type-error
        title: An address compared with a number
        severity: info
        scope: packet
        when: frame.len > 0 && ip.src == 80
        message: m
    """)

# (line, column, text in the message) for each planted mistake
EXPECTED = [
    (8, 11, "unknown field 'tcp.flgs.syn' (did you mean 'tcp.flags.syn'?)"),
    (10, 9, "duplicate rule id 'custom.syn-storm'"),
    (21, 5, "unknown key 'evidnce' in a rule (did you mean 'evidence'?)"),
    (22, 30, "No filter named 'secnds'"),
    (29, 7, "'tcp.port' is a packet field"),
    (31, 5, "duplicate key 'message'"),
    (37, 15, "template:"),
    (42, 38, "\"80\" is not a valid IPv4 address"),
]


def _problems(path):
    with pytest.raises(PlaybookError) as caught:
        load_playbook_file(path)
    return caught.value


def test_every_mistake_reported_at_its_line_and_column(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(BROKEN)
    error = _problems(path)
    got = [(p.line, p.col, p.message) for p in error.problems]
    assert len(got) == len(EXPECTED), "\n".join(map(str, got))
    for (line, col, text), (got_line, got_col, got_message) in zip(EXPECTED, got):
        assert (got_line, got_col) == (line, col), (text, got_message)
        assert text in got_message


def test_report_shows_file_line_col_and_caret(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(BROKEN)
    text = _problems(path).one_line()
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "tcp.flgs.syn" in line and "error:" in line)
    assert lines[header].startswith(f"{path}:8:11: error: unknown field 'tcp.flgs.syn'")
    assert lines[header + 1] == "      when: tcp.flgs.syn == 1 && tcp.flags.ack == 0"
    # the caret sits under the 't' of tcp.flgs.syn (column 11, after the two-space indent of the echo)
    assert lines[header + 2] == "  " + " " * 10 + "^"
    assert text.endswith(f"{len(EXPECTED)} errors")


def test_broken_playbook_stops_before_reading_packets(tmp_path):
    """The rule set fails as a whole (exit code 2), so no capture is opened."""
    path = tmp_path / "custom.yaml"
    path.write_text(BROKEN)
    with pytest.raises(PlaybookError) as caught:
        load_rule_set([str(path)])
    assert caught.value.exit_code == 2


def test_yaml_syntax_error_has_position(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("playbook: x\ntitle: [unclosed\nrules: []\n")
    error = _problems(path)
    assert error.problems[0].line in (2, 3)
    assert "YAML syntax" in error.problems[0].message


def test_missing_required_keys_and_wrong_types(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text(textwrap.dedent("""\
        playbook: types
        title: t
        rules:
          - id: types.no-message
            title: no message
            severity: warning
            when: frame.len > 0
            evidence_limit: many
          - id: Types.Bad_ID
            title: bad id
            severity: info
            when: frame.len > 0
            message: m
            references: reference
        """))
    error = _problems(path)
    messages = [(p.line, p.col, p.message) for p in error.problems]
    assert any(line == 4 and "lacks the required key 'message'" in m for line, _, m in messages), messages
    assert any(line == 8 and col == 21 and "'evidence_limit' must be a whole number" in m
               for line, col, m in messages), messages
    assert any(line == 9 and "rule id 'Types.Bad_ID'" in m for line, _, m in messages), messages
    assert any(line == 14 and "'references' must be a list" in m for line, _, m in messages), messages


def test_folded_and_quoted_filters_point_into_the_value(tmp_path):
    path = tmp_path / "folded.yaml"
    path.write_text(textwrap.dedent("""\
        playbook: folded
        title: positions inside block and quoted scalars
        rules:
          - id: folded.block
            title: t
            severity: info
            scope: packet
            when: |
              frame.len > 0 &&
                  ip.ttll == 3
            message: m
          - id: folded.quoted
            title: t
            severity: info
            scope: packet
            when: "frame.len > 0 && udp.prot == 53"
            message: m
        """))
    error = _problems(path)
    got = {(p.line, p.col) for p in error.problems}
    assert (10, 11) in got, error.one_line()
    assert (16, 29) in got, error.one_line()


def test_scope_rules_for_names(tmp_path):
    """agg.* only where aggregates exist; param.* must be declared; flow facts not in capture rules."""
    path = tmp_path / "scope.yaml"
    path.write_text(textwrap.dedent("""\
        playbook: scope
        title: t
        params:
          limit: 5
        rules:
          - id: scope.packet-agg
            title: t
            severity: info
            scope: packet
            when: agg.count > 1
            message: m
          - id: scope.unknown-param
            title: t
            severity: info
            scope: capture
            when: capture.packets > param.limt
            message: m
          - id: scope.ok
            title: t
            severity: info
            scope: capture
            aggregate:
              syns: count(tcp.flags.syn == 1)
              dns_names: distinct(dns.qry.nme)
              bad: cnt(frame)
            when: agg.syns > param.limit
            message: "{{ agg.syns }} SYNs, more than {{ param.limit }}"
        """))
    error = _problems(path)
    got = [(p.line, p.col, p.message) for p in error.problems]
    assert any(line == 10 and col == 11 and "aggregate" in m for line, col, m in got), got
    assert any(line == 16 and col == 29 and "unknown name 'param.limt' (did you mean 'param.limit'?)" in m for line, col, m in got), got
    assert any(line == 25 and col == 12 and "unknown aggregate function 'cnt' (did you mean 'count'?)" in m
               for line, col, m in got), got
    assert any(line == 24 and col == 27 and "unknown field 'dns.qry.nme'" in m for line, col, m in got), got


def test_parameter_values_and_units():
    assert parse_value("350ms").number == 350_000_000
    assert parse_value("1%").kind == "percent" and parse_value("1%").number == 0.01
    assert parse_value("64KB").number == 64_000 and parse_value("64KiB").number == 65_536
    assert parse_value("2min").number == 120_000_000_000
    assert parse_value(3).kind == "number"
    assert parse_value("0.5", kind="duration").number == 500_000_000
    with pytest.raises(ValueError):
        parse_value("5 parsecs")
    with pytest.raises(ValueError):
        parse_value("5s", kind="percent")


def test_set_overrides_and_unknown_parameter(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(textwrap.dedent("""\
        playbook: params
        title: t
        params:
          min_idle: 5s
        rules:
          - id: params.rule
            title: t
            severity: info
            scope: capture
            params:
              threshold: 1%
            when: capture.packets > 0
            message: "{{ param.threshold }} {{ param.min_idle }}"
        """))
    from diagnose.errors import UsageError

    rules = load_rule_set([str(path)], overrides=["params.rule.threshold=0.5%", "params.min_idle=350s"])
    rule = rules.rule("params.rule")
    assert rule.params["threshold"].value.number == 0.005
    assert rule.params["min_idle"].value.number == 350_000_000_000
    with pytest.raises(UsageError, match="did you mean 'params.rule.threshold'"):
        rules.set_params(["params.rule.treshold=2%"])
    with pytest.raises(UsageError, match="is a duration, this parameter is a percent"):
        rules.set_params(["params.rule.threshold=3s"])


def test_explains_and_expect_must_name_rules(tmp_path):
    path = tmp_path / "refs.yaml"
    path.write_text(textwrap.dedent("""\
        playbook: refs
        title: t
        rules:
          - id: refs.cause
            title: t
            severity: warning
            scope: capture
            when: capture.packets > 0
            explains: [refs.symptom, refs.symptm]
            message: m
          - id: refs.symptom
            title: t
            severity: info
            scope: capture
            when: capture.packets > 0
            message: m
        tests:
          - capture: nowhere.pcap
            expect: [refs.cause, refs.nothing]
        """))
    with pytest.raises(PlaybookError) as caught:
        load_rule_set([str(path)])
    got = [(p.line, p.col, p.message) for p in caught.value.problems]
    assert any(line == 9 and col == 30 and "'refs.symptm'" in m and "did you mean 'refs.symptom'" in m
               for line, col, m in got), got
    assert any(line == 19 and col == 26 and "'refs.nothing'" in m for line, col, m in got), got


def test_duplicate_rule_ids_across_playbooks(tmp_path):
    one = tmp_path / "one.yaml"
    two = tmp_path / "two.yaml"
    body = """\
        title: t
        rules:
          - id: shared.rule
            title: t
            severity: info
            scope: capture
            when: capture.packets > 0
            message: m
        """
    one.write_text("playbook: one\n" + textwrap.dedent(body))
    two.write_text("playbook: two\n" + textwrap.dedent(body))
    with pytest.raises(PlaybookError) as caught:
        load_rule_set([str(one), str(two)])
    (problem,) = caught.value.problems
    assert problem.path == str(two) and problem.line == 4
    assert f"already defined at {one}:4" in problem.message
