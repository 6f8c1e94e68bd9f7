"""The playbook format as data: which keys exist at each level, their types, and what they mean.

The loader checks a playbook against these tables (unknown key with "did you mean", missing required key, wrong
type), `diagnose playbook explain` and docs/playbooks.md describe keys from the same `doc` strings, so the format
has one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("info", "warning", "error")
SCOPES = ("packet", "flow", "capture")
EXPLAIN_ACTIONS = ("attach", "downgrade", "withdraw")
EXPLAIN_MATCHES = ("flow", "server", "client", "capture")


@dataclass(frozen=True)
class Key:
    types: tuple[type, ...]
    doc: str
    required: bool = False
    choices: tuple[str, ...] | None = None

    def type_names(self) -> str:
        names = {str: "text", int: "a whole number", float: "a number", bool: "true or false", list: "a list",
                 dict: "a mapping"}
        return " or ".join(names.get(t, t.__name__) for t in self.types)


TEXT = (str,)
SCALAR = (str, int, float)
LIST = (list,)
MAPPING = (dict,)

PLAYBOOK_KEYS: dict[str, Key] = {
    "playbook": Key(TEXT, "the playbook's name (what --playbook NAME selects); lower case, digits, '-' and '_'",
                    required=True),
    "title": Key(TEXT, "one line saying what the playbook checks", required=True),
    "description": Key(TEXT, "a paragraph for `diagnose playbook list` and the docs"),
    "include": Key(LIST, "names of other playbooks whose rules this one runs too (the `all` playbook)"),
    "params": Key(MAPPING, "thresholds shared by the rules: NAME: default, or NAME: {default, description}; "
                           "rules read them as param.NAME, users override them with --set PLAYBOOK.NAME=VALUE"),
    "rules": Key(LIST, "the rules (see the rule keys)"),
    "tests": Key(LIST, "self-tests: a capture and the rule ids it must (and only may) produce"),
}

RULE_KEYS: dict[str, Key] = {
    "id": Key(TEXT, "unique rule id, `<playbook>.<name>` (lower case, digits, '-'), used by --fail-on, explains, "
                    "--set and tests", required=True),
    "title": Key(TEXT, "the diagnosis in a few words: what is wrong", required=True),
    "severity": Key(TEXT, "info | warning | error", required=True, choices=SEVERITIES),
    "scope": Key(TEXT, "what one finding is about: packet (matching packets, grouped by group_by), flow (one "
                       "conversation) or capture (the whole file); default flow", choices=SCOPES),
    "when": Key(TEXT, "display filter that must be true for a finding; in flow and capture rules it reads flow.*, "
                      "capture.*, param.* and agg.* fields; in packet rules it selects packets", required=True),
    "evidence": Key(TEXT, "display filter choosing the packets cited as proof (within the finding's flows); packet "
                          "rules cite the packets `when` matched"),
    "evidence_frames": Key(TEXT, "flow rules: a flow fact listing frame numbers to cite as well (e.g. "
                                 "flow.dns_error_frames): evidence the analysis already pinned down"),
    "evidence_limit": Key((int,), "at most this many evidence frames per finding (default 20)"),
    "aggregate": Key(MAPPING, "NAME: count(F) | rate(F) | percent(F, OF) | distinct(FIELD[, F]) | sum/min/max/mean/"
                              "first/last(FIELD[, F]) | peak(F, DURATION): per finding scope, read as agg.NAME"),
    "group_by": Key(LIST, "packet rules: fields whose values split the matching packets into findings (default: "
                          "one finding per flow; [] = one for the capture)"),
    "having": Key(TEXT, "packet rules: display filter over agg.* (agg.count is always there) a group must pass"),
    "params": Key(MAPPING, "thresholds of this rule: NAME: default or {default, description}; read as param.NAME, "
                           "overridden with --set RULE_ID.NAME=VALUE"),
    "group": Key(MAPPING, "merge findings of several flows that share a cause (see group keys)"),
    "explains": Key((list, dict), "rule ids whose findings this one explains: a list, or {rules, match, action}"),
    "message": Key(TEXT, "Jinja template of the one-line finding, with the decisive numbers", required=True),
    "explanation": Key(TEXT, "why this pattern means this cause (Jinja)"),
    "advice": Key(TEXT, "what to check or change (Jinja)"),
    "references": Key(LIST, "RFCs, manuals, articles"),
    "tags": Key(LIST, "free words for filtering the rule list"),
}

GROUP_KEYS: dict[str, Key] = {
    "by": Key(LIST, "flow fields that must be equal in a group (e.g. flow.server)"),
    "near": Key(TEXT, "a numeric flow field whose values must lie within `tolerance` of each other"),
    "tolerance": Key(SCALAR, "how far apart `near` values may be (a duration such as 1s, or a number)"),
    "min_flows": Key((int,), "groups smaller than this stay separate findings (default 2)"),
    "message": Key(TEXT, "Jinja template of the grouped finding (group.count, group.flows, group.mean, ...)",
                   required=True),
}

EXPLAINS_KEYS: dict[str, Key] = {
    "rules": Key(LIST, "rule ids whose findings are explained", required=True),
    "match": Key(TEXT, "which findings: on the same flow (default), the same server, client, or anywhere in the "
                       "capture", choices=EXPLAIN_MATCHES),
    "action": Key(TEXT, "attach (shown under this root cause; default), downgrade (kept, severity info) or "
                        "withdraw (removed, listed as withdrawn with this finding as the reason)",
                  choices=EXPLAIN_ACTIONS),
}

PARAM_KEYS: dict[str, Key] = {
    "default": Key(SCALAR, "the value: a number, a duration (350ms, 5s, 2min), a percentage (1%) or a size "
                           "(64KB, 1MB)", required=True),
    "description": Key(TEXT, "what the threshold means"),
}

TEST_KEYS: dict[str, Key] = {
    "capture": Key(TEXT, "the capture, relative to the playbook file (or a lab capture name)", required=True),
    "expect": Key(LIST, "rule ids that must fire; any other rule of the playbook firing fails the test",
                  required=True),
    "params": Key(MAPPING, "--set overrides for this test (NAME: VALUE)"),
    "messages": Key(MAPPING, "rule id: text that the finding's message must contain (the decisive numbers)"),
    "reason": Key(TEXT, "why the expectation is what it is (shown when the test fails)"),
    "keylog": Key(TEXT, "a TLS key log file for the capture (relative like capture)"),
    "ca_file": Key(TEXT, "trusted CA certificates (PEM) for judging certificate chains"),
}

RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$"
PLAYBOOK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
