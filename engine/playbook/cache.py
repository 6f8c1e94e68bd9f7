"""Loaded rule sets kept between runs: a second `diagnose CAPTURE --playbook ...` with the same playbooks reads its
rules in a few ms instead of parsing YAML, ~60 display filters and ~70 Jinja templates again (~70-120 ms), and
without importing jinja2 before the first finding is rendered.

What is kept is the RuleSet pickled, with the two kinds of objects that hold compiled code written as what they
were made from: a filter as its text and syntax tree (compiled again on reading: the type checker takes ~1.5 ms for
the built-in playbooks, the parse it skips ~10 ms) and a message template as its text (compiled when first
rendered, from playbook/templates' own code cache). Everything else (rules, parameters, self-tests, positions) is
plain data. Only rule sets that loaded without a mistake are saved: every playbook error is still found and
reported by the loader.

A file is named by a digest of what decides the result besides the playbooks' text: the tool's version and the
source of the modules that load and check them, the field registry (names and types filters are checked against),
the Python version, the specs as given, the files they point to, the built-in folder and the working directory. It
starts with the playbook files the load read (includes too) and the digests of their bytes: a file that changed
makes it stale. A file that cannot be read, does not unpickle or is stale is rebuilt silently; a read-only cache
folder only costs the rebuild.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
from pathlib import Path

from diagnose.playbook import expressions as ex
from diagnose.playbook.model import Filter
from diagnose.resources import save_whole, user_cache_dir

FORMAT = 2  # bump when what is pickled changes shape in a way a source digest would not show
KEEP = 32  # rule sets kept (different --playbook choices, working directories); older files are removed

# the modules whose code decides what a load gives (besides the registry's fields, digested separately)
_SOURCES = ("playbook/*.py", "filters/__init__.py", "filters/grammar.py", "filters/display_*.py",
            "rules/flow_fields.py", "rules/capture_fields.py", "fields/registry.py", "resources.py", "__init__.py")
_LIBRARIES = ("jinja2", "lark", "yaml")  # their versions, by the size and time of their package files


def load(specs: list[str]) -> object | None:
    """The cached rule set of these specs (parameters at their defaults), or None when there is none to trust."""
    try:
        data = _path(specs).read_bytes()
    except Exception:  # noqa: BLE001 - not cached, or a spec that names nothing (the loader says so)
        return None
    try:
        stream = io.BytesIO(data)
        files = pickle.load(stream)
        for name, digest in files:
            if _digest(Path(name).read_bytes()) != digest:
                return None
        rule_set = pickle.load(stream)
    except Exception:  # noqa: BLE001 - damaged, from another version, a playbook gone: load as if there were none
        return None
    from diagnose.playbook.library import RuleSet

    return rule_set if isinstance(rule_set, RuleSet) else None


def save(specs: list[str], rule_set, files: list[Path]) -> None:
    """Keep a rule set that loaded without mistakes, with the playbook files it was read from. Parameters must still
    be at their defaults (--set is applied after loading, cached or not)."""
    try:
        listing = [(str(path), _digest(path.read_bytes())) for path in files]
        out = io.BytesIO()
        pickle.dump(listing, out, protocol=pickle.HIGHEST_PROTOCOL)
        _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(rule_set)
    except Exception:  # noqa: BLE001 - something in it does not pickle (a filter without its tree): not cached
        return
    path = _path(specs)
    save_whole(path, out.getvalue())
    _prune(path.parent)


def _prune(where: Path) -> None:
    """Drop all but the newest files: each edit of a playbook or of the tool names a new file, and nothing else
    would ever remove the stale ones."""
    try:
        saved = sorted(where.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for stale in saved[KEEP:]:
            stale.unlink()
    except OSError:  # another process pruning at the same time, a read-only folder: next time
        pass


def folder() -> Path:
    return user_cache_dir() / "playbooks"


def _path(specs: list[str]) -> Path:
    """The file of these specs: where they point now (the files, the built-in folder that includes are looked up
    in, the working directory that relative paths start from) is part of the name; an unknown spec raises
    UsageError (load: no cache; the loader then reports it)."""
    from diagnose.playbook.library import builtin_dir, find_playbook

    where = [str(find_playbook(spec)[0].resolve()) for spec in specs]
    key = repr((FORMAT, _signature(), list(specs), where, str(builtin_dir()), os.getcwd()))
    return folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"


_SIGNATURE: list[str] = []


def _signature() -> str:
    """What a load depends on besides the playbooks themselves (once per process: it cannot change meanwhile)."""
    if _SIGNATURE:
        return _SIGNATURE[0]
    import importlib.util

    from diagnose import __version__
    from diagnose.fields import all_fields

    package = Path(__file__).resolve().parent.parent
    sources = []
    for pattern in _SOURCES:
        for path in sorted(package.glob(pattern)):
            stat = path.stat()
            sources.append((path.relative_to(package).as_posix(), stat.st_size, stat.st_mtime_ns))
    from diagnose.resources import data_dir

    grammar = data_dir("grammar") / "display_filter.lark"
    sources.append((grammar.name, grammar.stat().st_size, grammar.stat().st_mtime_ns))
    libraries = []
    for name in _LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = getattr(spec, "origin", None)
        try:
            stat = os.stat(origin) if origin else None
        except OSError:
            stat = None
        libraries.append((name, origin, stat and (stat.st_size, stat.st_mtime_ns)))
    fields = [(f.name, f.type.value, f.bits, f.base, f.protocol, len(f.value_names or ())) for f in all_fields()]
    signature = (__version__, sys.version, pickle.HIGHEST_PROTOCOL, sources, libraries, fields)
    _SIGNATURE.append(hashlib.sha256(repr(signature).encode()).hexdigest())
    return _SIGNATURE[0]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Pickler(pickle.Pickler):
    """A filter is written as its text, scope, position, syntax tree and names; its compiled form is made again
    when read (_filter). (Message templates write themselves as their text: LazyTemplate.__reduce__.)"""

    def reducer_override(self, obj):
        if type(obj) is Filter:
            compiled = obj.compiled
            if compiled.tree is None or compiled.extra is None:
                raise pickle.PicklingError(f"filter {obj.text!r} has no syntax tree to cache")
            return _filter, (obj.text, obj.scope, obj.where, compiled.tree, compiled.extra, compiled.fields)
        return NotImplemented


def _filter(text, scope, where, tree, extra, names) -> Filter:
    return Filter(text, scope, ex.compile_tree(text, tree, scope, extra, names), where)
