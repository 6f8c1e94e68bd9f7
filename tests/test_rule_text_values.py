"""An explanation or advice rendered per finding is rendered once per distinct set of the values it reads, when
its template reads its context only as `name.attribute`: every finding still gets exactly the text a rendering of
its own values gives (equal values of another type, or -0.0 against 0.0, are rendered apart)."""

from __future__ import annotations

import pytest

from diagnose.playbook.templates import LazyTemplate, environment, read_attributes
from diagnose.rules import engine
from diagnose.rules.flow_fields import Facts


@pytest.mark.parametrize("source, read", [
    ("On {{ flow.resp_h }}: port {{ flow.resp_p }}", (("flow", "resp_h"), ("flow", "resp_p"))),
    ("{{ 'client' if flow.a >= flow.b else 'server' }} {{ param.x | percent }}",
     (("flow", "a"), ("flow", "b"), ("param", "x"))),
    ("{% set s = flow.a %}{{ s }} at {{ finding.start | timestamp }}", (("flow", "a"), ("finding", "start"))),
    ("{{ flow.a.b }}", (("flow", "a"),)),
    ("{{ flow }}", None),  # the whole value
    ("{{ flow['a'] }}", None),  # an item, possibly computed
    ("{{ flows | map(attribute='a') | join }}", None),
    ("{{ flow.a | random }}", None),  # not a function of its input
    ("{{ flow.name.upper() }}", None),  # a call
    ("{% for x in flow.a %}{{ x }}{% endfor %}", None),  # not a plain template
])
def test_read_attributes(source, read):
    assert read_attributes(environment().parse(source)) == read


class _Rule:
    id = "r.test"

    def __init__(self, source: str):
        self.explanation = LazyTemplate(source)
        self.explanation_text = source


def _text(rule, shared, flow: dict) -> str:
    context = {"flow": Facts(flow), "param": {}, "rule": {}, "finding": {"start": None}}
    return engine._rule_text(rule, "explanation", context, shared)


def test_each_finding_gets_the_text_of_its_own_values():
    rule = _Rule("{{ flow.server }} port {{ flow.port }}, {{ flow.rate }} {{ 'many' if flow.n > 1 else 'one' }}")
    shared: dict = {}
    flows = [{"server": "a", "port": 80, "rate": 0.0, "n": 2}, {"server": "a", "port": 80, "rate": -0.0, "n": 2},
             {"server": "a", "port": 80.0, "rate": 0.0, "n": 2}, {"server": "a", "port": True, "rate": 0.0, "n": 2},
             {"server": "b", "port": 80, "rate": 0.0, "n": 1}, {"server": "a", "port": 80, "rate": 0.0, "n": 2},
             {"server": "a", "port": 80, "rate": 0.0}, {"server": "a", "port": [80], "rate": 0.0, "n": 2}]
    fresh = [_text(rule, {}, flow) for flow in flows]
    assert fresh[:5] == ["a port 80, 0.0 many", "a port 80, -0.0 many", "a port 80.0, 0.0 many",
                         "a port True, 0.0 many", "b port 80, 0.0 one"]
    assert [_text(rule, shared, flow) for flow in flows] == fresh
    read, texts = shared["text:explanation"]
    assert read == (("flow", "server"), ("flow", "port"), ("flow", "rate"), ("flow", "n"))
    assert fresh[6].startswith("[r.test: the explanation template failed: TypeError")  # n absent: None > 1
    assert len(texts) == 6  # the repeated values and the unkeyable one ([80]) aside


def test_a_template_reading_whole_values_is_rendered_each_time():
    rule = _Rule("{{ flow | length }} facts")
    shared: dict = {}
    assert [_text(rule, shared, flow) for flow in ({"a": 1}, {"a": 1, "b": 2})] == ["1 facts", "2 facts"]
    assert shared["text:explanation"][0] is None
