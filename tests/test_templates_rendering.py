"""The message templates' shortcuts render exactly what jinja's own paths render: the sandbox's attribute lookup,
Template.render's context, and the filters that replace slower jinja idioms."""

import pytest
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from diagnose.playbook.templates import LazyTemplate, environment, flatten
from diagnose.rules.engine import render
from diagnose.rules.flow_fields import Facts


class _Attrs:
    visible = 7
    _private = 1

    def __init__(self):
        self.value = "v"

    def method(self):
        return "called"


class _Dynamic:
    def __getattr__(self, name):
        if name == "made":
            return "made"
        raise AttributeError(name)

    def __getitem__(self, name):
        return f"item {name}"


OBJECTS = [
    {"client": "10.0.0.1:1", "items": "a key named like a method"},
    Facts({"client": "10.0.0.1:1", "missing_reads_none": None}),
    _Attrs(),
    _Dynamic(),
    [1, 2, 3],
    "text",
    None,
    42,
]
ATTRIBUTES = ["client", "items", "get", "keys", "nothing", "visible", "value", "_private", "method", "made", "format",
              "format_map", "upper", "__class__", "__dict__", "mro", "real", "missing_reads_none"]


def _describe(value):
    """What a template sees: the value, or the kind and message of the undefined it gets."""
    undefined = getattr(value, "_undefined_hint", None) is not None or type(value).__name__.endswith("Undefined")
    if undefined:
        return ("undefined", type(value).__name__, value._undefined_hint, value._undefined_name,
                getattr(value._undefined_exception, "__name__", None))
    if callable(value):
        return ("callable", getattr(value, "__name__", type(value).__name__))
    return ("value", value)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_getattr_matches_the_sandbox(attribute):
    ours = environment()
    theirs = SandboxedEnvironment(undefined=ours.undefined)
    for obj in OBJECTS:
        assert _describe(ours.getattr(obj, attribute)) == _describe(theirs.getattr(obj, attribute)), (obj, attribute)


def test_unsafe_attributes_stay_unsafe():
    env = environment()
    with pytest.raises(SecurityError):
        env.from_string("{{ x.__class__.__subclasses__() }}").render(x={})
    with pytest.raises(UndefinedError):
        env.from_string("{{ flow.nothing }}").render(flow={})
    assert env.from_string("{{ flow.nothing }}").render(flow=Facts()) == "None"


TEMPLATES = [
    "{{ flow.client }} → {{ flow.server }}: {{ flow.n | plural('SYN') }} over {{ flow.d | seconds }}",
    "{% set s = 'server' if flow.n > 1 else 'client' %}{{ s }} {{ flow['n'] }}",
    "{% for t in flow.times %}{{ '%.1f' % t }}{{ ', ' if not loop.last }}{% endfor %}",
    "{{ range(3) | list }} {{ dict(a=1) }} {{ namespace(x=1).x }}",
    "{{ rule.id }} {{ flow.items }} {{ flow.missing }}",
    "{{ flow.n.bit_length() }} {{ '{}!'.format(flow.client) }}",
    "plain text with {1, 0} braces",
    "  text without tags, a trailing newline\n",
    "lines\r\nwith CR LF {x}\n\n",
    "",
]
VALUES = [
    {"flow": Facts({"client": "a", "server": "b", "n": 3, "d": 2.5, "times": [0.0, 1.0, 3.0]}), "rule": {"id": "r"}},
    {"flow": {"client": "a", "server": "b", "n": 1, "d": None, "times": []}, "rule": {"id": "r"}},
    {"flow": {"n": 2}},  # names missing: the same error from both paths
]


@pytest.mark.parametrize("source", TEMPLATES)
def test_lazy_render_matches_jinja(source):
    reference = environment().from_string(source)
    lazy = LazyTemplate(source)
    for values in VALUES:
        try:
            expected = ("text", reference.render(**values))
        except Exception as exc:  # noqa: BLE001
            expected = ("error", type(exc).__name__, str(exc))
        try:
            got = ("text", lazy.render(values))
        except Exception as exc:  # noqa: BLE001
            got = ("error", type(exc).__name__, str(exc))
        assert got == expected
        assert lazy.render(**values) == lazy.render(values) if got[0] == "text" else True
        assert render(lazy, values, "r", "message") == render(reference, values, "r", "message")


def test_render_keeps_no_state_between_calls():
    lazy = LazyTemplate("{% set s = flow.n %}{{ s }}")
    assert [lazy.render({"flow": {"n": i}}) for i in range(3)] == ["0", "1", "2"]
    with pytest.raises(UndefinedError):
        lazy.render({})


@pytest.mark.parametrize("lists", [
    [], [[]], [["a"], ["b", "c"], [], ["a"]], [["x"]] * 50, (["a"], ["b"]),
])
def test_flatten_is_sum_of_lists(lists):
    assert flatten(iter(lists)) == sum(lists, [])
    assert type(flatten(lists)) is list


@pytest.mark.parametrize("bad", [[["a"], None], [["a"], ("b",)], [["a"], "bc"], [3]])
def test_flatten_fails_like_sum(bad):
    with pytest.raises(TypeError) as ours:
        flatten(bad)
    with pytest.raises(TypeError) as theirs:
        sum(bad, [])
    assert str(ours.value) == str(theirs.value)


def test_flatten_in_a_template_matches_sum_start():
    flows = [Facts({"names": ["b.example", "A.example"]}), Facts({"names": ["a.example"]}), Facts({"names": []})]
    with_sum = "{{ flows | map(attribute='names') | sum(start=[]) | unique | list | join(', ') }}"
    with_flatten = "{{ flows | map(attribute='names') | flatten | unique | list | join(', ') }}"
    assert LazyTemplate(with_flatten).render({"flows": flows}) == LazyTemplate(with_sum).render({"flows": flows}) \
        == "b.example, A.example"


# ---- compiled code kept between runs ---------------------------------------------------------------------------------
def _fresh_environment():
    from diagnose.playbook.templates import FILTERS, MessageEnvironment

    env = MessageEnvironment(undefined=environment().undefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


def _saved(tmp_path):
    folder = tmp_path / "diagnose" / "templates"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_compiled_code_is_saved_and_reused(tmp_path, monkeypatch):
    from diagnose.playbook.templates import compile_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = "{{ flow.client }}: {{ flow.n | plural('SYN') }}{% if flow.n > 1 %} (retried){% endif %}"
    values = {"flow": {"client": "a", "n": 3}}
    first = compile_cached(_fresh_environment(), source)
    assert [p.suffix for p in _saved(tmp_path)] == [".code"]
    again = _fresh_environment()
    calls = []
    monkeypatch.setattr(SandboxedEnvironment, "_generate", lambda *a, **k: calls.append(a))  # must not compile
    reused = compile_cached(again, source)
    assert not calls
    assert reused.render(values) == first.render(values) == "a: 3 SYNs (retried)"
    assert reused.environment is again and reused.globals.maps[1] is again.globals


def test_damaged_or_stale_code_is_compiled_again(tmp_path, monkeypatch):
    from diagnose.playbook.templates import compile_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = "{{ flow.n | number }} packets"
    compile_cached(_fresh_environment(), source)
    (saved,) = _saved(tmp_path)
    saved.write_bytes(b"\x00damaged")
    assert compile_cached(_fresh_environment(), source).render(flow={"n": 1234}) == "1,234 packets"
    assert saved.read_bytes() != b"\x00damaged"
    # another filter table generates other code: its own file
    env = _fresh_environment()
    env.filters["number"] = lambda value: "many"
    assert compile_cached(env, source).render(flow={"n": 1234}) == "many packets"
    assert len(_saved(tmp_path)) == 2


def test_compile_errors_are_raised_and_not_saved(tmp_path, monkeypatch):
    from jinja2.exceptions import TemplateAssertionError, TemplateSyntaxError

    from diagnose.playbook.templates import compile_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(TemplateAssertionError):
        compile_cached(_fresh_environment(), "{{ flow.n | no_such_filter }}")
    with pytest.raises(TemplateSyntaxError):
        compile_cached(_fresh_environment(), "{% if %}")
    assert _saved(tmp_path) == []


def test_lazy_templates_use_the_saved_code(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = "{{ rule.id }} fired"
    assert LazyTemplate(source).render(rule={"id": "r"}) == "r fired"
    assert len(_saved(tmp_path)) == 1


def test_text_without_tags_is_rendered_once(monkeypatch):
    lazy = LazyTemplate("SO_LINGER {1, 0} aborts\n")
    assert lazy.render({"flow": {}}) == "SO_LINGER {1, 0} aborts"
    lazy._compiled = None  # rendering again would have to compile again
    monkeypatch.setattr(LazyTemplate, "compiled", lambda self: pytest.fail("rendered again"))
    assert lazy.render({}) == lazy.render(flow=1) == "SO_LINGER {1, 0} aborts"
    with pytest.raises(TypeError):
        lazy.render(1, 2)


def test_code_key_follows_options_and_functions():
    from diagnose.playbook.templates import _compiler_signature

    a, b = _fresh_environment(), _fresh_environment()
    assert _compiler_signature(a) == _compiler_signature(b)  # the same in every process: no addresses in it
    b.trim_blocks = False
    assert _compiler_signature(a) != _compiler_signature(b)
    b.trim_blocks = True
    assert _compiler_signature(a) == _compiler_signature(b)
    b.tests["odd_size"] = lambda value: value % 2 == 1
    assert _compiler_signature(a) != _compiler_signature(b)
