"""The rule-set cache (playbook/cache.py): a rule set read from the cache diagnoses a capture exactly as a freshly
loaded one; editing any playbook file it was read from (an included one too) makes it stale; a damaged file is
rebuilt; --set applies to a cached rule set and never leaks into the cache; playbook mistakes are never cached."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from diagnose.playbook import PlaybookError, library, load_rule_set
from diagnose.playbook import cache as rule_cache
from diagnose.playbook import expressions as ex
from diagnose.report.render_json import render_json
from diagnose.rules.run import diagnose_capture

LAB = Path(__file__).parent / "data" / "lab"

USER = textwrap.dedent("""\
    playbook: mine
    title: A user's checks
    include: [INCLUDED]
    params:
      min_resets: 1
    rules:
      - id: mine.resets
        title: Resets
        severity: warning
        scope: flow
        aggregate:
          resets: count(tcp.flags.reset == 1)
        when: agg.resets >= param.min_resets
        message: "{{ agg.resets }} resets on {{ flow.client }} -> {{ flow.server }}"
""")

INCLUDED = textwrap.dedent("""\
    playbook: extra
    title: Included checks
    rules:
      - id: extra.syns
        title: SYNs
        severity: info
        scope: packet
        when: tcp.flags.syn == 1 && tcp.flags.ack == 0
        having: agg.count >= 1
        message: "{{ agg.count }} SYNs"
""")


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Every test writes its cache under tmp_path, never into the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def _cache_files() -> list[Path]:
    return sorted(rule_cache.folder().glob("*.pickle"))


def _from_cache_only(monkeypatch):
    """Make loading without the cache fail: whatever load_rule_set returns next came from the cache."""
    def refuse(specs):
        raise AssertionError(f"{specs} were loaded from the playbook files, not from the cache")
    monkeypatch.setattr(library, "_load_checked", refuse)


def _report(capture: str, rule_set) -> dict:
    data = json.loads(render_json(diagnose_capture(str(LAB / capture), rule_set).report))
    data.pop("elapsed_s", None)
    return data


def _user_playbook(folder: Path, min_resets: int = 1) -> Path:
    included = folder / "included.yaml"
    included.write_text(INCLUDED, encoding="utf-8")
    path = folder / "mine.yaml"
    path.write_text(USER.replace("INCLUDED", str(included)).replace("min_resets: 1", f"min_resets: {min_resets}"),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("capture", ["retransmissions.pcap", "idle_timeout_rst.pcap", "http_404_and_500.pcap",
                                     "syn_drop.pcap"])
def test_a_cached_rule_set_gives_the_same_report(capture, monkeypatch):
    fresh = _report(capture, load_rule_set(["all"], cache=False))
    assert _cache_files() == []
    load_rule_set(["all"])  # loads and saves
    assert len(_cache_files()) == 1
    _from_cache_only(monkeypatch)
    cached = load_rule_set(["all"])
    assert fresh["findings"] or fresh["rules"]  # a report with something in it to compare
    assert _report(capture, cached) == fresh


def _plain(value, ids=None):
    """A rule set as plain data: compiled filters by what they test, templates by their text, names by their fields.
    A filter's key names its param.*/agg.* fields by address: numbered here in the order they first appear, so two
    rule sets compare equal when their filters share the same fields the same way."""
    import dataclasses
    import re

    from diagnose.playbook.templates import LazyTemplate

    ids = {} if ids is None else ids
    if isinstance(value, ex.Compiled):
        owner = value.evaluate.__self__
        key = re.sub(r"\b\d{12,}\b", lambda m: f"#{ids.setdefault(m[0], len(ids))}", repr(owner.key))
        return ("filter", value.text, value.scope, value.fields, sorted(owner.fields), key)
    if isinstance(value, ex.ExtraNames):
        return ("names", value.owner, [(k, f.name, f.type, f.description, f.protocol, type(f.extractor).__name__)
                                       for k, f in value.fields.items()])
    if isinstance(value, LazyTemplate):
        return ("template", value.source)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, [(f.name, _plain(getattr(value, f.name), ids))
                                       for f in dataclasses.fields(value)])
    if isinstance(value, dict):
        return {k: _plain(v, ids) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, ids) for v in value]
    return value


def test_a_cached_rule_set_is_the_fresh_one_field_by_field(monkeypatch):
    fresh = load_rule_set(["all"], cache=False)
    load_rule_set(["all"])
    _from_cache_only(monkeypatch)
    cached = load_rule_set(["all"])
    assert _plain(cached) == _plain(fresh)
    # parameters shared by several rules (a playbook's) stay one object: --set changes them everywhere
    for name, params in cached.params.items():
        rules = [r for r in cached.rules if any(p is params[0] for p in r.params.values())]
        assert rules, name


def test_a_cached_user_playbook_with_an_include_gives_the_same_report(tmp_path, monkeypatch):
    path = _user_playbook(tmp_path)
    fresh = _report("idle_timeout_rst.pcap", load_rule_set([str(path)], cache=False))
    assert {f["rule"] for f in fresh["findings"]} >= {"mine.resets", "extra.syns"}
    load_rule_set([str(path)])
    _from_cache_only(monkeypatch)
    assert _report("idle_timeout_rst.pcap", load_rule_set([str(path)])) == fresh


@pytest.mark.parametrize("edited", ["mine.yaml", "included.yaml"])
def test_editing_a_playbook_file_makes_the_cache_stale(edited, tmp_path):
    path = _user_playbook(tmp_path)
    first = load_rule_set([str(path)])
    assert [r.title for r in first.rules] == ["SYNs", "Resets"]
    changed = tmp_path / edited
    changed.write_text(changed.read_text(encoding="utf-8").replace("title: SYNs", "title: Opening SYNs")
                       .replace("title: Resets", "title: Reset flows"), encoding="utf-8")
    second = load_rule_set([str(path)])
    expected = {"mine.yaml": ["SYNs", "Reset flows"], "included.yaml": ["Opening SYNs", "Resets"]}[edited]
    assert [r.title for r in second.rules] == expected
    assert [r.title for r in load_rule_set([str(path)], cache=False).rules] == expected


def test_a_damaged_cache_file_is_rebuilt(monkeypatch):
    fresh = _report("retransmissions.pcap", load_rule_set(["tcp"]))
    (saved,) = _cache_files()
    for damage in (b"", b"not a pickle", saved.read_bytes()[: saved.stat().st_size // 2]):
        saved.write_bytes(damage)
        assert _report("retransmissions.pcap", load_rule_set(["tcp"])) == fresh
        assert saved.read_bytes() != damage  # written again, whole
    with monkeypatch.context() as m:
        _from_cache_only(m)
        assert _report("retransmissions.pcap", load_rule_set(["tcp"])) == fresh


def test_overrides_apply_to_a_cached_rule_set_and_stay_out_of_the_cache(monkeypatch):
    default = _report("retransmissions.pcap", load_rule_set(["tcp"], cache=False))
    assert "tcp.retransmissions" in {f["rule"] for f in default["findings"]}
    overrides = ["tcp.retransmissions.max_rate=99%"]
    fresh = _report("retransmissions.pcap", load_rule_set(["tcp"], overrides, cache=False))
    assert "tcp.retransmissions" not in {f["rule"] for f in fresh["findings"]}

    load_rule_set(["tcp"], overrides)  # the first load saves the rule set
    _from_cache_only(monkeypatch)
    assert _report("retransmissions.pcap", load_rule_set(["tcp"], overrides)) == fresh
    assert _report("retransmissions.pcap", load_rule_set(["tcp"])) == default  # the override was not saved


def test_a_bad_override_is_reported_from_the_cache_too():
    from diagnose.errors import UsageError

    messages = []
    for _ in range(2):  # the first loads and saves, the second reads the cache
        with pytest.raises(UsageError) as caught:
            load_rule_set(["tcp"], ["tcp.retransmissions.max_rate=5s"])
        messages.append(caught.value.message)
    assert len(_cache_files()) == 1
    assert messages[0] == messages[1]


def test_playbook_mistakes_are_never_cached(tmp_path):
    path = _user_playbook(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("agg.resets >= param.min_resets",
                                                             "agg.resets >= param.min_reset"), encoding="utf-8")
    reports = []
    for _ in range(2):
        with pytest.raises(PlaybookError) as caught:
            load_rule_set([str(path)])
        reports.append(caught.value.one_line())
    assert _cache_files() == []
    assert reports[0] == reports[1]
    assert "param.min_reset" in reports[0] and "^" in reports[0] and f"{path}:" in reports[0]


def test_a_cache_folder_that_cannot_be_written_costs_only_the_rebuild(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    fresh = load_rule_set(["tcp"], cache=False)
    for _ in range(2):
        rule_set = load_rule_set(["tcp"])
        assert [r.id for r in rule_set.rules] == [r.id for r in fresh.rules]


def test_compiling_a_checked_tree_gives_what_the_display_filter_compiler_gives():
    """compile_tree skips the second parse of compile_display_filter: the same fields and the same key for every
    filter of the built-in playbooks."""
    from diagnose.filters import compile_display_filter

    rule_set = load_rule_set(["all"], cache=False)
    filters = []
    for rule in rule_set.rules:
        filters += [rule.when, rule.evidence, rule.having]
        filters += [f for agg in rule.aggregates.values() for f in agg.filters]
    filters = [f for f in filters if f is not None]
    assert len(filters) > 40
    for flt in filters:
        made = ex.compile_tree(flt.text, flt.compiled.tree, flt.scope, flt.compiled.extra)
        reference = compile_display_filter(flt.text, fields=ex._chain(flt.compiled.extra))
        mine = made.evaluate.__self__
        assert (mine.fields, mine.key) == (reference.fields, reference.key), flt.text
        assert made.fields == flt.compiled.fields


def test_an_unknown_playbook_is_still_a_usage_error():
    from diagnose.errors import UsageError

    load_rule_set(["tcp"])
    for _ in range(2):
        with pytest.raises(UsageError, match="unknown playbook 'tcpp'"):
            load_rule_set(["tcp", "tcpp"])
    assert len(_cache_files()) == 1


def test_only_the_newest_rule_sets_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(rule_cache, "KEEP", 3)
    names = ["tcp", "dns", "http", "tls"]
    for name in names:
        load_rule_set([name])
    kept = _cache_files()
    assert len(kept) == 3
    assert rule_cache._path(["tcp"]) not in kept  # the oldest went
    assert all(rule_cache._path([name]) in kept for name in names[1:])
