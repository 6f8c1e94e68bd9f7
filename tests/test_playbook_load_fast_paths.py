"""The loader's shortcuts give what the slow way gives: names a template reads without compiling it (as
jinja2.meta does after compiling), and libyaml's node tree of every built-in playbook (positions and styles)."""

import itertools
import random

from jinja2 import meta

from diagnose.playbook.library import builtin_dir, load_rule_set
from diagnose.playbook.templates import LazyTemplate, environment, plain_names
from diagnose.playbook.yamlpos import load_yaml

EXPRESSIONS = ["a", "s", "flow.x", "a ~ s", "s | seconds", "range(2)", "[a, s][0]", "{'k': b}['k']",
               "(s if a else b)", "(a or s)", "s is none", "'%.1f' % s", "names[s]", "x | nosuch", "self", "loop.last"]
STATEMENTS = ["{{ %s }}", "{%% set s = %s %%}", "{%% set a = %s %%}", "{%% if %s %%}{{ s }}{%% endif %%}",
              "{%% if %s %%}{%% set s = 1 %%}{%% endif %%}{{ s }}", "{%% if %s %%}x{%% else %%}{{ b }}{%% endif %%}",
              "text ", "{%% set names = {'a': %s} %%}", "{%% for t in %s %%}{{ t }}{%% endfor %%}{{ t }}",
              "{%% if a %%}{{ %s | plural('x') }}{%% endif %%}"]


def _templates(count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 5)):
            statement = rng.choice(STATEMENTS)
            parts.append(statement % rng.choice(EXPRESSIONS) if "%s" in statement else statement)
        yield "".join(parts)


def test_plain_names_are_the_undeclared_names_jinja_finds():
    env = environment()
    plain = 0
    for text in itertools.chain(_templates(3000, 7), ["{{ a }}{% set a = 1 %}{{ a }}", "{% set a = a %}"]):
        try:
            tree = env.parse(text)
        except Exception:  # noqa: BLE001 - a combination that is not a template
            continue
        names = plain_names(tree)
        if names is None:
            continue
        plain += 1
        assert names == meta.find_undeclared_variables(env.parse(text)), text
        env.from_string(text)  # a plain template compiles
    assert plain > 1000  # the shortcut is taken, not only refused


def test_not_plain_when_only_the_compiler_can_tell():
    env = environment()
    for text in ["{{ x | nosuch }}", "{% for t in a %}{{ loop.index }}{% endfor %}", "{{ self }}",
                 "{% if a %}{% set b = 1 %}{% endif %}", "{% set a, b = 1, 2 %}", "{% macro m() %}{% endmacro %}"]:
        assert plain_names(env.parse(text)) is None, text


def test_lazy_template_renders_like_the_compiled_one():
    text = "{% set s = 'client' %}{{ s }} {{ n | plural('flow') }}"
    lazy = LazyTemplate(text)
    assert lazy.render(n=3) == environment().from_string(text).render(n=3) == "client 3 flows"
    assert lazy.render(n=1) == "client 1 flow"


def _nodes(value, out):
    out.append((value.start, value.end, value.style, sorted(value.key_pos.items())))
    if value.kind == "mapping":
        for item in value.value.values():
            _nodes(item, out)
    elif value.kind == "list":
        for item in value.value:
            _nodes(item, out)
    else:
        out.append(value.value)
    return out


def test_libyaml_reads_every_builtin_playbook_like_pyyaml():
    paths = sorted(builtin_dir().glob("*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text(encoding="utf-8")
        fast, fast_problems = load_yaml(text, libyaml=True)
        slow, slow_problems = load_yaml(text)
        assert fast_problems == slow_problems == []
        assert _nodes(fast, []) == _nodes(slow, []), path.name


def test_builtin_rules_load_with_lazy_templates():
    rules = load_rule_set(["all"]).rules
    assert rules and all(isinstance(r.message, LazyTemplate) for r in rules)
